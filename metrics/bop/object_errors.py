"""The symmetry-aware pose errors of BOP per (estimate, GT) pair, with what they need per object built once.

BOP19 localization (metrics/bop/ar.py) and BOP24 detection (metrics/bop/detection.py) score the same MSSD and
MSPD (``eval_calc_errors``), so both metrics hold one :class:`SymmetricErrors`: each object's symmetry
transformations (``max_sym_disc_step``), its farthest-point subset, and its symmetric point sets (per device,
on first use).
"""
from __future__ import annotations

import torch
from torch import Tensor

from metrics.bop import pose_error
from metrics.bop.model import ObjectModel
from metrics.bop.symmetries import symmetry_transformations


class SymmetricErrors:
    """MSSD (mm; inf where the bounding spheres do not overlap), MSPD (px) and, on request, ADD and ADI (mm;
    inf likewise) per pair, grouped by object."""

    def __init__(self, models: dict[int, ObjectModel], max_sym_disc_step: float = 0.01):
        self.models = models
        self.syms = {oid: symmetry_transformations(m.symmetries_discrete, m.symmetries_continuous, max_sym_disc_step)
                     for oid, m in models.items()}
        self.subsets = {oid: pose_error.farthest_point_subset(m.vertices.to(torch.float64))
                        for oid, m in models.items()}
        self._sym_pts: dict[tuple[int, str], Tensor] = {}  # (obj, device) -> (S, N, 3), built on first use

    def __call__(self, obj: Tensor, R_e: Tensor, t_e: Tensor, R_g: Tensor, t_g: Tensor, K: Tensor,
                 add: bool = False) -> dict[str, Tensor]:
        dev = R_e.device
        names = ("mssd", "mspd", "add", "adi") if add else ("mssd", "mspd")
        out = {k: torch.zeros(obj.shape[0], dtype=torch.float64, device=dev) for k in names}
        for o in torch.unique(obj).tolist():
            sel = torch.nonzero(obj == o).squeeze(1)
            m = self.models[o]
            pts = m.vertices.to(dev, torch.float64)
            sR, st = (x.to(dev) for x in self.syms[o])
            sub = self.subsets[o].to(dev)
            key = (o, str(dev))
            if key not in self._sym_pts:
                self._sym_pts[key] = pose_error.symmetric_points(pts, sR, st)
            sp = self._sym_pts[key]
            a = (R_e[sel], t_e[sel], R_g[sel], t_g[sel])
            oi = torch.nonzero(pose_error.spheres_overlap(t_e[sel], t_g[sel], m.diameter)).squeeze(1)
            inf = torch.full((sel.numel(),), float("inf"), dtype=torch.float64, device=dev)
            ms = inf.clone()
            ms[oi] = pose_error.mssd(*(x[oi] for x in a), pts, sR, st, sub=sub, sym_pts=sp)
            out["mssd"][sel] = ms
            out["mspd"][sel] = pose_error.mspd(*a, K[sel], pts, sR, st, sub=sub, sym_pts=sp)
            if add:
                ad, ai = inf.clone(), inf.clone()
                ad[oi] = pose_error.add(*(x[oi] for x in a), pts)
                ai[oi] = pose_error.adi(*(x[oi] for x in a), pts)
                out["add"][sel], out["adi"][sel] = ad, ai
        return out
