"""Read a COCO keypoint results JSON whose records name one of several GT categories (AP-10K's 54 species).

The format is bench/predictions/coco_json.py's (``image_id``, ``category_id``, ``keypoints``, ``score``, an
optional ``bbox``) with the same fast path, checks and decisions, except that ``category_id`` may be any category
of the GT file. A record without one, or with one the GT file does not list, is an error naming the record:
xtcocotools would crash on the first (``KeyError``) and silently skip the second (``getAnnIds(catIds=...)``), which
hides a results file written with another category numbering.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from bench.errors import InputError
from bench.predictions import coco_json
from bench.predictions.coco_json import CocoKeypointResults, gc_paused


def read_category_keypoint_results(
    path: str | Path, image_ids: Iterable[int], num_keypoints: int, categories: Sequence[int]
) -> tuple[CocoKeypointResults, np.ndarray]:
    """The checked results (file order) and each record's ``category_id`` (D,) int64."""
    with gc_paused():
        return _read(Path(path), image_ids, num_keypoints, tuple(int(c) for c in categories))


def _read(path: Path, image_ids: Iterable[int], K: int, categories: tuple[int, ...]):
    valid = np.unique(np.fromiter((int(i) for i in image_ids), dtype=np.int64))
    known = np.asarray(sorted(set(categories)), np.int64)
    if coco_json._simdjson is not None:
        parsed = _fast(path, K)
        if parsed is not None:
            r = parsed.results
            if (np.isfinite(r.keypoints).all() and np.isfinite(r.score).all() and np.isin(r.image_id, valid).all()
                    and np.isin(parsed.category, known).all()):
                return r, parsed.category
    return _slow(path, K, valid, known)


def _fast(path: Path, K: int):
    """coco_json's simdjson column reader (no category check), or None when the file needs the slow path."""
    data = coco_json._read_bytes(path)
    brackets = data.count(b"[")
    parser = coco_json._simdjson.Parser()
    try:
        doc = parser.parse(data)
    except Exception:  # noqa: BLE001 - not JSON or not UTF-8: the slow path names the problem
        return None
    del data
    try:
        return coco_json._fast_path(doc, brackets, K)
    except Exception:  # noqa: BLE001 - any surprise: the slow path finds and names it
        return None
    finally:
        del doc


def _slow(path: Path, K: int, valid: np.ndarray, known: np.ndarray) -> tuple[CocoKeypointResults, np.ndarray]:
    """Record by record: coco_json's checks of every other field (in file order), then the categories."""
    data = coco_json._read_bytes(path)
    try:
        recs = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        recs = None  # coco_json's slow path names the problem
    if not isinstance(recs, list):
        return coco_json._slow_path(path, data, K, valid, 0).results, np.zeros(0, np.int64)
    # every present category_id is set to one value so that coco_json checks the rest; checked here afterwards
    stand_in = int(known[0]) if known.size else 0
    cats = [r.get("category_id") if isinstance(r, dict) else None for r in recs]
    same = [{**r, "category_id": stand_in} if isinstance(r, dict) and "category_id" in r else r for r in recs]
    res = coco_json._slow_path(path, json.dumps(same, allow_nan=True).encode(), K, valid, stand_in).results
    known_set = set(known.tolist())
    for i, c in enumerate(cats):
        if not coco_json._is_int(c):
            raise InputError(path, f"index {i}", "category_id", f"expected an integer, found {c!r}")
        if c not in known_set:
            raise InputError(path, f"index {i}", "category_id", f"category {c} is not in the ground truth's "
                             f"categories ({_ids(known)})")
    return res, np.asarray(cats, np.int64).reshape(-1)


def _ids(known: np.ndarray) -> str:
    k = known.tolist()
    return ", ".join(map(str, k)) if len(k) <= 6 else f"{len(k)} ids from {k[0]} to {k[-1]}"
