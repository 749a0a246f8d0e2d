"""A synthetic model in the official SMPL file format, for tests (the real SMPL files cannot be shipped).

Same keys, shapes and dtypes as a dechumpied ``SMPL_{NEUTRAL,MALE,FEMALE}.pkl`` (shared/PROTOCOLS.md):
``v_template`` (6890, 3), ``shapedirs`` (6890, 3, 10), ``posedirs`` (6890, 3, 207), ``J_regressor``
(24, 6890) as a scipy CSC matrix like the real files (or dense with ``sparse_regressor=False``),
``weights`` (6890, 24), ``kintree_table`` (2, 24) uint32, ``f`` (13776, 3) uint32, pickled with protocol 2
(``posedirs`` in float32 to keep fixtures small).
The body is a random but smooth blob: each vertex belongs to the nearest of 24 joints placed along a
rough human skeleton, so posing moves limbs and the genders differ in template and shape basis.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

N_VERTS, N_FACES, N_JOINTS = 6890, 13776, 24
# SMPL's kinematic tree (parent of each joint; -1 written as 2**32-1 in the real files)
SMPL_PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]
# rest joint positions (metres), roughly SMPL's T-pose
_JOINTS = np.array([
    [0.0, 0.0, 0.0], [0.06, -0.09, 0.0], [-0.06, -0.09, 0.0], [0.0, 0.11, -0.02], [0.11, -0.47, 0.0],
    [-0.11, -0.47, 0.0], [0.0, 0.25, 0.0], [0.07, -0.87, -0.04], [-0.07, -0.87, -0.04], [0.0, 0.31, 0.02],
    [0.12, -0.93, 0.08], [-0.12, -0.93, 0.08], [0.0, 0.52, -0.01], [0.08, 0.43, -0.01], [-0.08, 0.43, -0.01],
    [0.0, 0.6, 0.04], [0.19, 0.46, -0.01], [-0.19, 0.46, -0.01], [0.45, 0.44, -0.03], [-0.45, 0.44, -0.03],
    [0.71, 0.45, -0.03], [-0.71, 0.45, -0.03], [0.79, 0.44, -0.03], [-0.79, 0.44, -0.03]])

GENDER_SEED = {"neutral": 0, "male": 1, "female": 2}


def synthetic_smpl(gender: str = "neutral", *, sparse_regressor: bool = True) -> dict:
    """The model dict for one gender (deterministic)."""
    import scipy.sparse as sp

    rng = np.random.default_rng(1000 + GENDER_SEED[gender])
    owner = np.arange(N_VERTS) % N_JOINTS
    scale = 1.0 + 0.03 * GENDER_SEED[gender]
    v_template = _JOINTS[owner] * scale + rng.normal(0, 0.03, (N_VERTS, 3))
    shapedirs = rng.normal(0, 0.01, (N_VERTS, 3, 10))
    posedirs = rng.normal(0, 0.001, (N_VERTS, 3, 207)).astype(np.float32)  # float32 keeps the file small
    weights = np.full((N_VERTS, N_JOINTS), 0.02 / (N_JOINTS - 1))
    weights[np.arange(N_VERTS), owner] = 0.98
    j_reg = np.zeros((N_JOINTS, N_VERTS))
    j_reg[owner, np.arange(N_VERTS)] = 1.0
    j_reg /= j_reg.sum(1, keepdims=True)
    faces = np.stack([np.arange(N_FACES) % N_VERTS, (np.arange(N_FACES) + 1) % N_VERTS,
                      (np.arange(N_FACES) + N_JOINTS) % N_VERTS], 1).astype(np.uint32)
    kintree = np.array([[p % 2**32 for p in SMPL_PARENTS], list(range(N_JOINTS))], dtype=np.uint32)
    return {"v_template": v_template, "shapedirs": shapedirs, "posedirs": posedirs,
            "J_regressor": sp.csc_matrix(j_reg) if sparse_regressor else j_reg, "weights": weights,
            "kintree_table": kintree, "f": faces}


def write_smpl_dir(root: Path, genders=("neutral", "male", "female"), *, sparse_regressor: bool = True) -> Path:
    """Write ``root/smpl/SMPL_<GENDER>.pkl`` (the layout ``smplx.create(root, model_type='smpl')`` reads);
    returns ``root``, the value users pass as ``smpl_dir``."""
    (root / "smpl").mkdir(parents=True, exist_ok=True)
    for g in genders:
        with open(root / "smpl" / f"SMPL_{g.upper()}.pkl", "wb") as fh:
            pickle.dump(synthetic_smpl(g, sparse_regressor=sparse_regressor), fh, protocol=2)
    return root
