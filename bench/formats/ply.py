"""Triangle meshes in PLY (ASCII or binary), as the BOP datasets ship their object models."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from bench.errors import InputError


def read_ply(path: Path) -> tuple[Tensor, Tensor]:
    """A triangle mesh (ASCII or binary PLY) -> vertices (N, 3) float64, faces (F, 3) int64."""
    from plyfile import PlyData, PlyParseError

    try:
        ply = PlyData.read(str(path))
    except FileNotFoundError:
        raise InputError(path, None, None, "file not found (models_eval/obj_XXXXXX.ply expected)") from None
    except (PlyParseError, ValueError, OSError, UnicodeDecodeError, IndexError, KeyError) as e:
        raise InputError(path, None, None, f"not a readable PLY file ({str(e)[:80]})") from None
    names = [e.name for e in ply.elements]
    if "vertex" not in names or "face" not in names:
        raise InputError(path, "header", "element", f"needs 'vertex' and 'face' elements, has {names}")
    vert = ply["vertex"].data
    for c in "xyz":
        if c not in vert.dtype.names:
            raise InputError(path, "element vertex", c, "missing vertex property")
    v = np.stack([np.asarray(vert[c], dtype=np.float64) for c in "xyz"], axis=1)
    if not np.isfinite(v).all():
        raise InputError(path, "element vertex", "xyz", "non-finite vertex coordinate")
    face = ply["face"].data
    prop = next((p for p in ("vertex_indices", "vertex_index") if p in face.dtype.names), None)
    if prop is None:
        raise InputError(path, "element face", "vertex_indices", "missing face property")
    lists = face[prop]
    lens = np.fromiter((len(a) for a in lists), dtype=np.int64, count=len(lists))
    if (lens != 3).any():
        i = int(np.flatnonzero(lens != 3)[0])
        raise InputError(path, f"face {i}", prop, f"only triangles are supported, got {lens[i]} corners")
    f = np.stack(list(lists)).astype(np.int64) if len(lists) else np.zeros((0, 3), np.int64)
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise InputError(path, "element face", prop, f"vertex index out of range [0, {len(v)})")
    return torch.from_numpy(v), torch.from_numpy(f)
