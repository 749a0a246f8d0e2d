"""Make the bundled synthetic CO3D v2 sample (official per-category layout) and the identity prior's predictions.

    python scripts/make_co3d_sample.py            # writes bench/data/samples/co3d/

Two categories (apple, teddybear: PoseDiffusion's ``debug`` set), each with ``frame_annotations.jgz``,
``sequence_annotations.jgz`` and ``set_lists/set_lists_fewview_dev.json`` in CO3D v2's format. Every sequence is a
walk of cameras on a sphere around the object at the origin (azimuth advancing with the frame number, wobbling
elevation and radius), each looking at a point near the origin, in PyTorch3D's convention (``X_cam = X R + T``).
Besides the scored sequences there is one of low viewpoint quality, one with too few test frames, one with an
absurd translation and one that is only in the train list, so every filter of the protocol has work. Seeded:
the files are the same on every run. No CO3D data is used; the numbers it gives mean nothing.

``identity_prior.json``: the weight-free identity prior (every camera ``R = I``, ``T = (0, 0, 1)``; leaderboard
row ``identity-prior``) for the frame sets that ``dataset=co3d`` draws from this sample with its defaults.
"""
from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "data" / "samples" / "co3d"
# category -> [(sequence, test frames, viewpoint quality, absurd translation, in the test list)]
SEQUENCES = {
    "apple": [("110_13051_23361", 56, 0.9, False, True), ("189_20393_38136", 52, 1.2, False, True),
              ("12_90_489", 60, 0.7, False, True), ("350_36761_68623", 54, 0.3, False, True),
              ("46_2587_7531", 30, 0.8, False, True), ("540_79043_153212", 50, 0.6, False, False)],
    "teddybear": [("101_11758_21048", 58, 1.1, False, True), ("34_1403_4393", 51, 0.8, False, True),
                  ("596_91406_181810", 55, 0.9, True, True), ("424_59103_114869", 53, 0.75, False, True)],
}


def look_at(centre: np.ndarray, at: np.ndarray, up=(0.0, 1.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch3D's look_at_rotation / look_at_view_transform math: R's columns are the camera axes in the world
    (+X left, +Y up, +Z towards ``at``), ``T = -C R``."""
    z = at - centre
    z = z / np.linalg.norm(z)
    x = np.cross(np.asarray(up), z)
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z], 1)
    return R, -centre @ R


def walk(rng: np.random.Generator, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """n cameras of one capture: one turn around the object with a wobbling elevation and distance."""
    start, radius = rng.uniform(0, 2 * np.pi), rng.uniform(6, 12)
    out = []
    for k in range(n):
        az = start + 2 * np.pi * k / n + rng.normal(0, 0.03)
        el = 0.45 + 0.2 * np.sin(3 * np.pi * k / n) + rng.normal(0, 0.03)
        r = radius * (1 + 0.1 * np.sin(2 * np.pi * k / n))
        c = r * np.array([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)])
        out.append(look_at(c, rng.normal(0, 0.3, 3)))
    return out


def _r(a: np.ndarray) -> list:
    return np.round(a, 7).tolist()


def write_jgz(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = json.dumps(data).encode()
    with open(path, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as g:
        g.write(raw)


def make_category(category: str, rng: np.random.Generator) -> None:
    frames, seqs, sets = [], [], {"train": [], "val": [], "test": []}
    for name, n_test, quality, absurd, in_test in SEQUENCES[category]:
        n = n_test + 10  # 10 more frames that only the train list names
        cams = walk(rng, n)
        test = sorted(rng.choice(n, n_test, replace=False).tolist())
        for k, (R, T) in enumerate(cams):
            if absurd and k == n // 2:
                T = T + np.array([4e4, 4e4, 4e4])
            path = f"{category}/{name}/images/frame{k + 1:06d}.jpg"
            frames.append({"sequence_name": name, "frame_number": k, "frame_timestamp": k / 30.0,
                           "image": {"path": path, "size": [900, 600]},
                           "depth": {"path": path.replace("images", "depths") + ".geometric.png", "scale_adjustment": 1.0,
                                     "mask_path": path.replace("images", "depth_masks").replace(".jpg", ".png")},
                           "mask": {"path": path.replace("images", "masks").replace(".jpg", ".png"), "mass": 9000.0},
                           "viewpoint": {"R": _r(R), "T": _r(T), "focal_length": [1.6, 1.6],
                                         "principal_point": [0.0, 0.0], "intrinsics_format": "ndc_isotropic"},
                           "meta": {"frame_type": "test_unseen" if k in test else "train_known"}})
            entry = [name, k, path]
            sets["test" if in_test and k in test else "train"].append(entry)
        seqs.append({"sequence_name": name, "category": category,
                     "video": {"path": f"{category}/{name}/video.mp4", "length": n / 30.0},
                     "point_cloud": None, "viewpoint_quality_score": quality})
    folder = OUT / category
    write_jgz(folder / "frame_annotations.jgz", frames)
    write_jgz(folder / "sequence_annotations.jgz", seqs)
    (folder / "set_lists").mkdir(parents=True, exist_ok=True)
    (folder / "set_lists" / "set_lists_fewview_dev.json").write_text(json.dumps(sets) + "\n")


def identity_prior() -> list[dict]:
    """One record per frame set that the default protocol draws from the sample: R = I, T = (0, 0, 1)."""
    sys.path.insert(0, str(REPO))
    from bench.data.co3d import CATEGORY_SETS, Co3dDataset

    ds = Co3dDataset(OUT, True, CATEGORY_SETS["debug"])
    return [{"sequence": s.inputs["sequence"], "frames": s.inputs["frames"],
             "R": [np.eye(3).tolist()] * len(s.inputs["frames"]),
             "T": [[0.0, 0.0, 1.0]] * len(s.inputs["frames"])} for s in (ds[i] for i in range(len(ds)))]


def main() -> None:
    rng = np.random.default_rng(2024)
    for category in SEQUENCES:
        make_category(category, rng)
    (OUT / "identity_prior.json").write_text(json.dumps(identity_prior()) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
