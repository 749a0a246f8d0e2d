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
from bench.types import Sample
from methods.object6d import ppf as P
from metrics.bop.object_errors import SymmetricErrors

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


def render_depth(
    model, R: torch.Tensor, t: torch.Tensor, K: torch.Tensor, shape: tuple[int, int], table: float
):
    """Depth (mm, float32 as the readers give it) of ``model`` at (R, t) in front of a flat wall at ``table`` mm:
    dense surface samples splatted with a z-buffer, pixel (u, v) covering [u, u + 1) x [v, v + 1)."""
    H, W = shape
    p, _ = P.sample_surface(model.vertices, model.faces, 200_000, seed=1)
    c = p @ R.T + t
    u = torch.floor(K[0, 0] * c[:, 0] / c[:, 2] + K[0, 2]).long()
    v = torch.floor(K[1, 1] * c[:, 1] / c[:, 2] + K[1, 2]).long()
    ok = (u >= 0) & (u < W) & (v >= 0) & (v < H)
    d = torch.full((H * W,), table, dtype=torch.float64).scatter_reduce(0, (v * W + u)[ok], c[ok, 2], "amin")
    return d.reshape(H, W).to(torch.float32)


def test_detection_mode_finds_the_rendered_object_first_with_a_correct_pose(sample_ds):
    """BOP24 detection names no objects: as the harness does there, every model is a target with count 1. Only
    object 2 (an asymmetric L block) is in the render; it must come first with an MSSD below the strictest
    detection threshold (0.05 x diameter), rows best first and no more than ``max_per_image``."""
    ids = [1, 4, 2]  # the rendered object last: only the best-first order puts it first
    models = sample_ds.object_models(ids)
    method = P.PPFMethod(models, max_per_image=2)
    K = torch.tensor([[400.0, 0, 100], [0, 400.0, 80], [0, 0, 1]], dtype=torch.float64)
    R = random_rotation(torch.Generator().manual_seed(2))
    t = torch.tensor([5.0, -8.0, 700.0], dtype=torch.float64)
    target = {
        "depth": render_depth(models[2], R, t, K, (160, 200), 900.0),
        "K": K,
        "target_obj_id": torch.tensor(ids),
        "target_inst_count": torch.ones(3, dtype=torch.int64),
    }
    out = method.predict_step([Sample(1, target)])[0].output
    # three targets, each with an estimate: the cap keeps two
    assert out["obj_id"].numel() == 2 and out["R"].shape == (2, 3, 3) and out["t"].shape == (2, 3)
    assert out["obj_id"][0] == 2 and set(out["obj_id"].tolist()) <= set(ids)
    assert out["score"][0] > out["score"][1]
    err = SymmetricErrors(models)(out["obj_id"][:1], out["R"][:1], out["t"][:1], R[None], t[None], K[None])
    assert float(err["mssd"][0]) < 0.05 * models[2].diameter and float(err["mspd"][0]) < 5.0
    with pytest.raises(InputError, match="max_per_image"):
        P.PPFMethod({}, max_per_image=0)


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
