"""COCO-WholeBody AP/AR per part, as mmpose's ``CocoWholeBodyMetric`` (@ 759b39c) calls xtcocotools 1.14.3.

Six evaluations of the same GT and results (shared PROTOCOLS.md "Whole-body"; facts read from xtcocotools'
``cocoeval.py``, the code is our own): ``COCOeval(gt, dt, 'keypoints_<part>', sigmas[part], use_area=True)``
for body [0:17], foot [17:23], face [23:91], lefthand [91:112], righthand [112:133], then
``'keypoints_wholebody'`` over all 133 keypoints. Each is the xtcocotools keypoint evaluation of
:func:`metrics.xtcoco_ap.xtcoco_keypoint_evaluate` on that part's keypoints and sigmas, with:

- GT: the part is ignored when it has no keypoint with ``v > 0`` (or the person is a crowd). The
  ``<part>_valid`` flags and ``<part>_box`` es are never read; OKS uses the person's ``area`` and, for a part
  with no labelled keypoint, the distance to twice the person's ``bbox`` (so a detection can still match
  that ignored part, and is then ignored, not a false positive);
- detections: a part whose confidences are all ``<= 0`` drops the detection from that part's evaluation only;
  each part ranks detections by its own score key (``foot_score``, ``face_score``, ``lefthand_score``,
  ``righthand_score``, ``wholebody_score``; the body uses ``score``), falling back to ``score`` per record;
  the detection area is the extent of the 17 body keypoints (``loadRes`` reads ``keypoints`` only) or
  ``w * h`` of a results ``bbox``;
- sigmas: mmpose ``configs/_base_/datasets/coco_wholebody.py``, as float32 (mmpose's ``parse_pose_metainfo``),
  so the OKS variances are xtcocotools' float32 squares.

Reported: ``<part>/<stat>`` for the six parts and the ten COCO stats, headline ``AP`` and ``AR`` = whole body.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torchmetrics.utilities import dim_zero_cat

from metrics.bootstrap import BootstrapStats
from metrics.common import one_cpu_thread
from metrics.keypoint_ap import (
    STAT_KEYS,
    KeypointAP,
    KeypointAPResult,
    _cat,
    _dedupe,
    image_ap_bootstrap,
)
from metrics.xtcoco_ap import float32_sigmas, xtcoco_keypoint_evaluate

__all__ = ["METRIC_KEYS", "PARTS", "WHOLEBODY_SIGMAS", "WholeBodyAP", "WholeBodyResult", "wholebody_ap_stats"]

# (part, first keypoint, end, score key of the results record): mmpose CocoWholeBodyMetric's cuts
PARTS: tuple[tuple[str, int, int, str], ...] = (
    ("body", 0, 17, "score"),
    ("foot", 17, 23, "foot_score"),
    ("face", 23, 91, "face_score"),
    ("lefthand", 91, 112, "lefthand_score"),
    ("righthand", 112, 133, "righthand_score"),
    ("wholebody", 0, 133, "wholebody_score"),
)
PART_NAMES = tuple(p[0] for p in PARTS)
METRIC_KEYS: tuple[str, ...] = ("AP", "AR") + tuple(f"{p}/{s}" for p in PART_NAMES for s in STAT_KEYS)

WHOLEBODY_SIGMAS = float32_sigmas([
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062,
    0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089, 0.068, 0.066, 0.066,
    0.092, 0.094, 0.094, 0.042, 0.043, 0.044, 0.043, 0.040, 0.035, 0.031,
    0.025, 0.020, 0.023, 0.029, 0.032, 0.037, 0.038, 0.043, 0.041, 0.045,
    0.013, 0.012, 0.011, 0.011, 0.012, 0.012, 0.011, 0.011, 0.013, 0.015,
    0.009, 0.007, 0.007, 0.007, 0.012, 0.009, 0.008, 0.016, 0.010, 0.017,
    0.011, 0.009, 0.011, 0.009, 0.007, 0.013, 0.008, 0.011, 0.012, 0.010,
    0.034, 0.008, 0.008, 0.009, 0.008, 0.008, 0.007, 0.010, 0.008, 0.009,
    0.009, 0.009, 0.007, 0.007, 0.008, 0.011, 0.008, 0.008, 0.008, 0.01,
    0.008, 0.029, 0.022, 0.035, 0.037, 0.047, 0.026, 0.025, 0.024, 0.035,
    0.018, 0.024, 0.022, 0.026, 0.017, 0.021, 0.021, 0.032, 0.02, 0.019,
    0.022, 0.031, 0.029, 0.022, 0.035, 0.037, 0.047, 0.026, 0.025, 0.024,
    0.035, 0.018, 0.024, 0.022, 0.026, 0.017, 0.021, 0.021, 0.032, 0.02,
    0.019, 0.022, 0.031,
])
"""The 133 COCO-WholeBody sigmas of mmpose ``configs/_base_/datasets/coco_wholebody.py`` (from the official
``myeval_wholebody.py``), float32 as mmpose parses them."""


@dataclass
class WholeBodyResult:
    """The six xtcocotools evaluations, keyed by part name (``PART_NAMES`` order), and the scored image ids."""

    parts: dict[str, KeypointAPResult]
    image_ids: Tensor


def wholebody_ap_stats(
    dt_image: Tensor, dt_keypoints: Tensor, dt_part_scores: Tensor, dt_area: Tensor, gt_image: Tensor,
    gt_keypoints: Tensor, gt_area: Tensor, gt_bbox: Tensor, gt_iscrowd: Tensor, gt_ids: Tensor,
    sigmas: Tensor | Sequence[float] = WHOLEBODY_SIGMAS, max_dets: int = 20,
) -> dict[str, KeypointAPResult]:
    """The six per-part evaluations of flat detections (D, 133, 3) and GTs (G, 133, 3).

    ``dt_part_scores`` (D, 6): each detection's score for each part in ``PART_NAMES`` order (the part's own
    score key, else ``score``); ``dt_area`` (D,): the area ``loadRes`` gave it.
    """
    sig = sigmas if isinstance(sigmas, Tensor) else torch.as_tensor(sigmas, dtype=torch.float64)
    out = {}
    for j, (part, lo, hi, _) in enumerate(PARTS):
        out[part] = xtcoco_keypoint_evaluate(
            dt_image, dt_keypoints[:, lo:hi], dt_part_scores[:, j], gt_image, gt_keypoints[:, lo:hi], gt_area,
            gt_bbox, gt_iscrowd, gt_ids, sig[lo:hi], use_area=True, max_dets=max_dets, dt_area=dt_area)
    return out


class WholeBodyAP(KeypointAP):
    """COCO-WholeBody AP/AR of the six parts, exactly as mmpose's ``CocoWholeBodyMetric`` with xtcocotools.

    Inputs as :class:`~metrics.keypoint_ap.KeypointAP` with 133 keypoints in the order body, foot, face, left
    hand, right hand; each prediction also carries ``"part_scores"`` (D, 6) (:func:`wholebody_ap_stats`) and
    ``"area"`` (D,) (the 17 body keypoints' extent, or a results bbox's ``w * h``). States are ``cat`` lists keyed
    by image id, so batch size, order, padding repeats and process count cannot change a bit. The bootstrap
    resamples images of the whole-body evaluation (headline ``AP``).

    Two people, one detection each; the second person's face is unlabelled (ignored) and the first person's
    detection has its hands a few pixels off:

    >>> import torch
    >>> kp = torch.tensor([[[10.0 + 0.6 * k, 20.0 + 0.4 * k, 2.0] for k in range(133)]], dtype=torch.float64)
    >>> two = torch.cat([kp, kp + torch.tensor([200.0, 0.0, 0.0])])
    >>> two[1, 23:91] = 0
    >>> gt = {"image_id": torch.tensor(1), "keypoints": two, "area": torch.tensor([4000.0, 4000.0]),
    ...       "bbox": torch.tensor([[10.0, 20.0, 80.0, 53.0], [210.0, 20.0, 80.0, 53.0]]),
    ...       "iscrowd": torch.tensor([0, 0]), "num_keypoints": torch.tensor([17, 17]), "ann_id": torch.tensor([5, 6])}
    >>> dets = two.clone(); dets[1, 23:91] = kp[0, 23:91] + torch.tensor([200.0, 0.0, 0.0]); dets[..., 2] = 1.0
    >>> dets[0, 91:133, :2] += 2.0
    >>> ones = torch.ones(2, 6, dtype=torch.float64)
    >>> m = WholeBodyAP()
    >>> m.update([{"image_id": torch.tensor(1), "keypoints": dets, "scores": torch.tensor([0.9, 0.8]),
    ...            "part_scores": ones * torch.tensor([[0.9], [0.8]]), "area": torch.tensor([2000.0, 2000.0])}], [gt])
    >>> r = m.compute()
    >>> # xtcocotools 1.14.3 (six COCOeval runs as mmpose) on the same GT and results: 1.0 1.0 0.5515 0.7 0.8505
    >>> [round(float(r[k]), 4) for k in ("body/AP", "face/AP", "lefthand/AP", "lefthand/AR", "AP")]
    [1.0, 1.0, 0.5515, 0.7, 0.8505]
    """

    headline = ("AP", "AR")

    def __init__(self, sigmas: Sequence[float] | Tensor | None = None, max_dets: int = 20, **kwargs):
        sig = WHOLEBODY_SIGMAS.clone() if sigmas is None else sigmas
        super().__init__(sigmas=sig, max_dets=max_dets, **kwargs)
        if isinstance(sig, Tensor) and sig.dtype == torch.float32:
            self.sigmas = sig.clone()
        if self.num_keypoints != PARTS[-1][2]:
            raise ValueError(f"WholeBodyAP: expected 133 sigmas, found {self.num_keypoints}")
        self.add_state("dt_pscores", default=[], dist_reduce_fx="cat")

    def update(self, preds: list[dict[str, Tensor]], target: list[dict[str, Tensor]]) -> None:
        super().update(preds, target)
        if target:
            self.dt_pscores.append(_cat([p["part_scores"] for p in preds], (0, len(PARTS)), self.device)
                                   .reshape(-1, len(PARTS)))

    def _evaluate(self) -> WholeBodyResult:
        """The six xtcocotools evaluations of the deduplicated states."""
        with one_cpu_thread(self.device):
            flat = self._flat()
            ids = flat.pop("image_ids")
            if len(self.img_ids):
                d = _dedupe(dim_zero_cat(self.dt_img), dim_zero_cat(self.dt_j))
                pscores = dim_zero_cat(self.dt_pscores)[d]
            else:
                pscores = torch.zeros(0, len(PARTS), dtype=torch.float64, device=self.device)
            parts = wholebody_ap_stats(
                flat["dt_image"], flat["dt_keypoints"], pscores, flat["dt_area"], flat["gt_image"],
                flat["gt_keypoints"], flat["gt_area"], flat["gt_bbox"], flat["gt_iscrowd"], flat["gt_ids"],
                sigmas=self.sigmas, max_dets=self.max_dets)
        for r in parts.values():
            r.image_ids = ids.cpu()
        return WholeBodyResult(parts, ids.cpu())

    def values(self, result: WholeBodyResult) -> dict[str, Tensor]:
        whole = result.parts["wholebody"].stats
        out = {"AP": whole["AP"], "AR": whole["AR"]}
        for part in PART_NAMES:
            out.update({f"{part}/{k}": v for k, v in result.parts[part].stats.items()})
        return out

    def compute_precision(self) -> Tensor:
        """Whole-body precision (T, R, A) (for PR curves)."""
        return self.evaluate().parts["wholebody"].precision

    def bootstrap(self, result: WholeBodyResult) -> BootstrapStats:
        """Bootstrap over images of the whole-body AP (see :func:`~metrics.keypoint_ap.image_ap_bootstrap`)."""
        return image_ap_bootstrap(result.parts["wholebody"], result.image_ids)

    def plots(self, result: WholeBodyResult) -> list[dict]:
        """The whole-body precision-recall curves (all areas)."""
        return super().plots(result.parts["wholebody"])
