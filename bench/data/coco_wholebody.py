"""COCO-WholeBody v1.0 val in the official layout -> one Sample per image, scored by WholeBodyAP.

Layout under ``data_root``: ``annotations/coco_wholebody_val_v1.0.json`` and the COCO images in ``val2017/``.
Each annotation carries the 17 body ``keypoints`` and ``foot_kpts``, ``face_kpts``, ``lefthand_kpts``,
``righthand_kpts`` (a part that was not labelled is all zeros), plus ``area``, ``bbox`` and ``iscrowd``; the
``<part>_valid`` flags and ``<part>_box`` es are read by nobody (xtcocotools does not use them). Model runs take
person boxes from ``dataset.person_boxes=FILE``, else the GT boxes of people with a labelled body keypoint.
The bundled sample is mmpose's ``tests/data/coco/test_coco_wholebody.json`` on the 4 COCO images the suite
ships (``bench/data/samples/coco/val2017``). Scoring: :mod:`metrics.wholebody_ap` (the protocol is described
there); every image of the annotation file is scored.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench.data.base import SAMPLES_DIR, BenchmarkDataset, resolve_data_root
from bench.data.coco import (
    _annotation_columns,
    _check_annotations,
    _load_json,
    check_gt_header,
    image_targets,
    keypoint_column,
    read_image_table,
    read_person_boxes,
)
from bench.errors import InputError
from bench.predictions.coco_json import gc_paused
from bench.predictions.wholebody_json import (
    NUM_KEYPOINTS,
    PART_FIELDS,
    read_wholebody_results,
    results_to_predictions,
)
from bench.registry import register_dataset
from bench.types import Prediction, Sample
from metrics.wholebody_ap import METRIC_KEYS, WholeBodyAP

ANN_FILE = "annotations/coco_wholebody_val_v1.0.json"
IMAGE_DIR = "val2017"
SAMPLE_IMAGES = SAMPLES_DIR / "coco" / IMAGE_DIR  # the bundled sample shares the COCO sample's 4 images


@dataclass
class WholeBodyGT:
    """A COCO-WholeBody GT file: flat arrays in file order, 133 keypoints per annotation (body, foot, face, left
    hand, right hand)."""

    path: Path
    category_id: int
    images: list[dict]
    ann_id: np.ndarray
    ann_image: np.ndarray
    keypoints: np.ndarray  # (G, 133, 3)
    area: np.ndarray
    bbox: np.ndarray
    iscrowd: np.ndarray


def read_wholebody_gt(path: str | Path) -> WholeBodyGT:
    """Read and check a COCO-WholeBody annotation file."""
    with gc_paused():
        return _read_gt(Path(path))


def _read_gt(path: Path) -> WholeBodyGT:
    d = _load_json(path)
    cat, _ = check_gt_header(path, d)
    images, seen = read_image_table(path, d)
    # the COCO column checks; num_keypoints is not read by xtcocotools (it counts), so it may be absent
    anns = [dict(a, num_keypoints=a.get("num_keypoints", 0)) if isinstance(a, dict) else a for a in d["annotations"]]
    cols = _annotation_columns(anns, seen, cat)
    if cols is None:
        _check_annotations(path, anns, seen, cat)
        raise InputError(path, "annotations", None, "malformed annotations")  # pragma: no cover
    ann_id, ann_image, area, bbox, crowd, _ = cols
    parts = []
    for field, K in PART_FIELDS:
        parts.append(keypoint_column(path, anns, field, K))
    return WholeBodyGT(path, cat, images, ann_id, ann_image, np.concatenate(parts, axis=1), area, bbox, crowd)


class CocoWholeBody(BenchmarkDataset):
    """COCO-WholeBody val; ``sample_id`` is the image id, samples in image-id order."""

    family = "wholebody2d"
    metric_keys = METRIC_KEYS

    def __init__(self, root: Path, bundled: bool = False, person_boxes: str | Path | None = None,
                 name: str = "coco_wholebody", ann_file: str = ANN_FILE, image_dir: str | Path | None = None):
        super().__init__(name, root, bundled)
        self.ann_path = self.root / ann_file
        self.image_dir = Path(image_dir) if image_dir is not None else self.root / IMAGE_DIR
        self.gt = read_wholebody_gt(self.ann_path)
        self.images = sorted(self.gt.images, key=lambda im: im["id"])
        self.image_ids = [im["id"] for im in self.images]
        self._boxes = (read_person_boxes(person_boxes, self.image_ids, self.gt.category_id)
                       if person_boxes is not None else None)
        with gc_paused():
            self._targets = self._build_targets()

    def _build_targets(self) -> list[dict[str, torch.Tensor]]:
        """As COCO's, with 'annotated' meaning a labelled body keypoint (the first 17)."""
        body_labelled = (self.gt.keypoints[:, :17, 2] > 0).sum(-1)
        targets, self._gt_boxes = image_targets(self.gt, self.image_ids, body_labelled)
        return targets

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Sample:
        im = self.images[index]
        if self._boxes is not None:
            boxes, scores = self._boxes.get(im["id"], (np.zeros((0, 4)), np.zeros(0)))
            boxes, scores = torch.from_numpy(boxes), torch.from_numpy(scores)
        else:
            boxes = self._gt_boxes[index]
            scores = torch.ones(boxes.shape[0], dtype=torch.float64)
        inputs = {"image_path": str(self.image_dir / im["file_name"]), "width": im["width"], "height": im["height"],
                  "person_boxes": boxes, "person_scores": scores}
        return Sample(sample_id=im["id"], target=self._targets[index], inputs=inputs)

    def gt_files(self) -> Iterable[Path]:
        return [self.ann_path]

    def build_metric(self) -> WholeBodyAP:
        return WholeBodyAP()

    def read_predictions(self, path: Path) -> dict[int, Prediction]:
        return results_to_predictions(read_wholebody_results(path, self.image_ids, self.gt.category_id))

    def results_recorder(self, method: str):
        """A model run's COCO-WholeBody results JSON (bench/results_file.py), which ``predictions=`` reads back."""
        from bench.results_file import WholeBodyResultsRecorder, coco_results_name

        return coco_results_name(self.ann_path.name, method), WholeBodyResultsRecorder(self.gt.category_id)

    def empty_prediction(self, sample: Sample) -> Prediction:
        z = torch.zeros(0, dtype=torch.float64)
        return Prediction(sample.sample_id, {"image_id": torch.tensor(sample.sample_id, dtype=torch.long),
                                             "keypoints": torch.zeros(0, NUM_KEYPOINTS, 3, dtype=torch.float64),
                                             "scores": z, "part_scores": torch.zeros(0, 6, dtype=torch.float64),
                                             "area": z})


@register_dataset("coco_wholebody")
def build_coco_wholebody(cfg) -> CocoWholeBody:
    """Builder for ``dataset=coco_wholebody`` (options: data_root, person_boxes)."""
    get = cfg.get if hasattr(cfg, "get") else (lambda k, d=None: getattr(cfg, k, d))
    root, bundled = resolve_data_root("coco_wholebody", get("data_root", None), [ANN_FILE], "coco_wholebody")
    return CocoWholeBody(root, bundled, person_boxes=get("person_boxes", None),
                         image_dir=SAMPLE_IMAGES if bundled else None)
