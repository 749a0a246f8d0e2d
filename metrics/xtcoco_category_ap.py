"""Keypoint AP/AR of a multi-category keypoint dataset (AP-10K's 54 animal species) as xtcocotools
``COCOeval(gt, dt, 'keypoints', sigmas, use_area)`` computes it with its default ``useCats=1``: what mmpose's
``CocoMetric`` reports for AP-10K.

Protocol (facts read from xtcocotools 1.14.3 ``cocoeval.py`` ``_prepare``, ``evaluateImg``, ``accumulate``,
``summarize``; the code is our own and reuses :func:`metrics.xtcoco_ap.xtcoco_keypoint_evaluate`):

- ``params.catIds`` are all categories of the GT file, sorted; detections and GTs are grouped by (image,
  category), so a detection can only match a GT of its own category and ``maxDets`` (20) applies per image and
  category. Each category is one single-category evaluation (xtcocotools' rules, see metrics/xtcoco_ap.py);
- ``accumulate`` gives ``precision[T, R, K, A]``, -1 where category K has no regular GT in area range A (also a
  category that has detections but no GT);
- ``summarize`` takes the mean of the entries ``> -1`` of ``precision[:, :, :, area]`` (C order: threshold,
  recall point, category), so a category without GT is left out and the others weigh equally:

      AP = mean_{c: n_c > 0} mean_{t, r} p_c(t, r)

  computed, as numpy does, as one pairwise sum over the (t, r, c) entries.

With one category this is :class:`~metrics.xtcoco_ap.XtcocoKeypointAP`'s number, bit for bit.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torchmetrics.utilities import dim_zero_cat

from metrics.bootstrap import BootstrapStats
from metrics.common import one_cpu_thread
from metrics.keypoint_ap import (
    COCO_AREA_RANGES,
    STAT_KEYS,
    KeypointAPResult,
    _cat,
    _dedupe,
    _summarize,
    coco_oks_thresholds,
    coco_recall_thresholds,
    image_ap_bootstrap,
)
from metrics.xtcoco_ap import XtcocoKeypointAP, xtcoco_keypoint_evaluate

__all__ = ["STAT_KEYS", "CategoryAPResult", "XtcocoCategoryKeypointAP", "xtcoco_category_evaluate"]


@dataclass
class CategoryAPResult(KeypointAPResult):
    """A per-category evaluation: ``precision`` (T, R, A) and ``recall`` (T, A) are the means over the
    categories that have a regular GT (for the PR curves; -1 where none has), ``category_precision`` (T, R, C, A)
    and ``category_recall`` (T, C, A) are xtcocotools' ``eval['precision']`` and ``eval['recall']``,
    ``per_category`` the single-category results (for the bootstrap)."""

    categories: tuple[int, ...] = ()
    category_precision: Tensor | None = None
    category_recall: Tensor | None = None
    per_category: list[KeypointAPResult] = field(default_factory=list)


def _mean_over_categories(x: Tensor, dim: int) -> Tensor:
    """Mean over ``dim`` of the entries ``> -1``; -1 where there is none."""
    valid = x > -1
    n = valid.sum(dim)
    s = torch.where(valid, x, torch.zeros((), dtype=x.dtype, device=x.device)).sum(dim)
    return torch.where(n > 0, s / n.clamp_min(1), torch.full_like(s, -1.0))


def xtcoco_category_evaluate(
    dt_image: Tensor, dt_category: Tensor, dt_keypoints: Tensor, dt_scores: Tensor, gt_image: Tensor,
    gt_category: Tensor, gt_keypoints: Tensor, gt_area: Tensor, gt_bbox: Tensor, gt_iscrowd: Tensor,
    gt_ids: Tensor, categories: Sequence[int], sigmas: Tensor | Sequence[float], use_area: bool = True,
    max_dets: int = 20, dt_area: Tensor | None = None,
    area_ranges: Sequence[tuple[str, float, float]] = COCO_AREA_RANGES,
) -> CategoryAPResult:
    """xtcocotools ``'keypoints'`` evaluate + accumulate + summarize with ``useCats=1``.

    Arguments as :func:`~metrics.xtcoco_ap.xtcoco_keypoint_evaluate`, plus each detection's and GT's category
    and ``categories``, the GT file's category ids (``params.catIds``). A category with no GT gives -1 and is
    left out of the mean; one with GT but no detection counts as AP 0:

    >>> import torch
    >>> kp = torch.tensor([[[10.0 + 3 * k, 20.0 + 2 * k, 2.0] for k in range(5)]], dtype=torch.float64)
    >>> two = torch.cat([kp, kp + torch.tensor([100.0, 0.0, 0.0])])
    >>> gt = dict(gt_image=torch.tensor([1, 1]), gt_category=torch.tensor([1, 2]), gt_keypoints=two,
    ...           gt_area=torch.tensor([900.0, 900.0]), gt_iscrowd=torch.tensor([0, 0]), gt_ids=torch.tensor([1, 2]),
    ...           gt_bbox=torch.tensor([[10.0, 20.0, 12.0, 8.0], [110.0, 20.0, 12.0, 8.0]]), sigmas=[0.05] * 5)
    >>> # a perfect detection of category 1, the second animal found but called category 3 (which has no GT)
    >>> res = xtcoco_category_evaluate(torch.tensor([1, 1]), torch.tensor([1, 3]), two, torch.tensor([0.9, 0.8]),
    ...                                categories=[1, 2, 3], **gt)
    >>> # xtcocotools 1.14.3 COCOeval(gt, dt, 'keypoints', sigmas) on the same: AP 0.4999999999999999, AR 0.5
    >>> float(res.stats["AP"]), float(res.stats["AR"])
    (0.4999999999999999, 0.5)
    """
    dev = torch.as_tensor(dt_keypoints).device
    cats = sorted({int(c) for c in categories})
    dt_category = torch.as_tensor(dt_category).reshape(-1).to(dev)
    gt_category = torch.as_tensor(gt_category).reshape(-1).to(dev)
    per = []
    for c in cats:
        d, g = dt_category == c, gt_category == c
        per.append(xtcoco_keypoint_evaluate(
            dt_image[d], dt_keypoints[d], dt_scores[d], gt_image[g], gt_keypoints[g], gt_area[g], gt_bbox[g],
            gt_iscrowd[g], gt_ids[g], sigmas=sigmas, use_area=use_area, max_dets=max_dets,
            dt_area=None if dt_area is None else dt_area[d], area_ranges=area_ranges))
    if per:
        thr, rthr = per[0].oks_thresholds, per[0].rec_thresholds
        prec = torch.stack([r.precision for r in per], 2)  # (T, R, C, A): xtcocotools' axis order
        rec = torch.stack([r.recall for r in per], 1)  # (T, C, A)
    else:
        thr, rthr = coco_oks_thresholds(dev), coco_recall_thresholds(dev)
        prec = torch.full((thr.numel(), rthr.numel(), 0, len(area_ranges)), -1.0, dtype=torch.float64, device=dev)
        rec = torch.full((thr.numel(), 0, len(area_ranges)), -1.0, dtype=torch.float64, device=dev)
    labels = tuple(a[0] for a in area_ranges)
    stats = _summarize(prec, rec, thr, labels)  # s[..., area] flattened in (t, r, c) order, as numpy's mean
    return CategoryAPResult(_mean_over_categories(prec, 2), _mean_over_categories(rec, 1), stats, thr, rthr, labels,
                            categories=tuple(cats), category_precision=prec, category_recall=rec, per_category=per)


class XtcocoCategoryKeypointAP(XtcocoKeypointAP):
    """Keypoint AP/AR of a multi-category dataset, exactly as xtcocotools ``COCOeval(gt, dt, 'keypoints',
    sigmas, use_area)`` with ``useCats=1`` (see the module doc).

    Inputs as :class:`~metrics.xtcoco_ap.XtcocoKeypointAP`, plus ``"category_id"`` (D,) in every prediction and
    (G,) in every target; ``categories`` are the GT file's category ids. Categories are states keyed like the
    keypoints (image id, position), so repeated images and process count change nothing. Bootstrap over images:
    each replicate averages the per-category AP of the categories with a regular GT in it.
    """

    def __init__(self, sigmas: Sequence[float] | Tensor, categories: Sequence[int], use_area: bool = True,
                 max_dets: int = 20, **kwargs):
        super().__init__(sigmas=sigmas, use_area=use_area, max_dets=max_dets, **kwargs)
        self.categories = tuple(sorted({int(c) for c in categories}))
        self.add_state("gt_cat", default=[], dist_reduce_fx="cat")
        self.add_state("dt_cat", default=[], dist_reduce_fx="cat")

    def update(self, preds: list[dict[str, Tensor]], target: list[dict[str, Tensor]]) -> None:
        for what, items in (("preds", preds), ("target", target)):
            if any("category_id" not in x for x in items):
                raise ValueError(f"XtcocoCategoryKeypointAP.update: every {what}[i] needs 'category_id'")
        super().update(preds, target)
        if not target:
            return
        dev = self.device
        self.gt_cat.append(_cat([t["category_id"].reshape(-1) for t in target], (0,), dev, torch.long))
        self.dt_cat.append(_cat([p["category_id"].reshape(-1) for p in preds], (0,), dev, torch.long))

    def _flat(self) -> dict[str, Tensor]:
        flat = super()._flat()
        if len(self.img_ids) == 0:
            e = torch.zeros(0, dtype=torch.long, device=self.device)
            return {**flat, "gt_category": e, "dt_category": e}
        g = _dedupe(dim_zero_cat(self.gt_img), dim_zero_cat(self.gt_j))
        d = _dedupe(dim_zero_cat(self.dt_img), dim_zero_cat(self.dt_j))
        return {**flat, "gt_category": dim_zero_cat(self.gt_cat)[g], "dt_category": dim_zero_cat(self.dt_cat)[d]}

    def _evaluate(self) -> CategoryAPResult:
        with one_cpu_thread(self.device):
            flat = self._flat()
            ids = flat.pop("image_ids")
            del flat["gt_num_keypoints"]
            res = xtcoco_category_evaluate(**flat, categories=self.categories, sigmas=self.sigmas,
                                           use_area=self.use_area, max_dets=self.max_dets,
                                           area_ranges=self.area_ranges)
        res.image_ids = ids.cpu()
        return res

    def bootstrap(self, result: CategoryAPResult) -> BootstrapStats:
        """Bootstrap over images: each category's AP replicate (:func:`~metrics.keypoint_ap.image_ap_bootstrap`,
        NaN when the replicate holds no regular GT of it), averaged over the categories that have one."""
        return category_ap_bootstrap(result, result.image_ids)


def category_ap_bootstrap(res: CategoryAPResult, ids: Tensor) -> BootstrapStats:
    """Image bootstrap of the category-averaged AP ('all' areas); NaN for a replicate without any regular GT."""
    a = res.area_labels.index("all")
    parts = [image_ap_bootstrap(r, ids) for r in res.per_category if bool(r.gt_regular[:, a].any())]

    def statistic(w: Tensor) -> Tensor:
        if not parts:
            return torch.full((w.shape[0], 1), float("nan"), dtype=torch.float64)
        ap = torch.cat([p.statistic(w) for p in parts], 1)  # (B, C), NaN where a category has no regular GT
        return ap.nanmean(1, keepdim=True)

    return BootstrapStats(ids, ("AP",), statistic, "image", cost=max(1, len(parts)) * int(ids.numel()))
