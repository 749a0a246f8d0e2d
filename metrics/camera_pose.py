"""Sparse-view camera pose (CO3D): relative rotation / translation accuracy, mAA(30) and camera-centre accuracy.

References (facts, not code, carried over):

- facebookresearch/PoseDiffusion @ b138198 ``pose_diffusion/test.py`` with ``pose_diffusion/util/metric.py``
  (``camera_to_rel_deg``, ``calculate_auc_np``): per frame set of N cameras, every pair ``i < j``
  (``torch.combinations``) in the set's order;
- amyxlase/relpose-plus-plus @ b33f7d5 ``relpose/eval/eval_translation.py`` (mode ``cc``: ``get_error``,
  ``full_scene_scale``) with ``relpose/utils/geometry.py`` (``compute_optimal_alignment``).

Both use PyTorch3D's convention: row vectors, ``X_cam = X_world R + T``; the world-to-view matrix is
``[[R, 0], [T, 1]]``. Per pair (i, j)::

    relative pose  inv(P_i) P_j:  R_ij = R_i^T R_j,  t_ij = T_j - T_i R_i^T R_j
    RRE  = acos*(0.5 (tr(Rgt_ij Rpred_ij^T) - 1)) * 180 / pi        (so3_relative_angle, eps 1e-4: a trace
           outside [-1 - 1e-4, 3 + 1e-4] is an error; acos* is acos, extrapolated linearly outside +-(1 - 1e-4))
    RTE  = acos(sqrt(1 - max(1 - <t^gt, t^pred>^2, 1e-15))) * 180 / pi     (t^ = t / (|t| + 1e-15); the angle
           between the lines, 0..90 deg; a NaN or inf angle counts 1e6 rad)
    RRA@a = share of pairs with RRE < a; RTA@a likewise; mAA@30 = mean_k=1..30 share(max(RRE, RTE) < k)
           (np.histogram's bins [k-1, k), the last one [29, 30] closed)

Per frame: camera centre ``C = -T R^T``; the predicted centres of a set are aligned to the GT's by the
similarity of ``compute_optimal_alignment`` (Umeyama: H = (B - B')^T (A - A'), U S V^T = svd(H), R = U S' V^T
with S' = diag(1, 1, sign det(U V^T)), s = tr(S S') / |B - B'|^2, A^ = s B R + A' - s B' R); the error is
``|A - A^| / scale`` with ``scale`` the largest distance of a GT centre of the WHOLE sequence from their centroid;
CCA@t = share of frames with error < t (NaN counts as a miss).

Every share is taken per category over all pairs (frames) of its frame sets, then averaged over categories
(test.py's ``mean`` row). Fractions, not percent. Computed in float64: PoseDiffusion runs float32 cameras and
RelPose++ float32 CUDA; their noise (~1e-5 deg, ~1e-7 of the scene scale) moves a share only for an error that
close to a threshold.

>>> import torch
>>> R = torch.eye(3, dtype=torch.float64).expand(3, 3, 3)
>>> T = torch.tensor([[0.0, 0, 1], [1, 0, 1], [0, 1, 1]], dtype=torch.float64)
>>> r, t = pair_errors(R[None], T[None], R[None], T[None])
>>> [round(v, 4) for v in r[0].tolist()]  # a perfect prediction: acos extrapolated from 1 - 1e-4 (PyTorch3D)
[0.4051, 0.4051, 0.4051]
>>> [round(v, 5) for v in t[0].tolist()]
[0.0, 0.0, 0.0]
>>> auc_30(torch.tensor([0.5, 14.5, 40.0]), torch.tensor([0.5, 0.5, 0.5])).item()  # (30 + 16 + 0) / 3 / 30
0.5111111111111111
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from metrics.bootstrap import BootstrapStats
from metrics.common import as_id, cat_state, is_empty_state, unique_sorted
from metrics.protocol import PoseMetric, plot_dict

ROTATION_THRESHOLDS = (15.0, 30.0)
TRANSLATION_THRESHOLDS = (15.0, 30.0)
CENTRE_THRESHOLDS = (0.1, 0.2)
AUC_MAX = 30
CAMERA_KEYS = ("RRA@15", "RRA@30", "RTA@15", "RTA@30", "mAA@30", "CCA@0.1", "CCA@0.2")
HEADLINE = ("mAA@30", "RRA@15", "RTA@15")
TRACE_EPS = 1e-4  # so3_relative_angle's eps
COS_BOUND = 1e-4  # so3_relative_angle's cos_bound (acos_linear_extrapolation)
T_EPS = 1e-15  # compare_translation_by_angle's eps
T_DEFAULT_ERR = 1e6  # its default_err (radians)


def pairs(n: int) -> tuple[Tensor, Tensor]:
    """``(i, j)`` of every pair ``i < j`` of n frames, in ``torch.combinations`` order."""
    i, j = torch.triu_indices(n, n, 1)
    return i, j


def relative_poses(R: Tensor, T: Tensor) -> tuple[Tensor, Tensor]:
    """``(S, N, 3, 3), (S, N, 3) -> (S, P, 3, 3), (S, P, 3)``: ``inv(P_i) P_j`` of every pair, PyTorch3D rows."""
    i, j = pairs(R.shape[1])
    Ri, Rj, Ti, Tj = R[:, i], R[:, j], T[:, i], T[:, j]
    Rrel = Ri.transpose(-1, -2) @ Rj
    trel = Tj - (Ti[..., None, :] @ Rrel)[..., 0, :]
    return Rrel, trel


def rotation_error_deg(R_gt: Tensor, R_pred: Tensor) -> Tensor:
    """Geodesic angle (degrees) of ``R_gt R_pred^T`` with so3_relative_angle's trace check and acos bound."""
    tr = (R_gt @ R_pred.transpose(-1, -2)).diagonal(dim1=-2, dim2=-1).sum(-1)
    if ((tr < -1.0 - TRACE_EPS) | (tr > 3.0 + TRACE_EPS)).any():
        raise ValueError("A matrix has trace outside valid range [-1-eps,3+eps] (not a rotation)")
    c = (tr - 1.0) * 0.5
    hi = 1.0 - COS_BOUND
    slope = -1.0 / math.sqrt(1.0 - hi * hi)
    ang = torch.acos(c.clamp(-hi, hi))
    ang = torch.where(c >= hi, (c - hi) * slope + math.acos(hi), ang)
    ang = torch.where(c <= -hi, (c + hi) * slope + math.acos(-hi), ang)
    return ang * 180 / math.pi


def translation_error_deg(t_gt: Tensor, t_pred: Tensor) -> Tensor:
    """Angle (degrees) between the lines of two translations, compare_translation_by_angle's eps and default."""
    a = t_pred / (t_pred.norm(dim=-1, keepdim=True) + T_EPS)
    b = t_gt / (t_gt.norm(dim=-1, keepdim=True) + T_EPS)
    loss = torch.clamp_min(1.0 - (a * b).sum(-1) ** 2, T_EPS)
    err = torch.acos(torch.sqrt(1 - loss))
    err = torch.where(torch.isnan(err) | torch.isinf(err), torch.full_like(err, T_DEFAULT_ERR), err)
    return err * 180.0 / math.pi


def pair_errors(R_pred: Tensor, T_pred: Tensor, R_gt: Tensor, T_gt: Tensor) -> tuple[Tensor, Tensor]:
    """Relative rotation and translation errors (degrees), ``(S, P)`` each, of S frame sets of N cameras."""
    Rg, tg = relative_poses(R_gt, T_gt)
    Rp, tp = relative_poses(R_pred, T_pred)
    return rotation_error_deg(Rg, Rp), translation_error_deg(tg, tp)


def auc_hits(r_err: Tensor, t_err: Tensor, max_threshold: int = AUC_MAX) -> Tensor:
    """``(..., max_threshold)``: per pair, is ``max(RRE, RTE)`` inside the cumulative histogram bin k = 1..max
    (``< k``; the last bin is closed: ``<= max``), as ``np.histogram(bins=np.arange(max + 1))`` counts it."""
    m = torch.maximum(r_err, t_err)[..., None]
    k = torch.arange(1, max_threshold + 1, dtype=m.dtype)
    hit = (m < k) & (m >= 0)
    hit[..., -1] = (m[..., 0] <= max_threshold) & (m[..., 0] >= 0)
    return hit


def auc_30(r_err: Tensor, t_err: Tensor) -> Tensor:
    """calculate_auc_np(r, t, 30) of pooled pair errors: the mean of the 30 cumulative shares."""
    return auc_hits(r_err, t_err).to(torch.float64).mean(0).mean()


def camera_centres(R: Tensor, T: Tensor) -> Tensor:
    """``C = -T R^T`` (the last row of the inverse world-to-view matrix), ``(..., N, 3)``."""
    return -(T[..., None, :] @ R.transpose(-1, -2))[..., 0, :]


def scene_scale(R: Tensor, T: Tensor) -> Tensor:
    """full_scene_scale: the largest distance of a camera centre from the centroid of all of them (one sequence)."""
    c = camera_centres(R, T)
    return (c - c.mean(0)).norm(dim=-1).max()


def aligned_centres(A: Tensor, B: Tensor) -> Tensor:
    """compute_optimal_alignment's ``A_hat = s B R + t`` (Umeyama, row vectors) for one set: A GT, B predicted."""
    Ab, Bb = A.mean(0), B.mean(0)
    H = (B - Bb).T @ (A - Ab)
    U, S, Vh = torch.linalg.svd(H, full_matrices=True)
    d = torch.linalg.det(U @ Vh)
    Sp = torch.diag(torch.tensor([1.0, 1.0, float(torch.sign(d))], dtype=A.dtype))
    variance = torch.sum((B - Bb) ** 2)
    s = 1 / variance * torch.trace(torch.diag(S) @ Sp)
    Rot = U @ Sp @ Vh
    t = Ab - s * Bb @ Rot
    return s * B @ Rot + t


def centre_errors(R_pred: Tensor, T_pred: Tensor, R_gt: Tensor, T_gt: Tensor, scale: Tensor) -> Tensor:
    """``(S, N)``: distance of each aligned predicted camera centre from the GT's, over the sequence's scale."""
    out = []
    for s in range(R_gt.shape[0]):
        A, B = camera_centres(R_gt[s], T_gt[s]), camera_centres(R_pred[s], T_pred[s])
        out.append((A - aligned_centres(A, B)).norm(dim=-1) / scale[s])
    return torch.stack(out) if out else torch.zeros(0, R_gt.shape[1], dtype=R_gt.dtype)


class Evaluated(NamedTuple):
    """Evaluated states: frame-set ids (ascending), their categories, and per-set pair / frame errors."""

    ids: Tensor
    category: Tensor
    rre: Tensor  # (S, P) degrees
    rte: Tensor  # (S, P) degrees
    cce: Tensor  # (S, N) share of the scene scale


def per_set_hits(result: Evaluated) -> tuple[Tensor, Tensor]:
    """Per frame set, for each key: the hit count (mAA: the mean over its 30 bins) and the count it divides."""
    r, t, c = result.rre, result.rte, result.cce
    cols, dens = [], []
    P, N = float(r.shape[1]), float(c.shape[1])
    for a in ROTATION_THRESHOLDS:
        cols.append((r < a).sum(1))
        dens.append(P)
    for a in TRANSLATION_THRESHOLDS:
        cols.append((t < a).sum(1))
        dens.append(P)
    cols.append(auc_hits(r, t).to(torch.float64).sum(1).mean(-1))
    dens.append(P)
    for a in CENTRE_THRESHOLDS:
        cols.append((c < a).sum(1))
        dens.append(N)
    hits = torch.stack([x.to(torch.float64) for x in cols], 1)
    return hits, torch.tensor(dens, dtype=torch.float64).expand(hits.shape[0], -1)


def category_means(weights: Tensor, hits: Tensor, den: Tensor, category: Tensor) -> Tensor:
    """``(B, K)``: per category ``sum w hits / sum w den``, averaged over the categories a replicate draws."""
    cats = torch.unique(category)
    per = []
    for c in cats.tolist():
        m = category == c
        per.append((weights[:, m] @ hits[m]) / (weights[:, m] @ den[m]))
    return torch.stack(per).nanmean(0)


class CameraPoseAccuracy(PoseMetric):
    """RRA / RTA / mAA(30) (PoseDiffusion) and CCA (RelPose++) of frame sets of N cameras, keyed by set id.

    ``update(preds, target)``: ``preds[i] = {"id": 0-d, "R": (N, 3, 3), "T": (N, 3)}`` (PyTorch3D convention, the
    frames in the set's order); ``target[i] = {"id", "category": 0-d int, "R", "T", "scale": 0-d}`` (``scale``:
    full_scene_scale of the set's whole sequence). All in float64.
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False
    bootstrap_unit = "sequence"
    headline = HEADLINE

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for name in ("ids", "category", "R_pred", "T_pred", "R_gt", "T_gt", "scale"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, preds: list[dict[str, Tensor]], target: list[dict[str, Tensor]]) -> None:
        if not target:
            return
        dev, f64 = self.device, torch.float64
        ids = torch.cat([as_id(t["id"], dev) for t in target])
        if not torch.equal(ids, torch.cat([as_id(p["id"], dev) for p in preds])):
            raise ValueError("CameraPoseAccuracy.update: preds[i] and target[i] must be the same frame set")
        self.ids.append(ids)
        self.category.append(torch.cat([as_id(t["category"], dev) for t in target]))
        for name, src in (("R_pred", preds), ("T_pred", preds), ("R_gt", target), ("T_gt", target)):
            key = name[0]
            getattr(self, name).append(torch.stack([torch.as_tensor(x[key]) for x in src]).to(dev, f64))
        self.scale.append(torch.stack([torch.as_tensor(t["scale"]).reshape(()) for t in target]).to(dev, f64))

    def _evaluate(self) -> Evaluated:
        """One copy of each frame set (sampler padding repeats them), in id order, then the errors."""
        if is_empty_state(self.ids):
            z = torch.zeros(0, 0, dtype=torch.float64)
            return Evaluated(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), z, z, z)
        ids = cat_state(self.ids)
        keep = unique_sorted(ids)
        Rp, Tp, Rg, Tg = (cat_state(getattr(self, n))[keep].cpu() for n in ("R_pred", "T_pred", "R_gt", "T_gt"))
        rre, rte = pair_errors(Rp, Tp, Rg, Tg)
        cce = centre_errors(Rp, Tp, Rg, Tg, cat_state(self.scale)[keep].cpu())
        return Evaluated(ids[keep].cpu(), cat_state(self.category)[keep].cpu(), rre, rte, cce)

    def values(self, result: Evaluated) -> dict[str, Tensor]:
        if result.ids.numel() == 0:
            return {k: torch.tensor(math.nan, dtype=torch.float64) for k in CAMERA_KEYS}
        hits, den = per_set_hits(result)
        v = category_means(torch.ones(1, hits.shape[0], dtype=torch.float64), hits, den, result.category)[0]
        return {k: v[i] for i, k in enumerate(CAMERA_KEYS)}

    def bootstrap(self, result: Evaluated) -> BootstrapStats:
        """Bootstrap over frame sets (one per sequence): each key is a category mean of pooled shares."""
        hits, den = per_set_hits(result)
        cols = [CAMERA_KEYS.index(k) for k in HEADLINE]
        hits, den = hits[:, cols], den[:, cols]

        def statistic(w: Tensor) -> Tensor:
            return category_means(w, hits, den, result.category)

        return BootstrapStats(result.ids, HEADLINE, statistic, self.bootstrap_unit)

    def plots(self, result: Evaluated) -> list[dict]:
        """Accuracy against threshold: RRA, RTA and min (both within) over 0..30 deg; CCA over 0..0.5."""
        degs = [float(d) for d in range(31)]
        taus = [round(0.02 * k, 2) for k in range(26)]
        if result.ids.numel() == 0:
            return []
        m = torch.maximum(result.rre, result.rte)

        def curve(err: Tensor, thresholds: list[float]) -> list[float]:
            out = []
            for a in thresholds:
                hits = (err < a).to(torch.float64).sum(1)[:, None]
                den = torch.full_like(hits, float(err.shape[1]))
                out.append(float(category_means(torch.ones(1, hits.shape[0], dtype=torch.float64), hits, den,
                                                result.category)[0, 0]))
            return out

        return [plot_dict("Relative pose accuracy", "line", "threshold (deg)", "share of pairs", degs,
                          {"RRA": curve(result.rre, degs), "RTA": curve(result.rte, degs), "both": curve(m, degs)}),
                plot_dict("Camera centre accuracy", "line", "threshold (share of scene scale)", "share of cameras",
                          taus, {"CCA": curve(result.cce, taus)})]
