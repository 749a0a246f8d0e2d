"""BOP 2022 COCO results JSON (2D detection / instance segmentation) -> checked records, and COCO RLE decoding.

Format (bop_toolkit ``inout.check_coco_results``, ``eval_bop22_coco.py``): a JSON list of
``{"scene_id": int, "image_id": int, "category_id": int, "score": float, "bbox": [x, y, w, h],
"segmentation": {"counts": str | [int, ...], "size": [h, w]}, "time": float}``; ``bbox`` is required for
``bbox``, ``segmentation`` (RLE, compressed or not) for ``segm``; ``time`` is optional (then
``average_time_per_image`` is -1).

Checks, each failing with one :class:`InputError` naming the record (``index i``) and the field: the toolkit's
(an empty list, missing keys, non-integer ids, a non-number score, a segmentation that is not an RLE dict,
times of one image differing by more than 0.001 s) and more: NaN/inf in score, bbox or time, a bbox that is
not 4 numbers, an RLE whose runs are not non-negative or do not add up to ``h * w`` (the toolkit's pycocotools
reads such strings past their end or scores garbage). A ``bbox`` of ``[]`` (bbox) is skipped, as the toolkit
skips records with an empty box, but its time still counts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numba
import numpy as np

from bench.errors import InputError, load_json
from bench.predictions.bop_csv import IM_ID_LIMIT, TIME_TOL

TASKS = ("bbox", "segm")


@dataclass
class CocoRecord:
    """One checked result: ``bbox`` None when absent (segm) or empty (skipped for bbox); ``rle`` the
    uncompressed column-major run lengths (segm) and ``size`` (h, w); ``time`` None when absent."""

    index: int
    scene_id: int
    image_id: int
    category_id: int
    score: float
    bbox: tuple[float, float, float, float] | None
    rle: np.ndarray | None
    size: tuple[int, int] | None
    time: float | None


@numba.njit(cache=True)
def _decode(chars: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """COCO's compressed RLE string (LEB128-like, 5 bits a char, deltas from the run two back) -> run lengths.
    A character outside '0'..'o' or a string that ends inside a number gives a run of -1 (refused by caller)."""
    out = np.empty(chars.size, np.int64)
    m = 0
    p = 0
    while p < chars.size:
        x = 0
        k = 0
        more = 1
        while more:
            if p >= chars.size:
                out[m] = -1
                return out[: m + 1]
            c = chars[p] - 48
            if c < 0 or c > 63:
                out[m] = -1
                return out[: m + 1]
            x |= (c & 0x1F) << (5 * k)
            more = c & 0x20
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if m > 2:
            x += out[m - 2]
        out[m] = x
        m += 1
    return out[:m]


def decode_rle(path: Path, record: str, field: str, seg: Any, expect: tuple[int, int] | None = None
               ) -> tuple[np.ndarray, tuple[int, int]]:
    """An RLE dict (``counts`` string or list, ``size`` [h, w]) -> (run lengths int64, (h, w)), checked.

    >>> decode_rle(Path("r.json"), "index 0", "segmentation", {"counts": "522", "size": [3, 3]})[0].tolist()
    [5, 2, 2]
    """
    if not isinstance(seg, dict) or "counts" not in seg or "size" not in seg:
        raise InputError(path, record, field, "expected an RLE object with 'counts' and 'size'")
    size = seg["size"]
    if (not isinstance(size, list) or len(size) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in size)):
        raise InputError(path, record, f"{field}.size", f"expected [height, width] (positive integers), got {size!r}")
    h, w = size
    counts = seg["counts"]
    if isinstance(counts, str):
        runs = _decode(np.frombuffer(counts.encode("latin-1", "replace"), dtype=np.uint8).astype(np.int64))
    elif isinstance(counts, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in counts):
        runs = np.asarray(counts, dtype=np.int64)
    else:
        raise InputError(path, record, f"{field}.counts", "expected a compressed RLE string or a list of integers")
    if (runs < 0).any():
        raise InputError(path, record, f"{field}.counts", "not a valid RLE (a negative or unreadable run)")
    if int(runs.sum()) != h * w:
        raise InputError(path, record, f"{field}.counts",
                         f"the runs cover {int(runs.sum())} pixels, not height x width = {h * w}")
    if expect is not None and (h, w) != expect:
        raise InputError(path, record, f"{field}.size", f"expected the image size {list(expect)}, got {[h, w]}")
    return runs, (h, w)


def _int(path: Path, record: str, rec: dict, field: str, limit: int | None = None) -> int:
    if field not in rec:
        raise InputError(path, record, field, "missing")
    v = rec[field]
    if isinstance(v, bool) or not isinstance(v, int) or v < 0 or (limit is not None and v >= limit):
        want = f"an integer in [0, {limit})" if limit else "an integer >= 0"
        raise InputError(path, record, field, f"expected {want}, got {v!r}")
    return v


def _number(path: Path, record: str, field: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise InputError(path, record, field, f"expected a finite number, got {v!r}")
    return float(v)


def read_bop22_results(path: str | Path, task: str) -> list[CocoRecord]:
    """The records of a BOP22 COCO results file in file order, checked for ``task`` (bbox | segm)."""
    path = Path(path)
    data = load_json(path, "results file not found")
    if not isinstance(data, list) or not data:
        raise InputError(path, None, None, "expected a non-empty JSON list of results (the toolkit refuses "
                                           "an empty one)")
    out: list[CocoRecord] = []
    times: dict[tuple[int, int], float] = {}
    for i, rec in enumerate(data):
        r = f"index {i}"
        if not isinstance(rec, dict):
            raise InputError(path, r, None, "expected a JSON object")
        scene = _int(path, r, rec, "scene_id")
        im = _int(path, r, rec, "image_id", IM_ID_LIMIT)
        cat = _int(path, r, rec, "category_id")
        if "score" not in rec:
            raise InputError(path, r, "score", "missing")
        score = _number(path, r, "score", rec["score"])
        bbox = None
        if "bbox" in rec:
            b = rec["bbox"]
            if not isinstance(b, list) or (b and len(b) != 4):
                raise InputError(path, r, "bbox", f"expected [x, y, w, h], got {str(b)[:60]}")
            if b:
                bbox = tuple(_number(path, r, "bbox", v) for v in b)
        elif task == "bbox":
            raise InputError(path, r, "bbox", "missing (dataset.task=bbox scores boxes)")
        rle = size = None
        if task == "segm":
            if "segmentation" not in rec:
                raise InputError(path, r, "segmentation", "missing (dataset.task=segm scores RLE masks)")
            rle, size = decode_rle(path, r, "segmentation", rec["segmentation"])
        time = None
        if "time" in rec:
            time = _number(path, r, "time", rec["time"])
            if time >= 0:
                seen = times.setdefault((scene, im), time)
                if abs(seen - time) > TIME_TOL:
                    raise InputError(path, r, "time", f"{time} but {seen} on an earlier record of scene {scene} "
                                                      f"image {im} (one time per image)")
        out.append(CocoRecord(i, scene, im, cat, score, bbox, rle, size, time))
    return out


def image_times(records: list[CocoRecord]) -> dict[tuple[int, int], float] | None:
    """Each image's time (first non-negative), or None when any record has no time or a negative one (the
    toolkit's ``check_consistent_timings``: then ``average_time_per_image`` is -1)."""
    times: dict[tuple[int, int], float] = {}
    for rec in records:
        if rec.time is None or rec.time < 0:
            return None
        times.setdefault((rec.scene_id, rec.image_id), rec.time)
    return times
