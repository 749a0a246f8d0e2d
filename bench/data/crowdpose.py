"""CrowdPose test set -> one Sample per image, scored like xtcocotools ``COCOeval(iouType='keypoints_crowd',
use_area=False)`` (what mmpose and the CrowdPose API report).

Layout under ``data_root``: ``annotations/crowdpose_test.json`` (COCO-style, 14 keypoints, each image carries
a ``crowdIndex``; annotations have no ``area``) and the images in ``images/``. Model runs take person boxes
from ``dataset.person_boxes=FILE`` (COCO detection results), else the GT boxes of annotated people. The
bundled 2-image sample ships mmpose's test images with their detector boxes.

Scored by :class:`metrics.crowdpose_ap.CrowdPoseAP` (the protocol is described there); the GT "area" this
reader stores is the protocol's ``0.53 * w * h`` of the bbox.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench.data.coco import (
    CocoKeypointGT,
    CocoKeypoints,
    _annotation_columns,
    _check_annotations,
    _is_num,
    _load_json,
    build_keypoint_dataset,
    check_gt_header,
    keypoint_column,
    read_image_table,
)
from bench.errors import InputError
from bench.predictions.coco_json import gc_paused
from bench.registry import register_dataset
from bench.types import Sample
from metrics.crowdpose_ap import AREA_SCALE, STAT_KEYS, CrowdPoseAP
from metrics.skeletons import CROWDPOSE_SIGMAS

ANN_FILE = "annotations/crowdpose_test.json"
IMAGE_DIR = "images"
BUNDLED_BOXES = "person_detection_results/test_crowdpose_det_AP_40.json"

METRIC_KEYS = STAT_KEYS


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
    images, seen = read_image_table(path, d, "{}.jpg")
    crowd = []
    for i, im in enumerate(d["images"]):
        ci = im.get("crowdIndex")
        if not _is_num(ci) or not math.isfinite(ci):
            raise InputError(path, f"images index {i}", "crowdIndex", f"expected a finite number, found {ci!r}")
        crowd.append(float(ci))
    K = len(names) if isinstance(names, list) and names else 14
    # the COCO column checks, with the (unused) area field filled in: CrowdPose annotations have none
    anns = [dict(a, area=0.0) if isinstance(a, dict) else a for a in d["annotations"]]
    cols = _annotation_columns(anns, seen, cat)
    if cols is None:
        _check_annotations(path, anns, seen, cat)
        raise InputError(path, "annotations", None, "malformed annotations")  # pragma: no cover
    ann_id, ann_image, _, bbox, iscrowd, nkp = cols
    kp = keypoint_column(path, anns, "keypoints", K)
    area = bbox[:, 3] * bbox[:, 2] * AREA_SCALE
    return CrowdPoseGT(path, cat, K, list(names) if isinstance(names, list) else [], images, ann_id, ann_image, kp,
                       area, bbox, iscrowd, nkp, np.asarray(crowd, np.float64))


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
