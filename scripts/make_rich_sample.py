"""Write the bundled synthetic RICH sample ``bench/data/samples/rich/rich_test_vit.pth`` in WHAM's label format.

WHAM's ``dataset/parsed_data/rich_test_vit.pth`` (read by its ``lib/data/datasets/dataset_eval.py``) is a
``joblib.dump`` of a dict of per-sequence lists of torch tensors; this writes the same with the fields the
evaluation reads (``vid``, ``gender``, ``pose`` (T, 72) axis-angle, ``betas`` (T, 10), ``frame_id`` (T,)) plus
placeholders with plausible shapes for ``res``, ``cam_poses``, ``kp2d`` and ``bbox`` (the metrics do not read them;
the image features ``features``, ``init_*`` and ``flipped_*`` are left out). Synthetic content: three people
(male, female, male) seen by a camera (root orientation about ``R_x(pi)``, as a y-down camera sees an upright
person), turning and moving their limbs smoothly; in every sequence some frames store the root with the
equivalent vector of angle ``2 pi - theta`` (labels do), which WHAM's round trip through 6D turns back.

Needs joblib and torch (a scratch venv: the suite itself reads the file without joblib)::

    python3 -m venv /tmp/rich/venv && /tmp/rich/venv/bin/pip install torch joblib scipy
    /tmp/rich/venv/bin/python scripts/make_rich_sample.py [--seed 2026] [--out DIR]

Deterministic in content; the bytes differ between runs (torch's pickles carry storage addresses as keys).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "bench" / "data" / "samples" / "rich"
#: (vid, frames, gender)
SEQUENCES = (("Synth01_001_walk_cam0", 48, "male"), ("Synth02_002_squat_cam3", 30, "female"),
             ("Synth01_003_turn_cam1", 22, "male"))
FPS = 30


def make_sequence(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    from scipy.spatial.transform import Rotation

    t = np.arange(n) / FPS
    heading = rng.uniform(-1, 1) + 1.5 * np.sin(0.8 * t)
    root = (Rotation.from_rotvec(np.stack([np.pi + 0.1 * np.sin(2 * t), 0 * t, 0 * t], 1))
            * Rotation.from_rotvec(np.stack([0 * t, heading, 0.05 * np.cos(t)], 1))).as_rotvec()
    flip = rng.random(n) < 0.5  # the other vector of the same rotation: angle 2 pi - theta
    angle = np.linalg.norm(root, axis=1, keepdims=True)
    root[flip] = (root * (1 - 2 * np.pi / angle))[flip]
    amp, freq, phase = rng.uniform(0.05, 0.3, 69), rng.uniform(0.2, 1.0, 69), rng.uniform(0, 6, 69)
    body = rng.normal(0, 0.15, 69) + amp * np.sin(2 * np.pi * freq * t[:, None] + phase)
    pose = np.concatenate([root, body], 1).astype(np.float32)
    betas = np.repeat(rng.normal(0, 1.0, (1, 10)), n, 0).astype(np.float32)
    frame_id = np.arange(n) * 5 + int(rng.integers(0, 100))
    kp2d = np.concatenate([rng.uniform(600, 1400, (n, 17, 2)), np.ones((n, 17, 1))], 2).astype(np.float32)
    bbox = np.concatenate([kp2d[:, :, :2].mean(1), np.full((n, 1), 4.0)], 1).astype(np.float32)
    return {"pose": pose, "betas": betas, "frame_id": frame_id, "res": np.tile([[4112, 3008]], (n, 1)),
            "cam_poses": np.tile(np.eye(4, dtype=np.float32), (n, 1, 1)), "kp2d": kp2d, "bbox": bbox}


def write_sample(out: Path, seed: int = 2026) -> Path:
    import joblib
    import torch

    rng = np.random.default_rng(seed)
    labels: dict[str, list] = {"vid": [], "gender": []}
    for vid, n, gender in SEQUENCES:
        labels["vid"].append(vid)
        labels["gender"].append(gender)
        for k, v in make_sequence(rng, n).items():
            labels.setdefault(k, []).append(torch.from_numpy(v))
    out.mkdir(parents=True, exist_ok=True)
    path = out / "rich_test_vit.pth"
    joblib.dump(labels, path)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    print(write_sample(args.out, args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
