"""A synthetic model in the official SMPL-X file format and a synthetic ``smplx2smpl.pkl``, for tests (the real
files cannot be shipped).

SMPL-X: the keys, shapes and dtypes ``smplx.SMPLX`` reads from ``SMPLX_{NEUTRAL,MALE,FEMALE}.npz``
(``v_template`` (10475, 3), ``shapedirs`` (10475, 3, 20): 10 shape + 10 expression components as in the v1.0
files, ``posedirs`` (10475, 3, 486), ``J_regressor`` (55, 10475), ``weights`` (10475, 55), ``kintree_table``
(2, 55), ``f`` (20908, 3), ``hands_components{l,r}`` (45, 45), ``hands_mean{l,r}`` (45,), ``lmk_faces_idx`` (51,),
``lmk_bary_coords`` (51, 3)); a random smooth blob as tests/smpl_synthetic.py's, each vertex owned by one of the
22 body joints (hands and face joints own none), non-zero hand means so the PCA hand pose matters.

``smplx2smpl``: WHAM's ``body_models/smplx2smpl.pkl`` is ``{"matrix": (6890, 10475)}``; here each SMPL vertex is
a fixed convex combination of three SMPL-X vertices of its body part, pickled as a scipy CSR matrix (a dense
float64 one would be 577 MB).
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from tests.smpl_synthetic import _JOINTS, GENDER_SEED

N_VERTS, N_FACES, N_JOINTS, N_SMPL = 10475, 20908, 55, 6890
#: SMPL-X's kinematic tree: body (22), jaw, eyes, left hand (15), right hand (15)
SMPLX_PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 15, 15, 15,
                 20, 25, 26, 20, 28, 29, 20, 31, 32, 20, 34, 35, 20, 37, 38,
                 21, 40, 41, 21, 43, 44, 21, 46, 47, 21, 49, 50, 21, 52, 53]


def synthetic_smplx(gender: str = "neutral") -> dict[str, np.ndarray]:
    """The model arrays for one gender (deterministic)."""
    rng = np.random.default_rng(2000 + GENDER_SEED[gender])
    joints = np.concatenate([_JOINTS[:22], _JOINTS[[15, 15, 15]] + [[0, 0.02, 0.05], [0.03, 0.05, 0.06],
                                                                      [-0.03, 0.05, 0.06]],
                             _JOINTS[20] + rng.normal(0, 0.04, (15, 3)), _JOINTS[21] + rng.normal(0, 0.04, (15, 3))])
    owner = np.arange(N_VERTS) % 22
    scale = 1.0 + 0.03 * GENDER_SEED[gender]
    weights = np.full((N_VERTS, N_JOINTS), 0.02 / (N_JOINTS - 1))
    weights[np.arange(N_VERTS), owner] = 0.98
    anchor = [*range(22), 15, 15, 15, *[20] * 15, *[21] * 15]  # face / hand joints: vertices of head / wrists
    j_reg = np.zeros((N_JOINTS, N_VERTS))
    for k, a in enumerate(anchor):
        j_reg[k, (owner == a) & ((np.arange(N_VERTS) % 7 == k % 7) | (k < 22))] = 1.0
    j_reg /= j_reg.sum(1, keepdims=True)
    faces = np.stack([np.arange(N_FACES) % N_VERTS, (np.arange(N_FACES) + 1) % N_VERTS,
                      (np.arange(N_FACES) + N_JOINTS) % N_VERTS], 1).astype(np.int32)
    return {"v_template": joints[owner] * scale + rng.normal(0, 0.03, (N_VERTS, 3)),
            "shapedirs": rng.normal(0, 0.01, (N_VERTS, 3, 20)),
            "posedirs": rng.normal(0, 0.001, (N_VERTS, 3, 486)).astype(np.float32),
            "J_regressor": j_reg, "weights": weights,
            "kintree_table": np.array([[p % 2**32 for p in SMPLX_PARENTS], list(range(N_JOINTS))], dtype=np.int64),
            "f": faces, "hands_componentsl": rng.normal(0, 0.3, (45, 45)),
            "hands_componentsr": rng.normal(0, 0.3, (45, 45)),
            "hands_meanl": rng.normal(0, 0.2, 45), "hands_meanr": rng.normal(0, 0.2, 45),
            "lmk_faces_idx": np.arange(51, dtype=np.int64), "lmk_bary_coords": np.full((51, 3), 1 / 3)}


def synthetic_smplx2smpl():
    """``(6890, 10475)`` scipy CSR: SMPL vertex i = 0.5 / 0.25 / 0.25 of three SMPL-X vertices of the same body
    part (SMPL's owner ``i % 24``, hands 22 and 23 on the wrists 20 and 21; SMPL-X's ``j % 22``)."""
    import scipy.sparse as sp

    i = np.arange(N_SMPL)
    part = np.where(i % 24 < 22, i % 24, i % 24 - 2)
    k = (i // 24) % (N_VERTS // 22)
    cols = 22 * ((k[:, None] + np.array([0, 1, 5])) % (N_VERTS // 22)) + part[:, None]
    vals = np.tile([0.5, 0.25, 0.25], N_SMPL)
    return sp.csr_matrix((vals, (np.repeat(i, 3), cols.reshape(-1))), shape=(N_SMPL, N_VERTS))


def write_smplx_dir(root: Path, genders=("neutral", "male", "female")) -> Path:
    """Write ``root/smplx/SMPLX_<GENDER>.npz`` (what ``smplx.SMPLX(root/'smplx', gender=...)`` reads) and
    ``root/smplx2smpl.pkl`` (``{"matrix": CSR}``, pickle protocol 4); returns ``root``."""
    (root / "smplx").mkdir(parents=True, exist_ok=True)
    for g in genders:
        np.savez(root / "smplx" / f"SMPLX_{g.upper()}.npz", **synthetic_smplx(g))
    with open(root / "smplx2smpl.pkl", "wb") as fh:
        pickle.dump({"matrix": synthetic_smplx2smpl()}, fh, protocol=4)
    return root
