"""Read a COCO keypoint results JSON (the official format of every COCO-trained pose method), fast and checked.

A results file is a list of ``{"image_id": int, "category_id": int, "keypoints": [x, y, v] * K, "score":
float}`` (extra fields are allowed). Each record is checked against the GT: a malformed file raises
:class:`~bench.errors.InputError` naming the record (``index i``) and the field.

Speed matters (loading is part of the benchmark): the 5M numbers of a 100k-detection file dominate. The fast
path parses with simdjson (``pysimdjson``; correctly rounded numbers, like ``float()``) and takes each
record's keypoints as a raw float64 buffer, so no Python float is ever made for them; the few scalar fields
are checked as whole columns. Anything unusual (NaN tokens, a wrong type, a nested array, a missing field
...) makes the fast path give up; the slow path then parses with the standard ``json`` module and checks
record by record, so the error names the exact record and field. Both paths give the same arrays for a
valid file.
Memory: the file is read and parsed in pieces of about ``PIECE_BYTES`` (whole records each, see
:func:`_pieces`) into arrays preallocated for an upper bound on the record count, so the peak is the output
arrays plus one piece's document, not a document of the whole file (about 4x its size: 210 MB for the 55 MB
results file of the 5,000-image benchmark, issue 15).

Decisions on inputs pycocotools handles differently:

- an empty list ``[]`` is valid: no detections, so AP and AR are 0 (pycocotools' ``loadRes`` crashes on it;
  faster-coco-eval gives 0 too);
- ``NaN``/``Infinity`` in keypoints or score is an error (pycocotools would silently score it);
- an ``image_id`` that is not in the GT is an error (pycocotools asserts);
- a ``category_id`` other than the GT's person category is an error (pycocotools would skip the record); a file
  with several categories (AP-10K's 54 species: :func:`read_coco_keypoint_results_by_category`) may name any
  category of the GT, and one the GT does not list is an error too (xtcocotools would skip it silently, which
  hides a results file written with another category numbering);
- duplicates are kept: every record is one detection, an exact copy included, as pycocotools' ``loadRes``
  counts it (the copy then usually scores as a false positive; tests/robustness/test_malformed_inputs.py);
- if the first record carries a non-empty ``"bbox"``, pycocotools' ``loadRes`` takes the detection area from
  that box (``w * h``) instead of the keypoints' extent; we do the same (``area`` is then set).
"""
from __future__ import annotations

import gc
import itertools
import json
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.errors import InputError
from bench.types import Prediction

try:  # optional speed-up (pysimdjson); the slow path needs only the standard library
    import simdjson as _simdjson
except ImportError:  # pragma: no cover - exercised when pysimdjson is absent
    _simdjson = None


@contextmanager
def gc_paused():
    """Pause Python's cyclic GC while a reader builds many objects at once, then restore it.

    Bulk loading creates ~10^5 containers; the collector's repeated passes over them cost more than the
    parsing itself (measured: 1.6 s -> 0.9 s CPU for the 5,000-image benchmark). Nothing cyclic is built.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@dataclass
class CocoKeypointResults:
    """Flat detections in file order: ``image_id`` (D,), ``keypoints`` (D, K, 3) float64, ``score`` (D,);
    ``area`` (D,) only when pycocotools would take it from a results ``bbox``."""

    image_id: np.ndarray
    keypoints: np.ndarray
    score: np.ndarray
    area: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.image_id.shape[0])


def read_coco_keypoint_results(
    path: str | Path, image_ids: Iterable[int], num_keypoints: int, category_id: int = 1
) -> CocoKeypointResults:
    """Read and check a COCO keypoint results file against the GT's image ids and keypoint count."""
    with gc_paused():
        return _read(Path(path), image_ids, num_keypoints, (int(category_id),)).results


def read_coco_keypoint_results_by_category(
    path: str | Path, image_ids: Iterable[int], num_keypoints: int, categories: Sequence[int]
) -> tuple[CocoKeypointResults, np.ndarray]:
    """The same for a GT with several categories: the results (file order) and each record's ``category_id``
    (D,) int64, which must be one of ``categories``."""
    with gc_paused():
        p = _read(Path(path), image_ids, num_keypoints, tuple(sorted({int(c) for c in categories})))
    return p.results, p.category


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise InputError(path, None, None, f"cannot read the predictions file ({e.strerror or e})") from None


def _read(path: Path, image_ids: Iterable[int], num_keypoints: int, categories: tuple[int, ...]) -> _Parsed:
    """Fast path, else the exact slow path (which reads the file again and names the problem)."""
    valid = np.unique(np.fromiter((int(i) for i in image_ids), dtype=np.int64))
    res = None
    if _simdjson is not None:
        try:
            res = _fast_path(path, num_keypoints)
        except OSError as e:
            raise InputError(path, None, None, f"cannot read the predictions file ({e.strerror or e})") from None
        except Exception:  # noqa: BLE001 - any surprise: the exact slow path finds and names the problem
            res = None
        if res is not None and not _fast_checks_pass(res, valid, categories):
            res = None
    if res is None:
        res = _slow_path(path, _read_bytes(path), num_keypoints, valid, categories)
    return res


@dataclass
class _Parsed:
    results: CocoKeypointResults
    category: np.ndarray


PIECE_BYTES = 1 << 20  # the file is read and parsed about this many bytes at a time
FAST_CHUNK = 65_536  # records converted at a time (bounds the per-record proxies and buffers)
_RECORD_GAP = re.compile(rb"\}[ \t\r\n]*,[ \t\r\n]*\{")  # end of one record, comma, start of the next
_KEYPOINTS_KEY = b'"keypoints"'


def _count_records_bound(path: Path) -> int:
    """An upper bound on the number of records: the occurrences of ``"keypoints"`` (every record has the key;
    more only if some string holds it), counted a block at a time."""
    n, tail = 0, b""
    with path.open("rb") as f:
        while block := f.read(PIECE_BYTES):
            n += (tail + block).count(_KEYPOINTS_KEY)
            tail = block[-(len(_KEYPOINTS_KEY) - 1):]  # a key cut by the block edge is counted once, here
    return n


def _pieces(path: Path) -> Iterator[bytes]:
    """The results array as consecutive JSON arrays of whole records, about ``PIECE_BYTES`` each, so that the
    parsed document never holds more than one piece (memory, issue 15). A piece ends at the first
    ``}`` ``,`` ``{`` after ``PIECE_BYTES``. Such a gap inside a string or a nested value would make the piece
    invalid JSON (an unclosed string, object or array), which sends the file to the slow path: a piece that
    parses ends at a true record boundary, so every piece after it starts at one too."""
    buf, eof, first = b"", False, True
    with path.open("rb") as f:
        while True:
            while not eof and len(buf) < 2 * PIECE_BYTES:
                block = f.read(PIECE_BYTES)
                eof = not block
                buf += block
            m = None if len(buf) <= PIECE_BYTES else _RECORD_GAP.search(buf, PIECE_BYTES)
            if m is None and not eof:  # one record longer than a piece: read on
                block = f.read(PIECE_BYTES)
                eof = not block
                buf += block
                continue
            if m is None:
                yield buf if first else b"[" + buf
                return
            yield (b"" if first else b"[") + buf[: m.start() + 1] + b"]"
            buf, first = buf[m.end() - 1:], False


def _fast_path(path: Path, K: int) -> _Parsed | None:
    """Columns straight from simdjson documents of the file's pieces (:func:`_pieces`), ``FAST_CHUNK``
    records at a time into preallocated arrays; ``None`` as soon as anything is unusual."""
    cap = _count_records_bound(path)
    img, cat = np.empty(cap, np.int64), np.empty(cap, np.int64)
    score, kp = np.empty(cap, np.float64), np.empty((cap, 3 * K), np.float64)
    area: np.ndarray | None = None
    n = 0
    parser = _simdjson.Parser()  # one parser for all pieces: its buffers are allocated once
    for number, piece in enumerate(_pieces(path)):
        brackets = piece.count(b"[")
        try:
            doc = parser.parse(piece)
        except Exception:  # noqa: BLE001 - not JSON, or not UTF-8: the slow path names the problem
            return None
        del piece
        if not isinstance(doc, _simdjson.Array):
            return None
        m = len(doc)
        if number == 0 and m and (area is None):
            first = doc[0]
            if (isinstance(first, _simdjson.Object) and "bbox" in first
                    and not (isinstance(first["bbox"], _simdjson.Array) and len(first["bbox"]) == 0)):
                area = np.empty(cap, np.float64)
            del first
        if n + m > cap or brackets != 1 + m + (m if area is not None else 0):
            return None
        if not _fill(doc, n, K, img, cat, score, kp, area):
            return None
        n += m
        del doc
    if n == 0:
        return _Parsed(_empty(K), np.zeros(0, np.int64))
    return _Parsed(CocoKeypointResults(img[:n], kp[:n].reshape(n, K, 3), score[:n],
                                       None if area is None else area[:n]), cat[:n])


def _fill(doc, start: int, K: int, img, cat, score, kp, area) -> bool:
    """Copy the records of one parsed piece into the arrays from row ``start``; False if any is unusual."""
    it = iter(doc)
    while True:
        recs = list(itertools.islice(it, FAST_CHUNK))
        if not recs:
            return True
        if set(map(type, recs)) != {_simdjson.Object}:
            return False
        stop = start + len(recs)
        kps = [r["keypoints"] for r in recs]
        if set(map(type, kps)) != {_simdjson.Array} or set(map(len, kps)) != {3 * K}:
            return False
        i_, c_, s_ = ([r[f] for r in recs] for f in ("image_id", "category_id", "score"))
        if set(map(type, i_)) != {int} or set(map(type, c_)) != {int} or not set(map(type, s_)) <= {int, float}:
            return False
        img[start:stop], cat[start:stop], score[start:stop] = i_, c_, s_
        # as_buffer flattens nested arrays: the '[' count of the piece makes sure no keypoints array holds one
        buf = np.frombuffer(b"".join([k.as_buffer(of_type="d") for k in kps]), dtype=np.float64)
        if buf.size != len(recs) * 3 * K:
            return False
        kp[start:stop] = buf.reshape(-1, 3 * K)
        if area is not None:
            a = _bbox_areas(recs)
            if a is None:
                return False
            area[start:stop] = a
        start = stop


def _bbox_areas(recs: list) -> np.ndarray | None:
    try:
        bb = [r["bbox"] for r in recs]
        if set(map(type, bb)) != {_simdjson.Array} or set(map(len, bb)) != {4}:
            return None
        b = np.frombuffer(b"".join([x.as_buffer(of_type="d") for x in bb]), dtype=np.float64).reshape(-1, 4)
    except Exception:  # noqa: BLE001 - the slow path names the bad record
        return None
    if b.ndim != 2 or b.shape[1] != 4 or not np.isfinite(b).all():
        return None
    return b[:, 2] * b[:, 3]


def _fast_checks_pass(p: _Parsed, valid: np.ndarray, categories: tuple[int, ...]) -> bool:
    r = p.results
    return bool(
        np.isfinite(r.keypoints).all()
        and np.isfinite(r.score).all()
        and np.isin(p.category, np.asarray(categories, np.int64)).all()
        and np.isin(r.image_id, valid).all()
    )


def _empty(K: int) -> CocoKeypointResults:
    return CocoKeypointResults(np.zeros(0, np.int64), np.zeros((0, K, 3)), np.zeros(0))


def _is_int(x: Any) -> bool:
    return type(x) is int


def _is_num(x: Any) -> bool:
    return type(x) in (int, float)


def _category_problem(c: int, categories: tuple[int, ...]) -> str:
    if len(categories) == 1:
        return f"expected {categories[0]} (person), found {c}"
    k = list(categories)
    known = ", ".join(map(str, k)) if len(k) <= 6 else f"{len(k)} ids from {k[0]} to {k[-1]}"
    return f"category {c} is not in the ground truth's categories ({known})"


def _slow_path(path: Path, data: bytes, K: int, valid: np.ndarray, categories: tuple[int, ...]) -> _Parsed:
    try:
        recs = json.loads(data)
    except UnicodeDecodeError as e:
        raise InputError(path, None, None, f"not a JSON file (not UTF-8 text at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise InputError(path, f"line {e.lineno} column {e.colno}", None, f"not valid JSON ({e.msg})") from None
    if not isinstance(recs, list):
        raise InputError(path, None, None, f"expected a JSON list of result records, found {type(recs).__name__}")
    valid_set, category_set = set(valid.tolist()), set(categories)
    n = len(recs)
    img = np.zeros(n, np.int64)
    cat = np.zeros(n, np.int64)
    score = np.zeros(n, np.float64)
    kp = np.zeros((n, K, 3), np.float64)
    use_bbox = n > 0 and isinstance(recs[0], dict) and "bbox" in recs[0] and recs[0]["bbox"] != []
    area = np.zeros(n, np.float64) if use_bbox else None
    for i, r in enumerate(recs):
        where = f"index {i}"
        if not isinstance(r, dict):
            raise InputError(path, where, None, f"expected an object, found {type(r).__name__}")
        for f in ("image_id", "category_id", "keypoints", "score"):
            if f not in r:
                raise InputError(path, where, f, "missing")
        v = r["image_id"]
        if not _is_int(v):
            raise InputError(path, where, "image_id", f"expected an integer, found {v!r}")
        if v not in valid_set:
            raise InputError(path, where, "image_id", f"image {v} is not in the ground truth")
        img[i] = v
        c = r["category_id"]
        if not _is_int(c):
            raise InputError(path, where, "category_id", f"expected an integer, found {c!r}")
        if c not in category_set:
            raise InputError(path, where, "category_id", _category_problem(c, categories))
        cat[i] = c
        k = r["keypoints"]
        if not isinstance(k, list):
            raise InputError(path, where, "keypoints", f"expected a list of 3*{K} numbers, found {type(k).__name__}")
        if len(k) != 3 * K:
            raise InputError(path, where, "keypoints", f"expected {3 * K} numbers ({K} keypoints x 3), found {len(k)}")
        for j, x in enumerate(k):
            if not _is_num(x):
                raise InputError(path, where, "keypoints", f"value {j}: expected a number, found {x!r}")
            if not math.isfinite(x):
                raise InputError(path, where, "keypoints", f"value {j}: expected a finite number, found {x!r}")
        kp[i] = np.asarray(k, dtype=np.float64).reshape(K, 3)
        s = r["score"]
        if not _is_num(s):
            raise InputError(path, where, "score", f"expected a number, found {s!r}")
        if not math.isfinite(s):
            raise InputError(path, where, "score", f"expected a finite number, found {s!r}")
        score[i] = s
        if use_bbox:
            b = r.get("bbox")
            if not isinstance(b, list) or len(b) != 4 or not all(_is_num(x) and math.isfinite(x) for x in b):
                raise InputError(path, where, "bbox", f"expected [x, y, w, h] (the first record has a bbox), found {b!r}")
            area[i] = float(b[2]) * float(b[3])
    return _Parsed(CocoKeypointResults(img, kp, score, area), cat)


def results_to_predictions(res: CocoKeypointResults) -> dict[int, Prediction]:
    """One Prediction per image that has detections; outputs are views into the flat arrays, file order kept."""
    with gc_paused():
        return _to_predictions(res)


def _to_predictions(res: CocoKeypointResults) -> dict[int, Prediction]:
    if len(res) == 0:
        return {}
    if (np.diff(res.image_id) >= 0).all():  # already grouped by image (the usual file): views, no copy
        order = None
        ids = res.image_id
    else:
        order = np.argsort(res.image_id, kind="stable")
        ids = res.image_id[order]
    cut = np.flatnonzero(np.diff(ids)) + 1
    starts = np.concatenate([[0], cut])
    counts = np.diff(np.concatenate([starts, [len(ids)]])).tolist()

    def grouped(a: np.ndarray) -> tuple[torch.Tensor, ...]:
        t = torch.from_numpy(a)
        return (t if order is None else t[torch.from_numpy(order)]).split(counts)

    kps = grouped(res.keypoints)
    scores = grouped(res.score)
    areas = grouped(res.area) if res.area is not None else None
    img_t = torch.from_numpy(ids[starts])
    out: dict[int, Prediction] = {}
    for n, i in enumerate(ids[starts].tolist()):
        d = {"image_id": img_t[n], "keypoints": kps[n], "scores": scores[n]}
        if areas is not None:
            d["area"] = areas[n]
        out[i] = Prediction(i, d)
    return out
