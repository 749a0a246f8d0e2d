"""CrowdPose test set -> one Sample per image, scored like xtcocotools ``COCOeval(iouType='keypoints_crowd',
use_area=False)`` (what mmpose and the CrowdPose API report).

Layout under ``data_root``: ``annotations/crowdpose_test.json`` (COCO-style, 14 keypoints, each image carries
a ``crowdIndex``; annotations have no ``area``) and the images in ``images/``. Model runs take person boxes
from ``dataset.person_boxes=FILE`` (COCO detection results), else the GT boxes of annotated people. The
bundled 2-image sample ships mmpose's test images with their detector boxes.

Protocol (facts read from xtcocotools 1.14.3 ``cocoeval.py``; the code is our own and reuses the COCO kernel
:func:`metrics.keypoint_ap.keypoint_ap_stats`):

- OKS as COCO with the 14 CrowdPose sigmas and the GT "area" ``s = 0.53 * w * h`` of the GT bbox, both in
  the OKS denominator and for the area range (only the 'all' range ``[0, 1e10]`` is reported);
- a GT is ignored when ``iscrowd`` or its ``num_keypoints`` FIELD is 0 (trusted, not recounted);
- detections whose keypoint confidences are all <= 0 are dropped before anything else (pycocotools keeps them);
- a detection matched to a GT whose annotation id is negative counts as unmatched (xtcocotools stores the GT
  id as the match flag with -1 = none; pycocotools uses 0 = none, so id 0 is a real match here);
- AP, AP50, AP75, AR, AR50, AR75 over all images (maxDets 20); APe/APm/APh re-evaluate only the images of
  one crowd split (easy ``crowdIndex < 0.2 <=`` medium ``< 0.8 <=`` hard), take the plain mean of that
  run's whole precision array (-1 when the split has no scorable GT) and round it to 4 decimals the way
  ``np.round`` does (``rint(x * 1e4) / 1e4``).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torchmetrics.utilities import dim_zero_cat

from bench.data.coco import (
    CocoKeypointGT,
    CocoKeypoints,
    _annotation_columns,
    _check_annotations,
    _is_int,
    _is_num,
    _keypoint_array,
    _load_json,
    build_keypoint_dataset,
    check_gt_header,
)
from bench.errors import InputError
from bench.predictions.coco_json import gc_paused
from bench.registry import register_dataset
from bench.types import Sample
from metrics.common import one_cpu_thread
from metrics.keypoint_ap import (
    KeypointAP,
    KeypointAPResult,
    _dedupe,
    keypoint_ap_stats,
    np_sum,
)

ANN_FILE = "annotations/crowdpose_test.json"
IMAGE_DIR = "images"
BUNDLED_BOXES = "person_detection_results/test_crowdpose_det_AP_40.json"

METRIC_KEYS = ("AP", "AP50", "AP75", "AR", "AR50", "AR75", "APe", "APm", "APh")

CROWDPOSE_SIGMAS = torch.tensor(
    [0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89, 0.79, 0.79], dtype=torch.float64
) / 10.0
"""The 14 CrowdPose OKS sigmas as the official CrowdPose API builds them (``np.array([...]) / 10``). mmpose's
config writes the literals (0.107 is 1 ulp away from 1.07 / 10): pass ``dataset.sigmas`` to use those."""

AREA_SCALE = 0.53  # xtcocotools use_area=False: GT "area" = w * h * 0.53
ALL_AREA = (("all", 0.0, 1e5**2),)
CROWD_SPLITS = (0.2, 0.8)  # easy < 0.2 <= medium < 0.8 <= hard


# ---------------------------------------------------------------- reading the GT


@dataclass
class CrowdPoseGT(CocoKeypointGT):
    """A CrowdPose GT file: COCO keypoint GT whose ``area`` is ``0.53 * w * h`` of the bbox, plus the
    ``crowdIndex`` of every image (``crowd_index`` aligned with ``images``)."""

    crowd_index: np.ndarray = None  # type: ignore[assignment]


def read_crowdpose_gt(path: str | Path) -> CrowdPoseGT:
    """Read and check a CrowdPose annotation file (no ``area`` field needed; ``crowdIndex`` required)."""
    with gc_paused():
        return _read_gt(Path(path))


def _read_gt(path: Path) -> CrowdPoseGT:
    d = _load_json(path)
    cat, names = check_gt_header(path, d)
    images, crowd, seen = [], [], set()
    for i, im in enumerate(d["images"]):
        where = f"images index {i}"
        if not isinstance(im, dict):
            raise InputError(path, where, None, "expected an object")
        for f in ("id", "width", "height"):
            if not _is_int(im.get(f)):
                raise InputError(path, where, f, f"expected an integer, found {im.get(f)!r}")
        ci = im.get("crowdIndex")
        if not _is_num(ci) or not math.isfinite(ci):
            raise InputError(path, where, "crowdIndex", f"expected a finite number, found {ci!r}")
        if im["id"] in seen:
            raise InputError(path, where, "id", f"image id {im['id']} appears twice")
        seen.add(im["id"])
        images.append({"id": im["id"], "file_name": str(im.get("file_name", f"{im['id']}.jpg")),
                       "width": im["width"], "height": im["height"]})
        crowd.append(float(ci))
    K = len(names) if isinstance(names, list) and names else 14
    # the COCO column checks, with the (unused) area field filled in: CrowdPose annotations have none
    anns = [dict(a, area=0.0) if isinstance(a, dict) else a for a in d["annotations"]]
    cols = _annotation_columns(anns, seen, cat)
    if cols is None:
        _check_annotations(path, anns, seen, cat)
        raise InputError(path, "annotations", None, "malformed annotations")  # pragma: no cover
    ann_id, ann_image, _, bbox, iscrowd, nkp = cols
    kp = _keypoint_array([a.get("keypoints") for a in anns], K)
    if kp is None:
        for i, a in enumerate(anns):
            k = a.get("keypoints")
            if _keypoint_array([k], K) is None:
                found = f"{len(k)} values" if isinstance(k, list) else repr(k)
                raise InputError(path, f"annotations index {i}", "keypoints", f"expected {3 * K} finite numbers, found {found}")
    area = bbox[:, 3] * bbox[:, 2] * AREA_SCALE
    return CrowdPoseGT(path, cat, K, list(names) if isinstance(names, list) else [], images, ann_id, ann_image, kp,
                       area, bbox, iscrowd, nkp, np.asarray(crowd, np.float64))


# ---------------------------------------------------------------- the metric


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
    args = (dt_image, dt_keypoints, dt_scores, gt_image, gt_keypoints, gt_bbox, gt_iscrowd, gt_num_keypoints, gt_ids)
    full = crowdpose_evaluate(*args, sigmas=sigmas, max_dets=max_dets, dt_area=dt_area).stats
    out = {k: full[k] for k in ("AP", "AP50", "AP75", "AR", "AR50", "AR75")}
    split = crowd_split(crowd_index.to(torch.float64))
    for s, key in enumerate(("APe", "APm", "APh")):
        res = crowdpose_evaluate(*args, sigmas=sigmas, max_dets=max_dets, dt_area=dt_area,
                                 images=image_ids[split == s])
        out[key] = _np_round4(_precision_mean(res.precision[:, :, 0]))
    return out


class CrowdPoseAP(KeypointAP):
    """CrowdPose AP/AR and AP easy/medium/hard, exactly as xtcocotools ``keypoints_crowd``, ``use_area=False``.

    Inputs as :class:`~metrics.keypoint_ap.KeypointAP`; each target also carries ``"crowd_index"`` (0-d).
    The GT ``area`` in the targets is not used (it is ``0.53 * w * h`` of ``bbox`` by definition here).
    States are ``cat`` lists keyed by image id; ``compute`` sorts and drops repeated images. The bootstrap
    (inherited: images are the unit) re-weights the flags of this evaluation, so it follows the same rules.
    """

    def __init__(self, sigmas: Sequence[float] | Tensor | None = None, max_dets: int = 20, **kwargs):
        super().__init__(sigmas=CROWDPOSE_SIGMAS.clone() if sigmas is None else sigmas, max_dets=max_dets,
                         area_ranges=ALL_AREA, **kwargs)
        self.add_state("crowd_index", default=[], dist_reduce_fx="cat")

    def update(self, preds: list[dict[str, Tensor]], target: list[dict[str, Tensor]]) -> None:
        super().update(preds, target)
        if target:
            self.crowd_index.append(torch.stack([torch.as_tensor(t["crowd_index"], dtype=torch.float64).reshape(())
                                                 for t in target]).to(self.device))

    def compute(self) -> dict[str, Tensor]:
        with one_cpu_thread(self.device):
            return crowdpose_ap_stats(**self._flat(), sigmas=self.sigmas, max_dets=self.max_dets)

    def _evaluate(self) -> KeypointAPResult:
        """All images under CrowdPose's rules (:func:`crowdpose_evaluate`), not the parent's COCO evaluation.

        ``evaluate()``, ``compute_precision()`` and the inherited ``bootstrap_stats()`` start from it, so the
        bootstrap replicates re-weight CrowdPose's TP/FP flags and ``statistic(ones)`` is ``compute()["AP"]``.
        """
        flat = self._flat()
        del flat["image_ids"], flat["crowd_index"]
        return crowdpose_evaluate(**flat, sigmas=self.sigmas, max_dets=self.max_dets)

    def _flat(self) -> dict[str, Tensor]:
        """The deduplicated states, sorted by image id, as keyword arguments of :func:`crowdpose_ap_stats`."""
        dev, K = self.device, self.num_keypoints
        if len(self.img_ids) == 0:
            e = torch.zeros(0, dtype=torch.long, device=dev)
            z = torch.zeros(0, dtype=torch.float64, device=dev)
            kp = torch.zeros(0, K, 3, dtype=torch.float64, device=dev)
            return {"dt_image": e, "dt_keypoints": kp, "dt_scores": z, "gt_image": e, "gt_keypoints": kp,
                    "gt_bbox": torch.zeros(0, 4, dtype=torch.float64, device=dev), "gt_iscrowd": e,
                    "gt_num_keypoints": e, "gt_ids": e, "image_ids": e, "crowd_index": z}
        img = dim_zero_cat(self.img_ids)
        u = _dedupe(img, torch.zeros_like(img))
        g = _dedupe(dim_zero_cat(self.gt_img), dim_zero_cat(self.gt_j))
        d = _dedupe(dim_zero_cat(self.dt_img), dim_zero_cat(self.dt_j))
        return {
            "dt_image": dim_zero_cat(self.dt_img)[d], "dt_keypoints": dim_zero_cat(self.dt_kpts)[d],
            "dt_scores": dim_zero_cat(self.dt_scores)[d], "dt_area": dim_zero_cat(self.dt_area)[d],
            "gt_image": dim_zero_cat(self.gt_img)[g], "gt_keypoints": dim_zero_cat(self.gt_kpts)[g],
            "gt_bbox": dim_zero_cat(self.gt_bbox)[g], "gt_iscrowd": dim_zero_cat(self.gt_crowd)[g],
            "gt_num_keypoints": dim_zero_cat(self.gt_nkp)[g], "gt_ids": dim_zero_cat(self.gt_id)[g],
            "image_ids": img[u], "crowd_index": dim_zero_cat(self.crowd_index)[u],
        }


# ---------------------------------------------------------------- the dataset


class CrowdPose(CocoKeypoints):
    """CrowdPose test (or any split file in the same format); ``sample_id`` is the image id, in id order."""

    metric_keys = METRIC_KEYS
    default_sigmas = CROWDPOSE_SIGMAS

    @staticmethod
    def read_gt(path: Path):
        return read_crowdpose_gt(path)

    def __init__(self, root: Path, bundled: bool = False, person_boxes: str | Path | None = None, sigmas=None,
                 name: str = "crowdpose", ann_file: str = ANN_FILE, image_dir: str = IMAGE_DIR):
        super().__init__(root, bundled, person_boxes, sigmas, name, ann_file, image_dir)
        order = sorted(range(len(self.gt.images)), key=lambda i: self.gt.images[i]["id"])  # the targets' order
        crowd = torch.from_numpy(self.gt.crowd_index[order] if order else np.zeros(0))
        for t, c in zip(self._targets, crowd):
            t["crowd_index"] = c

    def __getitem__(self, index: int) -> Sample:
        s = super().__getitem__(index)
        s.inputs["crowd_index"] = float(self._targets[index]["crowd_index"])
        return s

    def gt_files(self) -> Iterable[Path]:
        return [self.ann_path]

    def build_metric(self) -> CrowdPoseAP:
        return CrowdPoseAP(sigmas=self.sigmas)


@register_dataset("crowdpose")
def build_crowdpose(cfg) -> CrowdPose:
    """Builder for ``dataset=crowdpose`` (options: data_root, person_boxes, sigmas)."""
    return build_keypoint_dataset(CrowdPose, "crowdpose", ANN_FILE, BUNDLED_BOXES, cfg)
