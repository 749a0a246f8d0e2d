"""A synthetic 3DPW dataset in the official sequence-file format, and SMPL predictions for it (deterministic).

For tests and demos: the real 3DPW and SMPL files cannot be shipped. :func:`write_synthetic_3dpw` writes
``root/sequenceFiles/<split>/<sequence>.pkl`` (protocol-2 pickles of plain numpy arrays, like the Python-2
originals, with every key the official files carry); :func:`write_smpl_predictions` writes a predictions
``.npz`` (``{sequence}/{person}`` -> ``(T, 6890, 3)`` camera-frame vertices, every frame) from an SMPL model in
``smpl_dir``: the neutral model with perturbed pose and shape (a plausible method), or the GT's own gendered
model unperturbed (a perfect method).

    python -m bench.data.synthetic_3dpw OUT_DIR [--smpl-dir DIR --predictions FILE.npz]
"""
from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import numpy as np
import torch

from bench.formats.smpl import load_smpl

#: (sequence, number of frames, per person: (gender code, number of betas stored))
DEFAULT_SEQUENCES = (
    ("courtyard_synth_00", 12, (("m", 10), ("f", 10))),
    ("outdoors_synth_01", 9, (("f", 300),)),
)


def _rotation(rng: np.random.Generator, max_angle: float) -> np.ndarray:
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = rng.uniform(-max_angle, max_angle)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def synthetic_sequence(name: str, num_frames: int, people, rng: np.random.Generator) -> dict:
    """One sequence dict with the official keys; about a quarter of the frames lack a valid camera pose."""
    t = num_frames
    cam = np.zeros((t, 4, 4))
    for i in range(t):
        cam[i, :3, :3] = _rotation(rng, 0.4)
        cam[i, :3, 3] = [rng.uniform(-0.3, 0.3), rng.uniform(-0.3, 0.3), rng.uniform(3.0, 5.0)]
        cam[i, 3, 3] = 1.0
    seq: dict = {"sequence": name, "betas": [], "poses": [], "trans": [], "poses_60Hz": [], "trans_60Hz": [],
                 "betas_clothed": [], "v_template_clothed": [], "genders": [], "texture_maps": [], "poses2d": [],
                 "jointPositions": [], "campose_valid": [], "cam_poses": cam, "img_frame_ids": np.arange(t) * 2,
                 "cam_intrinsics": np.array([[1961.0, 0, 540], [0, 1969.0, 960], [0, 0, 1]])}
    for p, (gender, n_betas) in enumerate(people):
        poses = rng.normal(0, 0.2, (t, 72))
        poses[:, :3] = rng.normal(0, 0.5, 3) + rng.normal(0, 0.05, (t, 3))
        trans = np.array([0.8 * p - 0.4, 0.0, 0.0]) + np.cumsum(rng.normal(0, 0.02, (t, 3)), axis=0)
        valid = rng.random(t) > 0.25
        valid[0] = True
        seq["betas"].append(rng.normal(0, 1, n_betas))
        seq["poses"].append(poses)
        seq["trans"].append(trans)
        seq["poses_60Hz"].append(np.repeat(poses, 2, axis=0))
        seq["trans_60Hz"].append(np.repeat(trans, 2, axis=0))
        seq["betas_clothed"].append(rng.normal(0, 1, 10))
        seq["v_template_clothed"].append(rng.normal(0, 0.3, (6890, 3)).astype(np.float32))
        seq["genders"].append(gender)
        seq["texture_maps"].append(np.zeros((4, 4, 3), dtype=np.uint8))
        seq["poses2d"].append(rng.uniform(0, 1000, (t, 3, 18)))
        seq["jointPositions"].append(rng.normal(0, 1, (t, 72)))
        seq["campose_valid"].append(valid)
    return seq


def write_synthetic_3dpw(root: str | Path, seed: int = 0, split: str = "test",
                         sequences=DEFAULT_SEQUENCES) -> Path:
    """Write ``root/sequenceFiles/<split>/<name>.pkl`` for each sequence; returns ``root`` (the data_root)."""
    root = Path(root)
    folder = root / "sequenceFiles" / split
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name, t, people in sequences:
        with open(folder / f"{name}.pkl", "wb") as fh:
            pickle.dump(synthetic_sequence(name, t, people, rng), fh, protocol=2)
    return root


def smpl_camera_vertices(model, poses: np.ndarray, betas: np.ndarray, trans: np.ndarray,
                         cam_poses: np.ndarray) -> np.ndarray:
    """Camera-frame vertices ``(T, 6890, 3)``: SMPL in the world (pose, betas, trans), then ``R_c v + t_c``."""
    t = poses.shape[0]
    p = torch.from_numpy(poses).to(torch.float64)
    with torch.no_grad():
        out = model(betas=torch.from_numpy(np.ascontiguousarray(betas[:10]))[None].expand(t, -1).to(torch.float64),
                    body_pose=p[:, 3:], global_orient=p[:, :3], transl=torch.from_numpy(trans).to(torch.float64))
    world = out.vertices.numpy()
    return world @ cam_poses[:, :3, :3].transpose(0, 2, 1) + cam_poses[:, None, :3, 3]


def write_smpl_predictions(root: str | Path, smpl_dir: str | Path, out: str | Path, *, perfect: bool = False,
                           pose_noise: float = 0.05, shape_noise: float = 0.3, seed: int = 1,
                           split: str = "test", dtype=np.float32) -> Path:
    """Predictions for the synthetic (or any) 3DPW sequence files under ``root``.

    ``perfect=False``: the neutral SMPL with Gaussian noise on pose (rad), betas and translation (2 cm);
    ``perfect=True``: the GT's gendered model, exact (every metric is then 0 up to rounding).
    """
    from bench.data.threedpw import load_sequence

    rng = np.random.default_rng(seed)
    arrays = {}
    for f in sorted((Path(root) / "sequenceFiles" / split).glob("*.pkl")):
        for tr in load_sequence(f):
            gender = tr.gender if perfect else "neutral"
            model = load_smpl(smpl_dir, gender, torch.float64)
            poses, betas, trans = tr.poses, tr.betas, tr.trans
            if not perfect:
                poses = poses + rng.normal(0, pose_noise, poses.shape)
                betas = betas + rng.normal(0, shape_noise, betas.shape)
                trans = trans + rng.normal(0, 0.02, trans.shape)
            arrays[tr.key] = smpl_camera_vertices(model, poses, betas, trans, tr.cam_poses).astype(dtype)
    out = Path(out)
    np.savez(out, **arrays)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--smpl-dir", help="with --predictions: folder holding smpl/SMPL_*.pkl")
    ap.add_argument("--predictions", help="write neutral-SMPL predictions to this .npz")
    args = ap.parse_args(argv)
    root = write_synthetic_3dpw(args.out_dir, seed=args.seed)
    print(f"wrote {root / 'sequenceFiles'}")
    if args.predictions:
        if not args.smpl_dir:
            ap.error("--predictions needs --smpl-dir")
        print(f"wrote {write_smpl_predictions(root, args.smpl_dir, args.predictions)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
