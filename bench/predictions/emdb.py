"""EMDB predictions: per-frame SMPL parameters in an .npz, keyed ``"{sequence}/{field}"``.

Why parameters and not vertices: the world-frame keys need the root translation in the world frame (RTE aligns
the SMPL ``transl`` trajectories, not a mesh), and the references build both bodies from parameters: WHAM's
``evaluate_emdb.py`` runs its own outputs (``poses_body``, ``poses_root_cam``, ``poses_root_world``,
``trans_world``, ``betas``) through neutral SMPL, EMDB's ``evaluation_engine.py`` takes SMPL poses, betas and
translations from every method. The field names are WHAM's.

``sequence`` is EMDB's ``{subject}_{sequence}`` (``P0_09_outdoor_walk``, the pickle's ``name`` and WHAM's
``vid``). Fields, T frames (every frame of the sequence, or only its ``good_frames_mask`` frames, as WHAM's
outputs are), float, metres and radians:

- ``poses_body``: ``(T, 69)`` axis-angle, or ``(T, 23, 3, 3)`` rotation matrices (WHAM's ``pose2rot=False``);
- ``betas``: ``(T, 10)`` per frame or ``(10,)`` for the sequence;
- camera frame (``subset=emdb1``): ``poses_root_cam`` ``(T, 3)`` or ``(T, 3, 3)``; the body is built without
  translation (only pelvis-aligned errors are scored); with ``poses_body`` it also gives the global joint
  orientations of EMDB's MPJAE (which is why vertices alone would not do);
- world frame (``subset=emdb2``): ``poses_root_world`` ``(T, 3)`` or ``(T, 3, 3)`` and ``trans_world`` ``(T, 3)``
  (any world frame: every world key aligns the prediction to the GT first).

Root and body use one representation per sequence (smplx turns both into matrices, or neither).
"""
from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.errors import InputError
from bench.predictions.npz import UnscoredKeysWarning
from bench.safe_pickle import load_npz

#: the fields each frame needs besides ``poses_body`` and ``betas``
FRAME_FIELDS: dict[str, tuple[str, ...]] = {"camera": ("poses_root_cam",), "world": ("poses_root_world", "trans_world")}


@dataclass(frozen=True)
class SMPLParams:
    """One sequence's predicted SMPL parameters on its scored frames (float64)."""

    poses_body: np.ndarray   # (F, 69) or (F, 23, 3, 3)
    betas: np.ndarray        # (F, 10)
    roots: dict[str, np.ndarray]  # "poses_root_cam" / "poses_root_world": (F, 3) or (F, 3, 3)
    trans_world: np.ndarray | None  # (F, 3)
    rotmat: bool             # poses are rotation matrices (smplx pose2rot=False)


def _float(arrays: dict, path: Path, key: str) -> np.ndarray:
    a = arrays[key]
    if a.dtype.kind not in "fiu" or a.dtype.itemsize > 8:
        raise InputError(path, f"key {key!r}", "dtype", f"expected a float array, got dtype {a.dtype}")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        bad = np.argwhere(~np.isfinite(a))[0].tolist()
        raise InputError(path, f"key {key!r}", "values", f"non-finite value at index {bad}")
    return a.astype(np.float64)


def read_emdb_npz(path: str | Path, sequences: Mapping[str, np.ndarray], frames: tuple[str, ...],
                  others: Iterable[str] = ()) -> dict[str, SMPLParams]:
    """Read and validate the parameters of every sequence in ``sequences`` (name -> its ``good_frames_mask``),
    with the fields ``frames`` (``camera``, ``world``) need. Keys of the ``others`` (sequences of the dataset
    that this subset does not score) are ignored silently, any other key with a warning."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, "predictions", "file not found")
    arrays = load_npz(path, allow_pickle_objects=False)
    needed = ("poses_body", "betas") + tuple(f for fr in frames for f in FRAME_FIELDS[fr])
    known = {f"{s}/{f}" for s in (*sequences, *others) for f in ("poses_body", "betas", *FRAME_FIELDS["camera"],
                                                       *FRAME_FIELDS["world"])}
    extra = sorted(set(arrays) - known)
    if extra:
        shown = ", ".join(repr(k) for k in extra[:5]) + (" ..." if len(extra) > 5 else "")
        warnings.warn(f"{path}: ignoring {len(extra)} key(s) the protocol does not score: {shown}",
                      UnscoredKeysWarning, stacklevel=2)
    out: dict[str, SMPLParams] = {}
    for seq, mask in sequences.items():
        n_all, n_good = len(mask), int(mask.sum())
        for f in needed:
            if f"{seq}/{f}" not in arrays:
                raise InputError(path, f"key '{seq}/{f}'", f, f"missing: the protocol scores sequence {seq!r} "
                                                              f"({n_all} frames, {n_good} good)")
        body = _float(arrays, path, f"{seq}/poses_body")
        t = body.shape[0] if body.ndim else -1
        if t not in (n_all, n_good):
            raise InputError(path, f"key '{seq}/poses_body'", "shape", f"expected {n_all} frames (every frame) or "
                                                                       f"{n_good} (the good frames), got {body.shape}")
        rotmat = body.shape[1:] == (23, 3, 3)
        if body.shape[1:] not in ((69,), (23, 3, 3)):
            raise InputError(path, f"key '{seq}/poses_body'", "shape",
                             f"expected ({t}, 69) axis-angle or ({t}, 23, 3, 3) rotation matrices, got {body.shape}")
        want = {"poses_root_cam": (t, 3, 3) if rotmat else (t, 3), "poses_root_world": (t, 3, 3) if rotmat else (t, 3),
                "trans_world": (t, 3)}
        fields = {}
        for f in needed[2:]:
            a = _float(arrays, path, f"{seq}/{f}")
            if a.shape != want[f]:
                form = "rotation matrices, as poses_body" if rotmat and f != "trans_world" else "as poses_body"
                raise InputError(path, f"key '{seq}/{f}'", "shape", f"expected {want[f]} ({form}), got {a.shape}")
            fields[f] = a
        betas = _float(arrays, path, f"{seq}/betas")
        if betas.shape == (10,):
            betas = np.repeat(betas[None], t, axis=0)
        elif betas.shape != (t, 10):
            raise InputError(path, f"key '{seq}/betas'", "shape", f"expected ({t}, 10) or (10,), got {betas.shape}")
        keep = mask if t == n_all else slice(None)
        out[seq] = SMPLParams(body[keep], betas[keep],
                              {f: a[keep] for f, a in fields.items() if f != "trans_world"},
                              fields["trans_world"][keep] if "trans_world" in fields else None, rotmat)
    return out
