"""MPII PCKh: the share of visible joints within ``t`` x 0.6 x the head-box diagonal, per joint and overall.

Reference: mmpose 0.x ``TopDownMpiiDataset.evaluate`` (the HRNet / Simple Baselines evaluation of
``mpii_gt_val.mat``); facts, not code, carried over::

    e_nk  = || p_nk - g_nk ||_2 / (0.6 * || headbox_n[1] - headbox_n[0] ||_2)     (float64)
    hit   = e_nk <= t  and  joint k visible in sample n       ('<=', not '<')
    PCKh_k = 100 * sum_n hit_nk / sum_n visible_nk
    PCKh  = sum_k PCKh_k * count_k / sum count     over the 14 joints other than pelvis (6) and thorax (7)

Parts (Head, Shoulder, ...) are ``0.5 * (left + right)`` of the per-joint values; ``PCKh@0.1`` uses the
per-joint values at t = 0.1 stored as float32 first (mmpose keeps its ``pckAll`` table in float32).
Predictions are in the GT's 1-based MATLAB pixel frame (mmpose adds 1 to its 0-based outputs). Values are
returned as fractions (the reference's percentages / 100) and summed in numpy's pairwise order.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor
from torchmetrics.utilities import dim_zero_cat

from metrics.bootstrap import BootstrapStats
from metrics.keypoint_ap import np_sum
from metrics.protocol import PoseMetric, plot_dict

SC_BIAS = 0.6
MPII_JOINTS = ("rank", "rkne", "rhip", "lhip", "lkne", "lank", "pelv", "thrx", "neck", "head",
               "rwri", "relb", "rsho", "lsho", "lelb", "lwri")
PCKH_KEYS = ("Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "PCKh", "PCKh@0.1")
_PARTS = (("Head", ("head",)), ("Shoulder", ("lsho", "rsho")), ("Elbow", ("lelb", "relb")),
          ("Wrist", ("lwri", "rwri")), ("Hip", ("lhip", "rhip")), ("Knee", ("lkne", "rkne")),
          ("Ankle", ("lank", "rank")))


def head_sizes(headboxes: Tensor) -> Tensor:
    """(N, 2, 2) head boxes ``[[x1, y1], [x2, y2]]`` -> (N,) ``0.6 * diagonal`` (float64)."""
    d = (headboxes[:, 1] - headboxes[:, 0]).to(torch.float64)
    return torch.sqrt(d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1]) * SC_BIAS


def pckh_per_joint(pred: Tensor, gt: Tensor, visible: Tensor, head_size: Tensor, thr: float) -> Tensor:
    """(K,) ``100 * hits / visible count`` per joint (NaN for a joint never visible)."""
    d = (pred - gt).to(torch.float64)
    err = torch.sqrt(d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1]) / head_size[:, None]
    vis = visible.to(torch.float64)
    hit = ((err * vis) <= thr).to(torch.float64) * vis
    return 100.0 * hit.sum(0) / vis.sum(0)


def pckh_stats(pred: Tensor, gt: Tensor, visible: Tensor, head_size: Tensor, thr: float = 0.5,
               joints: Sequence[str] = MPII_JOINTS) -> dict[str, Tensor]:
    """PCKh summary (fractions) of ``pred``, ``gt`` (N, 16, 2) 1-based pixels, ``visible`` (N, 16), ``head_size``
    (N,) (already x 0.6): per part, ``PCKh`` at ``thr`` and ``PCKh@0.1``."""
    idx = {j: i for i, j in enumerate(joints)}
    K = len(joints)
    p = pckh_per_joint(pred, gt, visible, head_size, thr)
    p01 = pckh_per_joint(pred, gt, visible, head_size, 10 * 0.01).to(torch.float32).to(torch.float64)
    keep = torch.ones(K, dtype=torch.bool, device=p.device)
    keep[[idx["pelv"], idx["thrx"]]] = False
    count = visible.to(torch.long).sum(0)
    ratio = torch.where(keep, count.to(torch.float64) / int(count[keep].sum()), torch.zeros((), dtype=torch.float64))
    zero = torch.zeros((), dtype=torch.float64, device=p.device)
    out = {}
    for name, js in _PARTS:
        out[name] = p[idx[js[0]]] if len(js) == 1 else 0.5 * (p[idx[js[0]]] + p[idx[js[1]]])
    out["PCKh"] = np_sum(torch.where(keep, p * ratio, zero))
    out["PCKh@0.1"] = np_sum(torch.where(keep, p01 * ratio, zero))
    return {k: v / 100.0 for k, v in out.items()}


class PeopleErrors(NamedTuple):
    """The evaluated states of :class:`PCKh`, one row per sample index (ascending): predictions (1-based),
    GT, visibility and head size."""

    ids: Tensor
    pred: Tensor
    gt: Tensor
    visible: Tensor
    head_size: Tensor


class PCKh(PoseMetric):
    """MPII PCKh (mmpose 0.x ``evaluate``), keyed by the sample index so padding and order cannot matter.

    ``update(preds, target)``: ``preds[i] = {"index": 0-d, "keypoints": (16, 2)}`` in 0-based pixels (mmpose's
    frame; 1 is added here, as mmpose does), ``target[i] = {"index", "keypoints" (16, 2) 1-based as in
    ``mpii_gt_val.mat``, "visible" (16,), "head_size" 0-d (0.6 x head diagonal)}``.
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False
    bootstrap_unit = "person"
    headline = ("PCKh", "PCKh@0.1")

    def __init__(self, thr: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.thr = float(thr)
        for name in ("index", "pred", "gt", "visible", "head_size"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, preds: list[dict[str, Tensor]], target: list[dict[str, Tensor]]) -> None:
        if not target:
            return
        dev, f64 = self.device, torch.float64
        ids = torch.stack([torch.as_tensor(t["index"]).reshape(()) for t in target]).to(dev, torch.long)
        if not torch.equal(ids, torch.stack([torch.as_tensor(p["index"]).reshape(()) for p in preds]).to(dev, torch.long)):
            raise ValueError("PCKh.update: preds[i] and target[i] must be the same sample")
        self.index.append(ids)
        self.pred.append(torch.stack([p["keypoints"] for p in preds]).to(dev, f64) + 1.0)
        self.gt.append(torch.stack([t["keypoints"] for t in target]).to(dev, f64))
        self.visible.append(torch.stack([t["visible"] for t in target]).to(dev, torch.long))
        self.head_size.append(torch.stack([torch.as_tensor(t["head_size"]).reshape(()) for t in target]).to(dev, f64))

    def _evaluate(self) -> PeopleErrors:
        """One copy of each sample (sampler padding repeats them), in index order."""
        ids = dim_zero_cat(self.index)
        key, perm = torch.sort(ids, stable=True)
        first = torch.ones_like(key, dtype=torch.bool)
        first[1:] = key[1:] != key[:-1]
        sel = perm[first]
        return PeopleErrors(ids[sel], dim_zero_cat(self.pred)[sel], dim_zero_cat(self.gt)[sel],
                            dim_zero_cat(self.visible)[sel], dim_zero_cat(self.head_size)[sel])

    def values(self, result: PeopleErrors) -> dict[str, Tensor]:
        return pckh_stats(result.pred, result.gt, result.visible, result.head_size, self.thr)

    def bootstrap(self, result: PeopleErrors) -> BootstrapStats:
        """Bootstrap over annotated people (metrics/bootstrap.py): PCKh at ``thr`` (the 14-joint pooled share).

        PCKh = sum of hits over the 14 scored joints / their visible count (the count-weighted mean of the
        per-joint values), so per-sample hit and visible counts are sufficient.
        """
        pred, gt = result.pred.cpu(), result.gt.cpu()
        vis = result.visible.cpu().to(torch.float64)
        hs = result.head_size.cpu()
        d = pred - gt
        err = torch.sqrt(d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1]) / hs[:, None]
        scored = torch.ones(len(MPII_JOINTS), dtype=torch.float64)
        scored[[MPII_JOINTS.index("pelv"), MPII_JOINTS.index("thrx")]] = 0
        hits = (((err * vis) <= self.thr).to(torch.float64) * vis * scored).sum(1)
        count = (vis * scored).sum(1)

        def statistic(w: Tensor) -> Tensor:
            return ((w @ hits) / (w @ count))[:, None]

        return BootstrapStats(result.ids.cpu(), ("PCKh",), statistic, self.bootstrap_unit)

    def plots(self, result: PeopleErrors) -> list[dict]:
        """PCKh at ``thr`` per body part."""
        v = self.values(result)
        parts = [name for name, _ in _PARTS]
        return [plot_dict(f"PCKh@{self.thr:g} per part", "bar", "part", "PCKh", parts,
                          {"PCKh": [float(v[p]) for p in parts]})]
