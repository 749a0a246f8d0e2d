"""Draw the Procrustes edge cases (cases.npy) and score them with VideoPose3D's own ``common/loss.py``.

    git --git-dir=/work/.mirror/facebookresearch+VideoPose3D/repo archive \
        1afb1ca0f1237776518469876342fc8669d3f6a9 | tar -x -C /tmp/provenance/VideoPose3D
    OPENBLAS_CORETYPE=Haswell .nox/posearena/bin/python tests/data/p_mpjpe_golden/gen_golden.py \
        --ref /tmp/provenance/VideoPose3D --out /tmp/provenance/p_mpjpe
    cmp /tmp/provenance/p_mpjpe/cases.npy tests/data/p_mpjpe_golden/cases.npy
    cmp /tmp/provenance/p_mpjpe/reference.json tests/data/p_mpjpe_golden/reference.json

``cases.npy`` is ``(2, N, 17, 3)`` float64 metres (prediction, target), drawn here from
``np.random.default_rng(15)`` in named groups of consecutive frames (``reference.json`` ``groups``). The
reference output: ``p_mpjpe`` of every frame alone (as ``p_mpjpe(p[i:i+1], g[i:i+1])``), and per group taken as
one sequence: ``mpjpe`` and ``n_mpjpe`` on the (1, T, 17, 3) torch tensors (as run.py's ``evaluate`` passes a
sequence), ``p_mpjpe`` and ``mean_velocity_error`` on the (T, 17, 3) arrays. A pose whose joints all coincide
makes the reference divide 0 by 0: its ``p_mpjpe`` raises ``LinAlgError`` (recorded as ``null``), ``n_mpjpe``
of an all-zero prediction is NaN (recorded as ``NaN``).
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
COMMIT = "1afb1ca0f1237776518469876342fc8669d3f6a9"
SEED = 15
J = 17


def _rotation(rng):
    import numpy as np

    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    return q * np.linalg.det(q)  # proper


def _pose(rng, n: int, scale: float = 0.25):
    g = rng.standard_normal((n, J, 3)) * scale
    return g - g[:, :1]  # root-relative, as the H36M reader gives the GT


def _similar(rng, g, noise: float):
    """A rotated, scaled, shifted copy of ``g`` plus Gaussian noise (one random similarity per frame)."""
    import numpy as np

    out = np.empty_like(g)
    for i in range(len(g)):
        out[i] = rng.uniform(0.5, 2.0) * g[i] @ _rotation(rng) + rng.standard_normal(3)
    return out + noise * rng.standard_normal(g.shape)


def _planar(rng, n: int):
    """Poses in a random plane through the origin (H = X0^T Y0 has rank 2 or less)."""
    import numpy as np

    g = _pose(rng, n)
    g[..., 2] = 0.0
    return np.stack([x @ _rotation(rng) for x in g])


def _collinear(rng, n: int):
    """Joints on a random line (rank 1)."""
    import numpy as np

    t = rng.standard_normal((n, J, 1)) * 0.3
    u = rng.standard_normal((n, 1, 3))
    u /= np.linalg.norm(u, axis=-1, keepdims=True)
    return t * u + rng.standard_normal((n, 1, 3))


def draw_cases() -> tuple[list[tuple[str, int, int]], object, object]:
    """The groups ``(name, start, stop)`` and the prediction / target arrays."""
    import numpy as np

    rng = np.random.default_rng(SEED)
    mirror = np.array([-1.0, 1.0, 1.0])
    blocks: list[tuple[str, object, object]] = []

    g = _pose(rng, 48)
    blocks.append(("h36m_like", g * 1.05 + 0.04 * rng.standard_normal(g.shape), g))
    g = _pose(rng, 48)
    blocks.append(("similar_noisy", _similar(rng, g, 0.02), g))
    g = _pose(rng, 16)
    blocks.append(("unrelated", _pose(rng, 16), g))
    g = _pose(rng, 32)
    blocks.append(("mirrored", _similar(rng, g * mirror, 0.01), g))  # det(R) < 0 in the SVD: the fix-up branch
    g = _pose(rng, 8)
    blocks.append(("mirrored_exact", g * mirror, g))
    g = _pose(rng, 8)
    blocks.append(("exact_similarity", _similar(rng, g, 0.0), g))
    g = _planar(rng, 8)
    blocks.append(("planar_target", _pose(rng, 8), g))
    p = _planar(rng, 8)
    blocks.append(("planar_pred", p, _pose(rng, 8)))
    g = _planar(rng, 8)
    blocks.append(("planar_both", _planar(rng, 8), g))
    g = _planar(rng, 8)
    blocks.append(("planar_mirrored", _similar(rng, g * mirror, 0.01), g))
    g = _collinear(rng, 8)
    blocks.append(("collinear_target", _pose(rng, 8), g))
    p = _collinear(rng, 8)
    blocks.append(("collinear_pred", p, _pose(rng, 8)))
    g = _collinear(rng, 4)
    blocks.append(("collinear_both", _collinear(rng, 4), g))
    g = _pose(rng, 16) + np.array([0.3, -0.2, 5.0])  # absolute camera-frame poses 5 m away
    blocks.append(("far", g + 0.03 * rng.standard_normal(g.shape), g))
    g = _pose(rng, 8)
    p = g + 0.05 * rng.standard_normal(g.shape) + np.array([0.2, 0.1, -0.1])
    p[:, 0] = 0.0  # the root set to 0 as dataset.root_relative_pred=true does, the rest left shifted
    blocks.append(("root_zeroed", p, g))
    g = _pose(rng, 4, scale=1e-4)
    blocks.append(("tiny_far", _similar(rng, g, 1e-6), g))  # 0.1 mm poses, the prediction ~1 m away
    g = _pose(rng, 4, scale=1e3)
    blocks.append(("huge", _similar(rng, g, 10.0), g))
    g = _pose(rng, 2)
    blocks.append(("zero_pred", np.zeros_like(g), g))
    g = np.zeros((2, J, 3))
    blocks.append(("zero_target", _pose(rng, 2), g))
    g = np.zeros((1, J, 3)) + np.array([0.1, 0.2, 0.3])
    blocks.append(("point_both", np.zeros((1, J, 3)), g))

    groups, start = [], 0
    for name, p, g in blocks:
        groups.append((name, start, start + len(g)))
        start += len(g)
    pred = np.concatenate([b[1] for b in blocks]).astype(np.float64)
    target = np.concatenate([b[2] for b in blocks]).astype(np.float64)
    return groups, pred, target


def reference(groups, pred, target) -> dict:
    """VideoPose3D's loss functions, called as run.py calls them."""
    import numpy as np
    import torch
    from common.loss import mean_velocity_error, mpjpe, n_mpjpe, p_mpjpe

    def p_mpjpe_or_none(p, g) -> float | None:
        """None where the reference raises: an all-coincident pose makes H NaN (0/0) and the SVD fail."""
        try:
            return float(p_mpjpe(p.copy(), g.copy()))
        except np.linalg.LinAlgError:
            return None

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the 0/0 above, and n_mpjpe's for an all-zero prediction
        per_frame = [p_mpjpe_or_none(pred[i:i + 1], target[i:i + 1]) for i in range(len(pred))]
        seqs = {}
        for name, a, b in groups:
            p, g = pred[a:b].copy(), target[a:b].copy()
            pt, gt = torch.from_numpy(p).unsqueeze(0), torch.from_numpy(g).unsqueeze(0)
            seqs[name] = {"mpjpe": float(mpjpe(pt, gt)), "n_mpjpe": float(n_mpjpe(pt, gt)),
                          "p_mpjpe": p_mpjpe_or_none(p, g), "mean_velocity_error": float(mean_velocity_error(p, g))}
    return {"vp3d_commit": COMMIT, "seed": SEED, "units": "metres",
            "groups": [{"name": n, "start": a, "stop": b} for n, a, b in groups],
            "p_mpjpe_per_frame": per_frame, "sequences": seqs}


def main() -> int:
    import numpy as np

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", type=Path, required=True, help="facebookresearch/VideoPose3D @ 1afb1ca0")
    ap.add_argument("--out", type=Path, required=True, help="folder for cases.npy and reference.json")
    args = ap.parse_args()
    sys.path.insert(0, str(args.ref))
    args.out.mkdir(parents=True, exist_ok=True)
    groups, pred, target = draw_cases()
    np.save(args.out / "cases.npy", np.stack((pred, target)))
    (args.out / "reference.json").write_text(json.dumps(reference(groups, pred, target), indent=1))
    differ = [f for f in ("cases.npy", "reference.json")
              if not (HERE / f).exists() or (args.out / f).read_bytes() != (HERE / f).read_bytes()]
    print(f"differ from the committed files: {differ or 'none'}", file=sys.stderr)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
