"""Fixed synthetic predictions for the bundled RICH sample (tests/data/rich_golden/), shared by the test and the
script that ran WHAM's code on them. numpy and scipy (PCG64), so both sides get identical arrays; the sample's
GT poses are read by bench/safe_pickle.py's joblib reader (no joblib needed).

Two cases in the predictions format of bench/predictions/emdb.py (camera frame), every sequence of the sample:

- ``axis_angle_every_frame``: axis-angle poses for every frame (the unscored first one included), betas per frame;
- ``rotmat_scored_frames``: rotation matrices (WHAM's own output form) for the scored frames only (all but the
  first), one betas vector.

Each prediction is the GT perturbed: the SMPL-X body joints 1-21 plus two hand-ish joints as SMPL's 23, with
noise, other betas, a root near the GT's.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]
SAMPLE = REPO / "bench" / "data" / "samples" / "rich" / "rich_test_vit.pth"
CASES = {"axis_angle_every_frame": 7, "rotmat_scored_frames": 8}  # name -> seed


def sample_labels(path: Path = SAMPLE) -> dict[str, list]:
    """The label dict of the bundled file (our own synthetic file), tensors as float64 numpy arrays."""
    import torch

    from bench.safe_pickle import load_joblib

    labels = load_joblib(path, allow_torch=True)
    return {k: [v.double().numpy() if isinstance(v, torch.Tensor) else v for v in vals] for k, vals in labels.items()}


def predictions(case: str, path: Path = SAMPLE) -> dict[str, np.ndarray]:
    """The npz content of one case: ``{vid}/{field}`` -> array."""
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(CASES[case])
    rotmat = case == "rotmat_scored_frames"
    labels = sample_labels(path)
    out = {}
    for vid, pose, betas in zip(labels["vid"], labels["pose"], labels["betas"]):
        pose = pose[1:] if rotmat else pose
        t = len(pose)
        body = pose[:, 3:72] + rng.normal(0, 0.06, (t, 69))
        root = Rotation.from_rotvec(pose[:, :3]) * Rotation.from_rotvec(rng.normal(0, 0.05, (t, 3)))
        if rotmat:
            fields = {"poses_body": Rotation.from_rotvec(body.reshape(-1, 3)).as_matrix().reshape(t, 23, 3, 3),
                      "poses_root_cam": root.as_matrix(), "betas": betas[0] + rng.normal(0, 0.3, 10)}
        else:
            fields = {"poses_body": body, "poses_root_cam": root.as_rotvec(),
                      "betas": betas[:t] + rng.normal(0, 0.3, (t, 10))}
        out.update({f"{vid}/{k}": v for k, v in fields.items()})
    return out
