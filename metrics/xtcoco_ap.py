"""Keypoint AP/AR of any skeleton as xtcocotools ``COCOeval(gt, dt, 'keypoints', sigmas, use_area)`` computes it
(what mmpose's ``CocoMetric`` reports for Halpe, AP-10K, OCHuman, Human-Art, AIC and user skeletons).

Protocol (facts read from xtcocotools 1.14.3 ``cocoeval.py`` ``_prepare``, ``computeOks``, ``evaluateImg``;
the code is our own and reuses the COCO kernel :func:`metrics.keypoint_ap.keypoint_ap_stats`). Where
xtcocotools differs from pycocotools:

- a GT is ignored when ``iscrowd`` or when none of its keypoints has ``v > 0`` (counted, the
  ``num_keypoints`` field is not read);
- detections whose keypoint confidences are all ``<= 0`` are dropped before anything else;
- a detection matched to a GT whose annotation id is negative counts as unmatched (-1 is "no match"; id 0
  is a real match);
- ``use_area=False``: the GT "area" is ``0.53 * w * h`` of its bbox, in the OKS denominator and for the area
  ranges;
- mmpose hands xtcocotools the sigmas as a float32 array, so the OKS variances ``(2 sigma)^2`` are float32
  values: pass float32 sigmas to get the same bits (the kernel keeps them float32 until squared).

Everything else (OKS, greedy matching, 101-point precision, the ten summary stats) is pycocotools'.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from metrics.common import one_cpu_thread
from metrics.keypoint_ap import COCO_AREA_RANGES, STAT_KEYS, KeypointAP, KeypointAPResult, keypoint_ap_stats

__all__ = ["AREA_SCALE", "STAT_KEYS", "XtcocoKeypointAP", "float32_sigmas", "xtcoco_keypoint_evaluate"]

AREA_SCALE = 0.53  # use_area=False: GT "area" = w * h * 0.53


def float32_sigmas(sigmas: Sequence[float] | Tensor | np.ndarray) -> Tensor:
    """Sigmas as mmpose's ``parse_pose_metainfo`` stores them: ``np.array(sigmas, dtype=np.float32)``."""
    if isinstance(sigmas, Tensor):
        sigmas = sigmas.detach().cpu().numpy()
    return torch.from_numpy(np.asarray(sigmas, dtype=np.float32).copy()).reshape(-1)


def xtcoco_keypoint_evaluate(
    dt_image: Tensor, dt_keypoints: Tensor, dt_scores: Tensor, gt_image: Tensor, gt_keypoints: Tensor,
    gt_area: Tensor, gt_bbox: Tensor, gt_iscrowd: Tensor, gt_ids: Tensor, sigmas: Tensor | Sequence[float],
    use_area: bool = True, max_dets: int = 20, dt_area: Tensor | None = None,
    area_ranges: Sequence[tuple[str, float, float]] = COCO_AREA_RANGES,
) -> KeypointAPResult:
    """xtcocotools ``'keypoints'`` evaluate + accumulate + summarize of flat detections and GTs.

    Arguments as :func:`~metrics.keypoint_ap.keypoint_ap_stats` (no ``gt_num_keypoints``: it is counted);
    ``dt_area`` is the area ``loadRes`` gave each detection (its keypoint extent, or ``w * h`` of a results
    bbox). The one place xtcocotools' rules are applied: COCO-WholeBody's six evaluations start from it.

    A perfect detection of a GT whose annotation id is 0 counts (pycocotools would call it unmatched), and a
    detection with no confident keypoint is dropped instead of counting as a false positive:

    >>> import torch
    >>> kp = torch.tensor([[[10.0 + 3 * k, 20.0 + 2 * k, 2.0] for k in range(5)]], dtype=torch.float64)
    >>> far = kp + torch.tensor([500.0, 0.0, -2.0])  # no confident keypoint: a false positive if it were kept
    >>> args = dict(gt_image=torch.tensor([1]), gt_keypoints=kp, gt_area=torch.tensor([900.0]),
    ...             gt_bbox=torch.tensor([[10.0, 20.0, 12.0, 8.0]]), gt_iscrowd=torch.tensor([0]),
    ...             gt_ids=torch.tensor([0]), sigmas=[0.05] * 5)
    >>> res = xtcoco_keypoint_evaluate(torch.tensor([1, 1]), torch.cat([kp, far]), torch.tensor([0.5, 0.9]), **args)
    >>> # xtcocotools 1.14.3 COCOeval(gt, dt, 'keypoints', sigmas) on the same: AP 0.9999999999999998, AR 1.0
    >>> float(res.stats["AP"]), float(res.stats["AR"])
    (0.9999999999999998, 1.0)
    """
    dt_keypoints = torch.as_tensor(dt_keypoints)
    gt_keypoints = torch.as_tensor(gt_keypoints)
    keep = (dt_keypoints[..., 2] > 0).any(-1)
    gt_bbox = torch.as_tensor(gt_bbox, dtype=torch.float64).reshape(-1, 4)
    if use_area:
        area = torch.as_tensor(gt_area, dtype=torch.float64).reshape(-1)
    else:
        area = gt_bbox[:, 3] * gt_bbox[:, 2] * AREA_SCALE
    nkp = (gt_keypoints[..., 2] > 0).sum(-1)
    match_flag = (torch.as_tensor(gt_ids).reshape(-1) >= 0).long()  # the kernel reads 0 as "unmatched"
    return keypoint_ap_stats(dt_image[keep], dt_keypoints[keep], dt_scores[keep], gt_image, gt_keypoints, area,
                             gt_bbox, gt_iscrowd, nkp, match_flag, sigmas=sigmas, max_dets=max_dets,
                             area_ranges=area_ranges, dt_area=None if dt_area is None else dt_area[keep])


class XtcocoKeypointAP(KeypointAP):
    """Keypoint AP/AR of any skeleton, exactly as xtcocotools ``COCOeval(gt, dt, 'keypoints', sigmas,
    use_area)`` (see the module doc).

    Inputs as :class:`~metrics.keypoint_ap.KeypointAP` (the targets' ``num_keypoints`` is not used: the
    labelled keypoints are counted). ``sigmas`` are kept as given when float32 (mmpose's convention, see
    :func:`float32_sigmas`), else float64. The result is one :class:`KeypointAPResult`, so the inherited
    bootstrap over images and the PR curves apply unchanged.
    """

    def __init__(self, sigmas: Sequence[float] | Tensor, use_area: bool = True, max_dets: int = 20, **kwargs):
        super().__init__(sigmas=sigmas, max_dets=max_dets, **kwargs)
        if isinstance(sigmas, Tensor) and sigmas.dtype == torch.float32:
            self.sigmas = sigmas.clone()
        self.use_area = bool(use_area)

    def _evaluate(self) -> KeypointAPResult:
        with one_cpu_thread(self.device):
            flat = self._flat()
            ids = flat.pop("image_ids")
            del flat["gt_num_keypoints"]
            res = xtcoco_keypoint_evaluate(**flat, sigmas=self.sigmas, use_area=self.use_area,
                                           max_dets=self.max_dets, area_ranges=self.area_ranges)
        res.image_ids = ids.cpu()
        return res
