"""MPI-INF-3DHP test-set reader + PCK3D/AUC/MPJPE against the official MATLAB evaluation code.

Golden procedure (tests/data/mpi_inf_3dhp_golden/golden_seed11.json): a throwaway numpy script
(np.random.default_rng(11)) made synthetic TS1..TS6 content (stored in case_seed11.npz: univ_annot3 and
annot3 in mm, valid_frame, activity_annotation, root-relative predictions in metres; TS1/3/5 with the
predicted root exactly 0) and wrote it as MATLAB v5 files (``univ_annot3`` 3 x 17 x 1 x n) plus an
``inference_data.mat`` holding ``pred_m * 1000`` for the valid frames (3 x 17 x 1 x n_valid, mm). GNU Octave
7.3.0 then ran the per-frame loop of the official ``mpii_test_predictions_py.m`` (GT minus joint 15, the
prediction used as it is) and the official ``mpii_evaluate_errors.m`` / ``mpii_compute_3d_pck.m`` (copies in
QitaoZhao/PoseFormerV2 @ 008036a6, mpi_inf_3dhp/3dhp_test/test_util); the numbers are the 'All' row
(MPJPE average, PCK Total, AUC Total). ``all17`` reran it with the 17-joint ``mpii_get_pck_auc_joint_groups``
variant. Our metric (``pred_root=keep``, the official behaviour) must match within 1e-9 (fractions) and
1e-6 mm. Here the fixture writes the same content as official-format .mat files: TS1-TS4 as MATLAB v7.3
(HDF5, written with h5py) and TS5-TS6 as MATLAB v5 (scipy), so both readers are exercised.
"""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import torch
from omegaconf import OmegaConf

from bench.data.base import SAMPLES_DIR
from bench.data.mpi_inf_3dhp import MpiInf3dhpDataset, build_mpi_inf_3dhp
from bench.errors import InputError

GOLDEN = Path(__file__).resolve().parent / "mpi_inf_3dhp_golden"
SEQS = [f"TS{k}" for k in range(1, 7)]


def write_v73(path: Path, fields: dict[str, np.ndarray]) -> None:
    """MATLAB v7.3 layout: HDF5 after a 512-byte header block; arrays in h5py (reversed) order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w", userblock_size=512) as f:
        for k, v in fields.items():
            f.create_dataset(k, data=v).attrs["MATLAB_class"] = np.bytes_("double")
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, HDF5 schema 1.00 .".ljust(116) + bytes(8) + b"\x00\x02IM")


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    data = np.load(GOLDEN / "case_seed11.npz")
    root = tmp_path_factory.mktemp("3dhp")
    for k, s in enumerate(SEQS):
        univ, annot3 = data[f"{s}/univ"], data[f"{s}/annot3"]
        valid, act = data[f"{s}/valid"], data[f"{s}/activity"]
        if k < 4:
            write_v73(root / s / "annot_data.mat", {
                "univ_annot3": univ[:, None], "annot3": annot3[:, None], "valid_frame": valid[:, None],
                "activity_annotation": act[:, None]})
        else:
            (root / s).mkdir()
            scipy.io.savemat(root / s / "annot_data.mat", {
                "univ_annot3": univ[:, None].transpose(3, 2, 1, 0), "annot3": annot3[:, None].transpose(3, 2, 1, 0),
                "valid_frame": valid[:, None], "activity_annotation": act[:, None]})
    preds = root / "preds.npz"
    np.savez(preds, **{s: data[f"{s}/pred_m"] for s in SEQS})
    return root, preds, data


def _score(ds, preds) -> dict[str, float]:
    m = ds.build_metric()
    p = ds.read_predictions(preds)
    samples = [ds[i] for i in range(len(ds))]
    for s in samples[::-1] + samples[:2]:  # any order, with padding duplicates
        m.update([p[s.sample_id].output], [s.target])
    return {k: v.item() for k, v in m.compute().items()}


@pytest.mark.parametrize("joints", ["official14", "all17"])
def test_matches_official_matlab_code(case, joints):
    root, preds, _ = case
    ref = json.loads((GOLDEN / "golden_seed11.json").read_text())[joints]
    ds = MpiInf3dhpDataset(root, False, joints=joints, pred_root="keep")
    out = _score(ds, preds)
    assert out["PCK3D"] == pytest.approx(ref["PCK_percent"] / 100, abs=1e-9)
    assert out["AUC"] == pytest.approx(ref["AUC_percent"] / 100, abs=1e-9)
    assert out["MPJPE"] == pytest.approx(ref["MPJPE_mm"], abs=1e-6)
    assert set(out) == set(ds.metric_keys)


def test_reader_formats_and_gt_option(case):
    root, _, data = case
    ds = MpiInf3dhpDataset(root, False)
    for i, s in enumerate(SEQS):  # v7.3 (TS1-4) and v5 (TS5-6) read to the same layout
        univ = data[f"{s}/univ"]
        assert torch.allclose(ds[i].target["joints_mm"], torch.from_numpy(univ - univ[:, 14:15]), rtol=0, atol=0)
        assert torch.equal(ds[i].target["valid"], torch.from_numpy(data[f"{s}/valid"] > 0))
    a3 = MpiInf3dhpDataset(root, False, gt="annot3")
    annot3 = data["TS5/annot3"]
    assert torch.equal(a3[4].target["joints_mm"], torch.from_numpy(annot3 - annot3[:, 14:15]))
    assert a3.variant == "annot3" and ds.variant == ""


@pytest.mark.filterwarnings("ignore::bench.predictions.npz.UnscoredKeysWarning")  # TS2/4/6 keys unscored here
def test_subtract_mode_equals_official_for_root_relative_predictions(case):
    root, preds, data = case
    # TS1/3/5 predictions have the root exactly at 0: subtracting it is the official computation
    ds_keep = MpiInf3dhpDataset(root, False, sequences=["TS1", "TS3", "TS5"], pred_root="keep")
    ds_sub = MpiInf3dhpDataset(root, False, sequences=["TS1", "TS3", "TS5"])
    assert _score(ds_keep, preds) == _score(ds_sub, preds)
    # and a camera-frame (absolute) prediction scores like its root-relative version
    shifted = root / "shifted.npz"
    np.savez(shifted, **{s: data[f"{s}/pred_m"] + np.array([0.3, -0.1, 4.2]) for s in SEQS})
    assert _score(ds_sub, shifted) == pytest.approx(_score(ds_sub, preds), abs=1e-9)


def test_prediction_errors(case, tmp_path):
    root, _, data = case
    ds = MpiInf3dhpDataset(root, False)
    arrays = {s: data[f"{s}/pred_m"] for s in SEQS}
    bad = dict(arrays)
    bad["TS3"] = bad["TS3"][:, :16]
    np.savez(f := tmp_path / "bad.npz", **bad)
    with pytest.raises(InputError, match=r"key 'TS3'.*field 'shape'"):
        ds.read_predictions(f)
    missing = {s: v for s, v in arrays.items() if s != "TS6"}
    np.savez(f := tmp_path / "missing.npz", **missing)
    with pytest.raises(InputError, match=r"key 'TS6'.*missing"):
        ds.read_predictions(f)


def test_gt_file_errors(tmp_path):
    write_v73(tmp_path / "TS1" / "annot_data.mat", {"univ_annot3": np.zeros((4, 1, 16, 3)),
                                                   "valid_frame": np.ones((4, 1))})
    with pytest.raises(InputError, match=r"annot_data.mat.*field 'univ_annot3'.*17 x 3"):
        MpiInf3dhpDataset(tmp_path, False, sequences=["TS1"])
    write_v73(tmp_path / "TS1" / "annot_data.mat", {"univ_annot3": np.zeros((4, 1, 17, 3))})
    with pytest.raises(InputError, match="field 'valid_frame'.*missing"):
        MpiInf3dhpDataset(tmp_path, False, sequences=["TS1"])
    (tmp_path / "TS1" / "annot_data.mat").write_bytes(b"garbage")
    with pytest.raises(InputError, match="cannot read MATLAB file"):
        MpiInf3dhpDataset(tmp_path, False, sequences=["TS1"])
    with pytest.raises(InputError, match="field 'joints'"):
        MpiInf3dhpDataset(tmp_path, False, sequences=["TS1"], joints="all16")


def test_builder_and_bundled_sample(monkeypatch):
    monkeypatch.delenv("POSEARENA_DATA", raising=False)
    cfg = OmegaConf.load(Path(__file__).resolve().parents[2] / "bench" / "conf" / "dataset" / "mpi_inf_3dhp.yaml")
    ds = build_mpi_inf_3dhp(cfg)
    assert ds.bundled and ds.root == SAMPLES_DIR / "mpi_inf_3dhp" and len(ds) == 6
    assert ds.family == "human3d" and ds.metric_keys == ("PCK3D", "AUC", "MPJPE")
    # a perfect prediction (GT in metres) scores PCK 1, MPJPE 0 on the bundled sample
    m = ds.build_metric()
    for i in range(len(ds)):
        s = ds[i]
        m.update([{"joints": s.target["joints_mm"] / 1000}], [s.target])
    out = m.compute()
    assert out["PCK3D"].item() == 1.0 and out["MPJPE"].item() < 1e-9


@pytest.mark.slow
def test_cli_two_processes_with_padding_match_one_process(tmp_path):
    """5 sequences on 2 processes: the DistributedSampler pads with a duplicate, which the metric drops."""
    from tests.conftest import run_cli

    seqs = SEQS[:5]
    ds = MpiInf3dhpDataset(SAMPLES_DIR / "mpi_inf_3dhp", True, sequences=seqs)
    rng = np.random.default_rng(0)
    arrays = {s: ds[i].target["joints_mm"].numpy() / 1000 + rng.normal(scale=0.08, size=(len(ds[i].target["valid"]), 17, 3))
              for i, s in enumerate(seqs)}
    np.savez(preds := tmp_path / "preds.npz", **arrays)
    expected = _score(ds, preds)  # in process, one rank
    r = run_cli("evaluate", "method=noisy", "dataset=mpi_inf_3dhp", f"dataset.sequences=[{','.join(seqs)}]",
                f"predictions={preds}", "devices=2", f"out={tmp_path / 'out'}", f"leaderboard_dir={tmp_path / 'lb'}")
    assert r.returncode == 0, r.stderr
    got = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert {k: got["metrics"][k] for k in expected} == expected  # plus the bootstrap interval columns
    assert got["metrics"]["PCK3D_ci_low"] <= expected["PCK3D"] <= got["metrics"]["PCK3D_ci_high"]
    assert got["provenance"]["world_size"] == 2 and 0 < expected["PCK3D"] < 1
