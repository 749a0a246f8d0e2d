"""3DPW (bench/data/threedpw.py), SMPL loading (bench/formats/smpl.py) and the sparse opt-in of the
restricted unpickler.

The expected GT is built independently of the reader, the way SPIN does it: ``smplx.create`` (smplx's own
pickle loader, on the synthetic SMPL files this test wrote itself), the global orientation rotated into the
camera with ``scipy.spatial.transform.Rotation`` (SPIN: ``cv2.Rodrigues``) and fed back as axis-angle, betas
truncated to 10, no translation; the full camera-frame mesh is SMPL in the world plus ``trans``, then
``R_c v + t_c``. Expected metric values use plain numpy (an SVD Procrustes); the metric kernels themselves are
checked against SPIN/TokenHMR/mmhuman3d in tests/metrics/test_pve.py.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.spatial.transform import Rotation

from bench.data.synthetic_3dpw import write_smpl_predictions, write_synthetic_3dpw
from bench.data.threedpw import ThreeDPWDataset, load_sequence
from bench.errors import InputError
from bench.formats.smpl import load_smpl, read_smpl_arrays
from bench.predictions.npz import UnscoredKeysWarning
from bench.safe_pickle import loads
from tests.conftest import ShellPayload, output_lines, run_cli
from tests.smpl_synthetic import synthetic_smpl, write_smpl_dir

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[2]
J_REG = np.load(REPO / "bench" / "data" / "smpl" / "J_regressor_h36m.npy")
J14 = [6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10]
# tiny GEMMs crawl with 2 threads on a loaded box; the plugin variable registers 3dpw before the lead does
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    d = tmp_path_factory.mktemp("pw3d")
    smpl = write_smpl_dir(d / "models")
    root = write_synthetic_3dpw(d / "3dpw")
    return d, smpl, root


@pytest.fixture(scope="module")
def neutral_preds(case):
    d, smpl, root = case
    return write_smpl_predictions(root, smpl, d / "neutral.npz")


# ------------------------------------------------------------------------------------------ SMPL files

def test_load_smpl_matches_smplx_own_loader(case):
    import smplx

    _, smpl, _ = case
    ref = smplx.create(str(smpl), model_type="smpl", gender="female", dtype=torch.float64)
    ours = load_smpl(smpl, "female", torch.float64)
    assert load_smpl(smpl, "female", torch.float64) is ours  # cached
    rng = np.random.default_rng(0)
    kw = {"betas": torch.from_numpy(rng.normal(0, 1, (3, 10))), "body_pose": torch.from_numpy(rng.normal(0, .3, (3, 69))),
          "global_orient": torch.from_numpy(rng.normal(0, 1, (3, 3)))}
    assert torch.equal(ours(**kw).vertices, ref(**kw).vertices)
    assert ours(**kw).vertices.shape == (3, 6890, 3)


@pytest.mark.parametrize("protocol", [0, 2])  # Python 2 era (copyreg._reconstructor) and the usual one
def test_sparse_regressor_any_protocol_and_dense(tmp_path, protocol):
    model = synthetic_smpl("male")
    (tmp_path / "smpl").mkdir()
    with open(tmp_path / "smpl" / "SMPL_MALE.pkl", "wb") as fh:
        pickle.dump(model, fh, protocol=protocol)
    arrays = read_smpl_arrays(tmp_path, "male")
    np.testing.assert_array_equal(arrays["J_regressor"], model["J_regressor"].toarray())
    if protocol == 0:
        return
    dense = write_smpl_dir(tmp_path / "dense", genders=("male",), sparse_regressor=False)
    np.testing.assert_array_equal(read_smpl_arrays(dense, "male")["J_regressor"], model["J_regressor"].toarray())


def test_default_unpickler_still_refuses_sparse_and_reconstructor():
    data = pickle.dumps(sp.csc_matrix(np.eye(3)), protocol=2)
    with pytest.raises(InputError, match="scipy.sparse"):
        loads(data)
    assert np.array_equal(loads(data, allow_sparse=True).toarray(), np.eye(3))
    # protocol 0 goes through copyreg._reconstructor: allowed only for the two sparse classes
    with pytest.raises(InputError, match="copy_reg._reconstructor|copyreg._reconstructor"):
        loads(pickle.dumps(sp.csc_matrix(np.eye(2)), protocol=0))
    with pytest.raises(InputError, match="refused"):
        loads(pickle.dumps(sp.coo_matrix(np.eye(2)), protocol=2), allow_sparse=True)
    with pytest.raises(InputError, match="refused"):
        loads(pickle.dumps(ShellPayload("true"), protocol=2), allow_sparse=True)


def test_bad_smpl_dir_errors(tmp_path):
    with pytest.raises(InputError) as e:
        load_smpl(tmp_path / "nowhere", "male")
    assert e.value.field == "smpl_dir" and "does not exist" in e.value.problem
    with pytest.raises(InputError, match="not set"):
        load_smpl(None, "male")
    for key, bad in (("shapedirs", None), ("v_template", np.zeros((6890, 2))), ("f", np.zeros((5, 3)))):
        model = synthetic_smpl("male")
        if bad is None:
            del model[key]
        else:
            model[key] = bad
        d = tmp_path / key
        (d / "smpl").mkdir(parents=True)
        with open(d / "smpl" / "SMPL_MALE.pkl", "wb") as fh:
            pickle.dump(model, fh, protocol=2)
        with pytest.raises(InputError) as e:
            load_smpl(d, "male")
        assert e.value.field == "smpl_dir" and e.value.record == f"key {key}"
        assert e.value.file.endswith("SMPL_MALE.pkl")


def test_smpl_file_with_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "smpl").mkdir()
    with open(tmp_path / "smpl" / "SMPL_MALE.pkl", "wb") as fh:
        pickle.dump({"v_template": ShellPayload(f"touch {marker}")}, fh, protocol=2)
    with pytest.raises(InputError) as e:
        load_smpl(tmp_path, "male")
    assert e.value.field == "smpl_dir" and "posix.system" in e.value.problem
    assert not marker.exists()


# ------------------------------------------------------------------------------------------ reader

def spin_gt(smpl_dir, track, frames):
    """The GT the SPIN way (see the module docstring): ``(F, 6890, 3)`` origin mesh, camera-frame mesh."""
    import smplx

    model = smplx.create(str(smpl_dir), model_type="smpl", gender=track.gender, dtype=torch.float64)
    pose = track.poses[frames].copy()
    r_cam = track.cam_poses[frames, :3, :3]
    glob = Rotation.from_matrix(r_cam @ Rotation.from_rotvec(pose[:, :3]).as_matrix()).as_rotvec()
    betas = torch.from_numpy(np.tile(track.betas[:10], (len(frames), 1)))
    with torch.no_grad():
        v = model(betas=betas, body_pose=torch.from_numpy(pose[:, 3:]), global_orient=torch.from_numpy(glob)).vertices
        w = model(betas=betas, body_pose=torch.from_numpy(pose[:, 3:]), global_orient=torch.from_numpy(pose[:, :3]),
                  transl=torch.from_numpy(track.trans[frames])).vertices
    cam = w.numpy() @ r_cam.transpose(0, 2, 1) + track.cam_poses[frames, None, :3, 3]
    return v.numpy(), cam


def test_reader_gt_and_frames(case):
    _, smpl, root = case
    ds = ThreeDPWDataset(root, smpl)
    raw = {}
    for f in sorted((root / "sequenceFiles" / "test").glob("*.pkl")):
        with open(f, "rb") as fh:  # our own file: plain pickle is fine here
            raw[f.stem] = pickle.load(fh, encoding="latin1")
    want = [(s, p, t) for s in sorted(raw) for p in range(len(raw[s]["poses"]))
            for t in np.flatnonzero(raw[s]["campose_valid"][p])]
    assert len(ds) == len(want) < sum(len(raw[s]["poses"]) * len(raw[s]["cam_poses"]) for s in raw)
    got = [(ds[i].inputs["sequence"], ds[i].inputs["person"], ds[i].inputs["frame"]) for i in range(len(ds))]
    assert got == want
    genders = {tr.key: tr.gender for tr in ds.tracks}
    assert genders == {"courtyard_synth_00/0": "male", "courtyard_synth_00/1": "female", "outdoors_synth_01/0": "female"}
    assert ds.tracks[2].betas.shape == (10,)  # stored with 300
    for ti, tr in enumerate(ds.tracks):
        origin, camera = spin_gt(smpl, tr, tr.frames)
        first = next(i for i in range(len(ds)) if ds[i].inputs["key"] == tr.key)
        ours = torch.stack([ds[first + k].target["vertices"] for k in range(len(tr.frames))]).numpy()
        off = torch.stack([ds[first + k].target["offset"] for k in range(len(tr.frames))]).numpy()
        np.testing.assert_allclose(ours, origin, rtol=0, atol=1e-9)
        # smplx adds 1e-8 to an axis-angle before taking its norm: rotating the matrix of the world orientation
        # (this reference) and rotating the axis-angle first (SPIN, the reader) differ by a few 1e-9 m
        np.testing.assert_allclose(ours + off[:, None], camera, rtol=0, atol=2e-8)


def test_perfect_predictions(case, tmp_path):
    _, smpl, root = case
    path = write_smpl_predictions(root, smpl, tmp_path / "perfect.npz", perfect=True, dtype=np.float64)
    for alignment in ("pelvis", "none"):
        ds = ThreeDPWDataset(root, smpl, pve_alignment=alignment)
        preds = ds.read_predictions(path)
        m = ds.build_metric()
        samples = [ds[i] for i in range(len(ds))]
        m.update([preds[s.sample_id].output for s in samples], [s.target for s in samples])
        r = m.compute()
        assert float(r["PA-PVE"]) < 1e-6
        if alignment == "none":  # the prediction is the camera-frame GT mesh itself
            assert float(r["PVE"]) < 1e-6
        else:  # SPIN's GT is built at the origin: regressor rows that do not sum to 1 leave a sub-mm residue
            assert 0 < float(r["PVE"]) < 1.0 and 0 < float(r["MPJPE"]) < 1.0


def _procrustes_np(x, y):
    """Similarity-align x onto y (rows are points), plain SVD (Umeyama)."""
    mx, my = x.mean(0), y.mean(0)
    x0, y0 = x - mx, y - my
    u, s, vt = np.linalg.svd(x0.T @ y0)
    d = np.sign(np.linalg.det(u @ vt))
    r = u @ np.diag([1, 1, d]) @ vt
    scale = (s * [1, 1, d]).sum() / (x0 ** 2).sum()
    return scale * x0 @ r + my


def expected_metrics(smpl, ds, pred_path, alignment, j_reg=J_REG, joint_ids=J14):
    """Means in mm, plain numpy; ``j_reg`` / ``joint_ids``: H36M regressor and the 14 LSP joints (SPIN) or an
    SMPL regressor and all 24 joints (HybrIK); the pelvis is row 0 of either."""
    preds = np.load(pred_path)
    errs = []
    for tr in ds.tracks:
        origin, camera = spin_gt(smpl, tr, tr.frames)
        pv = preds[tr.key][tr.frames].astype(np.float64)
        for g, c, p in zip(origin, camera, pv):
            jg, jp = j_reg @ g, j_reg @ p
            g14, p14 = jg[joint_ids] - jg[0], jp[joint_ids] - jp[0]
            vert = np.linalg.norm((p - jp[0]) - (g - jg[0]), axis=-1).mean() if alignment == "pelvis" \
                else np.linalg.norm(p - c, axis=-1).mean()
            errs.append([np.linalg.norm(p14 - g14, axis=-1).mean(),
                         np.linalg.norm(_procrustes_np(p14, g14) - g14, axis=-1).mean(), vert,
                         np.linalg.norm(_procrustes_np(p, g) - g, axis=-1).mean()])
    return dict(zip(("MPJPE", "PA-MPJPE", "PVE", "PA-PVE"), (np.mean(errs, 0) * 1000).tolist()))


@pytest.mark.parametrize("alignment", ["pelvis", "none"])
def test_neutral_predictions_in_process(case, neutral_preds, alignment):
    _, smpl, root = case
    ds = ThreeDPWDataset(root, smpl, pve_alignment=alignment)
    preds = ds.read_predictions(neutral_preds)
    m = ds.build_metric()
    for s in range(0, len(ds), 5):
        batch = [ds[i] for i in range(s, min(s + 5, len(ds)))]
        m.update([preds[b.sample_id].output for b in batch], [b.target for b in batch])
    got = {k: float(v) for k, v in m.compute().items()}
    want = expected_metrics(smpl, ds, neutral_preds, alignment)
    for k in want:
        assert got[k] == pytest.approx(want[k], abs=1e-6), k
    assert 20 < got["MPJPE"] < 500  # a real, non-trivial error
    assert ds.variant == ("" if alignment == "pelvis" else "pve=none")


def test_smpl24_joints_in_process(case, neutral_preds):
    """``joints="smpl24"``: all 24 joints of the neutral model's own J_regressor, pelvis = joint 0."""
    _, smpl, root = case
    ds = ThreeDPWDataset(root, smpl, joints="smpl24")
    assert ds.variant == "joints=smpl24"
    assert ThreeDPWDataset(root, smpl, joints="smpl24", pve_alignment="none").variant == "joints=smpl24,pve=none"
    preds = ds.read_predictions(neutral_preds)
    m = ds.build_metric()
    samples = [ds[i] for i in range(len(ds))]
    m.update([preds[s.sample_id].output for s in samples], [s.target for s in samples])
    got = {k: float(v) for k, v in m.compute().items()}
    j24 = synthetic_smpl("neutral", sparse_regressor=False)["J_regressor"]
    want = expected_metrics(smpl, ds, neutral_preds, "pelvis", j_reg=j24, joint_ids=list(range(24)))
    for k in want:
        assert got[k] == pytest.approx(want[k], abs=1e-6), k
    h36m = expected_metrics(smpl, ds, neutral_preds, "pelvis")
    assert abs(got["MPJPE"] - h36m["MPJPE"]) > 1  # a different joint set, not the default renamed


def test_smpl24_needs_the_neutral_model(case, tmp_path):
    _, _, root = case
    gendered = write_smpl_dir(tmp_path / "gendered", genders=("male", "female"))
    assert ThreeDPWDataset(root, gendered).joints == "h36m14"  # the default does not read it
    with pytest.raises(InputError) as e:
        ThreeDPWDataset(root, gendered, joints="smpl24")
    assert e.value.field == "smpl_dir" and e.value.file.endswith("SMPL_NEUTRAL.pkl")
    with pytest.raises(InputError, match="expected one of") as e:
        ThreeDPWDataset(root, gendered, joints="smpl29")
    assert e.value.field == "joints"


def test_bad_predictions(case, neutral_preds, tmp_path):
    _, smpl, root = case
    ds = ThreeDPWDataset(root, smpl)
    good = dict(np.load(neutral_preds))
    tr = ds.tracks[0]
    invalid = int(np.setdiff1d(np.arange(tr.num_frames), tr.frames)[0])
    valid = int(tr.frames[1])

    def write(**change):
        arrays = {**good, **change}
        for k in [k for k, v in arrays.items() if v is None]:
            del arrays[k]
        path = tmp_path / "p.npz"
        np.savez(path, **arrays)
        return path

    with pytest.raises(InputError, match="missing") as e:
        ds.read_predictions(write(**{tr.key: None}))
    assert e.value.record == f"key {tr.key!r}"
    with pytest.raises(InputError, match="expected") as e:
        ds.read_predictions(write(**{tr.key: good[tr.key][:-1]}))
    assert e.value.field == "shape"
    nan = good[tr.key].copy()
    nan[valid, 5, 1] = np.nan
    with pytest.raises(InputError, match=rf"non-finite value at index \[{valid}, 5, 1\]"):
        ds.read_predictions(write(**{tr.key: nan}))
    nan = good[tr.key].copy()
    nan[invalid] = np.nan  # a frame the protocol skips
    assert len(ds.read_predictions(write(**{tr.key: nan}))) == len(ds)
    with pytest.warns(UnscoredKeysWarning, match="other_seq/0"):
        ds.read_predictions(write(**{"other_seq/0": good[tr.key]}))
    with pytest.raises(InputError, match="dtype"):
        ds.read_predictions(write(**{tr.key: good[tr.key].astype(np.complex64)}))


def test_bad_sequence_files(case, tmp_path):
    _, _, root = case
    src = min((root / "sequenceFiles" / "test").glob("*.pkl"))
    with open(src, "rb") as fh:
        seq = pickle.load(fh, encoding="latin1")
    for key, value, field in (("cam_poses", None, "cam_poses"), ("poses", [seq["poses"][0][:, :70]] * 2, "poses"),
                              ("campose_valid", seq["campose_valid"][:1], "campose_valid")):
        bad = dict(seq)
        if value is None:
            del bad[key]
        else:
            bad[key] = value
        f = tmp_path / f"{key}.pkl"
        with open(f, "wb") as fh:
            pickle.dump(bad, fh, protocol=2)
        with pytest.raises(InputError) as e:
            load_sequence(f)
        assert e.value.field == field and e.value.file == str(f)
    f = tmp_path / "truncated.pkl"
    f.write_bytes(src.read_bytes()[:100])
    with pytest.raises(InputError, match="not a valid pickle"):
        load_sequence(f)


# ------------------------------------------------------------------------------------------ CLI

def _main(*args: str, tmp: Path) -> int:
    """The CLI entry point in this process (``python -m bench`` costs ~30 s of imports on a loaded box)."""
    from bench.__main__ import main

    return main(["evaluate", "method=mine", "dataset=3dpw", *args, f"leaderboard_dir={tmp / 'lb'}"])


def test_cli_neutral_predictions_devices(case, neutral_preds, tmp_path, capsys):
    """devices=1 in this process, devices=2 (two DDP processes on gloo) through ``python -m bench``."""
    _, smpl, root = case
    args = (f"data_root={root}", f"smpl_dir={smpl}", f"predictions={neutral_preds}", "batch_size=3")
    assert _main(*args, "devices=1", f"out={tmp_path / '1'}", tmp=tmp_path) == 0, capsys.readouterr().err
    r = run_cli("evaluate", "method=mine", "dataset=3dpw", *args, "devices=2", f"out={tmp_path / '2'}",
                f"leaderboard_dir={tmp_path / 'lb'}", env=ONE_THREAD)
    assert r.returncode == 0, r.stderr[-3000:]
    out = {n: json.loads((tmp_path / str(n) / "metrics.json").read_text())["metrics"] for n in (1, 2)}
    assert out[1] == out[2]
    ds = ThreeDPWDataset(root, smpl)
    want = expected_metrics(smpl, ds, neutral_preds, "pelvis")
    for k in ("MPJPE", "PA-MPJPE", "PVE", "PA-PVE"):
        assert out[1][k] == pytest.approx(want[k], abs=1e-6), k


def test_cli_joint_sets_write_distinct_rows(case, neutral_preds, tmp_path, capsys):
    """``dataset.joints=h36m14`` (default, no variant) and ``smpl24`` land in two rows of the same CSV."""
    import csv

    _, smpl, root = case
    args = (f"data_root={root}", f"smpl_dir={smpl}", f"predictions={neutral_preds}")
    metrics = {}
    for joints in ("h36m14", "smpl24"):
        out = tmp_path / joints
        assert _main(*args, f"dataset.joints={joints}", f"out={out}", tmp=tmp_path) == 0, capsys.readouterr().err
        metrics[joints] = json.loads((out / "metrics.json").read_text())["metrics"]
    with open(tmp_path / "lb" / "mesh" / "3dpw.csv", newline="") as fh:
        rows = {r["variant"]: r for r in csv.DictReader(fh) if r["method"] == "mine"}
    assert set(rows) == {"", "joints=smpl24"}
    assert float(rows["joints=smpl24"]["MPJPE"]) == pytest.approx(metrics["smpl24"]["MPJPE"], abs=1e-3)
    assert float(rows[""]["MPJPE"]) == pytest.approx(metrics["h36m14"]["MPJPE"], abs=1e-3)
    assert metrics["smpl24"]["MPJPE"] != metrics["h36m14"]["MPJPE"]
    capsys.readouterr()
    code = _main(*args, "dataset.joints=lsp14", f"out={tmp_path / 'bad'}", tmp=tmp_path)
    lines = output_lines(capsys)
    assert code == 2 and len(lines) == 1 and "field 'joints'" in lines[0], lines
    assert not (tmp_path / "bad").exists()


def test_cli_errors_are_one_line(case, neutral_preds, tmp_path, capsys):
    _, smpl, root = case
    marker = tmp_path / "pwned"
    evil_root = tmp_path / "evil3dpw"
    (evil_root / "sequenceFiles" / "test").mkdir(parents=True)
    with open(evil_root / "sequenceFiles" / "test" / "x.pkl", "wb") as fh:
        pickle.dump({"sequence": ShellPayload(f"touch {marker}")}, fh, protocol=2)
    evil_smpl = tmp_path / "evilsmpl"
    (evil_smpl / "smpl").mkdir(parents=True)
    for g in ("MALE", "FEMALE"):
        with open(evil_smpl / "smpl" / f"SMPL_{g}.pkl", "wb") as fh:
            pickle.dump(ShellPayload(f"touch {marker}"), fh, protocol=2)
    cases = [
        ([f"data_root={root}", f"smpl_dir={tmp_path / 'nowhere'}"], "field 'smpl_dir'"),
        ([f"data_root={root}"], "field 'smpl_dir'"),
        ([f"data_root={evil_root}", f"dataset.smpl_dir={smpl}"], "refused to unpickle posix.system"),
        ([f"data_root={root}", f"dataset.smpl_dir={evil_smpl}"], "refused to unpickle posix.system"),
    ]
    capsys.readouterr()
    for args, needle in cases:
        code = _main(*args, f"predictions={neutral_preds}", f"out={tmp_path / 'o'}", tmp=tmp_path)
        lines = output_lines(capsys)
        assert code == 2 and len(lines) == 1 and needle in lines[0], (args, code, lines)
    assert not marker.exists()
    assert not (tmp_path / "o").exists()


def test_registry_and_config():
    import bench.data.threedpw  # noqa: F401
    from bench.registry import DATASETS

    assert "3dpw" in DATASETS
    cfg = (REPO / "bench" / "conf" / "dataset" / "3dpw.yaml").read_text()
    assert "smpl_dir: null" in cfg and "name: 3dpw" in cfg and "joints: h36m14" in cfg
