"""Write the bundled synthetic EMDB sample ``bench/data/samples/emdb/P*/<sequence>/<P*>_<sequence>_data.pkl``.

Official layout and keys (eth-ait/emdb ``dataset.md``): ``gender``, ``name``, ``emdb1``, ``emdb2``, ``n_frames``,
``good_frames_mask``, ``camera`` (``intrinsics``, ``extrinsics`` world -> camera, ``width``, ``height``), ``smpl``
(``poses_root``, ``poses_body``, ``trans``, ``betas``), ``kp2d``, ``bboxes`` (``bboxes``, ``invalid_idxs``); plain
numpy arrays, pickled with protocol 4. Synthetic content: a person walking in stop-and-go steps on a y-up
ground plane (so feet rest for a while: the foot-sliding contacts), smooth body poses, a camera that follows
at 3-4 m; a few bad frames per sequence. Three sequences: one in both subsets with 130 frames (two 100-frame
chunks of good frames), one EMDB 1 only, one EMDB 2 only. ``kp2d`` and ``bboxes`` are the projected root with
fixed offsets (no SMPL model here: they are placeholders with the official shapes, unused by the metrics).
Deterministic: ``python scripts/make_emdb_sample.py [--seed 2026] [--out DIR]``.
"""
from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import numpy as np

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "bench" / "data" / "samples" / "emdb"
#: (subject, sequence, frames, gender, emdb1, emdb2, bad frame ranges)
SEQUENCES = (
    ("P0", "01_synth_walk", 130, "male", True, True, ((40, 46),)),
    ("P1", "02_synth_turn", 40, "female", True, False, ((0, 2), (30, 31))),
    ("P2", "03_synth_stairs", 60, "female", False, True, ((55, 60),)),
)
FPS = 30


def _rodrigues(v: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(..., 3, 3)`` of axis-angle vectors ``(..., 3)``."""
    angle = np.linalg.norm(v, axis=-1, keepdims=True)[..., None]
    axis = v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)
    x, y, z = axis[..., 0], axis[..., 1], axis[..., 2]
    zero = np.zeros_like(x)
    k = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(v.shape[:-1] + (3, 3))
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def make_sequence(rng: np.random.Generator, subject: str, seq: str, n: int, gender: str, emdb1: bool, emdb2: bool,
                  bad: tuple) -> dict:
    t = np.arange(n) / FPS
    heading = rng.uniform(0, 2 * np.pi) + 0.3 * np.sin(0.4 * t)
    speed = 1.4 * np.maximum(0.0, np.sin(2 * np.pi * 0.6 * t + rng.uniform(0, 6)))  # stop and go
    step = speed[:, None] / FPS * np.stack([np.sin(heading), np.zeros(n), np.cos(heading)], 1)
    trans = np.array([rng.uniform(-1, 1), 0.9, rng.uniform(-1, 1)]) + np.cumsum(step, 0)
    trans[:, 1] += 0.01 * np.sin(2 * np.pi * 1.2 * t)
    poses_root = np.stack([0.05 * np.sin(t), heading, 0.03 * np.cos(1.3 * t)], 1)
    amp, freq, phase = rng.uniform(0.02, 0.1, 69), rng.uniform(0.2, 0.8, 69), rng.uniform(0, 6, 69)
    poses_body = rng.normal(0, 0.1, 69) + amp * np.sin(2 * np.pi * freq * t[:, None] + phase)
    betas = rng.normal(0, 0.8, 10)
    # camera 3.5 m behind-left of the person, looking at it, y-up world -> OpenCV camera (y down, z forward)
    eye = trans + np.stack([3.5 * np.cos(0.2 * t + 1), 0.6 + 0 * t, 3.5 * np.sin(0.2 * t + 1)], 1)
    fwd = trans - eye
    fwd /= np.linalg.norm(fwd, axis=1, keepdims=True)
    right = np.cross(fwd, np.array([0.0, 1.0, 0.0]))
    right /= np.linalg.norm(right, axis=1, keepdims=True)
    down = np.cross(fwd, right)
    rot = np.stack([right, down, fwd], 1)  # rows: camera axes in world coordinates
    extrinsics = np.zeros((n, 4, 4))
    extrinsics[:, :3, :3] = rot
    extrinsics[:, :3, 3] = -(rot @ eye[..., None])[..., 0]
    extrinsics[:, 3, 3] = 1.0
    intrinsics = np.array([[1500.0, 0, 720], [0, 1500.0, 960], [0, 0, 1]])
    cam = (rot @ trans[..., None])[..., 0] + extrinsics[:, :3, 3]
    root_px = (cam @ intrinsics.T)[:, :2] / cam[:, 2:]
    kp2d = root_px[:, None] + rng.normal(0, 60, (24, 2))
    bboxes = np.concatenate([kp2d.min(1) - 20, kp2d.max(1) + 20], 1)
    good = np.ones(n, dtype=bool)
    for a, b in bad:
        good[a:b] = False
    return {"gender": gender, "name": f"{subject}_{seq}", "emdb1": emdb1, "emdb2": emdb2, "n_frames": n,
            "good_frames_mask": good,
            "camera": {"intrinsics": intrinsics, "extrinsics": extrinsics, "width": 1440, "height": 1920},
            "smpl": {"poses_root": poses_root, "poses_body": poses_body, "trans": trans, "betas": betas},
            "kp2d": kp2d, "bboxes": {"bboxes": bboxes, "invalid_idxs": np.flatnonzero(~good)}}


def write_sample(out: Path, seed: int = 2026) -> list[Path]:
    rng = np.random.default_rng(seed)
    written = []
    for subject, seq, n, gender, e1, e2, bad in SEQUENCES:
        folder = out / subject / seq
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{subject}_{seq}_data.pkl"
        with open(path, "wb") as fh:
            pickle.dump(make_sequence(rng, subject, seq, n, gender, e1, e2, bad), fh, protocol=4)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    for p in write_sample(args.out, args.seed):
        print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
