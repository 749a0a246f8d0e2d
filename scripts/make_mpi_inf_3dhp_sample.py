"""Write the bundled synthetic MPI-INF-3DHP test-set sample ``bench/data/samples/mpi_inf_3dhp/TS{1..6}/``.

Each ``annot_data.mat`` is written like a MATLAB v7.3 file (HDF5 with a 512-byte MATLAB header block,
``MATLAB_class`` attributes, dimensions stored reversed so h5py reads ``univ_annot3`` / ``annot3`` as
``n x 1 x 17 x 3`` mm and ``valid_frame`` / ``activity_annotation`` as ``n x 1``). Content is synthetic:
a 17-joint body about 4 m in front of the camera, moving smoothly; about 10% of frames invalid.
Deterministic: ``python scripts/make_mpi_inf_3dhp_sample.py [--seed 2026] [--out DIR]``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "bench" / "data" / "samples" / "mpi_inf_3dhp"
# 3DHP test order: HeadTop Neck RSho RElb RWri LSho LElb LWri RHip RKnee RAnk LHip LKnee LAnk Root Spine Head
PARENTS = (16, 15, 1, 2, 3, 1, 5, 6, 14, 8, 9, 14, 11, 12, -1, 14, 1)
_HEADER = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Thu Jan  1 00:00:00 2026 HDF5 schema 1.00 ."


def write_annot_mat(path: Path, univ_annot3: np.ndarray, annot3: np.ndarray, valid: np.ndarray,
                    activity: np.ndarray) -> None:
    """A v7.3-style annot_data.mat: arrays given in h5py order (n,1,17,3) and (n,1)."""
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w", userblock_size=512, track_order=True) as f:
        for name, arr in (("activity_annotation", activity), ("annot3", annot3), ("univ_annot3", univ_annot3),
                          ("valid_frame", valid)):
            d = f.create_dataset(name, data=np.asarray(arr, dtype=np.float64))
            d.attrs["MATLAB_class"] = np.bytes_("double")
    with open(path, "r+b") as fh:
        header = _HEADER.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
        fh.write(header)


def make_sequence(rng: np.random.Generator, frames: int) -> tuple[np.ndarray, ...]:
    n = len(PARENTS)
    directions = rng.normal(size=(n, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    lengths = rng.uniform(80, 450, size=(n, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(n, 3))
    t = np.arange(frames)[:, None, None]
    offsets = lengths * directions + 60 * np.sin(0.2 * t + phase)
    root = np.array([rng.uniform(-500, 500), rng.uniform(-200, 200), rng.uniform(3500, 4500)])
    pos = np.zeros((frames, n, 3))
    pos[:, 14] = root + np.cumsum(rng.normal(scale=10, size=(frames, 3)), axis=0)
    order = [14, 15, 1, 16, 0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]
    for j in order[1:]:
        pos[:, j] = pos[:, PARENTS[j]] + offsets[:, j]
    annot3 = pos
    univ = pos[:, 14:15] + (pos - pos[:, 14:15]) * rng.uniform(0.9, 1.1)
    valid = (rng.random(frames) > 0.1).astype(np.float64)
    activity = rng.integers(1, 8, size=frames).astype(np.float64)
    return univ[:, None], annot3[:, None], valid[:, None], activity[:, None]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    for k in range(1, 7):
        univ, annot3, valid, activity = make_sequence(rng, int(rng.integers(20, 41)))
        write_annot_mat(args.out / f"TS{k}" / "annot_data.mat", univ, annot3, valid, activity)
    print(f"wrote {args.out}/TS1..TS6/annot_data.mat")


if __name__ == "__main__":
    main()
