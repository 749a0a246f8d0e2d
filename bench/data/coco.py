"""COCO person keypoints (val2017) in the official layout -> one Sample per image, scored by KeypointAP.

Layout under ``data_root``: ``annotations/person_keypoints_val2017.json`` and the images in ``val2017/``.
Model runs also need person boxes: ``dataset.person_boxes=FILE`` (COCO detection results, e.g. mmpose's
``COCO_val2017_detections_AP_H_56_person.json``); without it, the GT boxes of the annotated people are used
(non-crowd, at least one labelled keypoint: mmpose's GT-box setting). The bundled 4-image sample ships the
AP_H_56 boxes and uses them by default.

Every image of the annotation file is scored, also those without people (pycocotools does the same), and
the GT file is checked: a malformed annotation raises InputError naming the annotation and the field.
"""
from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.data.base import BenchmarkDataset, resolve_data_root
from bench.errors import InputError
from bench.predictions.coco_json import gc_paused, read_coco_keypoint_results, results_to_predictions
from bench.registry import register_dataset
from bench.types import Prediction, Sample
from metrics.keypoint_ap import STAT_KEYS, KeypointAP
from metrics.skeletons import COCO_SIGMAS

try:
    import simdjson as _json_fast
except ImportError:  # pragma: no cover
    _json_fast = None

ANN_FILE = "annotations/person_keypoints_val2017.json"
IMAGE_DIR = "val2017"
BUNDLED_BOXES = "person_detection_results/COCO_val2017_detections_AP_H_56_person.json"


def _load_json(path: Path) -> Any:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(path, None, None, f"cannot read ({e.strerror or e})") from None
    try:
        return _json_fast.loads(data) if _json_fast is not None else json.loads(data)
    except (ValueError, RuntimeError):  # simdjson raises RuntimeError for integers beyond 64 bits
        try:  # the standard parser says where (and accepts NaN and big integers, which the checks below reject)
            return json.loads(data)
        except UnicodeDecodeError as e:
            raise InputError(path, None, None, f"not a JSON file (not UTF-8 text at byte {e.start})") from None
        except json.JSONDecodeError as e:
            raise InputError(path, f"line {e.lineno} column {e.colno}", None, f"not valid JSON ({e.msg})") from None


def _is_int(x: Any) -> bool:
    return type(x) is int


def _is_num(x: Any) -> bool:
    return type(x) is int or (type(x) is float and math.isfinite(x))


def _keypoint_array(lists: list, K: int) -> np.ndarray | None:
    """All keypoint lists as one (N, K, 3) float64 array, or None if any is not 3K finite numbers."""
    if not lists:
        return np.zeros((0, K, 3), np.float64)
    if set(map(type, lists)) != {list} or set(map(len, lists)) != {3 * K}:
        return None
    if not set(map(type, itertools.chain.from_iterable(lists))) <= {int, float}:
        return None
    try:
        arr = np.array(lists, dtype=np.float64)
    except (OverflowError, ValueError):
        return None
    return arr.reshape(-1, K, 3) if np.isfinite(arr).all() else None


@dataclass
class CocoKeypointGT:
    """The GT of a COCO keypoints file, flat arrays in file order (annotation i belongs to ``ann_image[i]``)."""

    path: Path
    category_id: int
    num_keypoints: int
    keypoint_names: list[str]
    images: list[dict]  # {"id", "file_name", "width", "height"} in file order
    ann_id: np.ndarray
    ann_image: np.ndarray
    keypoints: np.ndarray  # (G, K, 3) float64
    area: np.ndarray
    bbox: np.ndarray  # (G, 4) xywh
    iscrowd: np.ndarray  # (G,) bool
    num_kpts: np.ndarray  # (G,) int64 (the annotation's num_keypoints field, trusted as pycocotools does)


def read_coco_keypoint_gt(path: str | Path) -> CocoKeypointGT:
    """Read and check a COCO person-keypoints annotation file."""
    with gc_paused():
        return _read_gt(Path(path))


def check_gt_header(path: Path, d) -> tuple[int, list | None]:
    """Check the top level of a COCO-style keypoint GT file; return the person category id and its
    keypoint names (shared by the COCO and CrowdPose readers)."""
    if not isinstance(d, dict):
        raise InputError(path, None, None, f"expected a JSON object with images/annotations/categories, found {type(d).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(d.get(key), list):
            raise InputError(path, None, key, "missing or not a list")
    cats = d["categories"]
    if len(cats) != 1 or not isinstance(cats[0], dict) or not _is_int(cats[0].get("id")):
        raise InputError(path, "categories", "id", f"expected exactly one (person) category with an integer id, found {len(cats)}")
    return cats[0]["id"], cats[0].get("keypoints")


def read_image_table(path: Path, d: dict, name_format: str = "{:012d}.jpg") -> tuple[list[dict], set[int]]:
    """The ``images`` of a COCO-format file, checked (integer id, width, height; ids unique): the image records
    and the set of ids. ``name_format`` gives the file name of an image without one."""
    images: list[dict] = []
    seen: set[int] = set()
    for i, im in enumerate(d["images"]):
        where = f"images index {i}"
        if not isinstance(im, dict):
            raise InputError(path, where, None, "expected an object")
        for f in ("id", "width", "height"):
            if not _is_int(im.get(f)):
                raise InputError(path, where, f, f"expected an integer, found {im.get(f)!r}")
        if im["id"] in seen:
            raise InputError(path, where, "id", f"image id {im['id']} appears twice")
        seen.add(im["id"])
        images.append({"id": im["id"], "file_name": str(im.get("file_name", name_format.format(im["id"]))),
                       "width": im["width"], "height": im["height"]})
    return images, seen


def keypoint_column(path: Path, anns: list, field: str, K: int) -> np.ndarray:
    """``(N, K, 3)`` float64 from each annotation's ``field``, or one line naming the first bad annotation."""
    kp = _keypoint_array([a.get(field) for a in anns], K)
    if kp is not None:
        return kp
    for i, a in enumerate(anns):
        k = a.get(field)
        if _keypoint_array([k], K) is None:
            found = f"{len(k)} values" if isinstance(k, list) else repr(k)
            if isinstance(k, list) and len(k) == 3 * K:
                found = repr(next((x for x in k if not _is_num(x)), None))
            raise InputError(path, f"annotations index {i}", field, f"expected {3 * K} finite numbers, found {found}")
    raise InputError(path, "annotations", field, "malformed keypoints")  # pragma: no cover


def _read_gt(path: Path) -> CocoKeypointGT:
    d = _load_json(path)
    cat, names = check_gt_header(path, d)
    images, seen = read_image_table(path, d)
    anns = d["annotations"]
    K = None
    if isinstance(names, list) and names:
        K = len(names)
    elif anns and isinstance(anns[0], dict) and isinstance(anns[0].get("keypoints"), list):
        K = len(anns[0]["keypoints"]) // 3
    if not K:
        raise InputError(path, "categories", "keypoints", "cannot tell the number of keypoints")
    cols = _annotation_columns(anns, seen, cat)
    if cols is None:  # something is wrong: find and name the first bad annotation
        _check_annotations(path, anns, seen, cat)
        raise InputError(path, "annotations", None, "malformed annotations")  # pragma: no cover
    ann_id, ann_image, area, bbox, crowd, nkp = cols
    kp = keypoint_column(path, anns, "keypoints", K)
    return CocoKeypointGT(path, cat, K, list(names) if isinstance(names, list) else [], images,
                          ann_id, ann_image, kp, area, bbox, crowd, nkp)


def _annotation_columns(anns: list, seen: set, cat: int):
    """The scalar annotation fields as arrays, checked column by column; None if anything is off."""
    if not anns:
        return (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 4)), np.zeros(0, bool),
                np.zeros(0, np.int64))
    if set(map(type, anns)) != {dict}:
        return None
    try:
        ids, img, cats, nk = ([a[f] for a in anns] for f in ("id", "image_id", "category_id", "num_keypoints"))
        area, bbox = [a["area"] for a in anns], [a["bbox"] for a in anns]
    except KeyError:
        return None
    crowd = [a.get("iscrowd", 0) for a in anns]
    if not all(set(map(type, c)) == {int} for c in (ids, img, cats, nk)):
        return None
    if not set(map(type, area)) <= {int, float} or not set(map(type, crowd)) <= {int, bool}:
        return None
    if set(map(type, bbox)) != {list} or set(map(len, bbox)) != {4}:
        return None
    if not set(map(type, itertools.chain.from_iterable(bbox))) <= {int, float}:
        return None
    try:
        out = (np.array(ids, np.int64), np.array(img, np.int64), np.array(area, np.float64),
               np.array(bbox, np.float64), np.array(crowd, bool), np.array(nk, np.int64))
    except OverflowError:
        return None
    if not (np.isfinite(out[2]).all() and np.isfinite(out[3]).all() and (np.array(cats) == cat).all()):
        return None
    if not np.isin(out[1], np.fromiter(seen, np.int64, len(seen))).all():
        return None
    return out


def _check_annotations(path: Path, anns: list, seen: set, cat: int) -> None:
    """Record-by-record checks that name the first bad annotation and field."""
    for i, a in enumerate(anns):
        where = f"annotations index {i}"
        if not isinstance(a, dict):
            raise InputError(path, where, None, "expected an object")
        for f in ("id", "image_id", "category_id", "num_keypoints"):
            if not _is_int(a.get(f)):
                raise InputError(path, where, f, f"expected an integer, found {a.get(f)!r}")
        if a["image_id"] not in seen:
            raise InputError(path, where, "image_id", f"image {a['image_id']} is not in 'images'")
        if a["category_id"] != cat:
            raise InputError(path, where, "category_id", f"expected {cat}, found {a['category_id']}")
        b = a.get("bbox")
        if not isinstance(b, list) or len(b) != 4 or not all(_is_num(x) for x in b):
            raise InputError(path, where, "bbox", f"expected [x, y, w, h], found {b!r}")
        if not _is_num(a.get("area")):
            raise InputError(path, where, "area", f"expected a finite number, found {a.get('area')!r}")
        c = a.get("iscrowd", 0)
        if type(c) not in (int, bool):
            raise InputError(path, where, "iscrowd", f"expected 0 or 1, found {c!r}")


def read_person_boxes(path: str | Path, image_ids: Iterable[int], category_id: int = 1) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """COCO detection results -> {image_id: (boxes (N, 4) xywh, scores (N,))}, person boxes only, file order.

    Boxes of images that are not in the GT are skipped (a full val2017 file used with a subset).
    """
    with gc_paused():
        return _read_boxes(Path(path), image_ids, category_id)


def _read_boxes(path: Path, image_ids: Iterable[int], category_id: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    recs = _load_json(path)
    if not isinstance(recs, list):
        raise InputError(path, None, None, f"expected a JSON list of detections, found {type(recs).__name__}")
    wanted = set(image_ids)
    out: dict[int, list] = {}
    for i, r in enumerate(recs):
        where = f"index {i}"
        if not isinstance(r, dict):
            raise InputError(path, where, None, "expected an object")
        for f in ("image_id", "category_id"):
            if not _is_int(r.get(f)):
                raise InputError(path, where, f, f"expected an integer, found {r.get(f)!r}")
        b = r.get("bbox")
        if not isinstance(b, list) or len(b) != 4 or not all(_is_num(x) for x in b):
            raise InputError(path, where, "bbox", f"expected [x, y, w, h], found {b!r}")
        s = r.get("score", 1.0)
        if not _is_num(s):
            raise InputError(path, where, "score", f"expected a finite number, found {s!r}")
        if r["category_id"] != category_id or r["image_id"] not in wanted:
            continue
        out.setdefault(r["image_id"], []).append((b, s))
    return {k: (np.array([b for b, _ in v], np.float64), np.array([s for _, s in v], np.float64)) for k, v in out.items()}


def image_targets(g: CocoKeypointGT, image_ids: list[int], num_keypoints: np.ndarray
                  ) -> tuple[list[dict[str, torch.Tensor]], list[torch.Tensor]]:
    """Each image's GT columns (file order inside an image) and the GT boxes of its annotated, non-crowd people
    (the person boxes when no detector boxes are given). ``num_keypoints``: per annotation, the count that
    decides 'annotated' (COCO: the field; whole-body: the labelled body keypoints)."""
    order = np.argsort(g.ann_image, kind="stable")
    img = g.ann_image[order]
    ids = np.asarray(image_ids, np.int64)
    counts = (np.searchsorted(img, ids, "right") - np.searchsorted(img, ids, "left")).tolist()
    o = torch.from_numpy(order)
    cols = {
        "keypoints": torch.from_numpy(g.keypoints)[o], "area": torch.from_numpy(g.area)[o],
        "bbox": torch.from_numpy(g.bbox)[o], "iscrowd": torch.from_numpy(g.iscrowd)[o],
        "num_keypoints": torch.from_numpy(np.asarray(num_keypoints))[o], "ann_id": torch.from_numpy(g.ann_id)[o],
    }
    parts = {k: v.split(counts) for k, v in cols.items()}
    keep = ~cols["iscrowd"] & (cols["num_keypoints"] > 0)
    kept_counts = [int(x) for x in torch.stack([p.sum() for p in keep.split(counts)]).tolist()] if counts else []
    boxes = list(cols["bbox"][keep].split(kept_counts)) if counts else []
    targets = [{"image_id": torch.tensor(i, dtype=torch.long), **{k: parts[k][n] for k in cols}}
               for n, i in enumerate(image_ids)]
    return targets, boxes


class CocoKeypoints(BenchmarkDataset):
    """COCO val2017 person keypoints; ``sample_id`` is the image id, samples in image-id order."""

    family = "human2d"
    metric_keys = STAT_KEYS
    default_sigmas = COCO_SIGMAS

    @staticmethod
    def read_gt(path: Path):
        """The GT reader of this format (CrowdPose overrides it)."""
        return read_coco_keypoint_gt(path)

    def __init__(self, root: Path, bundled: bool = False, person_boxes: str | Path | None = None,
                 sigmas=None, name: str = "coco", ann_file: str = ANN_FILE, image_dir: str = IMAGE_DIR):
        super().__init__(name, root, bundled)
        self.ann_path = self.root / ann_file
        self.image_dir = self.root / image_dir
        self._image_dir_str = str(self.image_dir)
        self.gt = self.read_gt(self.ann_path)
        K = self.gt.num_keypoints
        self.sigmas = (self.default_sigmas.clone() if sigmas is None
                       else torch.as_tensor(list(sigmas), dtype=torch.float64))
        if self.sigmas.numel() != K:
            raise InputError(None, None, "dataset.sigmas", f"expected {K} sigmas (one per keypoint), found {self.sigmas.numel()}")
        self.images = sorted(self.gt.images, key=lambda im: im["id"])
        self.image_ids = [im["id"] for im in self.images]
        self.person_boxes_file = None if person_boxes is None else Path(person_boxes)
        self._boxes = (read_person_boxes(self.person_boxes_file, self.image_ids, self.gt.category_id)
                       if self.person_boxes_file is not None else None)
        with gc_paused():
            self._targets = self._build_targets()

    def _build_targets(self) -> list[dict[str, torch.Tensor]]:
        targets, self._gt_boxes = image_targets(self.gt, self.image_ids, self.gt.num_kpts)
        return targets

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Sample:
        im = self.images[index]
        boxes, scores = self._boxes_of(index)
        inputs = {"image_path": f"{self._image_dir_str}/{im['file_name']}", "width": im["width"], "height": im["height"],
                  "person_boxes": boxes, "person_scores": scores}
        return Sample(sample_id=im["id"], target=self._targets[index], inputs=inputs)

    def _boxes_of(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._boxes is not None:
            boxes, scores = self._boxes.get(self.image_ids[index], (np.zeros((0, 4)), np.zeros(0)))
            return torch.from_numpy(boxes), torch.from_numpy(scores)
        return self._gt_boxes[index], torch.ones(self._gt_boxes[index].shape[0], dtype=torch.float64)

    def gt_files(self) -> Iterable[Path]:
        return [self.ann_path]

    def build_metric(self) -> KeypointAP:
        return KeypointAP(sigmas=self.sigmas)

    def read_predictions(self, path: Path) -> dict[int, Prediction]:
        res = read_coco_keypoint_results(path, self.image_ids, self.gt.num_keypoints, self.gt.category_id)
        return results_to_predictions(res)

    def results_recorder(self, method: str):
        """A model run's COCO keypoint results JSON (bench/results_file.py), which ``predictions=`` reads back."""
        from bench.results_file import CocoKeypointResultsRecorder, coco_results_name

        return (coco_results_name(self.ann_path.name, method),
                CocoKeypointResultsRecorder(self.gt.category_id, self.gt.num_keypoints))

    def empty_prediction(self, sample: Sample) -> Prediction:
        K = self.gt.num_keypoints
        return Prediction(sample.sample_id, {"image_id": torch.tensor(sample.sample_id, dtype=torch.long),
                                             "keypoints": torch.zeros(0, K, 3, dtype=torch.float64),
                                             "scores": torch.zeros(0, dtype=torch.float64)})


def build_keypoint_dataset(cls, name: str, ann_file: str, bundled_boxes: str, cfg):
    """Build a COCO-format keypoint dataset (options: data_root, person_boxes, sigmas); on the bundled
    sample the bundled detector boxes are the default person boxes."""
    get = cfg.get if hasattr(cfg, "get") else (lambda k, d=None: getattr(cfg, k, d))
    root, bundled = resolve_data_root(name, get("data_root", None), [ann_file], name)
    boxes = get("person_boxes", None)
    if boxes is None and bundled:
        boxes = root / bundled_boxes
    sigmas = get("sigmas", None)
    return cls(root, bundled, person_boxes=boxes, sigmas=None if sigmas is None else list(sigmas))


@register_dataset("coco")
def build_coco(cfg) -> CocoKeypoints:
    """Builder for ``dataset=coco`` (options: data_root, person_boxes, sigmas)."""
    return build_keypoint_dataset(CocoKeypoints, "coco", ANN_FILE, BUNDLED_BOXES, cfg)
