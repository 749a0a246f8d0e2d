"""CO3D camera results -> per sequence, the frame numbers of its frame set and one R, T per frame.

Accepted files (one frame set per sequence: the protocol draws one per sequence for a given N):

- JSON: a list of ``{"sequence": "110_13051_23361", "frames": [frame_number, ...], "R": N x 3 x 3, "T": N x 3}``,
  or an object ``{"convention": "opencv", "predictions": [...]}``;
- ``.npz``: arrays ``"<sequence>/frames"`` (N,), ``"<sequence>/R"`` (N, 3, 3), ``"<sequence>/T"`` (N, 3), and
  optionally ``"convention"`` (a string array).

``convention``: ``pytorch3d`` (default; the CO3D annotations', PoseDiffusion's and RelPose++'s: row vectors,
``X_cam = X_world R + T``, camera +X left, +Y up) or ``opencv`` (``x_cam = R x_world + t``, +X right, +Y down),
converted as PyTorch3D's ``cameras_from_opencv_projection``: ``R = R_cv^T diag(-1, -1, 1)``,
``T = diag(-1, -1, 1) t_cv``. Rotations must be proper (det > 0) and orthonormal within 1e-5: the reference's
``so3_relative_angle`` stops on relative rotations whose trace leaves [-1 - 1e-4, 3 + 1e-4].
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import InputError, load_json
from bench.safe_pickle import load_npz

CONVENTIONS = ("pytorch3d", "opencv")
ORTHONORMAL_TOL = 1e-5
_FLIP = np.diag([-1.0, -1.0, 1.0])


@dataclass
class FrameSetPrediction:
    """One sequence's predicted cameras (PyTorch3D convention, float64), in the order of ``frames``."""

    frames: list[int]
    R: np.ndarray  # (N, 3, 3)
    T: np.ndarray  # (N, 3)


def opencv_to_pytorch3d(R: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 3, 3), (N, 3)`` OpenCV world-to-camera -> PyTorch3D ``R, T``."""
    return np.swapaxes(R, -1, -2) @ _FLIP, t @ _FLIP


def pytorch3d_to_opencv(R: np.ndarray, T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of :func:`opencv_to_pytorch3d`."""
    return _FLIP @ np.swapaxes(R, -1, -2), T @ _FLIP


def _numbers(value: Any, shape: tuple, file: Path, record: str, field: str) -> np.ndarray:
    try:
        a = np.asarray(value)
        ok = a.dtype.kind in "biuf"
    except (ValueError, TypeError):
        ok = False
    if not ok:
        raise InputError(file, record, field, "expected an array of numbers")
    if a.shape != shape:
        raise InputError(file, record, field, f"expected shape {shape}, found {a.shape}")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise InputError(file, record, field, "expected finite numbers")
    return a


def parse_frame_set(rec: dict, convention: str, file: Path, record: str) -> tuple[str, FrameSetPrediction]:
    """``(sequence, prediction)`` of one record, every field checked."""
    for f in ("sequence", "frames", "R", "T"):
        if f not in rec:
            raise InputError(file, record, f, "missing")
    seq = rec["sequence"]
    if not isinstance(seq, str) or not seq:
        raise InputError(file, record, "sequence", f"expected a sequence name, found {seq!r}")
    frames = np.asarray(rec["frames"])
    if frames.ndim != 1 or frames.size == 0 or frames.dtype.kind not in "iu":
        raise InputError(file, record, "frames", "expected a list of integer frame numbers")
    n = len(frames)
    if len(set(frames.tolist())) != n:
        raise InputError(file, record, "frames", "a frame number is repeated")
    R = _numbers(rec["R"], (n, 3, 3), file, record, "R")
    T = _numbers(rec["T"], (n, 3), file, record, "T")
    dev = np.abs(R @ np.swapaxes(R, -1, -2) - np.eye(3)).max(axis=(1, 2))
    bad = np.flatnonzero((dev > ORTHONORMAL_TOL) | (np.linalg.det(R) <= 0))
    if len(bad):
        raise InputError(file, record, "R", f"frame {int(frames[bad[0]])}: not a rotation (|R R^T - I| = "
                                            f"{dev[bad[0]]:.2g}, det {np.linalg.det(R[bad[0]]):.3g})")
    if convention == "opencv":
        R, T = opencv_to_pytorch3d(R, T)
    return seq, FrameSetPrediction([int(f) for f in frames], R, T)


def _convention(value: Any, file: Path) -> str:
    if value not in CONVENTIONS:
        raise InputError(file, None, "convention", f"expected one of {', '.join(CONVENTIONS)}, found {value!r}")
    return str(value)


def read_co3d_predictions(path: Path) -> dict[str, FrameSetPrediction]:
    """``{sequence: prediction}`` from a JSON or .npz results file."""
    path = Path(path)
    out: dict[str, FrameSetPrediction] = {}

    def add(rec: dict, convention: str, record: str) -> None:
        seq, p = parse_frame_set(rec, convention, path, record)
        if seq in out:
            raise InputError(path, record, "sequence", f"sequence {seq!r} is predicted twice")
        out[seq] = p

    if path.suffix.lower() == ".npz":
        arrays = load_npz(path, allow_pickle_objects=False)
        conv = "pytorch3d"
        if "convention" in arrays:
            conv = _convention(_npz_string(arrays.pop("convention")), path)
        grouped: dict[str, dict] = {}
        for key, a in arrays.items():
            seq, _, field = key.rpartition("/")
            if not seq or field not in ("frames", "R", "T"):
                raise InputError(path, f"key {key}", None, "expected keys '<sequence>/frames', '<sequence>/R', "
                                                           "'<sequence>/T' (and 'convention')")
            grouped.setdefault(seq, {"sequence": seq})[field] = a
        for seq, rec in sorted(grouped.items()):
            add(rec, conv, f"key {seq}/...")
        return out
    data = load_json(path)
    conv = "pytorch3d"
    if isinstance(data, dict):
        conv = _convention(data.get("convention", "pytorch3d"), path)
        if "predictions" not in data:
            raise InputError(path, None, "predictions", "missing (an object needs a 'predictions' list)")
        data = data["predictions"]
    if not isinstance(data, list):
        raise InputError(path, None, None, f"expected a JSON list of frame-set records, found {type(data).__name__}")
    for i, rec in enumerate(data):
        if not isinstance(rec, dict):
            raise InputError(path, f"index {i}", None, f"expected an object, found {type(rec).__name__}")
        add(rec, conv, f"index {i}")
    return out


def _npz_string(a: np.ndarray) -> Any:
    return str(a.reshape(-1)[0]) if a.dtype.kind == "U" and a.size == 1 else None
