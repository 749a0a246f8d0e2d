"""EMDB (bench/data/emdb.py, bench/predictions/emdb.py) end to end against WHAM's own evaluation steps.

``tests/data/emdb_reader_golden/golden.json`` holds what yohanshin/WHAM's ``evaluate_emdb.py`` steps (its GT and
prediction construction through smplx, its ``eval_utils`` functions), eth-ait/emdb's
``compute_positional_errors`` and its ``compute_metrics`` (MPJAE, degrees) returned on the bundled synthetic
sample with the predictions of ``tests/data/emdb_reader_golden/inputs.py`` (two cases, both subsets); its
PROVENANCE.md has the command. The SMPL files are the synthetic SMPL-format model of tests/smpl_synthetic.py, written to a tmp folder.
"""
from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from bench.data.base import SAMPLES_DIR
from bench.data.emdb import EMDBDataset
from bench.errors import InputError
from bench.predictions.npz import UnscoredKeysWarning
from bench.replay import PredictionsFile
from tests.conftest import ShellPayload, output_lines, run_cli
from tests.data.emdb_reader_golden.inputs import CASES, predictions
from tests.smpl_synthetic import write_smpl_dir

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[2]
GOLDEN = json.loads((REPO / "tests" / "data" / "emdb_reader_golden" / "golden.json").read_text())
SAMPLE = SAMPLES_DIR / "emdb"
TOL = 1e-9  # mm (and % for RTE, 10 m/s^3 for jitter)
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    d = tmp_path_factory.mktemp("emdb")
    smpl = write_smpl_dir(d / "models")
    files = {}
    for name in CASES:
        files[name] = d / f"{name}.npz"
        np.savez(files[name], **predictions(name))
    return d, smpl, files


def _scored(ds: EMDBDataset, path: Path):
    """The dataset's metric over the replayed file, in reverse order with one padded repeat (DDP padding)."""
    method = PredictionsFile(ds.read_predictions(path), ds)
    m = ds.build_metric()
    order = list(range(len(ds)))[::-1] + [0]
    for i in order:
        s = ds[i]
        m.update([p.output for p in method.predict_step([s])], [s.target])
    return m


@pytest.mark.parametrize("subset", ["emdb1", "emdb2"])
@pytest.mark.parametrize("name", list(CASES))
def test_metrics_equal_wham_on_the_sample(case, subset, name):
    _, smpl, files = case
    ds = EMDBDataset(SAMPLE, smpl, subset=subset)
    ref = GOLDEN["cases"][name][subset]
    assert [s.key for s in ds.sequences] == list(ref["per_sequence"])  # WHAM's selection and order
    m = _scored(ds, files[name])
    result = m.evaluate()
    assert tuple(result) == ds.metric_keys
    for key, (ids, values) in result.items():
        want = np.concatenate([s[key] for s in ref["per_sequence"].values()])
        assert values.shape == want.shape, key
        np.testing.assert_allclose(values.numpy(), want, rtol=0, atol=TOL, err_msg=key)
    got = {k: float(v) for k, v in m.compute().items()}
    for key in ds.metric_keys:
        assert got[key] == pytest.approx(ref["mean"][key], abs=TOL), key
    if subset == "emdb1":  # EMDB's own positional errors agree with WHAM's
        for key in ("MPJPE", "PA-MPJPE", "PVE"):
            assert got[key] == pytest.approx(ref["mean"][f"{key}_emdb"], abs=TOL), key


def test_golden_values_are_not_trivial():
    for subsets in GOLDEN["cases"].values():
        assert all(v > 1 for v in subsets["emdb1"]["mean"].values())
        world = subsets["emdb2"]["mean"]
        assert all(v > 1 for v in world.values()) and world["W-MPJPE100"] > world["WA-MPJPE100"]
        walk = subsets["emdb2"]["per_sequence"]["P0_01_synth_walk"]
        assert len(walk["W-MPJPE100"]) == 124 and 0 < len(walk["FS"]) < 4 * 123  # two chunks, some contacts


def test_bootstrap_over_sequences(case):
    _, smpl, files = case
    ds = EMDBDataset(SAMPLE, smpl, subset="emdb2")
    m = _scored(ds, files["rotmat_good_frames"])
    bs = m.bootstrap_stats()
    assert bs.unit == "sequence" and bs.ids.tolist() == [0, 1] and bs.keys == ds.metric_keys
    w = torch.tensor([[1.0, 1.0], [2.0, 0.0]], dtype=torch.float64)
    rep = bs.statistic(w)
    ref = GOLDEN["cases"]["rotmat_good_frames"]["emdb2"]
    for j, key in enumerate(bs.keys):
        assert float(rep[0, j]) == pytest.approx(ref["mean"][key], rel=1e-12), key
        only_walk = np.mean(ref["per_sequence"]["P0_01_synth_walk"][key])
        assert float(rep[1, j]) == pytest.approx(only_walk, rel=1e-12), key


def test_reader_options_and_variants(case):
    _, smpl, _ = case
    one, two = EMDBDataset(SAMPLE, smpl), EMDBDataset(SAMPLE, smpl, subset="emdb2")
    assert (one.variant, two.variant) == ("", "subset=emdb2")
    assert one.metric_keys == ("PA-MPJPE", "MPJPE", "PVE", "ACCEL", "MPJAE")
    assert two.metric_keys == ("WA-MPJPE100", "W-MPJPE100", "RTE", "JITTER", "FS")
    assert set(one[0].target) == {"joints_cam", "verts_cam", "orients_cam", "sample_id"}
    assert one[0].target["verts_cam"].shape == (124, 6890, 3) and one[0].target["verts_cam"].dtype == torch.float64
    assert one[0].target["orients_cam"].shape == (124, 9, 3, 3)
    with pytest.raises(InputError, match="field 'subset'"):
        EMDBDataset(SAMPLE, smpl, subset="emdb3")
    with pytest.raises(InputError, match="field 'smpl_dir'"):
        EMDBDataset(SAMPLE, None)


def _write(tmp: Path, arrays: dict) -> Path:
    p = tmp / "p.npz"
    np.savez(p, **arrays)
    return p


def test_bad_predictions(case, tmp_path):
    _, smpl, _ = case
    ds = EMDBDataset(SAMPLE, smpl, subset="emdb2")
    good = predictions("axis_angle_every_frame")
    cases = [
        ({k: v for k, v in good.items() if k != "P2_03_synth_stairs/trans_world"},
         "key 'P2_03_synth_stairs/trans_world', field 'trans_world'", "missing"),
        ({**good, "P0_01_synth_walk/poses_body": good["P0_01_synth_walk/poses_body"][:-3]},
         "key 'P0_01_synth_walk/poses_body', field 'shape'", "130 frames"),
        ({**good, "P0_01_synth_walk/betas": np.zeros(11)}, "key 'P0_01_synth_walk/betas', field 'shape'", "(130, 10)"),
        ({**good, "P0_01_synth_walk/poses_root_world": np.zeros((130, 3, 3))},
         "key 'P0_01_synth_walk/poses_root_world', field 'shape'", "(130, 3)"),
        ({**good, "P0_01_synth_walk/trans_world": np.full((130, 3), np.nan)},
         "key 'P0_01_synth_walk/trans_world', field 'values'", "non-finite"),
        ({**good, "P0_01_synth_walk/betas": np.array(["a"] * 10)},
         "key 'P0_01_synth_walk/betas', field 'dtype'", "float"),
    ]
    for arrays, where, what in cases:
        with pytest.raises(InputError) as e:
            ds.read_predictions(_write(tmp_path, arrays))
        assert where in e.value.line() and what in e.value.line(), e.value.line()
    with pytest.warns(UnscoredKeysWarning, match="'X_y/betas'"):
        ds.read_predictions(_write(tmp_path, {**good, "X_y/betas": np.zeros(10)}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the emdb1-only sequence's keys are not warned about
        ds.read_predictions(_write(tmp_path, good))
    with pytest.raises(InputError, match="file not found"):
        ds.read_predictions(tmp_path / "nope.npz")


def _sequence_copy(tmp: Path, change) -> Path:
    """A one-sequence copy of the sample's first file with ``change(dict)`` applied."""
    with open(SAMPLE / "P0" / "01_synth_walk" / "P0_01_synth_walk_data.pkl", "rb") as fh:
        data = pickle.load(fh)
    change(data)
    folder = tmp / "root" / "P0" / "01_synth_walk"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "P0_01_synth_walk_data.pkl", "wb") as fh:
        pickle.dump(data, fh)
    return tmp / "root"


def test_bad_sequence_files(case, tmp_path):
    _, smpl, _ = case
    cases = [
        (lambda d: d.pop("good_frames_mask"), "field 'good_frames_mask'"),
        (lambda d: d["smpl"].pop("betas"), "field 'smpl.betas'"),
        (lambda d: d["smpl"].update(poses_body=d["smpl"]["poses_body"][:, :66]), "field 'smpl.poses_body'"),
        (lambda d: d["camera"].update(extrinsics=np.zeros((3, 4, 4))), "field 'camera.extrinsics'"),
        (lambda d: d.update(gender="m"), "field 'gender'"),
        (lambda d: d.update(emdb1="yes"), "field 'emdb1'"),
        (lambda d: d.update(emdb1=False), "field 'subset'"),
        (lambda d: d.update(good_frames_mask=np.zeros(130, dtype=bool)), "field 'good_frames_mask'"),
        (lambda d: d["smpl"]["trans"].__setitem__((3, 1), np.inf), "field 'smpl.trans'"),
    ]
    for i, (change, needle) in enumerate(cases):
        root = _sequence_copy(tmp_path / str(i), change)
        with pytest.raises(InputError) as e:
            EMDBDataset(root, smpl)
        assert needle in e.value.line(), (i, e.value.line())
    with pytest.raises(InputError, match="no sequence files"):
        EMDBDataset(tmp_path / "empty", smpl)


def _main(*args: str, tmp: Path) -> int:
    """The CLI entry point in this process."""
    from bench.__main__ import main

    return main(["evaluate", "method=mine", "dataset=emdb", *args, f"leaderboard_dir={tmp / 'lb'}"])


def _rows(path: Path) -> list[dict]:
    """The leaderboard rows but their ``code`` column (a fingerprint of the checkout, which other work changes)."""
    import csv

    with open(path, newline="") as fh:
        return [{k: v for k, v in r.items() if k != "code"} for r in csv.DictReader(fh)]


@pytest.mark.slow
@pytest.mark.parametrize("subset", ["emdb1", "emdb2"])
def test_cli_devices_and_bundled_sample(case, tmp_path, capsys, subset):
    """The bundled sample (no data_root), devices=1 in this process and devices=2 through ``python -m bench``."""
    _, smpl, files = case
    args = (f"smpl_dir={smpl}", f"predictions={files['axis_angle_every_frame']}", f"dataset.subset={subset}",
            "batch_size=1", "bootstrap.samples=50")
    assert _main(*args, "devices=1", f"out={tmp_path / '1'}", tmp=tmp_path) == 0, capsys.readouterr().err
    assert "BUNDLED SAMPLE" in capsys.readouterr().out
    r = run_cli("evaluate", "method=mine", "dataset=emdb", *args, "devices=2", f"out={tmp_path / '2'}",
                f"leaderboard_dir={tmp_path / 'lb2'}", env={**ONE_THREAD, "POSEARENA_DATA": str(tmp_path / "none")})
    assert r.returncode == 0, r.stderr[-3000:]
    out = {n: json.loads((tmp_path / str(n) / "metrics.json").read_text()) for n in (1, 2)}
    assert out[1]["metrics"] == out[2]["metrics"] and out[2]["provenance"]["world_size"] == 2
    rows = [_rows(tmp_path / lb / "motion" / "emdb.csv") for lb in ("lb", "lb2")]
    assert rows[0] == rows[1] and rows[0][0]["variant"] == ("" if subset == "emdb1" else "subset=emdb2")
    ref = GOLDEN["cases"]["axis_angle_every_frame"][subset]["mean"]
    keys = EMDBDataset(SAMPLE, smpl, subset=subset).metric_keys
    for k in keys:
        assert out[1]["metrics"][k] == pytest.approx(ref[k], abs=TOL), k
    head = keys[0]
    assert out[1]["metrics"][f"{head}_ci_low"] < ref[head] < out[1]["metrics"][f"{head}_ci_high"]


def test_cli_errors_are_one_line(case, tmp_path, capsys):
    _, smpl, files = case
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil" / "P0" / "x"
    evil.mkdir(parents=True)
    with open(evil / "P0_x_data.pkl", "wb") as fh:
        pickle.dump({"gender": ShellPayload(f"touch {marker}")}, fh)
    cases = [
        ([f"data_root={SAMPLE}", f"smpl_dir={tmp_path / 'nowhere'}"], "field 'smpl_dir'"),
        ([f"data_root={tmp_path / 'evil'}", f"smpl_dir={smpl}"], "refused to unpickle posix.system"),
        ([f"data_root={SAMPLE}", f"smpl_dir={smpl}", "dataset.subset=all"], "field 'subset'"),
    ]
    capsys.readouterr()
    for args, needle in cases:
        code = _main(*args, f"predictions={files['rotmat_good_frames']}", f"out={tmp_path / 'o'}", tmp=tmp_path)
        lines = output_lines(capsys)
        assert code == 2 and len(lines) == 1 and needle in lines[0], (args, code, lines)
    assert not marker.exists() and not (tmp_path / "o").exists()


def test_registry_and_config():
    from bench.registry import DATASETS, load_all

    load_all()
    cfg = OmegaConf.load(REPO / "bench" / "conf" / "dataset" / "emdb.yaml")
    assert "emdb" in DATASETS and cfg.name == "emdb" and cfg.subset == "emdb1" and cfg.smpl_dir is None
