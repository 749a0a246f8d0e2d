"""Write the bundled synthetic head pose samples in the official layouts (no real face data).

- ``bench/data/samples/aflw2000/AFLW2000/image000NN.{jpg,mat}``: 8 images; each .mat has the fields of the
  3DDFA release (``pt2d`` (2, 21), ``Pose_Para`` (1, 7) = pitch, yaw, roll radians, tdx, tdy, tdz, scale,
  ``Shape_Para`` (199, 1), ``Exp_Para`` (29, 1), ``Color_Para`` (1, 7), ``Illum_Para`` (1, 10), ``Tex_Para``
  (199, 1), ``roi`` (1, 4), ``pt3d_68`` (3, 68)), with made-up values; two images have an angle outside
  [-99, 99] degrees (yaw 105, roll -120), so the 6DRepNet filter keeps 6 of 8.
- ``bench/data/samples/biwi/BIWI_noTrack.npz``: 8 rows in the layout of FSA-Net's ``TYY_create_db_biwi.py``
  (``image`` (8, 64, 64, 3) uint8, ``pose`` (8, 3) [yaw, pitch, roll] degrees float64, ``img_size`` 64).

AFLW2000 images (120 x 120, JPEG quality 90) show MediaPipe's canonical face mesh
(methods/headpose/data/canonical_face_model.obj, Apache-2.0) rendered at the image's own ``Pose_Para`` angles, so
that a landmark-based method finds a face and the GT is the pose it was drawn at: face -> camera rotation
``get_R(pitch, yaw, roll)^T`` in a camera with y up and z towards the viewer (3DDFA's fit, as AFLW2000-3D
labels it: ``R3 = Rx(-pitch) Ry(-yaw) Rz(-roll)``), pinhole with focal length = image width, the face 25 cm
away; skin shaded by the light's angle, eyes, brows and lips darker (triangles whose three landmarks all belong
to MediaPipe's eye, eyebrow or lip landmark sets), drawn far to near at 4x size and downsampled.
BIWI images are small gray gradients with a dark ellipse ("a face"). Deterministic: ``np.random.default_rng(19)``;
re-running rewrites the same arrays (the .mat header carries a date).

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


FACE_DISTANCE_CM = 25.0
SUPERSAMPLE = 4
LIGHT = np.array([0.3, -0.5, -1.0]) / np.linalg.norm([0.3, -0.5, -1.0])  # towards the light, OpenCV camera axes
SKIN, DARK, BROW, LIP = (225, 180, 150), (40, 30, 30), (70, 50, 40), (170, 70, 70)
# MediaPipe face mesh landmark indices of the eyes, the eyebrows and the lips (its FACEMESH_* sets)
EYES = frozenset((7, 33, 133, 144, 145, 153, 154, 155, 157, 158, 159, 160, 161, 163, 173, 246, 249, 263, 362, 373,
                  374, 380, 381, 382, 384, 385, 386, 387, 388, 390, 398, 466))
BROWS = frozenset((46, 52, 53, 55, 63, 65, 66, 70, 105, 107, 276, 282, 283, 285, 293, 295, 296, 300, 334, 336))
LIPS = frozenset((0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181, 185, 191, 267,
                  269, 270, 291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405, 409, 415))


def rendered_face(rng: np.random.Generator, size: int, pitch_yaw_roll_deg: tuple[float, float, float]) -> np.ndarray:
    """A (size, size, 3) uint8 picture of the canonical face at the given angles on a gradient background.

    Draws the same three numbers from ``rng`` as :func:`face_image` (background tone, face centre offset in
    pixels), so the .mat and BIWI arrays written after it do not change.
    """
    import torch
    from PIL import Image, ImageDraw

    from methods.headpose.mediapipe_pnp import CANONICAL_FACE, read_obj
    from metrics.headpose import rotation_from_euler

    tone, dx, dy = rng.uniform(-10, 10), rng.uniform(-3, 3), rng.uniform(-3, 3)
    vertices, triangles = read_obj(CANONICAL_FACE)
    p, y, r = (torch.tensor([np.deg2rad(a)]) for a in pitch_yaw_roll_deg)
    R3 = rotation_from_euler(p, y, r)[0].numpy().T  # face -> camera (y up, z towards the viewer)
    f = float(size * SUPERSAMPLE)
    t = np.array([dx, dy, 0.0]) * FACE_DISTANCE_CM / size + np.array([0.0, 0.0, FACE_DISTANCE_CM])
    cam = (vertices @ R3.T) * np.array([1.0, -1.0, -1.0]) + t  # OpenCV axes: x right, y down, z forward
    uv = cam[:, :2] / cam[:, 2:] * f + f / 2 - 0.5  # PIL puts pixel centres on integers
    tri = cam[triangles]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    facing = np.einsum("ij,ij->i", normal, -tri.mean(1))
    w = int(f)
    xx = np.arange(w, dtype=np.float64) / w
    bg = np.clip(120 + 60 * xx + tone, 0, 255)
    canvas = Image.fromarray(np.clip(np.stack([np.tile(bg, (w, 1)) * c for c in (1.0, 0.9, 0.8)], -1), 0,
                                     255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for k in np.argsort(-tri[:, :, 2].mean(1), kind="stable"):  # far to near
        if facing[k] <= 0:
            continue
        ids = set(triangles[k].tolist())
        base = DARK if ids <= EYES else BROW if ids <= BROWS else LIP if ids <= LIPS else SKIN
        shade = 0.35 + 0.65 * max(0.0, float(normal[k] @ LIGHT))
        draw.polygon([tuple(uv[i]) for i in triangles[k]], fill=tuple(int(min(255, c * shade)) for c in base))
    return np.asarray(canvas.resize((size, size), Image.LANCZOS))


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
        (stem.with_suffix(".jpg")).write_bytes(jpeg_bytes(rendered_face(rng, 120, (p, y, r))))
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
