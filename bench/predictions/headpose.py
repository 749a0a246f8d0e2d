"""Head pose results files (AFLW2000-3D, BIWI): one rotation or one yaw/pitch/roll per image, JSON or .npz.

- JSON: a list of ``{"<key>": ..., "R": [[...], [...], [...]]}`` (6DRepNet's convention, R = Rz(roll) Ry(yaw)
  Rx(pitch)) or ``{"<key>": ..., "yaw": deg, "pitch": deg, "roll": deg}``;
- .npz: an array ``<key>`` (N,) and either ``R`` (N, 3, 3) or ``yaw``, ``pitch``, ``roll`` (N,) in degrees.

``<key>`` is the dataset's image key: ``image`` (the AFLW2000 file stem, e.g. ``"image00002"``) or ``index``
(the row of the BIWI .npz). Angles become ``R`` through the same ``get_R`` as the GT (metrics.headpose), so
both forms are scored exactly as 6DRepNet's test.py scores its own output. Records for images the protocol
leaves out (AFLW2000's filtered ones) are ignored with one warning. The .npz is read without unpickling.
"""
from __future__ import annotations

import json
import math
import warnings
from collections.abc import Container, Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from bench.errors import InputError
from bench.safe_pickle import load_npz
from metrics.headpose import rotation_from_euler

ANGLES = ("yaw", "pitch", "roll")


def rotation_from_degrees(yaw: Tensor, pitch: Tensor, roll: Tensor) -> Tensor:
    """``(N,)`` yaw, pitch, roll in degrees -> ``(N, 3, 3)`` float64 ``Rz(roll) Ry(yaw) Rx(pitch)`` (radians = deg * (pi / 180))."""
    rad = [torch.as_tensor(a, dtype=torch.float64) * (math.pi / 180) for a in (pitch, yaw, roll)]
    return rotation_from_euler(*rad)


def _finite_number(x) -> bool:
    return type(x) in (int, float) and math.isfinite(x)


def _record_rotation(path: Path, where: str, r: dict) -> Tensor:
    if "R" in r:
        R = r["R"]
        ok = (isinstance(R, list) and len(R) == 3 and all(isinstance(row, list) and len(row) == 3 for row in R)
              and all(_finite_number(x) for row in R for x in row))
        if not ok:
            raise InputError(path, where, "R", "expected a 3 x 3 list of finite numbers")
        return torch.tensor(R, dtype=torch.float64)
    for a in ANGLES:
        if not _finite_number(r.get(a)):
            raise InputError(path, where, a, f"expected 'R' (3 x 3) or finite yaw, pitch, roll in degrees, "
                                             f"found {a}={r.get(a)!r}")
    return rotation_from_degrees(*(torch.tensor([float(r[a])], dtype=torch.float64) for a in ANGLES))[0]


class UnscoredImagesWarning(UserWarning):
    """A results file predicts images that the protocol leaves out (they are ignored)."""


def _warn_unscored(path: Path, skipped: list) -> None:
    if skipped:
        warnings.warn(f"{path}: ignoring {len(skipped)} prediction(s) for images the protocol leaves out "
                      f"(e.g. {skipped[0]!r})", UnscoredImagesWarning, stacklevel=3)


def read_headpose_json(path: Path, key: str, ids: Mapping, ignore: Container = ()) -> dict[int, Tensor]:
    """JSON list -> {sample id: (3, 3) float64 R}; ``ids`` maps each scored image key to its sample id, keys in
    ``ignore`` are skipped."""
    try:
        recs = json.loads(path.read_bytes())
    except OSError as e:
        raise InputError(path, None, None, f"cannot read the predictions file ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise InputError(path, None, None, f"not a JSON file (not UTF-8 text at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise InputError(path, f"line {e.lineno} column {e.colno}", None, f"not valid JSON ({e.msg})") from None
    if not isinstance(recs, list):
        raise InputError(path, None, None, f"expected a JSON list of records, found {type(recs).__name__}")
    out: dict[int, Tensor] = {}
    skipped = []
    for i, r in enumerate(recs):
        where = f"index {i}"
        if not isinstance(r, dict):
            raise InputError(path, where, None, f"expected an object, found {type(r).__name__}")
        k = r.get(key)
        if isinstance(k, str) and k in ignore:
            skipped.append(k)
            continue
        if isinstance(k, bool) or k not in ids:
            raise InputError(path, where, key, f"{k!r} is not a scored image of the ground truth")
        sid = ids[k]
        if sid in out:
            raise InputError(path, where, key, f"{k!r} is predicted twice")
        out[sid] = _record_rotation(path, where, r)
    _warn_unscored(path, skipped)
    return out


def read_headpose_npz(path: Path, key: str, ids: Mapping, ignore: Container = ()) -> dict[int, Tensor]:
    """.npz with ``<key>`` and ``R`` or ``yaw``/``pitch``/``roll`` arrays -> {sample id: (3, 3) float64 R}."""
    arrays = load_npz(path, allow_pickle_objects=False)
    if key not in arrays:
        raise InputError(path, None, key, f"missing: the array of image keys ({', '.join(sorted(arrays)) or 'no arrays'} found)")
    keys = arrays[key]
    if keys.ndim != 1:
        raise InputError(path, None, key, f"expected a 1-D array, found shape {keys.shape}")
    n = keys.shape[0]
    if "R" in arrays:
        a = arrays["R"]
        field = "R"
        if a.dtype.kind not in "fiu" or a.shape != (n, 3, 3):
            raise InputError(path, None, "R", f"expected a numeric ({n}, 3, 3) array, found {a.dtype} {a.shape}")
        R = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))
    else:
        cols = []
        for name in ANGLES:
            a = arrays.get(name)
            if a is None:
                raise InputError(path, None, name, "missing: expected 'R' (N, 3, 3) or yaw, pitch, roll (N,) in degrees")
            if a.dtype.kind not in "fiu" or a.shape != (n,):
                raise InputError(path, None, name, f"expected a numeric ({n},) array, found {a.dtype} {a.shape}")
            cols.append(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64)))
        field = "yaw/pitch/roll"
        R = None
    values = R if R is not None else torch.stack(cols, 1)
    bad = (~torch.isfinite(values.reshape(n, -1))).any(1)
    if bool(bad.any()):
        raise InputError(path, f"row {int(bad.nonzero()[0])}", field, "non-finite value")
    if R is None:
        R = rotation_from_degrees(cols[0], cols[1], cols[2])
    out: dict[int, Tensor] = {}
    skipped = []
    for i in range(n):
        k = keys[i].item()
        if isinstance(k, str) and k in ignore:
            skipped.append(k)
            continue
        if isinstance(k, bool) or k not in ids:
            raise InputError(path, f"row {i}", key, f"{k!r} is not a scored image of the ground truth")
        sid = ids[k]
        if sid in out:
            raise InputError(path, f"row {i}", key, f"{k!r} is predicted twice")
        out[sid] = R[i]
    _warn_unscored(path, skipped)
    return out


def read_headpose_predictions(path: str | Path, key: str, ids: Mapping, ignore: Container = ()) -> dict[int, Tensor]:
    """A JSON or .npz head pose results file (by its first bytes), validated against ``ids``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, None, "predictions file not found")
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith((b"PK", b"\x93NUM")):
        return read_headpose_npz(path, key, ids, ignore)
    return read_headpose_json(path, key, ids, ignore)
