"""Face and hand landmark predictions: a JSON list of ``{"id": <annotation id>, "keypoints": [[x, y], ...]}``.

One record per scored GT instance (top-down: the method saw the instance's box), ``keypoints`` in image pixels
and the dataset's keypoint order. Other fields of a record are ignored. mmpose scores every instance of its
data list, so a missing instance is an error, as are ids the annotation file does not have, a wrong keypoint
count, non-finite or non-numeric values and duplicates. An id of an annotation that mmpose drops before scoring
(crowd, no labelled keypoint, empty box) is ignored with a warning. Coordinates are rounded to float32, the
dtype mmpose's evaluators receive.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from bench.errors import InputError, load_json
from bench.types import Prediction


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_finite_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def read_landmark_predictions(path: Path, scored: Mapping[int, int], num_keypoints: int,
                              dropped: frozenset[int] = frozenset()) -> dict[int, Prediction]:
    """Read and validate ``path`` -> {sample_id: Prediction(keypoints (K, 2) float32)}.

    ``scored`` maps each scored annotation id to its sample id; ``dropped`` holds the annotation ids that the
    reference does not score.
    """
    path = Path(path)
    records = load_json(path, missing="predictions file not found")
    if not isinstance(records, list):
        raise InputError(path, None, None, f"expected a JSON list of records, got {type(records).__name__}")
    out: dict[int, Prediction] = {}
    seen: dict[int, int] = {}
    ignored: list[int] = []
    for i, r in enumerate(records):
        rec = f"index {i}"
        if not isinstance(r, dict):
            raise InputError(path, rec, None, f"expected an object, got {type(r).__name__}")
        for field in ("id", "keypoints"):
            if field not in r:
                raise InputError(path, rec, field, "missing")
        ann_id, kps = r["id"], r["keypoints"]
        if not _is_int(ann_id):
            raise InputError(path, rec, "id", f"expected an integer annotation id, got {ann_id!r}")
        if ann_id in seen:
            raise InputError(path, rec, "id", f"duplicate: annotation {ann_id} is also at index {seen[ann_id]}")
        seen[ann_id] = i
        if ann_id not in scored:
            if ann_id in dropped:
                ignored.append(ann_id)
                continue
            raise InputError(path, rec, "id", f"annotation {ann_id} is not in the ground truth")
        if not isinstance(kps, list) or len(kps) != num_keypoints:
            n = len(kps) if isinstance(kps, list) else type(kps).__name__
            raise InputError(path, rec, "keypoints", f"expected {num_keypoints} [x, y] pairs, got {n}")
        for j, p in enumerate(kps):
            if not (isinstance(p, list) and len(p) == 2):
                raise InputError(path, rec, "keypoints", f"keypoint {j}: expected [x, y], got {p!r}")
            if not (_is_finite_number(p[0]) and _is_finite_number(p[1])):
                raise InputError(path, rec, "keypoints", f"keypoint {j}: expected finite numbers, got {p!r}")
        sid = scored[ann_id]
        out[sid] = Prediction(sid, {"keypoints": torch.tensor(kps, dtype=torch.float64).to(torch.float32)})
    if ignored:
        warnings.warn(f"{path}: {len(ignored)} record(s) for annotations the protocol does not score (crowd, no "
                      f"labelled keypoint or empty box; e.g. id {ignored[0]}) are ignored, as mmpose ignores them",
                      stacklevel=2)
    if len(out) != len(scored):
        missing = next(a for a, s in scored.items() if s not in out)
        raise InputError(path, None, "id", f"no prediction for annotation {missing} ({len(scored) - len(out)} of "
                                           f"{len(scored)} scored instances missing; every one must be predicted)")
    return out
