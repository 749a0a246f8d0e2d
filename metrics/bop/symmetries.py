"""Symmetry transformations of an object model, as the BOP toolkit expands them (misc.get_symmetry_transformations).

The set is: the identity, then every discrete symmetry of ``models_info.json`` (4x4 row-major, translation in
mm), each combined with every discretised continuous symmetry. A continuous symmetry ``{axis, offset}`` is
discretised into ``n = ceil(pi / max_sym_disc_step)`` rotations by ``i * 2*pi/n`` (i = 0..n-1) about the
(normalised) axis through ``offset``, with translation ``offset - R offset``. ``max_sym_disc_step`` is the
largest fraction of the diameter that the vertex furthest from the axis travels between two steps: a point
at radius r <= diameter/2 moves about 2*pi*r/n <= pi*diameter/n per step. With several continuous axes, their
steps are listed one after another (not multiplied). A combination of a discrete (R_d, t_d) and a continuous
(R_c, t_c) transform is ``R = R_c R_d``, ``t = R_c t_d + t_c``; the order of the list is discrete-major.
The BOP19 default is ``max_sym_disc_step = 0.01`` (315 steps).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["axis_angle_matrix", "symmetry_transformations"]


def axis_angle_matrix(angle: float, axis) -> Tensor:
    """(3, 3) float64 rotation by ``angle`` (rad) about ``axis`` (normalised here), Rodrigues' formula."""
    a = torch.as_tensor(axis, dtype=torch.float64)
    a = a / torch.linalg.norm(a)
    c, s = math.cos(angle), math.sin(angle)
    skew = torch.tensor([[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]], dtype=torch.float64)
    return torch.eye(3, dtype=torch.float64) * c + torch.outer(a, a) * (1.0 - c) + skew * s


def symmetry_transformations(symmetries_discrete: list | None, symmetries_continuous: list | None,
                             max_sym_disc_step: float = 0.01) -> tuple[Tensor, Tensor]:
    """``(R (S,3,3), t (S,3))`` float64: the symmetry set of one model (identity first), see the module doc."""
    disc_R = [torch.eye(3, dtype=torch.float64)]
    disc_t = [torch.zeros(3, dtype=torch.float64)]
    for sym in symmetries_discrete or []:
        m = torch.as_tensor(sym, dtype=torch.float64).reshape(4, 4)
        disc_R.append(m[:3, :3])
        disc_t.append(m[:3, 3])
    cont_R, cont_t = [], []
    for sym in symmetries_continuous or []:
        offset = torch.as_tensor(sym["offset"], dtype=torch.float64).reshape(3)
        n = math.ceil(math.pi / max_sym_disc_step)
        step = 2.0 * math.pi / n
        for i in range(n):
            R = axis_angle_matrix(i * step, sym["axis"])
            cont_R.append(R)
            cont_t.append(offset - R @ offset)
    dR, dt = torch.stack(disc_R), torch.stack(disc_t)
    if not cont_R:
        return dR, dt
    cR, ct = torch.stack(cont_R), torch.stack(cont_t)
    R = torch.einsum("cij,djk->dcik", cR, dR).reshape(-1, 3, 3)
    t = (torch.einsum("cij,dj->dci", cR, dt) + ct[None]).reshape(-1, 3)
    return R, t
