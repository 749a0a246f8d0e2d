"""Make the bundled synthetic NOCS samples (REAL275 and CAMERA25 layout) and the box-prior baseline's predictions.

    python scripts/make_nocs_sample.py            # writes bench/data/samples/{real275,camera25}/

Each image is one ``results_*.pkl`` in the layout of the per-image segmentation results that GIVEPose (and
SPD, DualPoseNet, HS-Pose) read their GT from (``detection_dualposenet/data/segmentation_results/``):
``image_path``, ``gt_class_ids``, ``gt_bboxes``, ``gt_RTs`` ([s R | t], metres), ``gt_scales`` (unit-diagonal
box sizes), ``gt_handle_visibility``, and the detector's ``pred_class_ids``, ``pred_bboxes`` (y1, x1, y2, x2),
``pred_scores`` (``pred_masks`` left out: no image is shipped). Objects of all six categories stand upright on
a table seen by a camera pitched down; mugs with an invisible handle are marked; the detector misses some
objects and adds a false positive. Everything is synthetic (seeded), so the numbers mean nothing.

The box prior (``box_prior``) is a weight-free monocular baseline that reads only a detection and the
intrinsics: the category's mean size (the NOCS mean shapes), a fixed upright rotation seen from the average
camera pitch, and the depth at which that box would fill the detection's 2D box.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "bench" / "data" / "samples"
CATEGORIES = ("bottle", "bowl", "camera", "can", "laptop", "mug")
MEAN_SIZE_MM = {"bottle": (87, 220, 89), "bowl": (165, 80, 165), "camera": (88, 128, 156),
                "can": (68, 146, 72), "laptop": (346, 200, 335), "mug": (146, 83, 114)}
INTRINSICS = {"real275": np.array([[591.0125, 0, 322.525], [0, 590.16775, 244.11084], [0, 0, 1]]),
              "camera25": np.array([[577.5, 0, 319.5], [0, 577.5, 239.5], [0, 0, 1]])}
PRIOR_PITCH = 0.5  # rad: the box prior's camera pitch (the sample's cameras are pitched 0.4..0.6)


def rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def upright(pitch: float, yaw: float) -> np.ndarray:
    """Object-to-camera rotation of an upright object (object y = world up) for a camera pitched down."""
    return rot_x(-pitch) @ np.diag([1.0, -1.0, -1.0]) @ rot_y(yaw)


def corners(RT: np.ndarray, scales: np.ndarray) -> np.ndarray:
    signs = np.array([[x, y, z] for x in (1, -1) for y in (1, -1) for z in (1, -1)], dtype=np.float64)
    pts = signs * scales / 2
    return pts @ RT[:3, :3].T + RT[:3, 3]


def project_box(K: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """(y1, x1, y2, x2) of the projected points."""
    uv = pts @ K.T
    uv = uv[:, :2] / uv[:, 2:]
    return np.array([uv[:, 1].min(), uv[:, 0].min(), uv[:, 1].max(), uv[:, 0].max()])


def box_prior(class_id: int, bbox: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The baseline's (RT, unit-diagonal scales) for one detection (class id 1..6, (y1, x1, y2, x2) box)."""
    size = np.array(MEAN_SIZE_MM[CATEGORIES[class_id - 1]], dtype=np.float64) / 1000
    s = float(np.linalg.norm(size))
    R = upright(PRIOR_PITCH, 0.0)
    RT = np.eye(4)
    RT[:3, :3] = s * R
    RT[:3, 3] = (0.0, 0.0, 1.0)
    y1, x1, y2, x2 = project_box(K, corners(RT, size / s))
    diag_at_1m = np.hypot(y2 - y1, x2 - x1)
    diag = np.hypot(bbox[2] - bbox[0], bbox[3] - bbox[1])
    z = diag_at_1m / max(diag, 1.0)
    centre = np.array([(bbox[1] + bbox[3]) / 2, (bbox[0] + bbox[2]) / 2, 1.0])
    RT[:3, 3] = z * (np.linalg.inv(K) @ centre)
    return RT, size / s


def make_image(rng: np.random.Generator, K: np.ndarray, classes: list[int], image_path: str) -> dict:
    pitch = rng.uniform(0.4, 0.6)
    G = len(classes)
    xs = np.linspace(-0.3, 0.3, G) + rng.uniform(-0.03, 0.03, G)
    gt_RTs, gt_scales, gt_bboxes, handle = [], [], [], []
    for i, c in enumerate(classes):
        size = np.array(MEAN_SIZE_MM[CATEGORIES[c - 1]]) / 1000 * rng.uniform(0.85, 1.15, 3)
        s = float(np.linalg.norm(size))
        R = upright(pitch, rng.uniform(-np.pi, np.pi))
        t = np.array([xs[i], rng.uniform(0.05, 0.15), rng.uniform(0.75, 1.1)])
        RT = np.eye(4)
        RT[:3, :3] = s * R
        RT[:3, 3] = t
        gt_RTs.append(RT)
        gt_scales.append(size / s)
        gt_bboxes.append(np.round(project_box(K, corners(RT, size / s))).astype(np.int32))
        handle.append(int(rng.uniform() < 0.7) if CATEGORIES[c - 1] == "mug" else 1)
    pred_class, pred_box, pred_score = [], [], []
    for i, c in enumerate(classes):
        if rng.uniform() < 0.1:  # missed
            continue
        pred_class.append(c)
        pred_box.append(gt_bboxes[i] + rng.integers(-6, 7, 4))
        pred_score.append(round(float(rng.uniform(0.6, 1.0)), 4))
    if rng.uniform() < 0.5:  # a false positive: a wrong category on a real object
        i = int(rng.integers(G))
        pred_class.append(int(classes[(i + 1) % G]) if G > 1 else 1)
        pred_box.append(gt_bboxes[i] + rng.integers(-10, 11, 4))
        pred_score.append(round(float(rng.uniform(0.3, 0.7)), 4))
    return {"image_path": image_path,
            "gt_class_ids": np.array(classes, dtype=np.int32),
            "gt_bboxes": np.array(gt_bboxes, dtype=np.int32).reshape(-1, 4),
            "gt_RTs": np.array(gt_RTs).reshape(-1, 4, 4),
            "gt_scales": np.array(gt_scales).reshape(-1, 3),
            "gt_handle_visibility": np.array(handle, dtype=np.int64),
            "pred_class_ids": np.array(pred_class, dtype=np.int32),
            "pred_bboxes": np.array(pred_box, dtype=np.int32).reshape(-1, 4),
            "pred_scores": np.array(pred_score, dtype=np.float32)}


# (dataset, folder, file prefix, image path prefix, scenes, seed)
SAMPLES = (("real275", "REAL275", "results_test", "data/real/test", ("scene_1", "scene_2"), 275),
           ("camera25", "CAMERA25", "results_val", "data/camera/val", ("00000", "00001"), 25))
IMAGES_PER_SCENE = 3


def main() -> None:
    for name, folder, prefix, path_prefix, scenes, seed in SAMPLES:
        rng = np.random.default_rng(seed)
        K = INTRINSICS[name]
        root = OUT / name
        (root / folder).mkdir(parents=True, exist_ok=True)
        preds = []
        for scene in scenes:
            for k in range(IMAGES_PER_SCENE):
                classes = [int(c) for c in rng.permutation(6)[: int(rng.integers(4, 7))] + 1]
                if 6 not in classes:
                    classes.append(6)  # every image has a mug: handles visible and hidden
                im = f"{k:04d}"
                rec = make_image(rng, K, classes, f"{path_prefix}/{scene}/{im}")
                with open(root / folder / f"{prefix}_{scene}_{im}.pkl", "wb") as f:
                    pickle.dump(rec, f, protocol=4)
                RTs, scales = [], []
                for c, b in zip(rec["pred_class_ids"], rec["pred_bboxes"], strict=True):
                    RT, sc = box_prior(int(c), b.astype(np.float64), K)
                    RTs.append(np.round(RT, 6).tolist())
                    scales.append(np.round(sc, 6).tolist())
                preds.append({"image": f"{scene}/{im}", "pred_class_ids": rec["pred_class_ids"].tolist(),
                              "pred_scores": [float(s) for s in rec["pred_scores"]],
                              "pred_RTs": RTs, "pred_scales": scales})
        (root / "box_prior.json").write_text("[\n" + ",\n".join(json.dumps(r) for r in preds) + "\n]\n")
        print(f"wrote {root}")


if __name__ == "__main__":
    main()
