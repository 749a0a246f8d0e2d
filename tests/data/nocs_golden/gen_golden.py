"""Golden NOCS mAP numbers from the official evaluation GIVEPose runs (see PROVENANCE.md for the command).

    NPY_DISABLE_CPU_FEATURES="AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR" \
        python tests/data/nocs_golden/gen_golden.py --ref /tmp/GIVEPose-7dd5f65 --out tests/data/nocs_golden

``--ref`` is a checkout of ziqin-h/GIVEPose at 7dd5f65; its ``evaluation/eval_utils_cass.py``
(``compute_degree_cm_mAP``) is imported from there at run time and called as ``evaluation/evaluate.py`` calls
it, for both passes (the metric pass with GIVEPose's thresholds, again with 2 cm added, and the
scale-normalised pass after dividing every RT by cbrt(det R) as evaluate.py does). Writes ``cases.json`` (the
inputs, built here from seeded generators) and ``golden.json`` (the reference's numbers per case and key).
The bundled samples (bench/data/samples/{real275,camera25}: GT pickles and the box prior's predictions) are
cases too. NPY_DISABLE_CPU_FEATURES puts numpy's argsort on its portable path (see PROVENANCE.md: the order
of equal scores otherwise depends on the CPU).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import pickle
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
CATS = ("bottle", "bowl", "camera", "can", "laptop", "mug")
SYNSETS = ["BG", *CATS]
# our key -> (pass, kind, threshold indices into the lists below)
PASS1 = {"degrees": [5, 10, 360], "shifts": [2, 5, 10, 1e4], "ious": [0.1, 0.25, 0.5, 0.75]}
PASS1_GIVEPOSE = {"degrees": [5, 10, 360], "shifts": [5, 10, 1e4], "ious": [0.1, 0.25, 0.5, 0.75]}
PASS2 = {"degrees": [5, 10], "shifts": [5, 10, 20, 50], "ious": [0.1, 0.25, 0.5, 0.75]}
KEYS1 = {"IoU25": ("iou", 0.25), "IoU50": ("iou", 0.5), "IoU75": ("iou", 0.75),
         "5deg2cm": ("pose", 5, 2), "5deg5cm": ("pose", 5, 5), "10deg2cm": ("pose", 10, 2),
         "10deg5cm": ("pose", 10, 5), "10deg10cm": ("pose", 10, 10), "10deg": ("pose", 10, -1),
         "10cm": ("pose", -1, 10)}
KEYS2 = {"nIoU25": ("iou", 0.25), "nIoU50": ("iou", 0.5), "nIoU75": ("iou", 0.75),
         "5deg20%": ("pose", 5, 20), "10deg20%": ("pose", 10, 20), "10deg50%": ("pose", 10, 50),
         "n10deg": ("pose", 10, -1), "20%": ("pose", -1, 20), "50%": ("pose", -1, 50)}
AVX512 = "AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR"


# ------------------------------------------------------------------------------------------------ the cases
def rotation(rng, max_deg):
    import numpy as np

    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    a = np.deg2rad(rng.uniform(0, max_deg))
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * K + (1 - np.cos(a)) * K @ K


def rot_y(a):
    import numpy as np

    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def make_case(seed, n_images, perfect=False, ties=False, drop_category=None):
    """Images with GT of all six categories and predictions: jittered poses, misses, duplicates, false
    positives, symmetric objects turned about y, mugs with hidden handles turned and visible ones flipped."""
    import numpy as np

    rng = np.random.default_rng(seed)
    images = []
    for n in range(n_images):
        G = int(rng.integers(2, 7))
        classes = [int(c) for c in rng.integers(1, 7, G)]
        gt_RT, gt_sc, hv = [], [], []
        for k, c in enumerate(classes):
            s = rng.uniform(0.1, 0.4)
            RT = np.eye(4)
            RT[:3, :3] = s * rotation(rng, 180)
            RT[:3, 3] = [rng.uniform(-0.3, 0.3) + 0.25 * k, rng.uniform(-0.2, 0.2), rng.uniform(0.6, 1.2)]
            sc = rng.uniform(0.3, 1.0, 3)
            gt_RT.append(RT)
            gt_sc.append(sc / np.linalg.norm(sc))
            hv.append(int(rng.uniform() < 0.5) if c == 6 else 1)
        pc, pRT, psc, pscore = [], [], [], []
        for k, c in enumerate(classes):
            if c == drop_category or (not perfect and rng.uniform() < 0.15):
                continue
            RT, sc = gt_RT[k].copy(), gt_sc[k].copy()
            if not perfect:
                s = np.cbrt(np.linalg.det(RT[:3, :3]))
                R = RT[:3, :3] / s
                if CATS[c - 1] in ("bottle", "bowl", "can") or (c == 6 and hv[k] == 0):
                    R = R @ rot_y(rng.uniform(-np.pi, np.pi))
                elif c == 6 and rng.uniform() < 0.3:
                    R = R @ rot_y(np.pi)  # a flipped mug with a visible handle
                R = rotation(rng, 14) @ R
                RT[:3, :3] = s * rng.uniform(0.9, 1.1) * R
                RT[:3, 3] += rng.normal(0, 0.025, 3)
                sc = sc * rng.uniform(0.9, 1.1, 3)
            pc.append(c)
            pRT.append(RT)
            psc.append(sc)
            pscore.append(rng.uniform(0.5, 1.0))
            if not perfect and rng.uniform() < 0.15:  # a duplicate, lower score
                RT2 = RT.copy()
                RT2[:3, 3] += rng.normal(0, 0.01, 3)
                pc.append(c)
                pRT.append(RT2)
                psc.append(sc)
                pscore.append(pscore[-1] * 0.9)
        for _ in range(0 if perfect else int(rng.integers(0, 3))):  # false positives
            RT = np.eye(4)
            RT[:3, :3] = rng.uniform(0.1, 0.4) * rotation(rng, 180)
            RT[:3, 3] = [rng.uniform(-0.5, 0.5), rng.uniform(-0.3, 0.3), rng.uniform(0.5, 1.5)]
            pc.append(int(rng.integers(1, 7)))
            pRT.append(RT)
            sc = rng.uniform(0.3, 1.0, 3)
            psc.append(sc / np.linalg.norm(sc))
            pscore.append(rng.uniform(0.3, 0.9))
        if ties:
            pscore = [float(np.round(s * 4) / 4) for s in pscore]
        images.append({"gt_class_ids": classes, "gt_RTs": [np.round(r, 6).tolist() for r in gt_RT],
                       "gt_scales": [np.round(s, 6).tolist() for s in gt_sc], "gt_handle_visibility": hv,
                       "pred_class_ids": pc, "pred_RTs": [np.round(r, 6).tolist() for r in pRT],
                       "pred_scales": [np.round(s, 6).tolist() for s in psc],
                       "pred_scores": [round(float(s), 6) for s in pscore]})
    return images


class _Numpy2Pickles(pickle.Unpickler):
    """The samples are written under numpy 2 (module numpy._core); the reference venv has numpy 1.x."""

    def find_class(self, module, name):
        return super().find_class(module.replace("numpy._core", "numpy.core"), name)


def sample_case(dataset):
    """The bundled sample's GT (pickles) and the box prior's predictions (JSON), in image order."""
    folder = {"real275": "REAL275", "camera25": "CAMERA25"}[dataset]
    root = REPO / "bench" / "data" / "samples" / dataset
    preds = {r["image"]: r for r in json.loads((root / "box_prior.json").read_text())}
    images = []
    for f in sorted((root / folder).glob("results_*.pkl")):
        with open(f, "rb") as fh:
            gt = _Numpy2Pickles(fh).load()
        p = preds["/".join(gt["image_path"].split("/")[-2:])]
        images.append({"gt_class_ids": gt["gt_class_ids"].tolist(), "gt_RTs": gt["gt_RTs"].tolist(),
                       "gt_scales": gt["gt_scales"].tolist(),
                       "gt_handle_visibility": gt["gt_handle_visibility"].tolist(),
                       **{k: p[k] for k in ("pred_class_ids", "pred_RTs", "pred_scales", "pred_scores")}})
    return images


def build_cases():
    return {
        "real275/perfect": {"real_iou": True, "use_matches_for_pose": True, "images": make_case(1, 8, perfect=True)},
        "real275/mixed": {"real_iou": True, "use_matches_for_pose": True, "images": make_case(2, 40)},
        "real275/ties": {"real_iou": True, "use_matches_for_pose": True, "images": make_case(3, 4, ties=True)},
        "real275/nocs_iou": {"real_iou": False, "use_matches_for_pose": True, "same_images_as": "real275/mixed"},
        "real275/no_mug_predictions": {"real_iou": True, "use_matches_for_pose": True,
                                       "images": make_case(4, 12, drop_category=6)},
        "real275/sample": {"real_iou": True, "use_matches_for_pose": True, "images": sample_case("real275")},
        "camera25/perfect": {"real_iou": True, "use_matches_for_pose": True, "images": make_case(5, 8, perfect=True)},
        "camera25/mixed": {"real_iou": True, "use_matches_for_pose": True, "images": make_case(6, 40)},
        "camera25/pose_all_predictions": {"real_iou": True, "use_matches_for_pose": False,
                                          "same_images_as": "camera25/mixed"},
        "camera25/sample": {"real_iou": True, "use_matches_for_pose": True, "images": sample_case("camera25")},
    }


# ------------------------------------------------------------------------------------------------ the reference
def reference_results(images):
    """The per-image dicts GIVEPose's evaluate() hands to compute_degree_cm_mAP."""
    import numpy as np

    out = []
    for im in images:
        P = len(im["pred_class_ids"])
        out.append({"gt_class_ids": np.array(im["gt_class_ids"], dtype=np.int32),
                    "gt_RTs": np.array(im["gt_RTs"], dtype=np.float64).reshape(-1, 4, 4),
                    "gt_scales": np.array(im["gt_scales"], dtype=np.float64).reshape(-1, 3),
                    "gt_handle_visibility": np.array(im["gt_handle_visibility"]),
                    "pred_class_ids": np.array(im["pred_class_ids"], dtype=np.int32),
                    "pred_bboxes": np.ones((P, 4), dtype=np.int32),  # trim_zeros needs non-zero rows
                    "pred_scores": np.array(im["pred_scores"], dtype=np.float64),
                    "pred_RTs": np.array(im["pred_RTs"], dtype=np.float64).reshape(-1, 4, 4),
                    "pred_scales": np.array(im["pred_scales"], dtype=np.float64).reshape(-1, 3)})
    return out


def run_reference(ref, case, log_dir):
    """Both passes of GIVEPose's evaluate() on one case -> {our key: value}."""
    import numpy as np

    sys.path.insert(0, str(ref))
    os.environ.setdefault("MPLBACKEND", "Agg")
    import config.config  # noqa: F401  (defines the flags eval_utils_cass reads)
    from absl import flags
    from evaluation.eval_utils_cass import compute_degree_cm_mAP

    FLAGS = flags.FLAGS
    if not FLAGS.is_parsed():
        FLAGS(["gen_golden"])
    FLAGS.real_iou = case["real_iou"]
    use = case["use_matches_for_pose"]
    results = reference_results(case["images"])  # main() resolves same_images_as

    def run(res, lists):
        return compute_degree_cm_mAP(copy.deepcopy(res), SYNSETS, log_dir, lists["degrees"], lists["shifts"],
                                     lists["ious"], iou_pose_thres=0.1, use_matches_for_pose=use)

    iou1, pose1 = run(results, PASS1)
    iou1g, pose1g = run(results, PASS1_GIVEPOSE)
    # adding 2 cm changes no entry GIVEPose reports
    assert np.array_equal(iou1, iou1g, equal_nan=True)
    assert np.array_equal(pose1[:, :, 1:], pose1g, equal_nan=True)
    # the scale-normalised pass, as evaluate.py builds it
    norm = copy.deepcopy(results)
    for r in norm:
        for k in ("gt_RTs", "pred_RTs"):
            rts = r[k]
            s = np.cbrt(np.linalg.det(rts[:, :3, :3]))
            rts[:, :3, :] = rts[:, :3, :] / s[:, None, None]
            r[k] = rts
    iou2, pose2 = run(norm, PASS2)
    out = {}
    for keys, lists, iou, pose in ((KEYS1, PASS1, iou1, pose1), (KEYS2, PASS2, iou2, pose2)):
        degrees = list(lists["degrees"]) + [360]
        shifts = list(lists["shifts"]) + [100000]
        for idx, suffix in [(-1, "")] + [(c + 1, f"/{name}") for c, name in enumerate(CATS)]:
            for key, spec in keys.items():
                if spec[0] == "iou":
                    v = iou[idx, lists["ious"].index(spec[1])]
                else:
                    d = -1 if spec[1] == -1 else degrees.index(spec[1])
                    s = -1 if spec[2] == -1 else shifts.index(spec[2])
                    v = pose[idx, d, s]
                out[key + suffix] = float(v)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", required=True, type=Path, help="GIVEPose checkout at 7dd5f65")
    ap.add_argument("--out", required=True, type=Path, help="folder for cases.json and golden.json")
    args = ap.parse_args()
    if os.environ.get("NPY_DISABLE_CPU_FEATURES") != AVX512:  # numpy reads it at import: start again with it
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "NPY_DISABLE_CPU_FEATURES": AVX512})
    import tempfile

    import numpy as np

    cases = build_cases()
    golden = {}
    with tempfile.TemporaryDirectory() as log_dir:
        for name, case in cases.items():
            images = cases[case["same_images_as"]]["images"] if "same_images_as" in case else case["images"]
            golden[name] = run_reference(args.ref, {**case, "images": images}, log_dir)
            print(name, {k: round(v, 4) for k, v in golden[name].items() if "/" not in k})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cases.json").write_text(json.dumps(cases) + "\n")
    (args.out / "golden.json").write_text(json.dumps({"numpy": np.__version__, "cases": golden}, indent=1) + "\n")


if __name__ == "__main__":
    main()
