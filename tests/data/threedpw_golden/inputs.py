"""Fixed synthetic meshes for the 3DPW metric goldens (tests/data/threedpw_golden/), shared by the test and
the script that ran the reference code on them. Pure numpy (PCG64), so both sides build identical arrays."""
from __future__ import annotations

import numpy as np

from tests.smpl_synthetic import synthetic_smpl


def _rotation(rng: np.random.Generator, max_angle: float) -> np.ndarray:
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = rng.uniform(-max_angle, max_angle)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def golden_meshes(n: int = 6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(gt, pred, offset)``: ``(n, 6890, 3)`` float64 GT meshes near the origin (male synthetic template,
    rotated), predictions (neutral template, rotated, scaled, shifted into the camera frame, noisy; frame 1
    mirrored so Procrustes needs its reflection fix), and ``(n, 3)`` GT offsets to the camera frame."""
    rng = np.random.default_rng(3)
    male = synthetic_smpl("male", sparse_regressor=False)["v_template"]
    neutral = synthetic_smpl("neutral", sparse_regressor=False)["v_template"]
    gt, pred, offset = [], [], []
    for i in range(n):
        r = _rotation(rng, np.pi)
        g = (male + rng.normal(0, 0.005, male.shape)) @ r.T
        off = np.array([rng.uniform(-1, 1), rng.uniform(-0.5, 0.5), rng.uniform(3, 6)])
        p = rng.uniform(0.9, 1.1) * (neutral @ (_rotation(rng, 0.3) @ r).T) + rng.normal(0, 0.02, neutral.shape)
        if i == 1:
            p = p * np.array([-1.0, 1.0, 1.0])
        p = p + off + rng.normal(0, 0.1, 3)
        gt.append(g)
        pred.append(p)
        offset.append(off)
    return np.stack(gt), np.stack(pred), np.stack(offset)
