"""The ppf baseline (methods/object6d/ppf.py): geometry kernels, pose recovery against the GT of the bundled
sample's files, and a real BOP19 AR through the metric on the whole bundled sample."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from bench.data.bop import build as build_bop
from bench.errors import InputError
from bench.registry import METHODS
from methods.object6d import ppf as P

CONF = Path(__file__).resolve().parents[2] / "bench" / "conf" / "method" / "ppf.yaml"


@pytest.fixture(scope="module")
def sample_ds():
    return build_bop(OmegaConf.create({"name": "ycbv", "data_root": None}))


@pytest.fixture(scope="module")
def method(sample_ds):
    return METHODS["ppf"](OmegaConf.load(CONF), sample_ds, None)


def random_rotation(g: torch.Generator) -> torch.Tensor:
    q = torch.randn(4, generator=g, dtype=torch.float64)
    q = q / q.norm()
    w, x, y, z = q.tolist()
    return torch.tensor(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ],
        dtype=torch.float64,
    )


def test_align_to_x_moves_point_to_origin_and_normal_to_x():
    g = torch.Generator().manual_seed(0)
    p = torch.randn(50, 3, generator=g, dtype=torch.float64) * 100
    n = torch.nn.functional.normalize(torch.randn(50, 3, generator=g, dtype=torch.float64), dim=1)
    n[0] = torch.tensor([1.0, 0, 0])
    n[1] = torch.tensor([-1.0, 0, 0])
    R, t = P.align_to_x(p, n)
    assert torch.allclose(
        R @ R.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(50, 3, 3), atol=1e-12
    )
    assert torch.allclose(torch.linalg.det(R), torch.ones(50, dtype=torch.float64))
    assert torch.allclose(
        (R @ p.unsqueeze(-1)).squeeze(-1) + t, torch.zeros(50, 3, dtype=torch.float64), atol=1e-9
    )
    assert torch.allclose(
        (R @ n.unsqueeze(-1)).squeeze(-1),
        torch.tensor([1.0, 0, 0], dtype=torch.float64).expand(50, 3),
        atol=1e-12,
    )


def test_point_pair_feature_is_invariant_to_rigid_motion():
    g = torch.Generator().manual_seed(1)
    p1, p2 = torch.randn(2, 100, 3, generator=g, dtype=torch.float64) * 50
    n1, n2 = torch.nn.functional.normalize(torch.randn(2, 100, 3, generator=g, dtype=torch.float64), dim=-1)
    R, t = random_rotation(g), torch.tensor([10.0, -20.0, 700.0], dtype=torch.float64)
    a = P.ppf(p1, n1, p2, n2)
    b = P.ppf(p1 @ R.T + t, n1 @ R.T, p2 @ R.T + t, n2 @ R.T)
    for x, y in zip(a, b):
        assert torch.allclose(x, y, atol=1e-9)
    # a hand-computed feature: d = 3 along x, n1 = +z, n2 = -z
    f64 = torch.float64
    d, a1, a2, a3 = P.ppf(
        torch.zeros(1, 3, dtype=f64),
        torch.tensor([[0.0, 0, 1]], dtype=f64),
        torch.tensor([[3.0, 0, 0]], dtype=f64),
        torch.tensor([[0.0, 0, -1]], dtype=f64),
    )
    assert float(d) == 3.0 and math.isclose(float(a1), math.pi / 2) and math.isclose(float(a2), math.pi / 2)
    assert math.isclose(float(a3), math.pi)


def test_kabsch_recovers_a_rigid_transform():
    g = torch.Generator().manual_seed(2)
    src = torch.randn(40, 3, generator=g, dtype=torch.float64) * 30
    R, t = random_rotation(g), torch.tensor([5.0, 6.0, 800.0], dtype=torch.float64)
    R2, t2 = P.kabsch(src, src @ R.T + t, torch.ones(40, dtype=torch.float64))
    assert torch.allclose(R2, R, atol=1e-10) and torch.allclose(t2, t, atol=1e-8)


def test_builder_rejects_weights_and_non_bop(sample_ds, tmp_path):
    w = tmp_path / "w.pth"
    w.write_bytes(b"x")
    with pytest.raises(InputError, match="no weights"):
        METHODS["ppf"](OmegaConf.load(CONF), sample_ds, w)
    with pytest.raises(InputError, match="object6d"):
        METHODS["ppf"](OmegaConf.load(CONF), object(), None)


def test_recovers_asymmetric_objects_within_5mm_and_5deg(sample_ds, method):
    """GT from the sample's scene_gt.json; the L blocks (obj_id % 3 == 2) have no symmetry."""
    found = total = 0
    for i in (0, 6):
        s = sample_ds[i]
        pred = method.predict_step([s])[0].output
        tg = s.target
        assert pred["obj_id"].dtype == torch.int64 and pred["R"].shape == (pred["obj_id"].numel(), 3, 3)
        assert set(pred["obj_id"].tolist()) <= set(tg["target_obj_id"].tolist())
        for k, o in enumerate(pred["obj_id"].tolist()):
            if o % 3 != 2:
                continue
            total += 1
            g = int(torch.nonzero(tg["gt_obj_id"] == o)[0])
            dt = float((pred["t"][k] - tg["gt_t"][g]).norm())
            cos = (float(torch.trace(pred["R"][k].T @ tg["gt_R"][g])) - 1) / 2
            dr = math.degrees(math.acos(max(-1.0, min(1.0, cos))))
            found += dt < 5 and dr < 5
    assert total >= 3 and found >= 2


@pytest.mark.slow
def test_real_ar_on_the_bundled_sample(sample_ds, method):
    """End to end through BOPAR (the BOP19 metric) on images of all three scenes of the bundled sample.

    Measured when written (all 9 images): AR 0.686 (VSD 0.687, MSSD 0.688, MSPD 0.683). The test scores 5
    images (metric time) with floors that leave room for platform differences but fail if matching breaks
    (no or garbage estimates score 0)."""
    metric = sample_ds.build_metric()
    again = method.predict_step([sample_ds[0]])[0].output
    for i in (0, 2, 3, 5, 7):
        s = sample_ds[i]
        p = method.predict_step([s])[0]
        if i == 0:  # deterministic
            assert torch.equal(p.output["R"], again["R"]) and torch.equal(p.output["score"], again["score"])
        metric.update([p.output], [s.target])
    r = {k: float(v) for k, v in metric.compute().items()}
    print("ppf on the bundled ycbv sample:", {k: round(r[k], 4) for k in ("AR", "AR_VSD", "AR_MSSD", "AR_MSPD")})
    assert r["AR"] > 0.45
    assert min(r["AR_VSD"], r["AR_MSSD"], r["AR_MSPD"]) > 0.35
