"""Make the COCO-WholeBody golden cases and score them with xtcocotools exactly as mmpose's CocoWholeBodyMetric does.

Run in a throwaway venv with the reference (xtcocotools needs numpy<2), not in the project's environment::

    python3.11 -m venv /tmp/wholebody/venv
    /tmp/wholebody/venv/bin/pip install "numpy<2" xtcocotools==1.14.3
    /tmp/wholebody/venv/bin/python tests/data/wholebody_golden/gen_golden.py --out /tmp/wb.json
    cmp /tmp/wb.json tests/data/wholebody_golden/golden.json

The inputs are drawn here with ``np.random.default_rng`` (seeds in the case names), so the same numpy gives the
same file; ``--golden FILE`` instead reads the inputs of an existing golden file and recomputes only the stats.
The reference is imported inside functions so that pytest's doctest collection can import this file anywhere.

Per case, ``mmpose_eval`` repeats open-mmlab/mmpose @ 759b39c13
``mmpose/evaluation/metrics/coco_wholebody_metric.py`` ``CocoWholeBodyMetric._do_python_keypoint_eval``:
``coco = COCO(gt_file)``, ``coco_det = coco.loadRes(res_file)``, then for each of ``keypoints_body``,
``keypoints_foot``, ``keypoints_face``, ``keypoints_lefthand``, ``keypoints_righthand`` (sigmas cut at
0, 17, 23, 91, 112, 133) and ``keypoints_wholebody`` (all 133): ``COCOeval(coco, coco_det, iou_type, sigmas,
use_area=True)``, ``params.useSegm = None``, ``evaluate(); accumulate(); summarize()``; ``stats`` kept.
Sigmas: ``configs/_base_/datasets/coco_wholebody.py`` as ``np.array(..., dtype=np.float32)`` (mmpose's
``parse_pose_metainfo``).
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
SAMPLE_GT = REPO / "bench/data/samples/coco_wholebody/annotations/coco_wholebody_val_v1.0.json"
PART_TYPES = ("body", "foot", "face", "lefthand", "righthand", "wholebody")
STAT_KEYS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
FIELDS = (("keypoints", 17), ("foot_kpts", 6), ("face_kpts", 68), ("lefthand_kpts", 21), ("righthand_kpts", 21))
SCORE_KEYS = ("foot_score", "face_score", "lefthand_score", "righthand_score", "wholebody_score")
SIGMAS = [  # mmpose configs/_base_/datasets/coco_wholebody.py
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062,
    0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089, 0.068, 0.066, 0.066,
    0.092, 0.094, 0.094, 0.042, 0.043, 0.044, 0.043, 0.040, 0.035, 0.031,
    0.025, 0.020, 0.023, 0.029, 0.032, 0.037, 0.038, 0.043, 0.041, 0.045,
    0.013, 0.012, 0.011, 0.011, 0.012, 0.012, 0.011, 0.011, 0.013, 0.015,
    0.009, 0.007, 0.007, 0.007, 0.012, 0.009, 0.008, 0.016, 0.010, 0.017,
    0.011, 0.009, 0.011, 0.009, 0.007, 0.013, 0.008, 0.011, 0.012, 0.010,
    0.034, 0.008, 0.008, 0.009, 0.008, 0.008, 0.007, 0.010, 0.008, 0.009,
    0.009, 0.009, 0.007, 0.007, 0.008, 0.011, 0.008, 0.008, 0.008, 0.01,
    0.008, 0.029, 0.022, 0.035, 0.037, 0.047, 0.026, 0.025, 0.024, 0.035,
    0.018, 0.024, 0.022, 0.026, 0.017, 0.021, 0.021, 0.032, 0.02, 0.019,
    0.022, 0.031, 0.029, 0.022, 0.035, 0.037, 0.047, 0.026, 0.025, 0.024,
    0.035, 0.018, 0.024, 0.022, 0.026, 0.017, 0.021, 0.021, 0.032, 0.02,
    0.019, 0.022, 0.031,
]


def mmpose_eval(gt_file: Path, res_file: Path) -> dict[str, list[float]]:
    """The six ``COCOeval.stats`` of mmpose's CocoWholeBodyMetric on a GT file and a results file."""
    import contextlib
    import io

    import numpy as np
    from xtcocotools.coco import COCO
    from xtcocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(gt_file))
        coco_det = coco.loadRes(str(res_file))
        sigmas = np.array(SIGMAS, dtype=np.float32)
        cuts = np.cumsum([0, 17, 6, 68, 21, 21])
        out = {}
        for i, part in enumerate(PART_TYPES):
            s = sigmas if part == "wholebody" else sigmas[cuts[i]:cuts[i + 1]]
            ev = COCOeval(coco, coco_det, f"keypoints_{part}", s, use_area=True)
            ev.params.useSegm = None
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            out[part] = [float(x) for x in ev.stats]
    return out


def _r(x) -> list[float]:
    return [round(float(v), 2) for v in x]


def _noisy(rng, gt_ann: dict, scale: float, field_drop: float = 0.15) -> dict:
    """A detection made from a GT person: every part's points moved by ``scale`` x sqrt(area) / 10 times a
    per-part factor; confidences in (0, 1], a part sometimes all zero (dropped from that part's evaluation)."""
    import numpy as np

    d = {}
    s = float(np.sqrt(max(gt_ann["area"], 1.0))) / 10 * scale
    x0, y0, w, h = gt_ann["bbox"]
    for (f, k), fac in zip(FIELDS, (1.0, 0.6, 0.25, 0.4, 0.4)):
        g = np.array(gt_ann[f], dtype=np.float64).reshape(k, 3)
        xy = g[:, :2].copy()
        unl = g[:, 2] == 0  # unlabelled GT points: guess somewhere in the box
        xy[unl] = np.stack([x0 + rng.random(unl.sum()) * w, y0 + rng.random(unl.sum()) * h], 1)
        xy += rng.normal(0, s * fac, xy.shape)
        conf = rng.uniform(0.05, 1.0, k)
        if f != "keypoints" and rng.random() < field_drop:
            conf[:] = 0.0
        d[f] = [v for row in zip(_r(xy[:, 0]), _r(xy[:, 1]), _r(conf)) for v in row]
    return d


def _random_person(rng, img: dict) -> dict:
    import numpy as np

    d = {}
    for f, k in FIELDS:
        xy = np.stack([rng.random(k) * img["width"], rng.random(k) * img["height"]], 1)
        d[f] = [v for row in zip(_r(xy[:, 0]), _r(xy[:, 1]), _r(rng.uniform(0.05, 1.0, k))) for v in row]
    return d


def make_dets(rng, gt: dict, noise: float, n_fp: int, part_scores: float, bbox_first: bool) -> list[dict]:
    """Noisy copies of the GT people (0-2 each), random false positives, exact duplicates, part scores on a
    fraction of the records, scores rounded to 0.1 (ties), shuffled."""

    imgs = {im["id"]: im for im in gt["images"]}
    dets = []
    for a in gt["annotations"]:
        for _ in range(int(rng.integers(0, 3))):
            d = _noisy(rng, a, noise * float(rng.uniform(0.3, 2.0)))
            dets.append({"image_id": a["image_id"], "category_id": 1, **d})
    for _ in range(n_fp):
        im = imgs[list(imgs)[int(rng.integers(len(imgs)))]]
        dets.append({"image_id": im["id"], "category_id": 1, **_random_person(rng, im)})
    for d in dets:
        d["score"] = round(float(rng.random()), 1)
        if rng.random() < part_scores:
            for k in SCORE_KEYS:
                if rng.random() < 0.7:
                    d[k] = round(float(rng.random()), 2)
    for i in rng.choice(len(dets), size=min(len(dets), 3), replace=False) if dets else []:
        dets.append(copy.deepcopy(dets[int(i)]))  # exact duplicates
    order = rng.permutation(len(dets))
    dets = [dets[int(i)] for i in order]
    if bbox_first and dets:
        for d in dets:
            x, y = d["keypoints"][0::3], d["keypoints"][1::3]
            d["bbox"] = [min(x), min(y), round(max(x) - min(x) + 5, 2), round(max(y) - min(y) + 5, 2)]
    return dets


def make_gt(rng, seed: int) -> dict:
    """A small synthetic COCO-WholeBody GT: 2-5 images, 0-4 people each; parts unlabelled (all zeros) at random,
    ``*_valid`` flags that disagree with the labels ("invalid hands" that are labelled, valid ones that are
    zeros), crowd people, annotation ids with 0 and negatives (seed % 3 == 0), areas across the COCO ranges."""
    import numpy as np

    images, anns = [], []
    next_id = 1
    for i in range(int(rng.integers(2, 6))):
        im = {"id": int(1000 * seed + 7 * i + 1), "file_name": f"{i}.jpg", "width": 640, "height": 480}
        images.append(im)
        for _ in range(int(rng.integers(0, 5))):
            w, h = float(rng.uniform(20, 300)), float(rng.uniform(30, 400))
            x0, y0 = float(rng.uniform(0, 640 - w)), float(rng.uniform(0, 480 - h))
            a = {"image_id": im["id"], "category_id": 1, "bbox": [round(x0, 2), round(y0, 2), round(w, 2), round(h, 2)],
                 "area": round(w * h * float(rng.uniform(0.3, 0.8)), 3), "iscrowd": int(rng.random() < 0.1)}
            for f, k in FIELDS:
                xy = np.stack([x0 + rng.random(k) * w, y0 + rng.random(k) * h], 1)
                v = rng.choice([0, 1, 2], size=k, p=[0.2, 0.3, 0.5]).astype(float)
                if f != "keypoints" and rng.random() < 0.35:
                    v[:] = 0  # unlabelled part
                if f == "keypoints" and rng.random() < 0.1:
                    v[:] = 0  # no body keypoint (the body evaluation ignores this person)
                xy[v == 0] = 0
                a[f] = [float(t) for row in zip(_r(xy[:, 0]), _r(xy[:, 1]), v) for t in row]
            for f, flag in (("face_kpts", "face_valid"), ("lefthand_kpts", "lefthand_valid"),
                            ("righthand_kpts", "righthand_valid"), ("foot_kpts", "foot_valid")):
                labelled = any(t > 0 for t in a[f][2::3])
                a[flag] = bool(labelled) if rng.random() < 0.7 else not labelled
            a["num_keypoints"] = int(sum(t > 0 for t in a["keypoints"][2::3]))
            a["id"] = next_id
            next_id += 1
            anns.append(a)
    if seed % 3 == 0 and anns:
        for a, new in zip(anns, (0, -1, -5)):
            a["id"] = new
    return {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "person", "supercategory": "person", "keypoints": [], "skeleton": []}]}


def make_cases() -> list[dict]:
    import numpy as np

    sample = json.loads(SAMPLE_GT.read_text())
    cases = []
    for seed, (noise, n_fp, ps, bb) in enumerate(((0.0, 0, 0.0, False), (0.05, 3, 0.0, False), (0.1, 5, 0.5, False),
                                                  (0.3, 8, 1.0, False), (0.1, 4, 0.3, True))):
        rng = np.random.default_rng(seed)
        cases.append({"name": f"sample_seed{seed}", "gt": "sample",
                      "dets": make_dets(rng, sample, noise, n_fp, ps, bb)})
    for seed in range(12):
        rng = np.random.default_rng(100 + seed)
        gt = make_gt(rng, seed)
        many = seed % 4 == 1  # more than maxDets=20 in one image
        dets = make_dets(rng, gt, float(rng.choice([0.05, 0.15, 0.4])), 25 if many else int(rng.integers(0, 6)),
                         0.5, seed % 5 == 4)
        cases.append({"name": f"random_seed{seed}", "gt": gt, "dets": dets})
    return cases


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="where to write the golden JSON")
    ap.add_argument("--golden", type=Path, default=None, help="take the inputs from this file (else draw them)")
    args = ap.parse_args()
    from importlib.metadata import version

    print(f"xtcocotools {version('xtcocotools')}, numpy {version('numpy')}", file=sys.stderr)
    cases = json.loads(args.golden.read_text())["cases"] if args.golden else make_cases()
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            gt_file = SAMPLE_GT
            if case["gt"] != "sample":
                gt_file = Path(tmp) / "gt.json"
                gt_file.write_text(json.dumps(case["gt"]))
            res_file = Path(tmp) / "res.json"
            res_file.write_text(json.dumps(case["dets"]))
            case["stats"] = mmpose_eval(gt_file, res_file)
    out = {"stat_keys": list(STAT_KEYS), "parts": list(PART_TYPES), "cases": cases}
    args.out.write_text(json.dumps(out, separators=(",", ":")))
    print(f"{len(cases)} cases", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
