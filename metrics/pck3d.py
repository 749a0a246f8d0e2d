"""MPI-INF-3DHP: PCK3D (150 mm), AUC (0..150 mm) and MPJPE, as the official ``mpii_compute_3d_pck.m``.

Per-joint errors in mm on the valid frames; PCK3D = fraction of joint errors ``< 150`` (strict), AUC = mean
PCK over the thresholds ``0:5:150`` (``linspace(0,150,31)``), pooled over all frames of all sequences; the
official grouping scores 14 joints (not root, spine, head), mmpose scores all 17 (``joints="all17"``). MPJPE
is over all 17 joints. Results are fractions, not percent.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from metrics.bootstrap import BootstrapStats
from metrics.common import as_id, cat_state, is_empty_state, unique_sorted
from metrics.mpjpe import PRED_ROOT_MODES, joint_errors, prepare_pred_root
from metrics.protocol import PoseMetric, plot_dict

__all__ = ["AUC_THRESHOLDS_MM", "MPI_INF_3DHP_ROOT", "PCK3D", "PCK_JOINTS", "pck_curve"]

#: 3DHP 17-joint test order: HeadTop, Neck, RSho, RElb, RWri, LSho, LElb, LWri, RHip, RKnee, RAnk, LHip,
#: LKnee, LAnk, Root (pelvis), Spine, Head.
MPI_INF_3DHP_ROOT = 14
#: the official 14 joints scored by PCK/AUC (all but root, spine, head), vs all 17 (mmpose).
PCK_JOINTS: dict[str, tuple[int, ...]] = {"official14": tuple(range(14)), "all17": tuple(range(17))}
AUC_THRESHOLDS_MM = torch.linspace(0, 150, 31, dtype=torch.float64)


def pck_curve(errors: Tensor, thresholds: Tensor) -> Tensor:
    """Hit counts ``sum(errors < t)`` for each ascending threshold (strict, as ``mpii_compute_3d_pck.m``).

    ``searchsorted(right=True)`` gives each error the index of the first threshold above it; a cumulative
    histogram of those indices is the count per threshold, without an errors x thresholds table.
    """
    first_above = torch.searchsorted(thresholds, errors.reshape(-1).contiguous(), right=True)
    counts = torch.bincount(first_above, minlength=thresholds.numel() + 1)
    return counts.cumsum(0)[: thresholds.numel()]


class SequenceHits(NamedTuple):
    """The evaluated states of :class:`PCK3D`, one row per sequence (ascending id): hit counts per threshold
    ``(n, T)``, joint-frames scored by PCK and by MPJPE ``(n, 2)``, and the error sum in mm ``(n,)``."""

    ids: Tensor
    hits: Tensor
    counts: Tensor
    err_sum: Tensor


class PCK3D(PoseMetric):
    """PCK3D (150 mm), AUC (0..150 mm, 31 thresholds) and MPJPE (mm) over MPI-INF-3DHP sequences.

    ``update(preds, targets)``: one dict per sequence; ``pred["joints"]`` is ``(T, 17, 3)`` in metres (the
    predictions format), ``target["joints_mm"]`` the root-relative GT in mm (as the official files store it),
    ``target["valid"]`` a ``(T,)`` bool mask and ``target["sample_id"]`` the sequence id. The prediction is
    converted to mm and its root (pelvis, joint 14) handled by ``pred_root`` (:func:`prepare_pred_root`;
    default ``subtract``: the official code expects root-relative predictions, for which it changes nothing).
    Per sequence the hit counts at each threshold, the joint-frame count and the error sum are kept; the
    evaluation drops duplicate ids, sorts, and pools over all valid frames.
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False
    bootstrap_unit = "sequence"
    headline = ("PCK3D", "AUC", "MPJPE")

    def __init__(self, joints: str = "official14", pred_root: str = "subtract", **kwargs):
        super().__init__(**kwargs)
        if joints not in PCK_JOINTS:
            raise ValueError(f"joints must be one of {tuple(PCK_JOINTS)}, got {joints!r}")
        if pred_root not in PRED_ROOT_MODES:
            raise ValueError(f"pred_root must be one of {PRED_ROOT_MODES}, got {pred_root!r}")
        self.joints = joints
        self.pred_root = pred_root
        self.register_buffer("thresholds", AUC_THRESHOLDS_MM.clone(), persistent=False)
        for name in ("seq_id", "seq_hits", "seq_counts", "seq_err_sum"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, preds: list[dict[str, Tensor]], targets: list[dict[str, Tensor]]) -> None:
        pck_idx = list(PCK_JOINTS[self.joints])
        for p, g in zip(preds, targets, strict=True):
            gt = g["joints_mm"].to(torch.float64)
            valid = g["valid"].to(device=gt.device, dtype=torch.bool)
            pr = p["joints"].to(device=gt.device, dtype=torch.float64) * 1000
            pr = prepare_pred_root(pr, self.pred_root, MPI_INF_3DHP_ROOT)
            if pr.shape != gt.shape:
                raise ValueError(f"sequence {int(g['sample_id'])}: prediction {tuple(pr.shape)} vs GT "
                                 f"{tuple(gt.shape)}")
            err = joint_errors(pr[valid], gt[valid])  # (V, 17)
            hits = pck_curve(err[:, pck_idx], self.thresholds.to(gt.device))
            self.seq_id.append(as_id(g["sample_id"], gt.device))
            self.seq_hits.append(hits.reshape(1, -1))
            # joint-frames scored by PCK, and by MPJPE (all joints)
            self.seq_counts.append(torch.tensor([[err[:, pck_idx].numel(), err.numel()]], device=gt.device))
            self.seq_err_sum.append(err.sum().reshape(1))

    def _evaluate(self) -> SequenceHits:
        """The per-sequence counts, one row per sequence id (padding repeats dropped), by ascending id."""
        if is_empty_state(self.seq_id):
            raise ValueError("PCK3D: no sequences were scored")
        ids = cat_state(self.seq_id)
        keep = unique_sorted(ids)
        hits = cat_state(self.seq_hits).reshape(-1, self.thresholds.numel())
        counts = cat_state(self.seq_counts).reshape(-1, 2)
        return SequenceHits(ids[keep], hits[keep], counts[keep], cat_state(self.seq_err_sum)[keep])

    def _curve(self, result: SequenceHits) -> Tensor:
        """PCK at each threshold, pooled over all sequences."""
        count = result.counts.sum(0).to(torch.float64)[0]
        return result.hits.sum(0).to(torch.float64) / count

    def values(self, result: SequenceHits) -> dict[str, Tensor]:
        curve = self._curve(result)
        mpjpe = result.err_sum.sum() / result.counts.sum(0).to(torch.float64)[1]
        return {"PCK3D": curve[-1], "AUC": curve.mean(), "MPJPE": mpjpe}

    def bootstrap(self, result: SequenceHits) -> BootstrapStats:
        """Bootstrap over sequences (metrics/bootstrap.py): PCK3D (150 mm) pooled with weights ``(B, n)``."""
        hits = result.hits.cpu().to(torch.float64)
        counts = result.counts.cpu().to(torch.float64)

        def statistic(w: Tensor) -> Tensor:
            return ((w @ hits[:, -1]) / (w @ counts[:, 0]))[:, None]

        return BootstrapStats(result.ids.cpu(), ("PCK3D",), statistic, self.bootstrap_unit)

    def plots(self, result: SequenceHits) -> list[dict]:
        """PCK against the threshold (0..150 mm)."""
        return [plot_dict("PCK3D against threshold", "line", "threshold (mm)", "PCK",
                          self.thresholds.cpu().tolist(), {"PCK3D": self._curve(result).cpu().tolist()})]
