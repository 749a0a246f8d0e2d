"""Build the BOP22 2D detection / segmentation golden cases and score them with the official toolkit.

    /tmp/bop22/venv/bin/python tests/data/bop22_golden/gen_golden.py build --toolkit /tmp/bop22/bop_toolkit
    /tmp/bop22/venv/bin/python tests/data/bop22_golden/gen_golden.py score --toolkit /tmp/bop22/bop_toolkit

``build`` (seeded, ``numpy.random.default_rng(22)``) writes two synthetic datasets:

- ``lmo/``: LM-O's layout, scene 2, images 1..6 (targets: 5 of them, listed out of order): ``scene_gt.json``,
  ``scene_gt_info.json`` (visib_fract of the drawn masks) and ``mask/``, ``mask_visib/`` PNGs (ellipses drawn
  in order, later ones occluding earlier ones: fully hidden and < 10 % visible instances included). ``score``
  then runs the toolkit's ``calc_gt_coco.py`` (amodal and modal) to make ``scene_gt_coco*.json``;
- ``ycbv/``: YCB-V's layout, scenes 48 and 50 (targets listed scene 50 first): ``scene_gt_coco.json`` written
  here directly (RLE masks via the toolkit's ``pycoco_utils.binary_mask_to_rle``), with ``ignore`` and
  ``iscrowd`` annotations and GT areas of exactly 32^2 and 96^2;

and one results file per case and annotation type under ``results/`` (``synth_<case>-test.json`` for bbox,
``synthsegm_<case>-test.json`` for segm): jittered copies of the GT, exact duplicates, detections of objects
absent from the image and of an id the dataset does not have, 120 detections of one object in one image,
equal scores within and across images, a record on a non-target image, a bbox of ``[]`` (bbox), compressed
RLE strings (pycocotools' encode) and uncompressed run lists (segm; lmo's records carry no bbox, ycbv's do).

``score`` runs ``scripts/eval_bop22_coco.py --ann_type {bbox,segm} [--bbox_type modal]`` per case with
``BOP_PATH`` set to this folder and writes every ``scores_bop22_coco_*.json`` into ``reference.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
H, W = 480, 640


def _ellipse(rng, shape=(H, W), r_lo=4, r_hi=110):
    import numpy as np

    yy, xx = np.mgrid[: shape[0], : shape[1]]
    cy, cx = rng.integers(20, shape[0] - 20), rng.integers(20, shape[1] - 20)
    ry, rx = rng.integers(r_lo, r_hi, size=2)
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _scene_masks(rng, n, objs):
    """n instances: (obj_id, full mask, visible mask); later instances occlude earlier ones."""
    import numpy as np

    fulls = [_ellipse(rng) for _ in range(n)]
    if n >= 3:  # a small object right under a big one: < 10 % visible, and one fully hidden
        fulls[0] = np.zeros((H, W), bool)
        fulls[0][200:240, 300:340] = True
        fulls[1] = np.zeros((H, W), bool)
        fulls[1][100:120, 100:120] = True
        big = np.zeros((H, W), bool)
        big[150:300, 200:380] = True
        big[100:120, 100:120] = True
        big[236:240, 300:340] = False
        fulls[2] = big
    out = []
    for i, f in enumerate(fulls):
        cover = np.zeros((H, W), bool)
        for g in fulls[i + 1:]:
            cover |= g
        out.append((int(objs[i]), f, f & ~cover))
    return out


def _box(mask):
    import numpy as np

    r, c = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    return [int(c[0]), int(r[0]), int(c[-1] - c[0] + 1), int(r[-1] - r[0] + 1)]


def _results(rng, images, obj_ids, extra_image, segm, with_bbox):
    """Results records for ``images``: {(scene, im): [(obj, visible mask)]}."""
    import numpy as np
    from bop_toolkit_lib.pycoco_utils import binary_mask_to_rle
    from pycocotools import mask as mask_utils

    recs = []

    def add(scene, im, obj, box, mask, score, time):
        rec = {"scene_id": scene, "image_id": im, "category_id": int(obj), "score": float(score), "time": time}
        if not segm or with_bbox:
            rec["bbox"] = [float(v) for v in box]
        if segm:
            if len(recs) % 2:
                rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
                rec["segmentation"] = {"counts": rle["counts"].decode(), "size": [H, W]}
            else:
                rec["segmentation"] = binary_mask_to_rle(mask)
        recs.append(rec)

    for k, ((scene, im), gts) in enumerate(images.items()):
        time = round(0.1 + 0.05 * k, 3)
        for obj, visib in gts:
            if not visib.any():
                continue
            for _ in range(int(rng.integers(1, 3))):
                dy, dx = rng.integers(-6, 7, size=2)
                m = np.roll(visib, (int(dy), int(dx)), axis=(0, 1))
                b = _box(m)
                b = [b[0] + rng.normal(0, 2), b[1] + rng.normal(0, 2), b[2] * rng.uniform(0.85, 1.15),
                     b[3] * rng.uniform(0.85, 1.15)]
                add(scene, im, obj, b, m, round(float(rng.uniform(0.2, 1.0)), 1), time)
        for _ in range(4):  # false positives, objects absent from the image among them
            m = _ellipse(rng, r_hi=60)
            add(scene, im, rng.choice(obj_ids), _box(m), m, round(float(rng.uniform(0, 1)), 1), time)
        add(scene, im, 99, [5, 5, 50, 50], _ellipse(rng), 0.95, time)  # an id the dataset does not have
        recs.append(dict(recs[-2]))  # an exact duplicate
    (scene, im), gts = next(iter(images.items()))
    obj, visib = next((o, v) for o, v in gts if v.any())
    for j in range(120):  # more than 100 detections of one object in one image
        m = np.roll(visib, (j % 11 - 5, j % 7 - 3), axis=(0, 1))
        add(scene, im, obj, _box(m), m, round(0.3 + (j % 13) / 20, 2), recs[0]["time"])
    m = _ellipse(rng)
    add(extra_image[0], extra_image[1], obj_ids[0], _box(m), m, 0.9, 0.75)  # not a target image
    if not segm:
        recs.append({**recs[3], "bbox": []})  # skipped by the toolkit
    return recs


def build(toolkit: Path) -> None:
    import numpy as np
    from PIL import Image

    sys.path.insert(0, str(toolkit))
    from bop_toolkit_lib.pycoco_utils import binary_mask_to_rle

    rng = np.random.default_rng(22)
    for d in ("lmo", "ycbv", "results"):
        shutil.rmtree(HERE / d, ignore_errors=True)
    # -- lmo: masks, calc_gt_coco makes the COCO GT
    lmo_objs = [1, 5, 6, 8, 9, 10, 11, 12]
    scene = HERE / "lmo" / "test" / "000002"
    gt, info, images = {}, {}, {}
    for im in range(1, 7):
        inst = _scene_masks(rng, int(rng.integers(3, 8)), rng.choice(lmo_objs, size=8))
        gt[str(im)] = [{"cam_R_m2c": [1, 0, 0, 0, 1, 0, 0, 0, 1], "cam_t_m2c": [0, 0, 1000], "obj_id": o}
                       for o, _, _ in inst]
        info[str(im)] = [{"visib_fract": float(v.sum() / f.sum()) if f.sum() else 0.0,
                          "px_count_visib": int(v.sum())} for _, f, v in inst]
        for j, (_, f, v) in enumerate(inst):
            for folder, m in (("mask", f), ("mask_visib", v)):
                (scene / folder).mkdir(parents=True, exist_ok=True)
                Image.fromarray(m.astype(np.uint8) * 255).save(scene / folder / f"{im:06d}_{j:06d}.png")
        images[(2, im)] = [(o, v) for o, _, v in inst]
    (scene / "scene_gt.json").write_text(json.dumps(gt))
    (scene / "scene_gt_info.json").write_text(json.dumps(info))
    targets = [{"scene_id": 2, "im_id": im, "obj_id": 1, "inst_count": 1} for im in (4, 1, 6, 2, 5)]
    (HERE / "lmo" / "test_targets_bop19.json").write_text(json.dumps(targets))
    lmo_images = {k: v for k, v in images.items() if k[1] != 3}
    # -- ycbv: COCO GT written directly, two scenes
    ycbv_images = {}
    for sc in (48, 50):
        coco = {"categories": [{"id": i, "name": str(i), "supercategory": "ycbv"} for i in range(1, 22)],
                "images": [], "annotations": [], "info": {}, "licenses": []}
        ann_id = 1
        for im in (1, 2, 3):
            coco["images"].append({"id": im, "width": W, "height": H, "file_name": f"rgb/{im:06d}.png"})
            inst = _scene_masks(rng, int(rng.integers(3, 7)), rng.choice(range(1, 22), size=8))
            kept = []
            for j, (o, f, v) in enumerate(inst):
                if not v.any():
                    continue
                if sc == 48 and im == 1 and j == 3:  # areas exactly at the range bounds
                    v = np.zeros((H, W), bool)
                    v[10:42, 10:42] = True
                if sc == 48 and im == 2 and j == 3:
                    v = np.zeros((H, W), bool)
                    v[300:396, 400:496] = True
                ann = {"id": ann_id, "image_id": im, "category_id": o, "iscrowd": 0, "area": int(v.sum()),
                       "bbox": _box(f), "segmentation": binary_mask_to_rle(v), "width": W, "height": H,
                       "ignore": bool(j == 4)}
                if sc == 50 and im == 2 and j == 3:
                    ann["iscrowd"] = 1
                coco["annotations"].append(ann)
                ann_id += 1
                kept.append((o, v))
            ycbv_images[(sc, im)] = kept
        d = HERE / "ycbv" / "test" / f"{sc:06d}"
        d.mkdir(parents=True)
        (d / "scene_gt_coco.json").write_text(json.dumps(coco))
    targets = [{"scene_id": s, "im_id": i, "obj_id": 1, "inst_count": 1} for s, i in ((50, 2), (48, 3), (50, 1),
                                                                                        (48, 1), (48, 2), (50, 3))]
    (HERE / "ycbv" / "test_targets_bop19.json").write_text(json.dumps(targets))
    ycbv_images.pop((50, 3))  # a target image without results
    res = HERE / "results"
    res.mkdir()
    for case, imgs, objs, extra in (("lmo", lmo_images, lmo_objs, (2, 3)),
                                    ("ycbv", ycbv_images, list(range(1, 22)), (49, 1))):
        for prefix, segm in (("synth", False), ("synthsegm", True)):
            recs = _results(rng, imgs, objs, extra, segm, with_bbox=case == "ycbv")
            (res / f"{prefix}_{case}-test.json").write_text(json.dumps(recs))


def score(toolkit: Path) -> None:
    env = {**os.environ, "BOP_PATH": str(HERE), "PYTHONPATH": str(toolkit)}
    py = sys.executable
    for bbox_type in ("amodal", "modal"):
        subprocess.run([py, str(toolkit / "scripts" / "calc_gt_coco.py"), "--dataset", "lmo", "--bbox_type",
                        bbox_type, "--datasets_path", str(HERE)], check=True, env=env, cwd=toolkit)
    out = {}
    with tempfile.TemporaryDirectory() as ev:
        for name in sorted(p.name for p in (HERE / "results").iterdir()):
            ann = "segm" if name.startswith("synthsegm") else "bbox"
            for bbox_type in (("amodal", "modal") if ann == "bbox" and "lmo" in name else ("amodal",)):
                subprocess.run([py, str(toolkit / "scripts" / "eval_bop22_coco.py"), "--result_filenames", name,
                                "--results_path", str(HERE / "results"), "--eval_path", ev, "--ann_type", ann,
                                "--bbox_type", bbox_type], check=True, env=env, cwd=toolkit)
                stem = name.split(".")[0]
                suffix = "_modal" if bbox_type == "modal" else ""
                scores = json.loads((Path(ev) / stem / f"scores_bop22_coco_{ann}{suffix}.json").read_text())
                out[f"{stem}:{ann}:{bbox_type}"] = scores
    (HERE / "reference.json").write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("step", choices=("build", "score"))
    ap.add_argument("--toolkit", type=Path, required=True)
    a = ap.parse_args()
    build(a.toolkit) if a.step == "build" else score(a.toolkit)


if __name__ == "__main__":
    main()
