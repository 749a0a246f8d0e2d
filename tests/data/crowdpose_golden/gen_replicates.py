"""xtcocotools AP of CrowdPose golden cases re-evaluated on resampled images (copies as distinct images).

Run (a numpy<2 venv with xtcocotools==1.14.3, see PROVENANCE.md):
    venv-xtc/bin/python tests/data/crowdpose_golden/gen_replicates.py GOLDEN.json SAMPLE_GT.json > out.json
Copy k of image i is image ``i * 100 + k``; its annotations keep their id's sign class (xtcocotools' "matched"
test is ``id >= 0``) with fresh ids for k > 0; its detections follow it, in file order. Count rows: for a case
with n images (ascending ids), ``np.random.default_rng(2024 + case index).multinomial(n, [1/n] * n)``.
"""
import contextlib
import copy
import io
import json
import sys
import tempfile

import numpy as np

SIGMAS = np.array([.79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89, .79, .79]) / 10.0


def resampled(gt, dets, copies):
    images, anns, out = [], [], []
    for img in sorted(gt["images"], key=lambda im: im["id"]):
        for k in range(copies[img["id"]]):
            new = img["id"] * 100 + k
            images.append({**img, "id": new})
            for a in gt["annotations"]:
                if a["image_id"] == img["id"]:
                    aid = a["id"] if k == 0 else (a["id"] + 1_000_000 * k if a["id"] >= 0 else a["id"] - 1_000_000 * k)
                    anns.append({**copy.deepcopy(a), "image_id": new, "id": aid})
    for d in dets:
        for k in range(copies[d["image_id"]]):
            out.append({**copy.deepcopy(d), "image_id": d["image_id"] * 100 + k})
    return {**{k: v for k, v in gt.items() if k not in ("images", "annotations")}, "images": images,
            "annotations": anns}, out


def ap(gt, dets, sigmas):
    # the reference, imported here: pytest's doctest collection imports this file
    from xtcocotools.coco import COCO
    from xtcocotools.cocoeval import COCOeval

    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        path = f"{tmp}/gt.json"  # summarize() re-reads the GT file for the crowd splits
        with open(path, "w") as f:
            json.dump(gt, f)
        coco = COCO(path)
        ev = COCOeval(coco, coco.loadRes(dets), "keypoints_crowd", sigmas, use_area=False)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


def main():
    with open(sys.argv[1]) as f:
        golden = json.load(f)
    with open(sys.argv[2]) as f:
        sample = json.load(f)
    out = {}
    for ci, case in enumerate(golden["cases"]):
        gt = sample if case["gt"] == "sample" else case["gt"]
        sig = np.array(case["sigmas"]) if case.get("sigmas") else SIGMAS
        ids = sorted(im["id"] for im in gt["images"])
        n = len(ids)
        rng = np.random.default_rng(2024 + ci)
        rows = []
        ones = ap(*resampled(gt, case["dets"], dict.fromkeys(ids, 1)), sig) if case["dets"] else None
        for _ in range(4):
            counts = rng.multinomial(n, [1.0 / n] * n).tolist()
            g, d = resampled(gt, case["dets"], dict(zip(ids, counts)))
            rows.append([counts, ap(g, d, sig) if d else None])
        out[case["name"]] = {"image_ids": ids, "identity": ones, "rows": rows}
    json.dump(out, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
