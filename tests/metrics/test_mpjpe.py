"""3D joint-error kernels and metrics (metrics/mpjpe.py, and PCK3D: metrics/pck3d.py).

Kernel golden numbers (tests/data/h36m_golden/kernels_seed7.*) were produced by running
facebookresearch/VideoPose3D @ 1afb1ca common/loss.py itself (mpjpe, p_mpjpe, n_mpjpe, mean_velocity_error)
in float64 on the stored (40,17,3) pred/target pair, in a throwaway script outside the repo: ``mpjpe`` and
``n_mpjpe`` on the pair unsqueezed to (1,40,17,3) as run.py's evaluate() passes a sequence, ``p_mpjpe`` and
``mean_velocity_error`` on the (40,17,3) arrays, and ``p_mpjpe`` once per frame. The pair has mirrored frames
(reflection branch) and scaled/shifted frames.

PCK3D/AUC: analytic cases from the definition in the official ``mpii_compute_3d_pck.m`` (hit if error < t,
strict; thresholds 0:5:150); the Octave golden run of the official code is in tests/data/test_mpi_inf_3dhp.py.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from metrics.mpjpe import (
    H36M_ACTIONS,
    H36MPoseError,
    mean_velocity_error,
    mpjpe,
    n_mpjpe,
    p_mpjpe,
    prepare_pred_root,
    procrustes_align,
)
from metrics.pck3d import PCK3D

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "h36m_golden"


@pytest.fixture(scope="module")
def kernel_case():
    arr = np.load(GOLDEN / "kernels_seed7.npz")
    ref = json.loads((GOLDEN / "kernels_seed7.json").read_text())
    return torch.from_numpy(arr["pred"]), torch.from_numpy(arr["target"]), ref


def test_kernels_match_videopose3d(kernel_case):
    p, g, ref = kernel_case
    assert mpjpe(p, g).mean().item() == pytest.approx(ref["mpjpe"], abs=1e-12)
    assert p_mpjpe(p, g).mean().item() == pytest.approx(ref["p_mpjpe"], abs=1e-12)
    assert n_mpjpe(p, g).mean().item() == pytest.approx(ref["n_mpjpe"], abs=1e-12)
    assert mean_velocity_error(p, g).item() == pytest.approx(ref["mean_velocity_error"], abs=1e-12)
    np.testing.assert_allclose(p_mpjpe(p, g).numpy(), ref["p_mpjpe_per_frame"], rtol=0, atol=1e-12)


def test_kernels_batch_shape(kernel_case):
    p, g, _ = kernel_case
    # leading batch dims are frames: (2,20,17,3) gives the same per-frame values
    assert torch.equal(p_mpjpe(p.reshape(2, 20, 17, 3), g.reshape(2, 20, 17, 3)).reshape(-1), p_mpjpe(p, g))
    assert torch.equal(n_mpjpe(p.reshape(2, 20, 17, 3), g.reshape(2, 20, 17, 3)).reshape(-1), n_mpjpe(p, g))


def test_procrustes_properties():
    g = torch.randn(5, 17, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))
    q = q * torch.sign(torch.linalg.det(q))  # proper rotation
    p = 2.5 * g @ q.T + torch.tensor([0.3, -1.0, 4.0], dtype=torch.float64)
    assert p_mpjpe(p, g).max().item() < 1e-12  # similarity transforms are aligned away
    assert torch.allclose(procrustes_align(p, g), g, atol=1e-12)
    # a mirror image is not a rotation: the reflection fix keeps the error positive
    mirrored = g * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    assert p_mpjpe(mirrored, g).min().item() > 1e-3
    # a prediction collapsed to a point: scale 0, error = distance of GT joints to their centroid (not NaN)
    zero = torch.zeros_like(g)
    expected = (g - g.mean(dim=1, keepdim=True)).norm(dim=-1).mean(dim=-1)
    assert torch.allclose(p_mpjpe(zero, g), expected, atol=1e-12)


def test_simple_values():
    g = torch.zeros(2, 17, 3, dtype=torch.float64)
    p = g.clone()
    p[..., 0] = 3.0
    p[..., 1] = 4.0
    assert torch.equal(mpjpe(p, g), torch.tensor([5.0, 5.0], dtype=torch.float64))
    # constant offset: zero velocity error; N-MPJPE removes a per-frame scale
    g = torch.randn(6, 17, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    assert mean_velocity_error(g + 1.0, g).item() < 1e-12
    s = torch.linspace(0.5, 2, 6, dtype=torch.float64)[:, None, None]
    assert n_mpjpe(g * s, g).max().item() < 1e-12


def test_pred_root_modes():
    p = torch.arange(2 * 17 * 3, dtype=torch.float64).reshape(2, 17, 3)
    z = prepare_pred_root(p, "zero")
    assert torch.equal(z[:, 0], torch.zeros(2, 3, dtype=torch.float64)) and torch.equal(z[:, 1:], p[:, 1:])
    assert torch.equal(prepare_pred_root(p, "keep"), p)
    s = prepare_pred_root(p, "subtract", root=14)
    assert torch.equal(s, p - p[:, 14:15])
    with pytest.raises(ValueError):
        prepare_pred_root(p, "nope")


def _h36m_batch(n: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    preds, targets = [], []
    for i in range(n):
        t = 3 + i % 5
        g = torch.randn(t, 17, 3, dtype=torch.float64, generator=gen) * 0.3
        g = g - g[:, :1]
        preds.append({"joints": g + 0.05 * torch.randn(t, 17, 3, dtype=torch.float64, generator=gen)})
        targets.append({"joints": g, "sample_id": torch.tensor(i), "action": torch.tensor(i % 15)})
    return preds, targets


def test_h36m_metric_aggregation_by_hand():
    preds, targets = _h36m_batch(45, 0)
    m = H36MPoseError()
    m.update(preds, targets)
    out = m.compute()
    # per action: frame-weighted mean of sequence means; headline: unweighted mean over actions (run.py)
    per_action = []
    for a in range(15):
        idx = [i for i in range(45) if i % 15 == a]
        tot = sum(targets[i]["joints"].shape[0] for i in idx)
        v = sum(targets[i]["joints"].shape[0] * mpjpe(prepare_pred_root(preds[i]["joints"], "zero"),
                                                      targets[i]["joints"]).mean().item() for i in idx) / tot
        assert out[f"MPJPE/{H36M_ACTIONS[a]}"].item() == pytest.approx(v * 1000, rel=1e-12)
        per_action.append(v * 1000)
    assert out["MPJPE"].item() == pytest.approx(float(np.mean(per_action)), rel=1e-12)
    assert set(out) == {"MPJPE", "P-MPJPE", "N-MPJPE", "MPJVE"} | {
        f"{k}/{a}" for k in ("MPJPE", "P-MPJPE", "N-MPJPE", "MPJVE") for a in H36M_ACTIONS}


def test_h36m_metric_is_invariant_to_batching_order_and_padding():
    preds, targets = _h36m_batch(37, 1)
    ref = H36MPoseError(aggregation="frame")
    ref.update(preds, targets)
    expected = ref.compute()
    rng = np.random.default_rng(0)
    for trial in range(3):
        order = list(rng.permutation(37)) + list(rng.integers(0, 37, size=5))  # padding duplicates
        m = H36MPoseError(aggregation="frame")
        for start in range(0, len(order), 1 + trial * 4):
            chunk = order[start:start + 1 + trial * 4]
            m.update([preds[i] for i in chunk], [targets[i] for i in chunk])
        got = m.compute()
        assert all(torch.equal(got[k], expected[k]) or (got[k].isnan() and expected[k].isnan()) for k in expected)


def test_h36m_missing_action_is_nan_and_excluded():
    preds, targets = _h36m_batch(14, 2)  # actions 0..13 only
    m = H36MPoseError()
    m.update(preds, targets)
    out = m.compute()
    assert math.isnan(out["MPJPE/WalkTogether"].item())
    assert out["MPJPE"].item() == pytest.approx(np.mean([out[f"MPJPE/{a}"].item() for a in H36M_ACTIONS[:14]]))


def _pck_target(err_mm: float, t: int = 4, valid=None, sid: int = 0):
    g = torch.zeros(t, 17, 3, dtype=torch.float64)
    p = g.clone()
    p[..., 0] = err_mm / 1000  # metres, all joints off by err_mm (root too: pred_root="keep")
    v = torch.ones(t, dtype=torch.bool) if valid is None else torch.tensor(valid)
    return {"joints": p}, {"joints_mm": g, "valid": v, "sample_id": torch.tensor(sid)}


@pytest.mark.parametrize("err,pck,auc", [(72.0, 1.0, 16 / 31), (150.0, 0.0, 0.0), (149.0, 1.0, 1 / 31),
                                         (0.0, 1.0, 30 / 31), (200.0, 0.0, 0.0)])
def test_pck3d_thresholds_are_strict(err, pck, auc):
    m = PCK3D(pred_root="keep")
    p, g = _pck_target(err)
    m.update([p], [g])
    out = m.compute()
    assert out["PCK3D"].item() == pytest.approx(pck, abs=1e-15)
    assert out["AUC"].item() == pytest.approx(auc, abs=1e-15)
    assert out["MPJPE"].item() == pytest.approx(err, abs=1e-9)


def test_pck3d_invalid_frames_joint_sets_and_dedup():
    # frame 0 off by 100 mm everywhere, frame 1 invalid and way off, frame 2 exact; joint 15 (spine) off by 1 m
    p, g = _pck_target(0.0, t=3, valid=[True, False, True])
    p["joints"][0] += torch.tensor([0.1, 0.0, 0.0], dtype=torch.float64)
    p["joints"][1] += 10.0
    p["joints"][:, 15, 1] += 1.0
    for joints, n in (("official14", 14), ("all17", 17)):
        m = PCK3D(joints=joints, pred_root="keep")
        m.update([p, p], [g, g])  # a padded duplicate of the same sequence
        out = m.compute()
        hits = (n * 2 - (2 if n == 17 else 0))  # spine misses in both valid frames when scored
        assert out["PCK3D"].item() == pytest.approx(hits / (2 * n), abs=1e-15)
    mpjpe_mm = (16 * 100 + math.hypot(100, 1000) + 1000) / (2 * 17)
    assert out["MPJPE"].item() == pytest.approx(mpjpe_mm, rel=1e-12)
