"""RICH (bench/data/rich.py) end to end against WHAM's own evaluation steps.

``tests/data/rich_golden/golden.json`` holds what yohanshin/WHAM's ``evaluate_rich.py`` steps (its label
handling, GT through smplx's SMPL-X and its ``smplx2smpl`` map, prediction through smplx's SMPL, its
``eval_utils`` functions) returned on the bundled synthetic label file with the predictions of
``tests/data/rich_golden/inputs.py`` (two cases); its PROVENANCE.md has the command. The body models are the
synthetic SMPL / SMPL-X files of tests/smpl_synthetic.py and tests/smplx_synthetic.py, written to a tmp folder.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from bench.data.base import SAMPLES_DIR
from bench.data.rich import RICHDataset
from bench.errors import InputError
from bench.replay import PredictionsFile
from bench.safe_pickle import load_joblib
from tests.conftest import ShellPayload, output_lines, run_cli
from tests.data.rich_golden.inputs import CASES, predictions
from tests.smpl_synthetic import write_smpl_dir
from tests.smplx_synthetic import write_smplx_dir

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[2]
GOLDEN = json.loads((REPO / "tests" / "data" / "rich_golden" / "golden.json").read_text())
SAMPLE = SAMPLES_DIR / "rich"
TOL = 1e-9  # mm (mm/s^2 for ACCEL)
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
KEYS = ("PA-MPJPE", "MPJPE", "PVE", "ACCEL")


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    d = tmp_path_factory.mktemp("rich")
    models = write_smplx_dir(write_smpl_dir(d / "models", ("neutral",)), ("male", "female"))
    files = {}
    for name in CASES:
        files[name] = d / f"{name}.npz"
        np.savez(files[name], **predictions(name))
    return d, models, files


@pytest.fixture(scope="module")
def dataset(case):
    return RICHDataset(SAMPLE, case[1])


def _scored(ds: RICHDataset, path: Path):
    """The dataset's metric over the replayed file, in reverse order with one padded repeat (DDP padding)."""
    method = PredictionsFile(ds.read_predictions(path), ds)
    m = ds.build_metric()
    for i in list(range(len(ds)))[::-1] + [0]:
        s = ds[i]
        m.update([p.output for p in method.predict_step([s])], [s.target])
    return m


@pytest.mark.parametrize("name", list(CASES))
def test_metrics_equal_wham_on_the_sample(case, dataset, name):
    ref = GOLDEN[name]
    assert [s.key for s in dataset.sequences] == [s["vid"] for s in ref["per_sequence"]]  # the file's order
    m = _scored(dataset, case[2][name])
    result = m.evaluate()
    assert tuple(result) == dataset.metric_keys == KEYS
    for key, (_, values) in result.items():
        want = np.concatenate([s[key] for s in ref["per_sequence"]])
        assert values.shape == want.shape, key
        np.testing.assert_allclose(values.numpy(), want, rtol=0, atol=TOL, err_msg=key)
    got = {k: float(v) for k, v in m.compute().items()}
    for key in KEYS:
        assert got[key] == pytest.approx(ref["mean"][key], abs=TOL), key


def test_golden_values_are_not_trivial():
    for ref in GOLDEN.values():
        assert all(v > 10 for v in ref["mean"].values())
        assert ref["mean"]["MPJPE"] > ref["mean"]["PA-MPJPE"]
        lengths = [len(s["MPJPE"]) for s in ref["per_sequence"]]
        assert lengths == [47, 29, 21] and [len(s["ACCEL"]) for s in ref["per_sequence"]] == [43, 25, 17]


def test_the_6d_round_trip_gives_the_vector_smplx_gets(dataset):
    """WHAM's matrices -> 6D -> matrices -> axis-angle trip hands smplx another vector of the same rotation for some
    of the sample's roots (near pi, the labels' vector of angle 2 pi - theta); smplx's Rodrigues (``+ 1e-8`` in
    the angle) then gives other bodies, by far more than the 1e-9 mm the goldens hold us to."""
    from scipy.spatial.transform import Rotation

    from bench.data.rich import gt_pose, smpl_vertices_from_smplx
    from bench.formats.smplx_model import load_smplx

    seq = dataset.sequences[0]
    raw, trip = seq.pose[1:], gt_pose(seq).numpy()
    same = Rotation.from_rotvec(raw.reshape(-1, 3)).inv() * Rotation.from_rotvec(trip.reshape(-1, 3))
    assert same.magnitude().max() < 1e-9
    changed = np.abs(trip - raw).max(axis=(1, 2)) > 1
    assert changed.any() and not changed.all()
    model, betas = load_smplx(dataset.smpl_dir, seq.gender), torch.from_numpy(seq.betas[1:])
    bodies = [smpl_vertices_from_smplx(model, betas, torch.from_numpy(p), dataset.smplx2smpl) for p in (raw, trip)]
    assert float(torch.linalg.vector_norm(bodies[0] - bodies[1], dim=-1).max()) * 1000 > 1e-6


def test_bootstrap_over_sequences(case, dataset):
    m = _scored(dataset, case[2]["rotmat_scored_frames"])
    bs = m.bootstrap_stats()
    assert bs.unit == "sequence" and bs.ids.tolist() == [0, 1, 2] and bs.keys == KEYS
    rep = bs.statistic(torch.tensor([[1.0, 1.0, 1.0], [0.0, 3.0, 0.0]], dtype=torch.float64))
    ref = GOLDEN["rotmat_scored_frames"]
    for j, key in enumerate(KEYS):
        assert float(rep[0, j]) == pytest.approx(ref["mean"][key], rel=1e-12), key
        assert float(rep[1, j]) == pytest.approx(np.mean(ref["per_sequence"][1][key]), rel=1e-12), key


def test_label_file_is_wham_format_and_options(case, dataset):
    labels = load_joblib(SAMPLE / "rich_test_vit.pth", allow_torch=True)
    assert isinstance(labels["pose"][0], torch.Tensor) and labels["pose"][0].dtype == torch.float32
    assert dataset.variant == "" and dataset.gt_files() == [SAMPLE / "rich_test_vit.pth"]
    s = dataset[1]
    assert set(s.target) == {"joints_cam", "verts_cam", "sample_id"}
    assert s.target["verts_cam"].shape == (29, 6890, 3) and s.target["verts_cam"].dtype == torch.float64
    assert s.inputs["key"] == "Synth02_002_squat_cam3" and len(s.inputs["frames"]) == 29
    with pytest.raises(InputError, match="field 'data_root'"):
        RICHDataset(SAMPLE, case[1], file="other.pth")
    with pytest.raises(InputError, match="field 'smpl_dir'"):
        RICHDataset(SAMPLE, None)


def _labels_copy(tmp: Path, change) -> Path:
    """The sample's label dict with ``change(dict)`` applied, pickled (a plain pickle is a joblib file too)."""
    labels = load_joblib(SAMPLE / "rich_test_vit.pth", allow_torch=True)
    change(labels)
    tmp.mkdir(parents=True, exist_ok=True)
    with open(tmp / "rich_test_vit.pth", "wb") as fh:
        pickle.dump(labels, fh)
    return tmp


def test_bad_label_files(case, tmp_path):
    models = case[1]
    cases = [
        (lambda d: d.pop("betas"), "field 'betas'"),
        (lambda d: d["gender"].__setitem__(1, "m"), "sequence 'Synth02_002_squat_cam3', field 'gender'"),
        (lambda d: d["vid"].__setitem__(2, d["vid"][0]), "sequence 2, field 'vid'"),
        (lambda d: d["pose"].__setitem__(0, d["pose"][0][:, :66]), "sequence 'Synth01_001_walk_cam0', field 'pose'"),
        (lambda d: d["betas"].__setitem__(0, d["betas"][0][:3]), "field 'betas'"),
        (lambda d: d["pose"][1].__setitem__((3, 4), float("nan")), "field 'pose': holds NaN"),
        (lambda d: d["pose"].__setitem__(2, d["pose"][2][:4]), "field 'pose': 4 frames"),
        (lambda d: d["frame_id"].pop(), "field 'frame_id'"),
    ]
    for i, (change, needle) in enumerate(cases):
        root = _labels_copy(tmp_path / str(i), change)
        with pytest.raises(InputError) as e:
            RICHDataset(root, models)
        assert needle in e.value.line(), (i, e.value.line())


def test_bad_predictions(dataset, tmp_path):
    good = predictions("axis_angle_every_frame")
    cases = [
        ({k: v for k, v in good.items() if k != "Synth01_003_turn_cam1/poses_root_cam"},
         "key 'Synth01_003_turn_cam1/poses_root_cam'", "missing"),
        ({**good, "Synth01_001_walk_cam0/poses_body": good["Synth01_001_walk_cam0/poses_body"][:-3]},
         "key 'Synth01_001_walk_cam0/poses_body', field 'shape'", "48 frames"),
        ({**good, "Synth01_001_walk_cam0/betas": np.zeros(11)}, "field 'shape'", "(48, 10)"),
    ]
    for i, (arrays, where, what) in enumerate(cases):
        p = tmp_path / f"{i}.npz"
        np.savez(p, **arrays)
        with pytest.raises(InputError) as e:
            dataset.read_predictions(p)
        assert where in e.value.line() and what in e.value.line(), e.value.line()


def _main(*args: str, tmp: Path) -> int:
    from bench.__main__ import main

    return main(["evaluate", "method=mine", "dataset=rich", *args, f"leaderboard_dir={tmp / 'lb'}"])


def _rows(path: Path) -> list[dict]:
    import csv

    with open(path, newline="") as fh:
        return [{k: v for k, v in r.items() if k != "code"} for r in csv.DictReader(fh)]


@pytest.mark.slow
def test_cli_devices_and_bundled_sample(case, tmp_path, capsys):
    """The bundled sample (no data_root), devices=1 in this process and devices=2 through ``python -m bench``."""
    _, models, files = case
    args = (f"smpl_dir={models}", f"predictions={files['axis_angle_every_frame']}", "batch_size=1",
            "bootstrap.samples=50")
    assert _main(*args, "devices=1", f"out={tmp_path / '1'}", tmp=tmp_path) == 0, capsys.readouterr().err
    assert "BUNDLED SAMPLE" in capsys.readouterr().out
    r = run_cli("evaluate", "method=mine", "dataset=rich", *args, "devices=2", f"out={tmp_path / '2'}",
                f"leaderboard_dir={tmp_path / 'lb2'}", env={**ONE_THREAD, "POSEARENA_DATA": str(tmp_path / "none")})
    assert r.returncode == 0, r.stderr[-3000:]
    out = {n: json.loads((tmp_path / str(n) / "metrics.json").read_text()) for n in (1, 2)}
    assert out[1]["metrics"] == out[2]["metrics"] and out[2]["provenance"]["world_size"] == 2
    rows = [_rows(tmp_path / lb / "motion" / "rich.csv") for lb in ("lb", "lb2")]
    assert rows[0] == rows[1] and len(rows[0]) == 1
    ref = GOLDEN["axis_angle_every_frame"]["mean"]
    for k in KEYS:
        assert out[1]["metrics"][k] == pytest.approx(ref[k], abs=TOL), k


def test_cli_errors_are_one_line(case, tmp_path, capsys):
    _, models, files = case
    marker = tmp_path / "pwned"
    (tmp_path / "evil").mkdir()
    with open(tmp_path / "evil" / "rich_test_vit.pth", "wb") as fh:
        pickle.dump({"vid": [ShellPayload(f"touch {marker}")]}, fh)
    cases = [
        ([f"data_root={SAMPLE}", f"smpl_dir={tmp_path / 'nowhere'}"], "field 'smpl_dir'"),
        ([f"data_root={tmp_path / 'evil'}", f"smpl_dir={models}"], "refused to unpickle posix.system"),
        ([f"data_root={SAMPLE}", f"smpl_dir={models}", "dataset.file=x.pth"], "x.pth"),
    ]
    capsys.readouterr()
    for args, needle in cases:
        code = _main(*args, f"predictions={files['rotmat_scored_frames']}", f"out={tmp_path / 'o'}", tmp=tmp_path)
        lines = output_lines(capsys)
        assert code == 2 and len(lines) == 1 and needle in lines[0], (args, code, lines)
    assert not marker.exists() and not (tmp_path / "o").exists()


def test_registry_and_config():
    from bench.registry import DATASETS, load_all

    load_all()
    cfg = OmegaConf.load(REPO / "bench" / "conf" / "dataset" / "rich.yaml")
    assert "rich" in DATASETS and cfg.name == "rich" and cfg.file == "rich_test_vit.pth" and cfg.smpl_dir is None


def test_smplx2smpl_dense_or_sparse_and_bad_files(tmp_path, monkeypatch):
    """WHAM's ``smplx2smpl.pkl`` is ``{"matrix": dense ndarray}``; a scipy sparse one is accepted too (small
    shapes here: the real one is 6890 x 10475)."""
    import scipy.sparse as sp

    import bench.formats.smplx_model as sm

    monkeypatch.setattr(sm, "N_VERTS", 3)
    monkeypatch.setattr(sm, "N_SMPLX_VERTS", 5)
    dense = np.zeros((3, 5), dtype=np.float32)
    dense[[0, 1, 2], [4, 0, 2]] = [1.0, 0.5, 0.25]
    for i, matrix in enumerate((dense, sp.csc_matrix(dense))):
        (tmp_path / str(i)).mkdir()
        with open(tmp_path / str(i) / "smplx2smpl.pkl", "wb") as fh:
            pickle.dump({"matrix": matrix}, fh)
        out = sm.load_smplx2smpl(tmp_path / str(i))
        assert sp.isspmatrix_csr(out) and out.dtype == np.float64 and np.array_equal(out.toarray(), dense)
    bad = {"x": ({"m": dense}, "key matrix"), "y": ({"matrix": dense[:2]}, r"expected shape \(3, 5\)"),
           "z": ({"matrix": np.full((3, 5), np.nan)}, "NaN")}
    for folder, (content, needle) in bad.items():
        (tmp_path / folder).mkdir()
        with open(tmp_path / folder / "smplx2smpl.pkl", "wb") as fh:
            pickle.dump(content, fh)
        with pytest.raises(InputError, match=needle):
            sm.load_smplx2smpl(tmp_path / folder)
    with pytest.raises(InputError, match="smplx2smpl.pkl"):
        sm.load_smplx2smpl(tmp_path / "nowhere")


def test_bad_smplx_files(case, tmp_path):
    from bench.formats.smplx_model import read_smplx_arrays

    arrays = dict(np.load(case[1] / "smplx" / "SMPLX_MALE.npz"))
    (tmp_path / "smplx").mkdir()
    for change, needle in [(lambda a: a.pop("hands_meanl"), "key hands_meanl"),
                           (lambda a: a.update(posedirs=a["posedirs"][:, :, :10]), "key posedirs"),
                           (lambda a: a.update(shapedirs=a["shapedirs"][:, :, :12]), "expected >= 20")]:
        bad = dict(arrays)
        change(bad)
        np.savez(tmp_path / "smplx" / "SMPLX_MALE.npz", **bad)
        with pytest.raises(InputError) as e:
            read_smplx_arrays(tmp_path, "male")
        assert needle in e.value.line() and "field 'smpl_dir'" in e.value.line(), e.value.line()
    with pytest.raises(InputError, match="SMPLX_FEMALE.npz"):
        read_smplx_arrays(tmp_path, "female")
