"""SMPL-X body models and WHAM's SMPL-X -> SMPL vertex map from the user's ``smpl_dir``, loaded without running
pickled code.

Layout (WHAM's ``dataset/body_models/``, which ``smpl_dir`` stands for): ``smplx/SMPLX_{NEUTRAL,MALE,FEMALE}.npz``
(the official SMPL-X files, what ``smplx.SMPLX(folder, gender=...)`` opens), ``smplx2smpl.pkl`` (WHAM's
``{"matrix": (6890, 10475)}``, joblib or plain pickle; a scipy sparse matrix is accepted too) and
``smpl/SMPL_NEUTRAL.pkl`` (bench/formats/smpl.py).

``smplx.SMPLX`` opens its file with ``np.load(allow_pickle=True)`` and takes no ready arrays, so :func:`load_smplx`
reads the file with :func:`bench.safe_pickle.load_npz`, checks the arrays it needs, writes them (plain arrays only,
no pickles) to a temporary npz and lets smplx open that.
"""
from __future__ import annotations

import contextlib
import io
import tempfile
import threading
from pathlib import Path

import numpy as np
import torch

from bench.errors import InputError
from bench.formats.smpl import GENDERS, N_VERTS, check_model_arrays
from bench.safe_pickle import load_joblib, load_npz

N_SMPLX_VERTS, N_SMPLX_JOINTS = 10475, 55
_SHAPES: dict[str, tuple[int | None, ...]] = {
    "v_template": (N_SMPLX_VERTS, 3), "shapedirs": (N_SMPLX_VERTS, 3, None), "posedirs": (N_SMPLX_VERTS, 3, 486),
    "J_regressor": (N_SMPLX_JOINTS, N_SMPLX_VERTS), "weights": (N_SMPLX_VERTS, N_SMPLX_JOINTS),
    "kintree_table": (2, N_SMPLX_JOINTS), "f": (None, 3), "hands_componentsl": (45, 45),
    "hands_componentsr": (45, 45), "hands_meanl": (45,), "hands_meanr": (45,), "lmk_faces_idx": (None,),
    "lmk_bary_coords": (None, 3)}
_CACHE: dict[tuple[str, str, torch.dtype], torch.nn.Module] = {}
_LOCK = threading.Lock()


def smplx_path(smpl_dir: str | Path, gender: str) -> Path:
    """``smpl_dir/smplx/SMPLX_<GENDER>.npz`` (WHAM: ``SMPLX(_C.BMODEL.FLDR.replace('smpl', 'smplx'), gender)``)."""
    return Path(smpl_dir) / "smplx" / f"SMPLX_{gender.upper()}.npz"


def _dir(smpl_dir, what: str) -> Path:
    if smpl_dir is None or str(smpl_dir) == "":
        raise InputError(None, None, "smpl_dir", f"not set: pass smpl_dir=DIR holding {what} (the body model files "
                                                 "cannot be shipped)")
    return Path(smpl_dir)


def read_smplx_arrays(smpl_dir: str | Path, gender: str) -> dict[str, np.ndarray]:
    """The checked arrays of one gender's SMPL-X file (what smplx reads of it, nothing else)."""
    if gender not in GENDERS:
        raise InputError(None, None, "gender", f"expected one of {GENDERS}, got {gender!r}")
    path = smplx_path(_dir(smpl_dir, "smplx/SMPLX_{NEUTRAL,MALE,FEMALE}.npz"), gender)
    if not path.is_file():
        raise InputError(path, None, "smpl_dir", f"file not found: expected smpl_dir/smplx/{path.name}")
    data = load_npz(path)
    out = check_model_arrays(path, data, _SHAPES, kinds="fiu", any_size="N")
    if out["shapedirs"].shape[2] < 20:
        raise InputError(path, "key shapedirs", "smpl_dir", f"expected >= 20 components (10 shape, 10 expression), "
                                                            f"got {out['shapedirs'].shape[2]}")
    if out["f"].min() < 0 or out["f"].max() >= N_SMPLX_VERTS:
        raise InputError(path, "key f", "smpl_dir", "face indices out of range")
    return out


def load_smplx(smpl_dir: str | Path, gender: str, dtype: torch.dtype = torch.float64):
    """``smplx.SMPLX`` of ``gender`` with smplx's defaults (10 betas, 10 expressions, 6 PCA hand components at
    the hand mean), cached per (path, gender, dtype); call it with every input explicit (batch size)."""
    import smplx

    key = (str(smplx_path(_dir(smpl_dir, "smplx/"), gender).resolve()), gender, dtype)
    with _LOCK:
        model = _CACHE.get(key)
        if model is None:
            arrays = read_smplx_arrays(smpl_dir, gender)
            with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
                np.savez(Path(tmp) / f"SMPLX_{gender.upper()}.npz", **arrays)  # checked plain arrays only
                model = smplx.SMPLX(tmp, gender=gender, dtype=dtype)
            model.requires_grad_(False)
            _CACHE[key] = model
    return model


def load_smplx2smpl(smpl_dir: str | Path):
    """WHAM's SMPL-X -> SMPL vertex matrix ``smpl_dir/smplx2smpl.pkl`` (``["matrix"]``, (6890, 10475)) as a float64
    scipy CSR matrix (the real one is dense and mostly zeros)."""
    import scipy.sparse as sp

    path = _dir(smpl_dir, "smplx2smpl.pkl") / "smplx2smpl.pkl"
    if not path.is_file():
        raise InputError(path, None, "smpl_dir", "file not found: expected smpl_dir/smplx2smpl.pkl (WHAM's "
                                                 "body_models/smplx2smpl.pkl)")
    data = load_joblib(path, allow_sparse=True)
    matrix = data.get("matrix") if isinstance(data, dict) else None
    if matrix is None:
        raise InputError(path, "key matrix", "smpl_dir", "missing (WHAM's smplx2smpl.pkl is a dict with 'matrix')")
    if isinstance(matrix, (sp.csr_matrix, sp.csc_matrix)):
        try:
            matrix = type(matrix)((np.asarray(matrix.data), np.asarray(matrix.indices), np.asarray(matrix.indptr)),
                                  shape=tuple(int(n) for n in matrix._shape))
        except Exception as e:  # noqa: BLE001 - a malformed sparse matrix fails in many ways
            raise InputError(path, "key matrix", "smpl_dir", f"malformed sparse matrix: {e}") from None
    elif not isinstance(matrix, np.ndarray) or matrix.dtype.kind not in "fiu":
        raise InputError(path, "key matrix", "smpl_dir", f"expected a numeric array, got {type(matrix).__name__}")
    if matrix.shape != (N_VERTS, N_SMPLX_VERTS):
        raise InputError(path, "key matrix", "smpl_dir", f"expected shape ({N_VERTS}, {N_SMPLX_VERTS}), got "
                                                         f"{matrix.shape}")
    out = sp.csr_matrix(matrix, dtype=np.float64)
    if not np.isfinite(out.data).all():
        raise InputError(path, "key matrix", "smpl_dir", "holds NaN or inf")
    return out
