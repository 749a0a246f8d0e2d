"""Pose predictions in an .npz file: one numeric array per key (``"S9/Walking 1/0"``, ``"TS1"``, ...).

Used by the 3D families (H36M: ``(T,17,3)`` metres per sequence; MPI-INF-3DHP: ``(T,17,3)`` per test
sequence). Each array is checked against the shape the GT expects (frame count included), for a numeric
dtype and for finite values. Keys the protocol does not score are ignored with a warning; a scored key
that is missing is an error. The file is read by :func:`bench.safe_pickle.load_npz` with pickled object
arrays refused (a prediction file has no business holding Python objects).
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from bench.errors import InputError
from bench.safe_pickle import load_npz


class UnscoredKeysWarning(UserWarning):
    """A predictions file has keys for sequences the protocol does not score (they are ignored)."""


def read_pose_npz(path: str | Path, expected: Mapping[str, tuple[int, ...]], what: str = "sequence",
                  dtype: torch.dtype = torch.float64) -> dict[str, Tensor]:
    """Read and validate ``{key: array}``; ``expected`` maps every scored key to its exact shape.

    Returns float tensors (``dtype``) for the expected keys only, in ``expected`` order.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, None, "predictions file not found")
    arrays = load_npz(path, allow_pickle_objects=False)
    extra = sorted(set(arrays) - set(expected))
    if extra:
        shown = ", ".join(repr(k) for k in extra[:5]) + (" ..." if len(extra) > 5 else "")
        warnings.warn(f"{path}: ignoring {len(extra)} key(s) for {what}s the protocol does not score: {shown}",
                      UnscoredKeysWarning, stacklevel=2)
    out: dict[str, Tensor] = {}
    for key, shape in expected.items():
        if key not in arrays:
            raise InputError(path, f"key {key!r}", key, f"missing: the protocol scores this {what} "
                                                        f"(expected an array of shape {tuple(shape)})")
        a = arrays[key]
        if a.dtype.kind not in "fiu" or a.dtype.itemsize > 8:
            raise InputError(path, f"key {key!r}", "dtype", f"expected a float array, got dtype {a.dtype}")
        if tuple(a.shape) != tuple(shape):
            raise InputError(path, f"key {key!r}", "shape", f"expected {tuple(shape)}, got {tuple(a.shape)}")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            bad = np.argwhere(~np.isfinite(a))[0].tolist()
            raise InputError(path, f"key {key!r}", "values", f"non-finite value at index {bad}")
        out[key] = torch.from_numpy(np.ascontiguousarray(a)).to(dtype)
    return out
