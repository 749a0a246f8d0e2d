"""Write the bundled synthetic head pose samples in the official layouts (no real face data).

- ``bench/data/samples/aflw2000/AFLW2000/image000NN.{jpg,mat}``: 8 images; each .mat has the fields of the
  3DDFA release (``pt2d`` (2, 21), ``Pose_Para`` (1, 7) = pitch, yaw, roll radians, tdx, tdy, tdz, scale,
  ``Shape_Para`` (199, 1), ``Exp_Para`` (29, 1), ``Color_Para`` (1, 7), ``Illum_Para`` (1, 10), ``Tex_Para``
  (199, 1), ``roi`` (1, 4), ``pt3d_68`` (3, 68)), with made-up values; two images have an angle outside
  [-99, 99] degrees (yaw 105, roll -120), so the 6DRepNet filter keeps 6 of 8.
- ``bench/data/samples/biwi/BIWI_noTrack.npz``: 8 rows in the layout of FSA-Net's ``TYY_create_db_biwi.py``
  (``image`` (8, 64, 64, 3) uint8, ``pose`` (8, 3) [yaw, pitch, roll] degrees float64, ``img_size`` 64).

Images are small gray gradients with a dark ellipse ("a face"), JPEG quality 90. Deterministic:
``np.random.default_rng(19)``; re-running rewrites the same arrays (the .mat header carries a date).

    .nox/posearena/bin/python scripts/make_headpose_samples.py
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "bench" / "data" / "samples"

# [pitch, yaw, roll] degrees per AFLW2000 image; images 5 and 7 lie outside [-99, 99]
AFLW_DEG = [(-12.0, 25.0, 3.0), (8.5, -47.0, -6.0), (30.0, 80.0, 10.0), (-5.0, 2.0, 1.5), (15.0, -88.0, 20.0),
            (4.0, 105.0, -2.0), (-40.0, -15.0, 9.0), (3.0, 10.0, -120.0)]
AFLW_IDS = [2, 4, 8, 13, 23, 29, 43, 58]


def face_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A (h, w, 3) uint8 picture: gradient background and a darker ellipse near the middle."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    base = 120 + 60 * (xx / w) + rng.uniform(-10, 10)
    cx, cy = w / 2 + rng.uniform(-3, 3), h / 2 + rng.uniform(-3, 3)
    inside = ((xx - cx) / (0.3 * w)) ** 2 + ((yy - cy) / (0.4 * h)) ** 2 <= 1
    img = np.where(inside, base - 70, base)
    return np.clip(np.stack([img, img * 0.9, img * 0.8], -1), 0, 255).astype(np.uint8)


def jpeg_bytes(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def write_aflw2000(rng: np.random.Generator, out: Path) -> None:
    from scipy.io import savemat

    out.mkdir(parents=True, exist_ok=True)
    for n, (p, y, r) in zip(AFLW_IDS, AFLW_DEG):
        stem = out / f"image{n:05d}"
        (stem.with_suffix(".jpg")).write_bytes(jpeg_bytes(face_image(rng, 120, 120)))
        pt2d = np.stack([rng.uniform(30, 90, 21), rng.uniform(30, 95, 21)])
        pose = np.array([[np.deg2rad(p), np.deg2rad(y), np.deg2rad(r), 60.0, 60.0, 0.0, 0.0011]])
        pt3d = np.stack([rng.uniform(30, 90, 68), rng.uniform(30, 95, 68), rng.uniform(-20, 20, 68)])
        savemat(stem.with_suffix(".mat"), {
            "pt2d": pt2d, "Pose_Para": pose, "Shape_Para": rng.normal(0, 1e5, (199, 1)),
            "Exp_Para": rng.normal(0, 1, (29, 1)), "Color_Para": np.array([[1.0, 1.0, 1.0, 0, 0, 0, 1.0]]),
            "Illum_Para": np.zeros((1, 10)), "Tex_Para": rng.normal(0, 1, (199, 1)),
            "roi": np.array([[20.0, 20.0, 100.0, 110.0]]), "pt3d_68": pt3d}, do_compression=True)


def write_biwi(rng: np.random.Generator, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    pose = np.stack([rng.uniform(-70, 70, 8), rng.uniform(-50, 50, 8), rng.uniform(-40, 40, 8)], 1)
    images = np.stack([face_image(rng, 64, 64) for _ in range(8)])
    np.savez(out / "BIWI_noTrack.npz", image=images, pose=pose, img_size=64)


def main() -> None:
    rng = np.random.default_rng(19)
    write_aflw2000(rng, SAMPLES / "aflw2000" / "AFLW2000")
    write_biwi(rng, SAMPLES / "biwi")
    print(f"wrote {SAMPLES / 'aflw2000'} and {SAMPLES / 'biwi'}")


if __name__ == "__main__":
    main()
