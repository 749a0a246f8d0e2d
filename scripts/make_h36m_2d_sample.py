"""Write the 2D inputs of the bundled synthetic Human3.6M sample (``bench/data/samples/h36m/data_2d_h36m_*.npz``).

Official VideoPose3D layout (key ``positions_2d`` -> {subject: {action: [4 x (T,17,2) float32 pixels]}} in the
camera order of ``h36m_cameras.CAMERA_IDS``, key ``metadata`` -> {"layout_name": "h36m", "num_joints": 17,
"keypoints_symmetry": [left, right]}), made from the bundled ``data_3d_h36m.npz``: the 17 kept joints go
world -> camera with the suite's camera constants and are projected with each camera's focal length, centre
and radial/tangential distortion, as VideoPose3D's ``project_to_2d`` does (it runs on normalised
coordinates; the pixel form is the same map). Two files:

- ``data_2d_h36m_gt.npz``: the exact projections (the role of VideoPose3D's ``gt`` 2D file);
- ``data_2d_h36m_cpn_ft_h36m_dbb.npz``: the projections plus Gaussian pixel noise (sigma 4 px) and one extra
  trailing frame per sequence (real detection files may be longer than the mocap), standing in for the CPN
  detections the official models use.

Deterministic: ``python scripts/make_h36m_2d_sample.py [--seed 2026] [--dir DIR]``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from bench.data import h36m_cameras
from bench.data.h36m import KEPT_JOINTS, KEYPOINTS_SYMMETRY, NUM_CAMERAS, detections_file
from bench.safe_pickle import load_npz

DEFAULT_DIR = Path(__file__).resolve().parents[1] / "bench" / "data" / "samples" / "h36m"
NOISE_PX = 4.0


def project_to_2d(cam: torch.Tensor, intr: h36m_cameras.Intrinsics) -> torch.Tensor:
    """Pinhole + Brown distortion of camera-frame points ``(..., 3)`` -> pixels ``(..., 2)`` (float64)."""
    xx = (cam[..., :2] / cam[..., 2:]).clamp(-1, 1)
    r2 = (xx ** 2).sum(-1, keepdim=True)
    k = torch.tensor(intr.radial_distortion, dtype=torch.float64)
    p = torch.tensor(intr.tangential_distortion, dtype=torch.float64)
    radial = 1 + (k * torch.cat((r2, r2 ** 2, r2 ** 3), dim=-1)).sum(-1, keepdim=True)
    tan = (p * xx).sum(-1, keepdim=True)
    xxx = xx * (radial + tan) + p * r2
    return torch.tensor(intr.focal_length, dtype=torch.float64) * xxx + torch.tensor(intr.center, dtype=torch.float64)


def make_files(gt_path: Path, seed: int) -> dict[str, dict]:
    tree = load_npz(gt_path)["positions_3d"].item()
    rng = np.random.default_rng(seed)
    exact: dict = {}
    noisy: dict = {}
    for subject in sorted(tree):
        exact[subject], noisy[subject] = {}, {}
        for action in sorted(tree[subject]):
            world = torch.from_numpy(tree[subject][action][:, list(KEPT_JOINTS)]).to(torch.float64)
            exact[subject][action], noisy[subject][action] = [], []
            for c in range(NUM_CAMERAS):
                ori, trans = h36m_cameras.camera_extrinsics(subject, c)
                px = project_to_2d(h36m_cameras.world_to_camera(world, ori, trans), h36m_cameras.INTRINSICS[c]).numpy()
                exact[subject][action].append(px.astype(np.float32))
                longer = np.concatenate([px, px[-1:]], axis=0)
                noisy[subject][action].append((longer + rng.normal(0, NOISE_PX, size=longer.shape)).astype(np.float32))
    meta = {"layout_name": "h36m", "num_joints": len(KEPT_JOINTS),
            "keypoints_symmetry": [list(KEYPOINTS_SYMMETRY[0]), list(KEYPOINTS_SYMMETRY[1])]}
    return {"gt": {"positions_2d": exact, "metadata": meta},
            "cpn_ft_h36m_dbb": {"positions_2d": noisy, "metadata": meta}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    args = ap.parse_args()
    for name, content in make_files(args.dir / "data_3d_h36m.npz", args.seed).items():
        out = args.dir / detections_file(name)
        np.savez_compressed(out, **content)
        print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
