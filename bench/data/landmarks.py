"""Face (300W, WFLW, COFW, AFLW) and hand (OneHand10K, RHD) landmarks: one Sample per scored GT instance.

Layout under ``data_root``: mmpose's converted COCO-style annotation file (``annotations/<file>``, table
below; images in ``images/`` for model runs). What mmpose 1.x (open-mmlab/mmpose @ 759b39c, the dataset classes
in ``mmpose/datasets/datasets/{face,hand}/`` and ``BaseCocoStyleDataset``, top-down, test mode) does, and this
reader reproduces:

- Data list order: images in JSON order (duplicate image ids are refused), each image's annotations in JSON
  order; annotations of unknown images are never read. ``sample_id`` is the position in that list, since it
  fixes the float32 summation order of mmpose's NME / EPE.
- GT: ``keypoints`` (flat ``[x, y, v, ...]`` or nested ``[[x, y, v], ...]``) as float32; a keypoint is scored
  when ``v != 0``. Box: 300W, WFLW and AFLW build it from ``center`` and ``scale`` (``200 * scale`` wide, in
  float32); COFW, OneHand10K and RHD clip the COCO ``bbox`` to ``[0, W - 1] x [0, H - 1]`` (``x2 = x + w``).
- Dropped before scoring (``_is_valid_instance``): crowd, ``num_keypoints == 0`` (counted from the keypoints
  when the field is absent), a box with no width or height, all keypoint coordinates <= 0.
- Normaliser (``norm``): 300W the GT distance of keypoints 36/45, WFLW 60/72, COFW 8/9 (mmpose ``NME``
  ``keypoint_distance``); AFLW the larger box side (``use_norm_item='bbox_size'``: mmpose reads it from the box,
  i.e. ``200 * scale`` in float32, not the annotation's ``box_size``, which must be present as mmpose asserts);
  hands the larger side of the clipped box (``PCKAccuracy(thr=0.2)``).

Metrics: :class:`metrics.landmarks.FaceNME` (faces) and :class:`metrics.landmarks.HandPCK` (hands).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.data.base import BenchmarkDataset, resolve_data_root
from bench.errors import InputError, load_json
from bench.predictions.landmarks_json import read_landmark_predictions
from bench.registry import register_dataset
from bench.types import Prediction, Sample
from metrics.landmarks import FACE_KEYS, HAND_KEYS, FaceNME, HandPCK


@dataclass(frozen=True)
class LandmarkSpec:
    """What differs between the six datasets."""

    name: str
    family: str  # face2d | hand2d
    ann_file: str
    num_keypoints: int
    box: str  # "center_scale" (box from center and 200 x scale) | "coco" (clipped COCO bbox)
    norm_pair: tuple[int, int] | None  # GT keypoints whose distance normalises the NME; None: the box size


SPECS = {s.name: s for s in (
    LandmarkSpec("300w", "face2d", "annotations/face_landmarks_300w_test.json", 68, "center_scale", (36, 45)),
    LandmarkSpec("wflw", "face2d", "annotations/face_landmarks_wflw_test.json", 98, "center_scale", (60, 72)),
    LandmarkSpec("cofw", "face2d", "annotations/cofw_test.json", 29, "coco", (8, 9)),
    LandmarkSpec("aflw", "face2d", "annotations/face_landmarks_aflw_test.json", 19, "center_scale", None),
    LandmarkSpec("onehand10k", "hand2d", "annotations/onehand10k_test.json", 21, "coco", None),
    LandmarkSpec("rhd", "hand2d", "annotations/rhd_test.json", 21, "coco", None),
)}


@dataclass(frozen=True)
class Instance:
    """One scored GT instance."""

    ann_id: int
    file_name: str
    keypoints: np.ndarray  # (K, 2) float32
    visible: np.ndarray  # (K,) bool
    bbox: np.ndarray  # (4,) float32 x1, y1, x2, y2
    norm: np.float32


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)


def _need(path: Path, rec: str, a: dict, field: str, check, what: str) -> Any:
    v = a.get(field)
    if field not in a or not check(v):
        raise InputError(path, rec, field, f"expected {what}, got {v!r}" if field in a else "missing")
    return v


def _box(spec: LandmarkSpec, path: Path, rec: str, a: dict, img: dict) -> np.ndarray:
    """The instance's box in mmpose's float32 ``[x1, y1, x2, y2]``."""
    if spec.box == "center_scale":
        c = _need(path, rec, a, "center", lambda v: isinstance(v, list) and len(v) == 2 and all(map(_number, v)),
                  "[x, y]")
        s = _need(path, rec, a, "scale", _number, "a number")
        center = np.array(c, dtype=np.float32)
        wh = np.array([s, s], dtype=np.float32) * 200.0
        xy = center - 0.5 * wh
        return np.concatenate([xy, xy + wh])
    x, y, w, h = _need(path, rec, a, "bbox", lambda v: isinstance(v, list) and len(v) == 4 and all(map(_number, v)),
                       "[x, y, w, h]")
    W, H = img["width"], img["height"]
    return np.array([np.clip(x, 0, W - 1), np.clip(y, 0, H - 1), np.clip(x + w, 0, W - 1), np.clip(y + h, 0, H - 1)],
                    dtype=np.float32)


def _keypoints(spec: LandmarkSpec, path: Path, rec: str, a: dict) -> np.ndarray:
    kp = a.get("keypoints")
    flat = kp
    if isinstance(kp, list) and kp and isinstance(kp[0], list):
        flat = [v for p in kp for v in (p if isinstance(p, list) else [None])]
    if not (isinstance(flat, list) and len(flat) == 3 * spec.num_keypoints and all(map(_number, flat))):
        raise InputError(path, rec, "keypoints", f"expected {spec.num_keypoints} finite [x, y, v] triples"
                         if "keypoints" in a else "missing")
    return np.array(flat, dtype=np.float32).reshape(spec.num_keypoints, 3)


def load_instances(spec: LandmarkSpec, path: Path) -> tuple[list[Instance], frozenset[int]]:
    """The scored instances in mmpose's data-list order, and the ids of the annotations it drops."""
    data = load_json(path, missing="annotation file not found")
    if not isinstance(data, dict):
        raise InputError(path, None, None, "expected a COCO-style JSON object")
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise InputError(path, None, key, "missing or not a list")
    images: dict[int, dict] = {}
    for j, img in enumerate(data["images"]):
        rec = f"images[{j}]"
        if not isinstance(img, dict) or not isinstance(img.get("id"), int):
            raise InputError(path, rec, "id", "expected an object with an integer id")
        if img["id"] in images:
            raise InputError(path, rec, "id", f"duplicate image id {img['id']}")
        if spec.box == "coco":
            for f in ("width", "height"):
                _need(path, rec, img, f, _number, "a number")
        images[img["id"]] = img
    by_image: dict[int, list[tuple[int, dict]]] = {}
    for i, a in enumerate(data["annotations"]):
        rec = f"annotations[{i}]"
        if not isinstance(a, dict):
            raise InputError(path, rec, None, "not an object")
        for f in ("id", "image_id"):
            _need(path, rec, a, f, lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer")
        by_image.setdefault(a["image_id"], []).append((i, a))

    kept: list[Instance] = []
    dropped: set[int] = set()
    seen: set[int] = set()
    for img_id, img in images.items():
        for i, a in by_image.get(img_id, []):
            rec = f"annotations[{i}]"
            if a["id"] in seen:
                raise InputError(path, rec, "id", f"duplicate annotation id {a['id']}")
            seen.add(a["id"])
            inst = _instance(spec, path, rec, a, img)
            if inst is None:
                dropped.add(a["id"])
            else:
                kept.append(inst)
    return kept, frozenset(dropped)


def _instance(spec: LandmarkSpec, path: Path, rec: str, a: dict, img: dict) -> Instance | None:
    """mmpose's ``parse_data_info`` then ``_is_valid_instance``; None when the instance is not scored."""
    if spec.box == "coco" and ("bbox" not in a or "keypoints" not in a):
        return None
    box = _box(spec, path, rec, a, img)
    kp = _keypoints(spec, path, rec, a)
    xy, v = kp[:, :2], kp[:, 2]
    if spec.box == "center_scale" or "num_keypoints" in a:
        num = _need(path, rec, a, "num_keypoints", _number, "a number")
    else:
        num = int(np.count_nonzero(xy.max(axis=1)))
    if spec.name == "aflw":
        _need(path, rec, a, "box_size", _number, "a number")  # mmpose asserts it in test mode
    if a.get("iscrowd", 0) or num == 0:
        return None
    w, h = box[2:] - box[:2]
    if w <= 0 or h <= 0 or xy.max() <= 0:
        return None
    if spec.norm_pair is not None:
        d = xy[spec.norm_pair[0]] - xy[spec.norm_pair[1]]
        norm = np.sqrt(d[0] * d[0] + d[1] * d[1])
    else:
        norm = np.max(box[2:] - box[:2])
    return Instance(a["id"], str(img.get("file_name", "")), xy.copy(), v != 0, box, np.float32(norm))


class LandmarkDataset(BenchmarkDataset):
    """One of the six landmark datasets (``SPECS``), one Sample per scored instance."""

    def __init__(self, spec: LandmarkSpec, root: Path, bundled: bool = False):
        super().__init__(spec.name, root, bundled)
        self.spec = spec
        self.family = spec.family
        self.metric_keys = FACE_KEYS if spec.family == "face2d" else HAND_KEYS
        self.ann_path = self.root / spec.ann_file
        self.instances, self.dropped = load_instances(spec, self.ann_path)
        self.sample_of = {inst.ann_id: n for n, inst in enumerate(self.instances)}

    def __len__(self) -> int:
        return len(self.instances)

    def __getitem__(self, index: int) -> Sample:
        inst = self.instances[index]
        target = {"sample_id": torch.tensor(index, dtype=torch.int64),
                  "keypoints": torch.from_numpy(inst.keypoints),
                  "visible": torch.from_numpy(inst.visible),
                  "norm": torch.tensor(float(inst.norm), dtype=torch.float32)}
        inputs = {"ann_id": inst.ann_id, "image_path": str(self.root / "images" / inst.file_name),
                  "bbox_xyxy": torch.from_numpy(inst.bbox)}
        return Sample(sample_id=index, target=target, inputs=inputs)

    def gt_files(self) -> Iterable[Path]:
        return [self.ann_path]

    def build_metric(self) -> FaceNME | HandPCK:
        return FaceNME() if self.spec.family == "face2d" else HandPCK()

    def read_predictions(self, path: Path) -> dict[int, Prediction]:
        return read_landmark_predictions(path, self.sample_of, self.spec.num_keypoints, self.dropped)


def _builder(name: str):
    spec = SPECS[name]

    @register_dataset(name)
    def build(cfg: Any) -> LandmarkDataset:
        get = cfg.get if hasattr(cfg, "get") else (lambda k, d=None: getattr(cfg, k, d))
        root, bundled = resolve_data_root(name, get("data_root", None), [spec.ann_file], name)
        return LandmarkDataset(spec, root, bundled)

    build.__doc__ = f"Builder for ``dataset={name}`` (option: data_root)."
    return build


for _name in SPECS:
    _builder(_name)
