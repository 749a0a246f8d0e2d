"""Make the any-skeleton keypoint AP golden cases (Halpe, OCHuman, AIC, Human-Art on mmpose's test annotations, and
the user-defined 5-keypoint ``hand5``) and score them with xtcocotools exactly as mmpose's ``CocoMetric`` does.

Run in a throwaway venv with the reference (xtcocotools needs numpy<2), not in the project's environment::

    python3.11 -m venv /tmp/wholebody/venv
    /tmp/wholebody/venv/bin/pip install "numpy<2" xtcocotools==1.14.3 pyyaml
    /tmp/wholebody/venv/bin/python tests/data/skeleton_golden/gen_golden.py --out /tmp/sk.json
    cmp /tmp/sk.json tests/data/skeleton_golden/golden.json

``mmpose_eval`` repeats open-mmlab/mmpose @ 759b39c13 ``mmpose/evaluation/metrics/coco_metric.py``
``CocoMetric._do_python_keypoint_eval``: ``coco = COCO(gt_file)``, ``coco_det = coco.loadRes(res_file)``,
``COCOeval(coco, coco_det, 'keypoints', sigmas, use_area)``, ``params.useSegm = None``, ``evaluate();
accumulate(); summarize()``; ``stats`` kept. Sigmas: the skeleton's (mmpose ``configs/_base_/datasets/<name>.py``,
copied into bench/conf/dataset/<name>.yaml) as ``np.array(..., dtype=np.float32)`` (mmpose's
``parse_pose_metainfo``); ``use_area`` from the skeleton YAML (Halpe, OCHuman, Human-Art: True, mmpose's default;
AIC: False, as mmpose's ``configs/body_2d_keypoint/topdown_heatmap/aic/*.py`` pass it; hand5: False). The inputs are drawn with
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
HALPE_GT = REPO / "bench/data/samples/halpe/annotations/halpe_val_v1.json"
# the bundled samples (mmpose's tests/data/<name>/test_<name>.json) and the seeds of their cases
SAMPLES = {"halpe": (HALPE_GT, 0),
           "ochuman": (REPO / "bench/data/samples/ochuman/annotations/ochuman_coco_format_val_range_0.00_1.00.json", 300),
           "aic": (REPO / "bench/data/samples/aic/annotations/aic_val.json", 400),
           "humanart": (REPO / "bench/data/samples/humanart/HumanArt/annotations/validation_humanart.json", 500)}
SKELETONS = {**{n: REPO / f"bench/conf/dataset/{n}.yaml" for n in SAMPLES},
             "hand5": REPO / "tests/data/skeleton_plugin/hand5.yaml"}
STAT_KEYS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")


def skeleton(name: str) -> dict:
    import yaml

    return yaml.safe_load(SKELETONS[name].read_text())


def mmpose_eval(gt_file: Path, res_file: Path, sigmas: list[float], use_area: bool) -> list[float]:
    """``COCOeval.stats`` of mmpose's CocoMetric (iou_type 'keypoints') on a GT file and a results file."""
    import contextlib
    import io

    import numpy as np
    from xtcocotools.coco import COCO
    from xtcocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(gt_file))
        coco_det = coco.loadRes(str(res_file))
        ev = COCOeval(coco, coco_det, "keypoints", np.array(sigmas, dtype=np.float32), use_area)
        ev.params.useSegm = None
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(x) for x in ev.stats]


def _r(x) -> list[float]:
    return [round(float(v), 2) for v in x]


def make_dets(rng, gt: dict, K: int, noise: float, n_fp: int, bbox_first: bool) -> list[dict]:
    """Noisy copies of the GT people (0-2 each; unlabelled points guessed in the box), random false positives,
    a few records with every confidence 0 (xtcocotools drops them), exact duplicates, scores rounded to 0.1."""
    import numpy as np

    imgs = {im["id"]: im for im in gt["images"]}
    dets = []
    for a in gt["annotations"]:
        g = np.array(a["keypoints"], dtype=np.float64).reshape(K, 3)
        x0, y0, w, h = a["bbox"]
        s = float(np.sqrt(max(w * h, 1.0))) / 10
        for _ in range(int(rng.integers(0, 3))):
            xy = g[:, :2].copy()
            unl = g[:, 2] == 0
            xy[unl] = np.stack([x0 + rng.random(unl.sum()) * w, y0 + rng.random(unl.sum()) * h], 1)
            xy += rng.normal(0, s * noise * float(rng.uniform(0.3, 2.0)), xy.shape)
            conf = rng.uniform(0.05, 1.0, K) if rng.random() > 0.1 else np.zeros(K)
            dets.append({"image_id": a["image_id"], "category_id": 1,
                         "keypoints": [v for row in zip(_r(xy[:, 0]), _r(xy[:, 1]), _r(conf)) for v in row]})
    for _ in range(n_fp):
        im = imgs[list(imgs)[int(rng.integers(len(imgs)))]]
        xy = np.stack([rng.random(K) * im["width"], rng.random(K) * im["height"]], 1)
        dets.append({"image_id": im["id"], "category_id": 1,
                     "keypoints": [v for row in zip(_r(xy[:, 0]), _r(xy[:, 1]), _r(rng.uniform(0, 1, K))) for v in row]})
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


def make_hand_gt(rng, seed: int, K: int) -> dict:
    """Synthetic 5-keypoint GT without ``area`` (use_area=False): 2-5 images, 0-4 hands each, some crowd, some
    with no labelled keypoint, annotation ids 0 and negative when seed % 2 == 0."""
    import numpy as np

    images, anns = [], []
    for i in range(int(rng.integers(2, 6))):
        im = {"id": int(100 * seed + 3 * i + 2), "file_name": f"{i}.jpg", "width": 320, "height": 240}
        images.append(im)
        for _ in range(int(rng.integers(0, 5))):
            w, h = float(rng.uniform(15, 160)), float(rng.uniform(15, 160))
            x0, y0 = float(rng.uniform(0, 320 - w)), float(rng.uniform(0, 240 - h))
            xy = np.stack([x0 + rng.random(K) * w, y0 + rng.random(K) * h], 1)
            v = rng.choice([0, 1, 2], size=K, p=[0.2, 0.3, 0.5]).astype(float)
            if rng.random() < 0.1:
                v[:] = 0
            xy[v == 0] = 0
            anns.append({"image_id": im["id"], "category_id": 1, "iscrowd": int(rng.random() < 0.1),
                         "bbox": [round(x0, 2), round(y0, 2), round(w, 2), round(h, 2)],
                         "keypoints": [float(t) for row in zip(_r(xy[:, 0]), _r(xy[:, 1]), v) for t in row],
                         "id": len(anns) + 1})
    if seed % 2 == 0 and anns:
        for a, new in zip(anns, (0, -3)):
            a["id"] = new
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "hand", "supercategory": "hand"}]}


def make_cases() -> list[dict]:
    import numpy as np

    halpe = json.loads(HALPE_GT.read_text())
    cases = []
    for seed, (noise, n_fp, bb) in enumerate(((0.05, 2, False), (0.15, 4, False), (0.4, 6, True))):
        rng = np.random.default_rng(seed)
        cases.append({"name": f"halpe_sample_seed{seed}", "skeleton": "halpe", "gt": "sample",
                      "dets": make_dets(rng, halpe, 136, noise, n_fp, bb)})
    for seed in range(8):
        rng = np.random.default_rng(200 + seed)
        gt = make_hand_gt(rng, seed, 5)
        n_fp = 24 if seed % 4 == 3 else int(rng.integers(0, 5))  # more than maxDets=20 in one image
        cases.append({"name": f"hand5_seed{seed}", "skeleton": "hand5", "gt": gt,
                      "dets": make_dets(rng, gt, 5, float(rng.choice([0.01, 0.03, 0.1])), n_fp, seed % 4 == 1)})
    for name in ("ochuman", "aic", "humanart"):
        path, base = SAMPLES[name]
        gt, K = json.loads(path.read_text()), len(skeleton(name)["keypoints"])
        scale = 0.3 if name == "aic" else 1.0  # AIC's sigmas are a third of COCO's
        for seed, (noise, n_fp, bb) in enumerate(((0.05, 2, False), (0.15, 4, True), (0.4, 6, False))):
            noise *= scale
            rng = np.random.default_rng(base + seed)
            cases.append({"name": f"{name}_sample_seed{seed}", "skeleton": name, "gt": "sample",
                          "dets": make_dets(rng, gt, K, noise, n_fp, bb)})
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
            sk = skeleton(case["skeleton"])
            gt_file = SAMPLES[case["skeleton"]][0] if case["gt"] == "sample" else None
            if case["gt"] != "sample":
                gt_file = Path(tmp) / "gt.json"
                gt_file.write_text(json.dumps(case["gt"]))
            res_file = Path(tmp) / "res.json"
            res_file.write_text(json.dumps(case["dets"]))
            case["stats"] = mmpose_eval(gt_file, res_file, sk["sigmas"], sk["use_area"])
    args.out.write_text(json.dumps({"stat_keys": list(STAT_KEYS), "cases": cases}, separators=(",", ":")))
    print(f"{len(cases)} cases", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
