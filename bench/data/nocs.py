"""NOCS REAL275 and CAMERA25 (category-level 6D pose) -> one Sample per test image, scored by NOCS mAP.

Layout under ``data_root``: the per-image segmentation results that GIVEPose reads its GT from
(``detection_dualposenet/data/segmentation_results[_refine_for_mug]/``, the same files SPD and DualPoseNet
ship)::

    REAL275/results_test_scene_<n>_<iiii>.pkl     real275: the 2754 REAL275 test images
    CAMERA25/results_val_<sssss>_<iiii>.pkl       camera25: the 25000 CAMERA25 validation images

Each pickle (read by the restricted unpickler) holds ``gt_class_ids`` (1..6), ``gt_RTs`` ((G, 4, 4) ``[s R |
t]``, metres), ``gt_scales`` (G, 3) and ``gt_handle_visibility`` (G,), the four GT fields GIVEPose's
evaluation reads; the detector's fields are not needed. ``sample_id`` = scene number x 10000 + image number;
images are scored in that order (it only matters for equal scores in different images). A results
file (bench/predictions/nocs.py) names images ``scene_1/0000`` (real275) or ``00000/0000`` (camera25). An image
without a prediction record counts as an image without detections (its GT are misses), with a warning; the
reference scores only the images in its results list (GIVEPose drops an image whose crops fail). Arrays are
read as float64 (the reference computes in the file's dtype; float32 files can differ at exact thresholds).
"""
from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from bench.data.base import BenchmarkDataset, resolve_data_root
from bench.errors import InputError
from bench.predictions.nocs import as_array, check_classes, check_RTs, read_nocs_predictions
from bench.registry import register_dataset
from bench.safe_pickle import load_pickle
from bench.types import Prediction, Sample
from metrics.category_pose import NOCS_KEYS, NocsMAP

# dataset -> (folder, file name pattern: groups scene name, scene number, image number)
LAYOUTS = {"real275": ("REAL275", re.compile(r"results_test_(scene_(\d+))_(\d+)\.pkl")),
           "camera25": ("CAMERA25", re.compile(r"results_val_((\d+))_(\d+)\.pkl"))}
GT_FIELDS = ("gt_class_ids", "gt_RTs", "gt_scales", "gt_handle_visibility")


def read_gt_file(path: Path) -> dict[str, np.ndarray]:
    """The four GT fields of one ``results_*.pkl``, checked."""
    rec = load_pickle(path, encoding="latin1")
    if not isinstance(rec, dict):
        raise InputError(path, None, None, f"expected a dict of per-image results, found {type(rec).__name__}")
    for f in GT_FIELDS:
        if f not in rec:
            raise InputError(path, None, f, "missing")
    gt = {"gt_class_ids": as_array(rec["gt_class_ids"], (), path, None, "gt_class_ids", integer=True),
          "gt_RTs": as_array(rec["gt_RTs"], (4, 4), path, None, "gt_RTs"),
          "gt_scales": as_array(rec["gt_scales"], (3,), path, None, "gt_scales"),
          "gt_handle_visibility": as_array(rec["gt_handle_visibility"], (), path, None, "gt_handle_visibility")}
    n = len(gt["gt_class_ids"])
    for f in GT_FIELDS[1:]:
        if len(gt[f]) != n:
            raise InputError(path, None, f, f"expected {n} entries (one per gt_class_ids), found {len(gt[f])}")
    check_classes(gt["gt_class_ids"], path, None, "gt_class_ids")
    check_RTs(gt["gt_RTs"], path, None, "gt_RTs")
    return gt


class NocsDataset(BenchmarkDataset):
    """REAL275 / CAMERA25 test images, scored by GIVEPose's NOCS evaluation (metrics/category_pose.py)."""

    family = "category6d"
    metric_keys = NOCS_KEYS
    bundled_note = "6 synthetic images in the official layout, not the benchmark: the numbers mean nothing"

    def __init__(self, name: str, root: Path, bundled: bool = False, real_iou: bool = True,
                 use_matches_for_pose: bool = True):
        super().__init__(name, root, bundled)
        self.real_iou, self.use_matches_for_pose = bool(real_iou), bool(use_matches_for_pose)
        self.variant = "-".join(([] if self.real_iou else ["nocs-iou"])
                                + ([] if self.use_matches_for_pose else ["pose-all-preds"]))
        folder, self.pattern = LAYOUTS[name]
        files = []
        for p in (self.root / folder).iterdir():
            m = self.pattern.fullmatch(p.name)
            if m:
                files.append((int(m.group(2)) * 10000 + int(m.group(3)), f"{m.group(1)}/{m.group(3)}", p))
        if not files:
            raise InputError(self.root / folder, None, None, f"no {self.pattern.pattern} files (official layout)")
        files.sort()
        self.files = [p for _, _, p in files]
        self.ids = {name: i for i, name, _ in files}
        self._samples = []
        for sid, image, p in files:
            gt = read_gt_file(p)
            target = {"image_id": torch.tensor(sid), "gt_class": torch.from_numpy(gt["gt_class_ids"]),
                      "gt_RT": torch.from_numpy(gt["gt_RTs"]), "gt_scales": torch.from_numpy(gt["gt_scales"]),
                      "gt_handle": torch.from_numpy(gt["gt_handle_visibility"])}
            self._samples.append(Sample(sample_id=sid, target=target, inputs={"image": image}))

    def __len__(self) -> int:
        return len(self._samples)

    def __getitem__(self, index: int) -> Sample:
        return self._samples[index]

    def gt_files(self) -> Iterable[Path]:
        return self.files

    def build_metric(self) -> NocsMAP:
        return NocsMAP(real_iou=self.real_iou, use_matches_for_pose=self.use_matches_for_pose)

    def image_of_file(self, name: str) -> str | None:
        m = self.pattern.fullmatch(name)
        return None if m is None else f"{m.group(1)}/{m.group(3)}"

    def read_predictions(self, path: Path) -> dict[int, Prediction]:
        preds = read_nocs_predictions(path, self.image_of_file)
        out = {}
        for image, p in preds.items():
            sid = self.ids.get(image)
            if sid is None:
                example = next(iter(self.ids))
                raise InputError(path, f"image {image}", None, f"not an image of {self.name} (names look like "
                                                               f"{example!r})")
            out[sid] = Prediction(sid, {"image_id": torch.tensor(sid),
                                        "pred_class": torch.from_numpy(p["pred_class_ids"]),
                                        "pred_RT": torch.from_numpy(p["pred_RTs"]),
                                        "pred_scales": torch.from_numpy(p["pred_scales"]),
                                        "pred_score": torch.from_numpy(p["pred_scores"])})
        missing = len(self.ids) - len(out)
        if missing:
            warnings.warn(f"{path}: {missing} of {len(self.ids)} images have no prediction record; they are scored "
                          "as images without detections (their GT count as misses)", stacklevel=2)
        return out

    def empty_prediction(self, sample: Sample) -> Prediction:
        f64 = torch.float64
        return Prediction(sample.sample_id, {"image_id": torch.tensor(sample.sample_id),
                                             "pred_class": torch.zeros(0, dtype=torch.long),
                                             "pred_RT": torch.zeros(0, 4, 4, dtype=f64),
                                             "pred_scales": torch.zeros(0, 3, dtype=f64),
                                             "pred_score": torch.zeros(0, dtype=f64)})


@register_dataset(*LAYOUTS)
def build_nocs(cfg) -> NocsDataset:
    """Builder for ``dataset=real275`` / ``camera25`` (bench/conf/dataset/<name>.yaml; options: data_root,
    real_iou, use_matches_for_pose)."""
    get = cfg.get if hasattr(cfg, "get") else (lambda k, d=None: getattr(cfg, k, d))
    name = str(get("name", None))
    if name not in LAYOUTS:
        raise InputError(None, None, "dataset.name", f"expected one of {', '.join(LAYOUTS)}, found {name!r}")
    root, bundled = resolve_data_root(name, get("data_root", None), [LAYOUTS[name][0]], name)
    return NocsDataset(name, root, bundled, real_iou=get("real_iou", True),
                       use_matches_for_pose=get("use_matches_for_pose", True))
