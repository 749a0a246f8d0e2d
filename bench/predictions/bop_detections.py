"""Upstream 2D detections of BOP test images (the input of two-stage 6D methods such as GDRNPP).

Read for the dataset option ``dataset.detections=FILE`` and handed to the method per image through
``Sample.inputs["detections"]`` (a list of :class:`bench.types.Detection`), so the method reads no file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import InputError, load_json
from bench.predictions.bop_csv import IM_ID_LIMIT
from bench.types import Detection


def _num(path: Path, record: str, field_: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
        raise InputError(path, record, field_, f"expected a finite number, got {str(v)[:40]}")
    return float(v)


def _det(path: Path, record: str, rec: Any, obj_key: str, bbox_key: str) -> Detection:
    if not isinstance(rec, dict):
        raise InputError(path, record, None, "expected an object with obj_id, bbox_est, score")
    for key in (obj_key, bbox_key):
        if key not in rec:
            raise InputError(path, record, key, "missing")
    obj = rec[obj_key]
    if isinstance(obj, bool) or not isinstance(obj, int) or obj < 0:
        raise InputError(path, record, obj_key, f"expected an integer >= 0, got {obj!r}")
    box = rec[bbox_key]
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        raise InputError(path, record, bbox_key, f"expected [x, y, w, h], got {str(box)[:60]}")
    box = tuple(_num(path, record, bbox_key, v) for v in box)
    if box[2] < 0 or box[3] < 0:
        raise InputError(path, record, bbox_key, f"negative width or height in {list(box)}")
    score = _num(path, record, "score", rec.get("score", 1.0))
    t = _num(path, record, "time", rec.get("time", 0.0))
    return Detection(obj, box, score, t)


def read_detections(path: str | Path) -> dict[tuple[int, int], list[Detection]]:
    """A detections JSON -> ``{(scene_id, im_id): [Detection, ...]}`` (file order).

    Two layouts: GDRNPP's (``datasets/BOP_DATASETS/<ds>/test/test_bboxes/yolox_*.json``)
    ``{"scene_id/im_id": [{"obj_id", "bbox_est": [x, y, w, h], "score", "time"}, ...]}``, and the BOP
    challenge's default detections, a list of ``{"scene_id", "image_id", "category_id", "bbox", "score",
    "time"}``. ``score`` defaults to 1 and ``time`` to 0, as the official loader does.
    """
    path = Path(path)
    data = load_json(path, "detections file not found")
    out: dict[tuple[int, int], list[Detection]] = {}
    if isinstance(data, dict):
        for key, dets in data.items():
            parts = key.split("/")
            if len(parts) != 2 or not all(p.isdigit() for p in parts):
                raise InputError(path, f"key '{key}'", None, "expected a 'scene_id/im_id' key")
            scene, im = int(parts[0]), int(parts[1])
            if im >= IM_ID_LIMIT:
                raise InputError(path, f"key '{key}'", None, f"im_id must be < {IM_ID_LIMIT}")
            if not isinstance(dets, list):
                raise InputError(path, f"key '{key}'", None, "expected a list of detections")
            out.setdefault((scene, im), []).extend(
                _det(path, f"key '{key}' index {j}", d, "obj_id", "bbox_est") for j, d in enumerate(dets))
    elif isinstance(data, list):
        for j, d in enumerate(data):
            r = f"index {j}"
            if not isinstance(d, dict):
                raise InputError(path, r, None, "expected an object")
            ids = []
            for key in ("scene_id", "image_id"):
                v = d.get(key)
                if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                    raise InputError(path, r, key, f"expected an integer >= 0, got {v!r}")
                ids.append(v)
            if ids[1] >= IM_ID_LIMIT:
                raise InputError(path, r, "image_id", f"must be < {IM_ID_LIMIT}")
            out.setdefault((ids[0], ids[1]), []).append(_det(path, r, d, "category_id", "bbox"))
    else:
        raise InputError(path, None, None, "expected a JSON object keyed 'scene_id/im_id' or a list of detections")
    return out
