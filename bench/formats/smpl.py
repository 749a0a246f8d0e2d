"""SMPL body models from the user's ``smpl_dir``, loaded without running pickled code.

The SMPL licence forbids shipping the model files, so users pass ``smpl_dir=`` pointing at a folder laid out
as ``smplx.create`` expects: ``smpl_dir/smpl/SMPL_{NEUTRAL,MALE,FEMALE}.pkl`` (dechumpied: plain numpy arrays,
``J_regressor`` a scipy sparse matrix). :func:`load_smpl` unpickles the file itself through
:class:`bench.safe_pickle.RestrictedUnpickler` (numpy + scipy CSC/CSR only), checks every key's shape, and
hands ``smplx.SMPL`` a ready ``data_struct`` so smplx never calls ``pickle`` itself. Any problem is one
:class:`~bench.errors.InputError` naming the file and the field ``smpl_dir``.
"""
from __future__ import annotations

import contextlib
import io
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.errors import InputError
from bench.safe_pickle import load_pickle

GENDERS = ("neutral", "male", "female")
N_VERTS, N_JOINTS = 6890, 24

# key -> expected shape (None: any size on that axis); shapedirs may carry 10 or 300 betas
_SHAPES: dict[str, tuple[int | None, ...]] = {
    "v_template": (N_VERTS, 3),
    "shapedirs": (N_VERTS, 3, None),
    "posedirs": (N_VERTS, 3, 207),
    "J_regressor": (N_JOINTS, N_VERTS),
    "weights": (N_VERTS, N_JOINTS),
    "kintree_table": (2, N_JOINTS),
    "f": (13776, 3),
}

_CACHE: dict[tuple[str, str, torch.dtype], torch.nn.Module] = {}
_LOCK = threading.Lock()


def smpl_path(smpl_dir: str | Path, gender: str) -> Path:
    """``smpl_dir/smpl/SMPL_<GENDER>.pkl``, the layout ``smplx.create(smpl_dir, model_type='smpl')`` reads."""
    return Path(smpl_dir) / "smpl" / f"SMPL_{gender.upper()}.pkl"


def _dense(value, path: Path, key: str) -> np.ndarray:
    """A numpy array from a dense array or an unpickled scipy sparse matrix (rebuilt from its arrays)."""
    try:
        if isinstance(value, np.ndarray):
            return value
        import scipy.sparse as sp

        if isinstance(value, (sp.csc_matrix, sp.csr_matrix)):
            cls = type(value)
            rebuilt = cls((np.asarray(value.data), np.asarray(value.indices), np.asarray(value.indptr)),
                          shape=tuple(int(n) for n in value._shape))
            return rebuilt.toarray()
    except Exception as e:  # noqa: BLE001 - a malformed sparse matrix fails in many ways
        raise InputError(path, f"key {key}", "smpl_dir", f"malformed sparse matrix: {type(e).__name__}: {e}") from None
    raise InputError(path, f"key {key}", "smpl_dir", f"expected an array, got {type(value).__name__}")


def check_model_arrays(path: Path, data: Any, shapes: dict[str, tuple[int | None, ...]], kinds: str, any_size: str,
                       convert: Any = None) -> dict[str, np.ndarray]:
    """The arrays ``shapes`` names from a body-model file (SMPL pickle, SMPL-X npz), each checked: present,
    numeric (dtype kind in ``kinds``), of that shape (None: any size, shown as ``any_size``), finite.
    ``convert(value, path, key)`` turns a stored value into an array first (SMPL: sparse -> dense)."""
    out: dict[str, np.ndarray] = {}
    for key, shape in shapes.items():
        if data.get(key) is None:
            raise InputError(path, f"key {key}", "smpl_dir", "missing")
        arr = convert(data[key], path, key) if convert is not None else data[key]
        if arr.dtype.kind not in kinds or arr.ndim != len(shape) or any(
                want is not None and got != want for got, want in zip(arr.shape, shape)):
            raise InputError(path, f"key {key}", "smpl_dir",
                             f"expected a numeric array of shape {tuple(s or any_size for s in shape)}, "
                             f"got {arr.dtype} {arr.shape}")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise InputError(path, f"key {key}", "smpl_dir", "holds NaN or inf")
        out[key] = arr
    return out


def read_smpl_arrays(smpl_dir: str | Path, gender: str) -> dict[str, np.ndarray]:
    """The validated model arrays of one gender (``J_regressor`` dense) from ``smpl_dir``."""
    if gender not in GENDERS:
        raise InputError(None, None, "gender", f"expected one of {GENDERS}, got {gender!r}")
    if smpl_dir is None or str(smpl_dir) == "":
        raise InputError(None, None, "smpl_dir", "not set: pass smpl_dir=DIR holding smpl/SMPL_{NEUTRAL,MALE,"
                                                 "FEMALE}.pkl (the SMPL files cannot be shipped)")
    path = smpl_path(smpl_dir, gender)
    if not path.is_file():
        what = "directory does not exist" if not Path(smpl_dir).is_dir() else "file not found"
        raise InputError(path, None, "smpl_dir", f"{what}: expected smpl_dir/smpl/SMPL_{gender.upper()}.pkl")
    try:
        data = load_pickle(path, encoding="latin1", allow_sparse=True)
    except InputError as e:
        hint = " (official SMPL files hold chumpy objects: dechumpy them first)" if "chumpy" in e.problem else ""
        raise InputError(path, e.record, "smpl_dir", e.problem + hint) from None
    if not isinstance(data, dict):
        raise InputError(path, None, "smpl_dir", f"expected a dict of arrays, got {type(data).__name__}")
    out = check_model_arrays(path, data, _SHAPES, kinds="fiub", any_size="B", convert=_dense)
    if out["shapedirs"].shape[2] < 10:
        raise InputError(path, "key shapedirs", "smpl_dir", f"expected >= 10 shape components, "
                                                            f"got {out['shapedirs'].shape[2]}")
    if out["f"].min() < 0 or out["f"].max() >= N_VERTS:
        raise InputError(path, "key f", "smpl_dir", "face indices out of range")
    return out


def load_smpl(smpl_dir: str | Path, gender: str, dtype: torch.dtype = torch.float32):
    """A ``smplx.SMPL`` (10 betas) for ``gender`` in ``neutral|male|female``, cached per (path, gender, dtype).

    The cached module is shared: call it with explicit ``betas``, ``body_pose`` and ``global_orient`` (and
    ``transl`` if needed) rather than changing its parameters.
    """
    import smplx
    from smplx.utils import Struct

    path = smpl_path(smpl_dir, gender) if smpl_dir is not None else None
    key = (str(path.resolve()) if path is not None else "", gender, dtype)
    with _LOCK:
        model = _CACHE.get(key)
        if model is None:
            arrays = read_smpl_arrays(smpl_dir, gender)
            with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a note about 10 betas
                model = smplx.SMPL(str(path.parent), data_struct=Struct(**arrays), gender=gender, num_betas=10,
                                   dtype=dtype)
            model.requires_grad_(False)
            _CACHE[key] = model
    return model
