"""Read a COCO-WholeBody results JSON (mmpose's ``CocoWholeBodyMetric.results2json`` format), checked.

One record per person: ``image_id``, ``category_id``, ``keypoints`` (17 x 3), ``foot_kpts`` (6 x 3),
``face_kpts`` (68 x 3), ``lefthand_kpts`` (21 x 3), ``righthand_kpts`` (21 x 3), ``score``; optional per-part
scores ``foot_score``, ``face_score``, ``lefthand_score``, ``righthand_score``, ``wholebody_score``, which
xtcocotools ranks that part by (missing: ``score``). A malformed file raises :class:`~bench.errors.InputError`
naming the record (``index i``) and the field. Decisions as bench/predictions/coco_json.py: ``[]`` is valid
(every AP 0), NaN/Infinity, unknown image ids and other categories are errors, duplicates are kept, and a
``bbox`` in the first record makes every detection's area ``w * h`` of its box (xtcocotools' ``loadRes``);
otherwise the area is the extent of the 17 body keypoints (``loadRes`` reads ``keypoints`` only).
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.errors import InputError
from bench.predictions.coco_json import gc_paused
from bench.types import Prediction

# (field of the record, keypoints): the five arrays in mmpose's order, 133 keypoints together
PART_FIELDS: tuple[tuple[str, int], ...] = (
    ("keypoints", 17), ("foot_kpts", 6), ("face_kpts", 68), ("lefthand_kpts", 21), ("righthand_kpts", 21),
)
# per-part score keys in metrics.wholebody_ap.PARTS order (the body ranks by "score")
SCORE_FIELDS: tuple[str, ...] = ("score", "foot_score", "face_score", "lefthand_score", "righthand_score",
                                 "wholebody_score")
NUM_KEYPOINTS = sum(k for _, k in PART_FIELDS)


@dataclass
class WholeBodyResults:
    """Flat detections in file order: ``image_id`` (D,), ``keypoints`` (D, 133, 3) float64, ``part_scores``
    (D, 6) (``score`` where a record has no part score), ``area`` (D,) as ``loadRes`` sets it."""

    image_id: np.ndarray
    keypoints: np.ndarray
    part_scores: np.ndarray
    area: np.ndarray

    def __len__(self) -> int:
        return int(self.image_id.shape[0])


def _is_int(x: Any) -> bool:
    return type(x) is int


def _is_num(x: Any) -> bool:
    try:
        return type(x) in (int, float) and math.isfinite(x)
    except OverflowError:  # an integer beyond float64
        return False


def _load(path: Path) -> Any:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(path, None, "predictions", f"cannot read the predictions file ({e.strerror or e})") from None
    try:
        return json.loads(data)
    except UnicodeDecodeError as e:
        raise InputError(path, None, None, f"not a JSON file (not UTF-8 text at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise InputError(path, f"line {e.lineno} column {e.colno}", None, f"not valid JSON ({e.msg})") from None


def read_wholebody_results(path: str | Path, image_ids: Iterable[int], category_id: int = 1) -> WholeBodyResults:
    """Read and check a COCO-WholeBody results file against the GT's image ids."""
    with gc_paused():
        return _read(Path(path), {int(i) for i in image_ids}, category_id)


def _read(path: Path, valid: set[int], category_id: int) -> WholeBodyResults:
    recs = _load(path)
    if not isinstance(recs, list):
        raise InputError(path, None, None, f"expected a JSON list of result records, found {type(recs).__name__}")
    n = len(recs)
    img = np.zeros(n, np.int64)
    kp = np.zeros((n, NUM_KEYPOINTS, 3), np.float64)
    scores = np.zeros((n, len(SCORE_FIELDS)), np.float64)
    area = np.zeros(n, np.float64)
    use_bbox = n > 0 and isinstance(recs[0], dict) and "bbox" in recs[0] and recs[0]["bbox"] != []
    for i, r in enumerate(recs):
        where = f"index {i}"
        if not isinstance(r, dict):
            raise InputError(path, where, None, f"expected an object, found {type(r).__name__}")
        for f in ("image_id", "category_id", "score", *(f for f, _ in PART_FIELDS)):
            if f not in r:
                raise InputError(path, where, f, "missing")
        v = r["image_id"]
        if not _is_int(v):
            raise InputError(path, where, "image_id", f"expected an integer, found {v!r}")
        if v not in valid:
            raise InputError(path, where, "image_id", f"image {v} is not in the ground truth")
        img[i] = v
        c = r["category_id"]
        if not _is_int(c) or c != category_id:
            raise InputError(path, where, "category_id", f"expected {category_id} (person), found {c!r}")
        start = 0
        for f, k in PART_FIELDS:
            kp[i, start : start + k] = _part(path, where, f, r[f], k)
            start += k
        for j, f in enumerate(SCORE_FIELDS):
            s = r.get(f, r["score"])
            if not _is_num(s):
                raise InputError(path, where, f, f"expected a finite number, found {s!r}")
            scores[i, j] = s
        if use_bbox:
            b = r.get("bbox")
            if not isinstance(b, list) or len(b) != 4 or not all(_is_num(x) for x in b):
                raise InputError(path, where, "bbox", f"expected [x, y, w, h] (the first record has a bbox), found {b!r}")
            area[i] = float(b[2]) * float(b[3])
    if not use_bbox and n:
        x, y = kp[:, :17, 0], kp[:, :17, 1]
        area = (x.max(1) - x.min(1)) * (y.max(1) - y.min(1))
    return WholeBodyResults(img, kp, scores, area)


def _part(path: Path, where: str, field: str, k: Any, K: int) -> np.ndarray:
    """One part's ``[x, y, v] * K`` list as a (K, 3) array, or a one-line error naming the value."""
    if not isinstance(k, list):
        raise InputError(path, where, field, f"expected a list of 3*{K} numbers, found {type(k).__name__}")
    if len(k) != 3 * K:
        raise InputError(path, where, field, f"expected {3 * K} numbers ({K} keypoints x 3), found {len(k)}")
    for j, x in enumerate(k):
        if not _is_num(x):
            raise InputError(path, where, field, f"value {j}: expected a finite number, found {x!r}")
    return np.asarray(k, dtype=np.float64).reshape(K, 3)


def results_to_predictions(res: WholeBodyResults) -> dict[int, Prediction]:
    """One Prediction per image that has detections, file order kept inside an image."""
    if len(res) == 0:
        return {}
    order = np.argsort(res.image_id, kind="stable")
    ids = res.image_id[order]
    cut = np.flatnonzero(np.diff(ids)) + 1
    starts = np.concatenate([[0], cut])
    counts = np.diff(np.concatenate([starts, [len(ids)]])).tolist()
    o = torch.from_numpy(order)

    def grouped(a: np.ndarray) -> tuple[torch.Tensor, ...]:
        return torch.from_numpy(a)[o].split(counts)

    kps, ps, areas = grouped(res.keypoints), grouped(res.part_scores), grouped(res.area)
    out: dict[int, Prediction] = {}
    for n, i in enumerate(ids[starts].tolist()):
        out[i] = Prediction(i, {"image_id": torch.tensor(i, dtype=torch.long), "keypoints": kps[n],
                                "scores": ps[n][:, 0].contiguous(), "part_scores": ps[n], "area": areas[n]})
    return out
