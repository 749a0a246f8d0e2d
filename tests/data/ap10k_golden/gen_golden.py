"""Make the AP-10K keypoint AP golden cases (mmpose's real test annotations, and synthetic GT with several
species) and score them with xtcocotools exactly as mmpose's ``CocoMetric`` scores AP-10K.

Run in a throwaway venv with the reference (xtcocotools needs numpy<2), not in the project's environment::

    python3.11 -m venv /tmp/ap10k/venv
    /tmp/ap10k/venv/bin/pip install "numpy<2" xtcocotools==1.14.3 pyyaml
    /tmp/ap10k/venv/bin/python tests/data/ap10k_golden/gen_golden.py --out /tmp/ap10k.json
    cmp /tmp/ap10k.json tests/data/ap10k_golden/golden.json

``mmpose_eval`` repeats open-mmlab/mmpose @ 759b39c13 ``mmpose/evaluation/metrics/coco_metric.py``
``CocoMetric._do_python_keypoint_eval`` as configs/animal_2d_keypoint/topdown_heatmap/ap10k/*.py configure it
(``CocoMetric(ann_file=...)``: ``iou_type='keypoints'``, ``use_area=True``): ``coco = COCO(gt_file)``,
``coco_det = coco.loadRes(res_file)``, ``COCOeval(coco, coco_det, 'keypoints', sigmas, True)`` (``useCats`` left at
its default 1), ``params.useSegm = None``, ``evaluate(); accumulate(); summarize()``. Kept: ``stats`` and, per
category id, the mean of ``eval['precision'][:, :, k, 0, -1]`` over its entries > -1 (-1 when none: the
category has no GT). Sigmas: bench/conf/dataset/ap10k.yaml's (mmpose ``configs/_base_/datasets/ap10k.py``) as
``np.array(..., dtype=np.float32)`` (mmpose's ``parse_pose_metainfo``). Inputs are drawn with
``np.random.default_rng`` (seeds in the case names). The reference is imported inside functions so that pytest's
doctest collection can import this file anywhere.
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
SAMPLE_GT = REPO / "bench/data/samples/ap10k/annotations/ap10k-val-split1.json"
CONFIG = REPO / "bench/conf/dataset/ap10k.yaml"
STAT_KEYS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
K = 17


def sigmas() -> list[float]:
    import yaml

    return yaml.safe_load(CONFIG.read_text())["sigmas"]


def mmpose_eval(gt_file: Path, res_file: Path) -> tuple[list[float], dict[str, float]]:
    """``COCOeval.stats`` of mmpose's CocoMetric for AP-10K, and each category's AP (-1: no GT)."""
    import contextlib
    import io

    import numpy as np
    from xtcocotools.coco import COCO
    from xtcocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(gt_file))
        coco_det = coco.loadRes(str(res_file))
        ev = COCOeval(coco, coco_det, "keypoints", np.array(sigmas(), dtype=np.float32), True)
        ev.params.useSegm = None
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    per = {}
    for k, c in enumerate(ev.params.catIds):
        p = ev.eval["precision"][:, :, k, 0, -1]
        per[str(c)] = float(np.mean(p[p > -1])) if (p > -1).any() else -1.0
    return [float(x) for x in ev.stats], per


def _r(x) -> list[float]:
    return [round(float(v), 2) for v in x]


def make_dets(rng, gt: dict, noise: float, n_fp: int, bbox_first: bool, crowded: int | None = None,
              min_copies: int = 0) -> list[dict]:
    """Noisy copies of the GT animals (``min_copies``-2 each; unlabelled points guessed in the box), some with another
    species' category; false positives of any listed category (also those without GT); records with every
    confidence 0; exact duplicates; scores rounded to 0.1 (ties). ``crowded``: 24 more false positives of one
    category in that image (past maxDets=20)."""
    import numpy as np

    imgs = {im["id"]: im for im in gt["images"]}
    cats = [c["id"] for c in gt["categories"]]

    def fp(im, cat):
        xy = np.stack([rng.random(K) * im["width"], rng.random(K) * im["height"]], 1)
        return {"image_id": im["id"], "category_id": cat,
                "keypoints": [v for row in zip(_r(xy[:, 0]), _r(xy[:, 1]), _r(rng.uniform(0, 1, K))) for v in row]}

    dets = []
    for a in gt["annotations"]:
        g = np.array(a["keypoints"], dtype=np.float64).reshape(K, 3)
        x0, y0, w, h = a["bbox"]
        s = float(np.sqrt(max(w * h, 1.0))) / 10
        for _ in range(int(rng.integers(min_copies, 3))):
            xy = g[:, :2].copy()
            unl = g[:, 2] == 0
            xy[unl] = np.stack([x0 + rng.random(unl.sum()) * w, y0 + rng.random(unl.sum()) * h], 1)
            xy += rng.normal(0, s * noise * float(rng.uniform(0.3, 2.0)), xy.shape)
            conf = rng.uniform(0.05, 1.0, K) if rng.random() > 0.1 else np.zeros(K)
            cat = a["category_id"] if rng.random() > 0.2 else int(rng.choice(cats))
            dets.append({"image_id": a["image_id"], "category_id": cat,
                         "keypoints": [v for row in zip(_r(xy[:, 0]), _r(xy[:, 1]), _r(conf)) for v in row]})
    for _ in range(n_fp):
        dets.append(fp(imgs[list(imgs)[int(rng.integers(len(imgs)))]], int(rng.choice(cats))))
    if crowded is not None:
        cat = next((a["category_id"] for a in gt["annotations"] if a["image_id"] == crowded), cats[0])
        dets += [fp(imgs[crowded], cat) for _ in range(24)]
    for d in dets:
        d["score"] = round(float(rng.random()), 1)
    for i in rng.choice(len(dets), size=min(len(dets), 2), replace=False) if dets else []:
        dets.append(copy.deepcopy(dets[int(i)]))
    dets = [dets[int(i)] for i in rng.permutation(len(dets))]
    if bbox_first:
        for d in dets:
            x, y = d["keypoints"][0::3], d["keypoints"][1::3]
            d["bbox"] = [min(x), min(y), round(max(x) - min(x) + 3, 2), round(max(y) - min(y) + 3, 2)]
    return dets


def make_gt(rng, seed: int) -> dict:
    """Synthetic AP-10K-style GT: 5 species listed in shuffled order (ids not contiguous), one of them without
    any annotation; 3-5 images of 0-5 animals (several of one species in an image), small to large areas, some
    crowd, some with no labelled keypoint, annotation ids 0 and negative when seed % 2 == 0."""
    import numpy as np

    cats = [int(c) for c in rng.permutation([1, 4, 9, 26, 54])]
    with_gt = cats[1:]  # cats[0] has no GT
    images, anns = [], []
    for i in range(int(rng.integers(3, 6))):
        im = {"id": int(1000 * seed + 7 * i + 1), "file_name": f"{i:012d}.jpg", "width": 640, "height": 480}
        images.append(im)
        for _ in range(int(rng.integers(0, 6))):
            w, h = float(rng.uniform(20, 300)), float(rng.uniform(20, 300))
            x0, y0 = float(rng.uniform(0, 640 - w)), float(rng.uniform(0, 480 - h))
            xy = np.stack([x0 + rng.random(K) * w, y0 + rng.random(K) * h], 1)
            v = rng.choice([0, 1, 2], size=K, p=[0.2, 0.2, 0.6]).astype(float)
            if rng.random() < 0.1:
                v[:] = 0
            xy[v == 0] = 0
            anns.append({"id": len(anns) + 1, "image_id": im["id"], "category_id": int(rng.choice(with_gt)),
                         "bbox": [round(x0, 2), round(y0, 2), round(w, 2), round(h, 2)],
                         "area": round(w * h * float(rng.uniform(0.4, 0.9)), 2), "iscrowd": int(rng.random() < 0.1),
                         "num_keypoints": int((v > 0).sum()),
                         "keypoints": [float(t) for row in zip(_r(xy[:, 0]), _r(xy[:, 1]), v) for t in row]})
    if seed % 2 == 0 and anns:
        for a, new in zip(anns, (0, -3)):
            a["id"] = new
    return {"images": images, "annotations": anns,
            "categories": [{"id": c, "name": f"species{c}", "supercategory": "animal"} for c in cats]}


def make_cases() -> list[dict]:
    import numpy as np

    sample = json.loads(SAMPLE_GT.read_text())
    cases = []
    for seed, (noise, n_fp, bb) in enumerate(((0.05, 2, False), (0.15, 4, True), (0.4, 6, False))):
        rng = np.random.default_rng(700 + seed)
        cases.append({"name": f"ap10k_sample_seed{seed}", "gt": "sample",
                      "dets": make_dets(rng, sample, noise, n_fp, bb, min_copies=1)})
    for seed in range(6):
        rng = np.random.default_rng(800 + seed)
        gt = make_gt(rng, seed)
        crowded = gt["images"][0]["id"] if seed % 3 == 2 else None
        cases.append({"name": f"animals_seed{seed}", "gt": gt,
                      "dets": make_dets(rng, gt, float(rng.choice([0.3, 0.6, 1.0])), int(rng.integers(2, 7)),
                                        seed % 3 == 1, crowded)})
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
            case["stats"], case["category_ap"] = mmpose_eval(gt_file, res_file)
    args.out.write_text(json.dumps({"stat_keys": list(STAT_KEYS), "cases": cases}, separators=(",", ":")))
    print(f"{len(cases)} cases", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
