"""Fixed synthetic motion for the EMDB metric goldens (tests/data/emdb_golden/), shared by the test and the
script that ran WHAM's and EMDB's code on it. Pure numpy (PCG64), so both sides build identical arrays."""
from __future__ import annotations

import numpy as np

#: (frames, seed) per sequence: 157 frames = chunks of 100 and 57; 43 frames = one short chunk
SEQUENCES = ((157, 11), (43, 12))
FEET = (3216, 3387, 6617, 6787)
N_VERTS = 6890


def _rotation(angle: float, axis: np.ndarray) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def sequence(frames: int, seed: int) -> dict[str, np.ndarray]:
    """One sequence, float64 metres: world joints ``gt_joints``/``pred_joints`` (T, 24, 3), root translations
    ``gt_transl``/``pred_transl`` (T, 3), world vertices ``gt_verts``/``pred_verts`` (T, 6890, 3) (zero but for
    the four foot vertices, which step: still for a few frames, then moving), camera-frame joints and vertices
    ``gt_cam_joints``/``pred_cam_joints`` (T, 24, 3), ``gt_cam_verts``/``pred_cam_verts`` (T, 6890, 3)."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames) / 30.0
    skeleton = rng.normal(0, 0.3, (24, 3))
    gt_transl = np.stack([0.9 * t, 0.05 * np.sin(2 * t), 0.4 * np.cos(0.7 * t)], 1) + rng.normal(0, 0.003, (frames, 3))
    gt_joints = gt_transl[:, None] + skeleton + rng.normal(0, 0.01, (frames, 24, 3))
    r = _rotation(rng.uniform(0.2, 0.6), rng.normal(size=3))
    scale = rng.uniform(0.9, 1.1)
    drift = np.cumsum(rng.normal(0, 0.004, (frames, 3)), axis=0)
    offset = rng.normal(0, 1, 3)
    pred_joints = scale * gt_joints @ r.T + offset + drift[:, None] + rng.normal(0, 0.02, (frames, 24, 3))
    pred_transl = scale * gt_transl @ r.T + offset + drift + rng.normal(0, 0.01, (frames, 3))
    gt_verts = np.zeros((frames, N_VERTS, 3))
    pred_verts = np.zeros((frames, N_VERTS, 3))
    moving = (np.arange(frames) // 4) % 2 == 1  # 4 frames still, 4 moving
    steps = np.where(moving[:, None, None], rng.normal(0, 0.03, (frames, 4, 3)), rng.normal(0, 0.002, (frames, 4, 3)))
    gt_feet = rng.normal(0, 0.3, (4, 3)) + np.cumsum(steps, axis=0)
    gt_verts[:, list(FEET)] = gt_feet
    pred_verts[:, list(FEET)] = gt_feet + np.cumsum(rng.normal(0, 0.004, (frames, 4, 3)), axis=0)
    gt_cam_joints = skeleton @ _rotation(0.3, np.array([0.0, 1.0, 0.0])).T + np.array([0, 0, 4.0]) \
        + rng.normal(0, 0.02, (frames, 24, 3))
    pred_cam_joints = gt_cam_joints + rng.normal(0, 0.03, (frames, 24, 3)) + rng.normal(0, 0.1, (frames, 1, 3))
    owner = np.arange(N_VERTS) % 24
    gt_cam_verts = gt_cam_joints[:, owner] + rng.normal(0, 0.05, (N_VERTS, 3))
    pred_cam_verts = pred_cam_joints[:, owner] + rng.normal(0, 0.05, (N_VERTS, 3))
    return {"gt_joints": gt_joints, "pred_joints": pred_joints, "gt_transl": gt_transl, "pred_transl": pred_transl,
            "gt_verts": gt_verts, "pred_verts": pred_verts, "gt_cam_joints": gt_cam_joints,
            "pred_cam_joints": pred_cam_joints, "gt_cam_verts": gt_cam_verts, "pred_cam_verts": pred_cam_verts}


def golden_sequences() -> list[dict[str, np.ndarray]]:
    return [sequence(n, seed) for n, seed in SEQUENCES]
