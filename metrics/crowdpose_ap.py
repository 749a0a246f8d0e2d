"""CrowdPose AP/AR and AP easy/medium/hard, as xtcocotools ``COCOeval(iouType='keypoints_crowd',
use_area=False)`` (what mmpose and the CrowdPose API report).

Protocol (facts read from xtcocotools 1.14.3 ``cocoeval.py``; the code is our own and reuses the COCO kernel
:func:`metrics.keypoint_ap.keypoint_ap_stats`):

- OKS as COCO with the 14 CrowdPose sigmas and the GT "area" ``s = 0.53 * w * h`` of the GT bbox, both in
  the OKS denominator and for the area range (only the 'all' range ``[0, 1e10]`` is reported);
- a GT is ignored when ``iscrowd`` or its ``num_keypoints`` FIELD is 0 (trusted, not recounted);
- detections whose keypoint confidences are all <= 0 are dropped before anything else (pycocotools keeps
  them);
- a detection matched to a GT whose annotation id is negative counts as unmatched (xtcocotools stores the GT
  id as the match flag with -1 = none; pycocotools uses 0 = none, so id 0 is a real match here);
- AP, AP50, AP75, AR, AR50, AR75 over all images (maxDets 20); APe/APm/APh re-evaluate only the images of
  one crowd split (easy ``crowdIndex < 0.2 <=`` medium ``< 0.8 <=`` hard), take the plain mean of that
  run's whole precision array (-1 when the split has no scorable GT) and round it to 4 decimals the way
  ``np.round`` does (``rint(x * 1e4) / 1e4``).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics.utilities import dim_zero_cat

from metrics.common import one_cpu_thread
from metrics.keypoint_ap import KeypointAP, KeypointAPResult, keypoint_ap_stats, np_sum
from metrics.skeletons import CROWDPOSE_SIGMAS

__all__ = ["STAT_KEYS", "CrowdPoseAP", "crowd_split", "crowdpose_ap_stats", "crowdpose_evaluate"]

STAT_KEYS = ("AP", "AP50", "AP75", "AR", "AR50", "AR75", "APe", "APm", "APh")
AREA_SCALE = 0.53  # xtcocotools use_area=False: GT "area" = w * h * 0.53
ALL_AREA = (("all", 0.0, 1e5**2),)
CROWD_SPLITS = (0.2, 0.8)  # easy < 0.2 <= medium < 0.8 <= hard
_FULL_KEYS = ("AP", "AP50", "AP75", "AR", "AR50", "AR75")  # from the evaluation of all images


def crowd_split(crowd_index: Tensor, splits: Sequence[float] = CROWD_SPLITS) -> Tensor:
    """0 easy (``< 0.2``), 1 medium (``< 0.8``), 2 hard: xtcocotools ``COCOeval.split``."""
    return (crowd_index >= splits[0]).long() + (crowd_index >= splits[1]).long()


def _np_round4(x: Tensor) -> Tensor:
    """``np.round(x, 4)``: ``rint(x * 10**4) / 10**4`` (not Python's correctly rounded ``round``)."""
    return torch.round(x * 10000.0) / 10000.0


def _precision_mean(precision: Tensor) -> Tensor:
    """``np.mean`` of the (T, R) precision of one area range: numpy sums it as one flat row (pairwise)."""
    return np_sum(precision.reshape(-1).contiguous()) / precision.numel()


def crowdpose_evaluate(
    dt_image: Tensor, dt_keypoints: Tensor, dt_scores: Tensor, gt_image: Tensor, gt_keypoints: Tensor,
    gt_bbox: Tensor, gt_iscrowd: Tensor, gt_num_keypoints: Tensor, gt_ids: Tensor,
    sigmas: Tensor | Sequence[float] | None = None, max_dets: int = 20, dt_area: Tensor | None = None,
    images: Tensor | None = None,
) -> KeypointAPResult:
    """xtcocotools ``keypoints_crowd`` evaluate + accumulate of ``images`` (None: all), 'all' area range.

    The one place CrowdPose's rules are applied (dropped all-zero-confidence detections, ``0.53 * w * h``
    areas, negative ids as "unmatched"): the summary and the bootstrap replicates both start from it.
    """
    sig = CROWDPOSE_SIGMAS if sigmas is None else torch.as_tensor(sigmas, dtype=torch.float64)
    keep = (dt_keypoints[..., 2] > 0).any(-1)  # xtcocotools drops all-zero-confidence detections
    gsel = torch.ones_like(gt_image, dtype=torch.bool)
    if images is not None:
        keep &= torch.isin(dt_image, images)
        gsel = torch.isin(gt_image, images)
    gt_bbox = gt_bbox[gsel].to(torch.float64)
    gt_area = gt_bbox[:, 3] * gt_bbox[:, 2] * AREA_SCALE
    match_flag = (gt_ids[gsel] >= 0).long()  # the kernel treats 0 as "unmatched": xtcocotools' ids < 0
    return keypoint_ap_stats(dt_image[keep], dt_keypoints[keep], dt_scores[keep], gt_image[gsel],
                             gt_keypoints[gsel], gt_area, gt_bbox, gt_iscrowd[gsel], gt_num_keypoints[gsel],
                             match_flag, sigmas=sig, max_dets=max_dets, area_ranges=ALL_AREA,
                             dt_area=None if dt_area is None else dt_area[keep])


def _split_aps(args: tuple, image_ids: Tensor, crowd_index: Tensor, sigmas, max_dets: int,
               dt_area: Tensor | None) -> dict[str, Tensor]:
    """APe, APm, APh: each crowd split's images evaluated alone (``args`` as :func:`crowdpose_evaluate`'s)."""
    split = crowd_split(crowd_index.to(torch.float64))
    out = {}
    for s, key in enumerate(("APe", "APm", "APh")):
        res = crowdpose_evaluate(*args, sigmas=sigmas, max_dets=max_dets, dt_area=dt_area,
                                 images=image_ids[split == s])
        out[key] = _np_round4(_precision_mean(res.precision[:, :, 0]))
    return out


def crowdpose_ap_stats(
    dt_image: Tensor, dt_keypoints: Tensor, dt_scores: Tensor, gt_image: Tensor, gt_keypoints: Tensor,
    gt_bbox: Tensor, gt_iscrowd: Tensor, gt_num_keypoints: Tensor, gt_ids: Tensor, image_ids: Tensor,
    crowd_index: Tensor, sigmas: Tensor | Sequence[float] | None = None, max_dets: int = 20,
    dt_area: Tensor | None = None,
) -> dict[str, Tensor]:
    """xtcocotools ``keypoints_crowd`` summary of flat detections and GTs (see the module doc).

    ``image_ids`` (I,) and ``crowd_index`` (I,) list every scored image once; the rest is as in
    :func:`~metrics.keypoint_ap.keypoint_ap_stats` except that the GT area is derived from ``gt_bbox``.
    """
    args = (dt_image, dt_keypoints, dt_scores, gt_image, gt_keypoints, gt_bbox, gt_iscrowd, gt_num_keypoints,
            gt_ids)
    full = crowdpose_evaluate(*args, sigmas=sigmas, max_dets=max_dets, dt_area=dt_area).stats
    splits = _split_aps(args, image_ids, crowd_index, sigmas, max_dets, dt_area)
    return {**{k: full[k] for k in _FULL_KEYS}, **splits}


class CrowdPoseAP(KeypointAP):
    """CrowdPose AP/AR and AP easy/medium/hard, exactly as xtcocotools keypoints_crowd (``use_area=False``).

    Inputs as :class:`~metrics.keypoint_ap.KeypointAP`; each target also carries ``"crowd_index"`` (0-d).
    The GT ``area`` in the targets is not used (it is ``0.53 * w * h`` of ``bbox`` by definition here).
    States are ``cat`` lists keyed by image id; the evaluation sorts and drops repeated images. Its result is
    the evaluation of all images under CrowdPose's rules with :data:`STAT_KEYS` as ``stats``, so the inherited
    bootstrap (images are the unit) re-weights CrowdPose's TP/FP flags and ``statistic(ones)`` is ``AP``.
    No curves (none were ever published for CrowdPose).
    """

    def __init__(self, sigmas: Sequence[float] | Tensor | None = None, max_dets: int = 20, **kwargs):
        super().__init__(sigmas=CROWDPOSE_SIGMAS.clone() if sigmas is None else sigmas, max_dets=max_dets,
                         area_ranges=ALL_AREA, **kwargs)
        self.add_state("crowd_index", default=[], dist_reduce_fx="cat")

    def update(self, preds: list[dict[str, Tensor]], target: list[dict[str, Tensor]]) -> None:
        super().update(preds, target)
        if target:
            ci = [torch.as_tensor(t["crowd_index"], dtype=torch.float64).reshape(()) for t in target]
            self.crowd_index.append(torch.stack(ci).to(self.device))

    def _evaluate(self) -> KeypointAPResult:
        """All images under CrowdPose's rules (:func:`crowdpose_evaluate`), then each crowd split alone."""
        with one_cpu_thread(self.device):
            flat = self._flat()
            ids = flat.pop("image_ids")
            del flat["gt_area"]  # 0.53 * w * h of the bbox here
            crowd = (dim_zero_cat(self.crowd_index)[self._image_rows()] if len(self.img_ids)
                     else torch.zeros(0, dtype=torch.float64, device=self.device))
            area = flat.pop("dt_area")
            args = tuple(flat[k] for k in ("dt_image", "dt_keypoints", "dt_scores", "gt_image",
                                           "gt_keypoints", "gt_bbox", "gt_iscrowd", "gt_num_keypoints",
                                           "gt_ids"))
            full = crowdpose_evaluate(*args, sigmas=self.sigmas, max_dets=self.max_dets, dt_area=area)
            splits = _split_aps(args, ids, crowd, self.sigmas, self.max_dets, area)
        stats = {**{k: full.stats[k] for k in _FULL_KEYS}, **splits}
        return dataclasses.replace(full, stats=stats, image_ids=ids.cpu())

    def plots(self, result: KeypointAPResult) -> list[dict]:
        """None: the page has never shown CrowdPose curves (the committed curves files stay as they are)."""
        return []
