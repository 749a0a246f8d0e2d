"""Landmark metrics (metrics/landmarks.py): sample-id keyed states, the bootstrap's identity replicate, the plots.

The values themselves are checked against mmpose in tests/data/test_landmarks.py (golden numbers).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from metrics.landmarks import FaceNME, HandPCK, fr_and_auc, landmark_distances

REPO = Path(__file__).resolve().parents[2]
GOLDEN = json.loads((REPO / "tests" / "data" / "landmarks_golden" / "golden.json").read_text())


def _batch(n: int, k: int, seed: int, norm: float = 50.0) -> tuple[list[dict], list[dict]]:
    g = torch.Generator().manual_seed(seed)
    gt = (torch.rand(n, k, 2, generator=g) * 200).float()
    pred = gt + torch.randn(n, k, 2, generator=g) * torch.rand(n, 1, 1, generator=g) * 12
    vis = torch.rand(n, k, generator=g) > 0.15
    targets = [{"sample_id": torch.tensor(i), "keypoints": gt[i], "visible": vis[i],
                "norm": torch.tensor(norm * (1 + i % 3), dtype=torch.float32)} for i in range(n)]
    return [{"keypoints": pred[i]} for i in range(n)], targets


@pytest.mark.parametrize("cls", [FaceNME, HandPCK])
def test_order_batches_and_padding_repeats_do_not_matter(cls):
    preds, targets = _batch(23, 21, seed=1)
    a = cls()
    a.update(preds, targets)
    b = cls()
    order = list(reversed(range(23))) + [4, 9]  # reversed, with two sampler-padding repeats
    for s in range(0, len(order), 4):
        b.update([preds[i] for i in order[s:s + 4]], [targets[i] for i in order[s:s + 4]])
    va, vb = a.compute(), b.compute()
    assert {k: v.item() for k, v in va.items()} == {k: v.item() for k, v in vb.items()}
    assert a.bootstrap_stats().ids.tolist() == list(range(23))


@pytest.mark.parametrize("cls,key", [(FaceNME, "NME"), (HandPCK, "PCK")])
def test_identity_replicate_is_the_reported_value(cls, key):
    preds, targets = _batch(40, 29, seed=2)
    m = cls()
    m.update(preds, targets)
    v = float(m.compute()[key])
    bs = m.bootstrap_stats()
    assert bs.keys == (key,) and bs.unit == "instance"
    ones = float(bs.statistic(torch.ones(1, 40, dtype=torch.float64))[0, 0])
    assert ones == pytest.approx(v, rel=1e-12, abs=0) and 0 < v
    w = torch.zeros(1, 40, dtype=torch.float64)
    w[0, :20] = 2.0  # the first 20 instances drawn twice: the replicate of those 20 alone
    half = cls()
    half.update(preds[:20], targets[:20])
    assert float(bs.statistic(w)[0, 0]) == pytest.approx(float(half.compute()[key]), rel=1e-6)


def test_distances_are_numpys_float32_arithmetic():
    """float32 difference, division, squares and sum, correctly rounded square root (numpy's), -1 off the mask,
    a zero normaliser masking the whole instance and a negative one becoming 1e6 (mmpose's rules)."""
    rng = np.random.default_rng(0)
    p = (rng.random((50, 7, 2)) * 300).astype(np.float32)
    g = (rng.random((50, 7, 2)) * 300).astype(np.float32)
    s = (rng.random(50) * 90 + 1).astype(np.float32)
    s[3], s[4] = 0, -2
    mask = rng.random((50, 7)) > 0.2
    d = landmark_distances(torch.from_numpy(p), torch.from_numpy(g), torch.from_numpy(mask), torch.from_numpy(s)).numpy()
    x = (p - g) / np.where(s <= 0, np.float32(1e6), s)[:, None, None]
    want = np.sqrt(x[..., 0] * x[..., 0] + x[..., 1] * x[..., 1])
    keep = mask & (s != 0)[:, None]
    assert d.dtype == np.float32 and np.array_equal(d[keep], want[keep])
    assert (d[~keep] == -1).all() and (d[3] == -1).all()


def test_ced_follows_pipnet_grid():
    """1001 points from 0 to 0.1; FR is the share above 0.1; all faces perfect give FR 0 and AUC 1."""
    fr, auc, xs, _ = fr_and_auc(torch.zeros(5, dtype=torch.float64))
    assert xs.numel() == 1001 and float(xs[-1]) == pytest.approx(0.1, abs=1e-15)
    assert fr == 0.0 and auc == pytest.approx(1.0, rel=1e-12)
    fr, _, _, _ = fr_and_auc(torch.tensor([0.05, 0.1, 0.2, 0.3], dtype=torch.float64))
    assert fr == 0.5  # <= 0.1 passes, as PIPNet counts


def test_plots():
    preds, targets = _batch(12, 21, seed=3)
    face, hand = FaceNME(), HandPCK()
    face.update(preds, targets)
    hand.update(preds, targets)
    (ced,) = face.curves()
    v = face.compute()
    assert ced["kind"] == "line" and len(ced["x"]) == 101
    assert ced["series"]["CED"][-1] == pytest.approx(1 - float(v["FR@0.1"]), abs=1e-6)
    (pck,) = hand.curves()
    assert len(pck["x"]) == 20 and pck["x"][1] == 1.5
    assert sum(pck["series"]["PCK"]) / 20 == pytest.approx(float(hand.compute()["AUC"]), abs=1e-5)
