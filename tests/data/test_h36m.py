"""Human3.6M reader + metric against VideoPose3D's own numbers (bench/data/h36m.py, metrics/mpjpe.py).

Golden procedure (tests/data/h36m_golden/golden_seed7.json): a throwaway script outside the repo imported
facebookresearch/VideoPose3D @ 1afb1ca0f1237776518469876342fc8669d3f6a9 and
1. loaded the bundled synthetic GT (bench/data/samples/h36m/data_3d_h36m.npz, official layout, made by
   scripts/make_h36m_sample.py --seed 2026) with its ``Human36mDataset`` (17 joints kept by its
   ``remove_joints``), replaced the float32 camera orientation/translation by float64 copies of its
   ``h36m_cameras_extrinsic_params`` (translation / 1000, as it does), and ran run.py's "Preparing data"
   loop (``world_to_camera``, ``pos_3d[:, 1:] -= pos_3d[:, :1]``) in float64;
2. wrote deterministic predictions (np.random.default_rng(7): rotation, per-frame scale, noise, non-zero root,
   mirrored frames) as float32 to predictions_seed7.npz;
3. reproduced run.py's ``evaluate`` loop in float64 with one (1,T,17,3) batch per sequence (GT root zeroed by
   ``inputs_3d[:, :, 0] = 0``, errors weighted by T, ``mpjpe``/``n_mpjpe`` in torch, ``p_mpjpe``/
   ``mean_velocity_error`` in numpy from its common/loss.py) and ``run_evaluation``'s grouping by
   ``action.split(' ')[0]`` with the mean over actions; once with the predicted root kept (VideoPose3D,
   ``keep``) and once with ``predicted_3d_pos[:, :, 0] = 0`` (HoT/MotionBERT, ``zero``), plus ``evaluate``
   over all sequences at once (``frame``).
Our results must match within 1e-6 mm.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from bench.data.base import SAMPLES_DIR
from bench.data.h36m import KEPT_JOINTS, H36MDataset, build_h36m
from bench.errors import InputError
from bench.predictions.npz import UnscoredKeysWarning
from bench.types import collate_samples
from metrics.mpjpe import H36M_ACTIONS

GOLDEN = Path(__file__).resolve().parent / "h36m_golden"
PREDS = GOLDEN / "predictions_seed7.npz"
SAMPLE = SAMPLES_DIR / "h36m"


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads((GOLDEN / "golden_seed7.json").read_text())


def _score(ds: H36MDataset, preds: dict, batch: int = 7, order=None) -> dict[str, float]:
    m = ds.build_metric()
    idx = list(range(len(ds))) if order is None else order
    for start in range(0, len(idx), batch):
        samples = collate_samples([ds[i] for i in idx[start:start + batch]])
        m.update([preds[s.sample_id].output for s in samples], [s.target for s in samples])
    return {k: v.item() for k, v in m.compute().items()}


@pytest.mark.parametrize("mode,root_relative_pred", [("keep", False), ("zero", True)])
def test_matches_videopose3d_per_action(golden, mode, root_relative_pred):
    ds = H36MDataset(SAMPLE, True, root_relative_pred=root_relative_pred)
    preds = ds.read_predictions(PREDS)
    out = _score(ds, preds)
    ref = {k: v for k, v in golden[mode].items() if k != "frame"}
    assert set(ref) == set(ds.metric_keys) == set(out)
    for k, v in ref.items():
        assert out[k] == pytest.approx(v, abs=1e-6), k
    assert len(ds) == 2 * 30 * 4


@pytest.mark.parametrize("mode,root_relative_pred", [("keep", False), ("zero", True)])
def test_matches_videopose3d_pooled(golden, mode, root_relative_pred):
    ds = H36MDataset(SAMPLE, True, root_relative_pred=root_relative_pred, aggregation="frame")
    preds = ds.read_predictions(PREDS)
    out = _score(ds, preds, batch=16, order=list(reversed(range(len(ds)))))
    for k, v in golden[mode]["frame"].items():
        assert out[k] == pytest.approx(v, abs=1e-6), k


def test_root_modes_differ_and_subtract_mode(golden):
    # the golden predictions have a non-zero root: the two protocols give different numbers
    assert abs(golden["keep"]["MPJPE"] - golden["zero"]["MPJPE"]) > 1.0
    ds = H36MDataset(SAMPLE, True, root_relative_pred="subtract")
    assert ds.pred_root == "subtract" and ds.variant
    # an absolute camera-frame prediction = GT + a per-sequence root translation scores 0 with subtract
    preds = {i: type("P", (), {"output": {"joints": ds.gt_joints(i) + torch.tensor([0.1, -0.2, 4.0],
                                                                                 dtype=torch.float64)}})()
             for i in range(len(ds))}
    out = _score(ds, preds)
    assert max(abs(out[k]) for k in ("MPJPE", "P-MPJPE", "N-MPJPE", "MPJVE")) < 1e-9


def test_samples_and_keys():
    ds = H36MDataset(SAMPLE, True)
    keys = [q.key for q in ds.sequences]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    s = ds[ds.index["S9/Walking 1/3"]]
    assert s.inputs["camera_id"] == "60457274" and s.inputs["action"] == "Walking 1"
    assert H36M_ACTIONS[int(s.target["action"])] == "Walking"
    assert s.target["joints"].dtype == torch.float64 and s.target["joints"].shape[1:] == (17, 3)
    assert torch.equal(s.target["joints"][:, 0], torch.zeros_like(s.target["joints"][:, 0]))
    assert ds.family == "human3d" and ds.metric_keys[:4] == ("MPJPE", "P-MPJPE", "N-MPJPE", "MPJVE")
    assert "P-MPJPE/Walking" in ds.metric_keys and "MPJVE/SittingDown" in ds.metric_keys
    assert KEPT_JOINTS == (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)
    # subjects option: S1 is in the sample but not scored by default
    assert all(not k.startswith("S1/") for k in keys)
    assert len(H36MDataset(SAMPLE, True, subjects=["S1"])) == 4 * 4


def test_builder_from_config_uses_bundled_sample(monkeypatch):
    monkeypatch.delenv("POSEARENA_DATA", raising=False)
    cfg = OmegaConf.load(Path(__file__).resolve().parents[2] / "bench" / "conf" / "dataset" / "h36m.yaml")
    ds = build_h36m(cfg)
    assert ds.bundled and ds.root == SAMPLE and ds.pred_root == "zero" and ds.aggregation == "action"
    assert len(ds.fingerprint()) == 16
    cfg.root_relative_pred = False
    assert build_h36m(cfg).pred_root == "keep"
    cfg.aggregation = "bogus"
    with pytest.raises(InputError, match="aggregation"):
        build_h36m(cfg)


@pytest.fixture(scope="module")
def ds() -> H36MDataset:
    return H36MDataset(SAMPLE, True)


@pytest.fixture(scope="module")
def good_arrays(ds) -> dict[str, np.ndarray]:
    return dict(np.load(PREDS))


def _write(tmp_path, arrays, name="p.npz"):
    f = tmp_path / name
    np.savez(f, **arrays)
    return f


def test_prediction_errors_name_key_and_field(tmp_path, ds, good_arrays):
    a = dict(good_arrays)
    del a["S11/Eating 1/2"]
    with pytest.raises(InputError, match=r"key 'S11/Eating 1/2'.*missing"):
        ds.read_predictions(_write(tmp_path, a))
    a = dict(good_arrays)
    a["S9/Posing/0"] = a["S9/Posing/0"][:-1]
    with pytest.raises(InputError, match=r"key 'S9/Posing/0'.*field 'shape'.*expected \(\d+, 17, 3\)") as e:
        ds.read_predictions(_write(tmp_path, a))
    assert str(tmp_path / "p.npz") in e.value.line()
    a = dict(good_arrays)
    a["S9/Posing/0"] = a["S9/Posing/0"].copy()
    a["S9/Posing/0"][2, 5, 1] = np.nan
    with pytest.raises(InputError, match=r"key 'S9/Posing/0'.*field 'values'.*non-finite value at index \[2, 5, 1\]"):
        ds.read_predictions(_write(tmp_path, a))
    a = dict(good_arrays)
    a["S9/Posing/0"] = a["S9/Posing/0"].astype(str)
    with pytest.raises(InputError, match="field 'dtype'"):
        ds.read_predictions(_write(tmp_path, a))
    obj = dict(good_arrays)
    obj["S9/Posing/0"] = np.array([None, 1], dtype=object)
    with pytest.raises(InputError, match="pickled object array"):
        ds.read_predictions(_write(tmp_path, obj))
    (tmp_path / "junk.npz").write_text("hello")
    with pytest.raises(InputError, match="not a valid .npz"):
        ds.read_predictions(tmp_path / "junk.npz")
    with pytest.raises(InputError, match="not found"):
        ds.read_predictions(tmp_path / "nope.npz")


def test_unscored_keys_warn(tmp_path, ds, good_arrays):
    a = dict(good_arrays)
    a["S1/Directions/0"] = np.zeros((3, 17, 3), np.float32)
    with pytest.warns(UnscoredKeysWarning, match="S1/Directions/0"):
        preds = ds.read_predictions(_write(tmp_path, a))
    assert len(preds) == len(ds)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds.read_predictions(PREDS)


def _write_gt(tmp_path, tree) -> Path:
    root = tmp_path / "h36m"
    root.mkdir(exist_ok=True)
    np.savez_compressed(root / "data_3d_h36m.npz", positions_3d=tree)
    return root


def test_gt_file_errors(tmp_path):
    good = np.zeros((5, 32, 3), np.float32)
    tree = {"S9": {"Walking": good}, "S11": {"Walking": good[:, :17]}}
    with pytest.raises(InputError, match=r"positions_3d/S11/Walking.*field 'positions'.*\(T, 32, 3\)"):
        H36MDataset(_write_gt(tmp_path, tree), False)
    with pytest.raises(InputError, match=r"positions_3d/S11.*missing"):
        H36MDataset(_write_gt(tmp_path, {"S9": {"Walking": good}}), False)
    with pytest.raises(InputError, match=r"unknown action 'Dancing'"):
        H36MDataset(_write_gt(tmp_path, {"S9": {"Dancing 1": good}, "S11": {"Walking": good}}), False)
    root = tmp_path / "other"
    root.mkdir()
    np.savez(root / "data_3d_h36m.npz", something=np.zeros(3))
    with pytest.raises(InputError, match="positions_3d"):
        H36MDataset(root, False)
    with pytest.raises(InputError, match="no camera extrinsics for subject 'S2'"):
        H36MDataset(SAMPLE, True, subjects=["S2"])


@pytest.mark.slow
def test_cli_two_processes_match_videopose3d(tmp_path, golden):
    """``python -m bench evaluate dataset=h36m devices=2`` (DDP, gloo) reproduces the golden numbers."""
    from tests.conftest import run_cli

    r = run_cli("evaluate", "method=golden", "dataset=h36m", f"predictions={PREDS}", "devices=2",
                f"out={tmp_path / 'out'}", f"leaderboard_dir={tmp_path / 'lb'}")
    assert r.returncode == 0, r.stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())["metrics"]
    for k, v in golden["zero"].items():
        if k != "frame":
            assert metrics[k] == pytest.approx(v, abs=1e-6), k
