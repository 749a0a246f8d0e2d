"""Write the bundled synthetic Human3.6M sample ``bench/data/samples/h36m/data_3d_h36m.npz``.

Official VideoPose3D layout (key ``positions_3d`` -> {subject: {action: (T,32,3) float32 world metres}}),
synthetic content: a 32-joint skeleton on H36M's kinematic tree with random bone lengths, moving smoothly
through the capture volume (root about 0.9 m above the floor, within 1.5 m of the origin, where the real
cameras look). S9 and S11 get all 15 actions x 2 sub-actions ("Walking", "Walking 1", ...), S1 two actions
(unscored by default: tests the subjects option). Frame counts vary per sequence (6..14) so that frame
weighting matters. Deterministic: ``python scripts/make_h36m_sample.py [--seed 2026] [--out PATH]``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

PARENTS = (-1, 0, 1, 2, 3, 4, 0, 6, 7, 8, 9, 0, 11, 12, 13, 14, 12, 16, 17, 18, 19, 20, 19, 22, 12, 24, 25, 26,
           27, 28, 27, 30)
ACTIONS = ("Directions", "Discussion", "Eating", "Greeting", "Phoning", "Photo", "Posing", "Purchases",
           "Sitting", "SittingDown", "Smoking", "Waiting", "WalkDog", "Walking", "WalkTogether")
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "bench" / "data" / "samples" / "h36m" / "data_3d_h36m.npz"


def make_sequence(rng: np.random.Generator, frames: int) -> np.ndarray:
    """One (T,32,3) float32 sequence in world metres."""
    n = len(PARENTS)
    directions = rng.normal(size=(n, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    lengths = rng.uniform(0.05, 0.45, size=(n, 1))
    lengths[0] = 0.0
    phase = rng.uniform(0, 2 * np.pi, size=(n, 3))
    freq = rng.uniform(0.05, 0.3, size=(n, 3))
    t = np.arange(frames)[:, None, None]
    offsets = lengths * directions + 0.08 * np.sin(freq * t + phase)  # (T,32,3)
    offsets[:, 0] = 0.0
    start = np.array([*rng.uniform(-1.5, 1.5, size=2), rng.uniform(0.8, 1.0)])
    velocity = np.array([*rng.uniform(-0.02, 0.02, size=2), 0.0])
    root = start + velocity * np.arange(frames)[:, None] + 0.01 * rng.normal(size=(frames, 3))
    pos = np.zeros((frames, n, 3))
    pos[:, 0] = root
    for j in range(1, n):
        pos[:, j] = pos[:, PARENTS[j]] + offsets[:, j]
    return pos.astype(np.float32)


def make_positions(seed: int) -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, np.ndarray]] = {}
    for subject, actions in (("S1", ACTIONS[:2]), ("S9", ACTIONS), ("S11", ACTIONS)):
        out[subject] = {}
        for action in actions:
            for name in (action, f"{action} 1"):
                out[subject][name] = make_sequence(rng, int(rng.integers(6, 15)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, positions_3d=make_positions(args.seed))
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
