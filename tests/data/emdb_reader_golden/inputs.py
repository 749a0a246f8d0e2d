"""Fixed synthetic predictions for the bundled EMDB sample (tests/data/emdb_reader_golden/), shared by the test and
the script that ran WHAM's code on them. Pure numpy and scipy (PCG64), so both sides get identical arrays.

Two cases in the predictions format of bench/predictions/emdb.py, every sequence of the sample:

- ``axis_angle_every_frame``: axis-angle poses for every frame (bad frames included), betas per frame;
- ``rotmat_good_frames``: rotation matrices (WHAM's own output form) for the good frames only, one betas vector.

Each prediction is the GT perturbed: body pose noise, other betas, a camera root near the GT's, and a world
motion turned, scaled, shifted and drifting (so every aligned world key is non-zero).
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]
SAMPLE = REPO / "bench" / "data" / "samples" / "emdb"
CASES = {"axis_angle_every_frame": 5, "rotmat_good_frames": 6}  # name -> seed


def sample_sequences(root: Path = SAMPLE) -> dict[str, dict]:
    """``{subject}_{sequence}`` -> the official dict of each bundled sequence file (our own synthetic files)."""
    out = {}
    for f in sorted(root.glob("*/*/*_data.pkl")):
        with open(f, "rb") as fh:
            out[f"{f.parent.parent.name}_{f.parent.name}"] = pickle.load(fh)
    return out


def predictions(case: str, root: Path = SAMPLE) -> dict[str, np.ndarray]:
    """The npz content of one case: ``{sequence}/{field}`` -> array."""
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(CASES[case])
    rotmat = case == "rotmat_good_frames"
    out = {}
    for key, d in sample_sequences(root).items():
        keep = d["good_frames_mask"] if rotmat else np.ones(d["n_frames"], dtype=bool)
        t = int(keep.sum())
        smpl = d["smpl"]
        body = smpl["poses_body"][keep] + rng.normal(0, 0.06, (t, 69))
        r_root = Rotation.from_rotvec(smpl["poses_root"][keep])
        noise = Rotation.from_rotvec(rng.normal(0, 0.05, (t, 3)))
        r_cam = Rotation.from_matrix(d["camera"]["extrinsics"][keep, :3, :3]) * r_root * noise
        turn = Rotation.from_rotvec(rng.normal(0, 0.3, 3))
        r_world = turn * r_root * Rotation.from_rotvec(rng.normal(0, 0.05, (t, 3)))
        drift = np.cumsum(rng.normal(0, 0.01, (t, 3)), axis=0)
        trans = rng.uniform(0.9, 1.1) * turn.apply(smpl["trans"][keep]) + rng.normal(0, 1, 3) + drift
        if rotmat:
            fields = {"poses_body": Rotation.from_rotvec(body.reshape(-1, 3)).as_matrix().reshape(t, 23, 3, 3),
                      "poses_root_cam": r_cam.as_matrix(), "poses_root_world": r_world.as_matrix(),
                      "betas": smpl["betas"] + rng.normal(0, 0.3, 10)}
        else:
            fields = {"poses_body": body, "poses_root_cam": r_cam.as_rotvec(), "poses_root_world": r_world.as_rotvec(),
                      "betas": smpl["betas"] + rng.normal(0, 0.3, (t, 10))}
        fields["trans_world"] = trans
        out.update({f"{key}/{k}": v for k, v in fields.items()})
    return out
