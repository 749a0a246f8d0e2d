"""Symmetry expansion (metrics/bop/symmetries.py) on the golden models' own models_info symmetries.

The expected facts are independent of our code: a symmetry of a model maps its vertex set onto itself; the
toolkit discretises a continuous symmetry into ceil(pi / max_sym_disc_step) = 315 steps (case2's README: its
63-segment cylinders make every 5th step an exact symmetry of the mesh), identity first, discrete-major order.
"""
from __future__ import annotations

import math

import torch
from bop_golden_io import load_models

from metrics.bop.symmetries import symmetry_transformations


def _maps_onto_itself(V: torch.Tensor, R: torch.Tensor, t: torch.Tensor, tol: float) -> bool:
    W = V @ R.T + t
    return bool(torch.cdist(W, V).amin(1).max() <= tol)


def test_counts_and_identity_first():
    for case in ("case1", "case2"):
        for m in load_models(case).values():
            R, t = symmetry_transformations(m.symmetries_discrete, m.symmetries_continuous, 0.01)
            n_disc = 1 + len(m.symmetries_discrete)
            n_cont = sum(math.ceil(math.pi / 0.01) for _ in m.symmetries_continuous)
            assert R.shape[0] == n_disc * (n_cont or 1) and t.shape == (R.shape[0], 3)
            assert torch.equal(R[0], torch.eye(3, dtype=torch.float64)) and torch.equal(t[0], torch.zeros(3, dtype=torch.float64))
            assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand_as(R), atol=1e-12)
            assert torch.allclose(torch.linalg.det(R), torch.ones(R.shape[0], dtype=torch.float64), atol=1e-12)


def test_discrete_symmetries_map_the_mesh_onto_itself():
    for case in ("case1", "case2"):
        for m in load_models(case).values():
            for s in m.symmetries_discrete:
                T = torch.tensor(s, dtype=torch.float64).reshape(4, 4)
                assert _maps_onto_itself(m.vertices, T[:3, :3], T[:3, 3], 1e-3)
            R, t = symmetry_transformations(m.symmetries_discrete, [], 0.01)
            for i in range(R.shape[0]):
                assert _maps_onto_itself(m.vertices, R[i], t[i], 1e-3)


def test_continuous_steps_on_63_segment_cylinders():
    """Every 5th of the 315 steps (a multiple of 2*pi/63), combined with the discrete flip, is a mesh symmetry;
    the others are not (the mesh is only 63-fold symmetric)."""
    cylinders = [m for m in load_models("case2").values() if m.symmetries_continuous]
    assert cylinders
    for m in cylinders:
        R, t = symmetry_transformations(m.symmetries_discrete, m.symmetries_continuous, 0.01)
        n = 315
        assert R.shape[0] == n * (1 + len(m.symmetries_discrete))
        for d in range(1 + len(m.symmetries_discrete)):
            for i in (0, 5, 10, 155, 310):
                assert _maps_onto_itself(m.vertices, R[d * n + i], t[d * n + i], 1e-3)
            for i in (1, 2, 3, 4, 157):
                assert not _maps_onto_itself(m.vertices, R[d * n + i], t[d * n + i], 1e-3)
        # Step i is a rotation by i * 2*pi/315 about the axis (+z here): check the angle of step 1.
        axis = torch.tensor(m.symmetries_continuous[0]["axis"], dtype=torch.float64)
        assert torch.allclose(R[1] @ axis, axis / axis.norm(), atol=1e-12)
        assert math.isclose(math.acos((float(torch.trace(R[1])) - 1) / 2), 2 * math.pi / 315, rel_tol=1e-9)


def test_offset_axis_translation():
    """A continuous symmetry about an axis through ``offset`` keeps the offset point fixed."""
    R, t = symmetry_transformations([], [{"axis": [0, 1, 0], "offset": [10.0, 0.0, -5.0]}], 0.01)
    p = torch.tensor([10.0, 3.0, -5.0], dtype=torch.float64)
    assert torch.allclose(p @ R.transpose(1, 2) + t, p.expand(R.shape[0], 3), atol=1e-9)
