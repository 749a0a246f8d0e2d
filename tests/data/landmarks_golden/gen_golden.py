"""Build the landmark golden cases and record mmpose 1.x's evaluators (and PIPNet's FR / AUC) on them.

For each dataset (300w, wflw, cofw, aflw, onehand10k, rhd) the GT file ``<dataset>_gt.json`` is mmpose's own
test file (``tests/data/<dir>/test_<name>.json`` of the checkout) plus synthetic instances made from its real
ones (``numpy.random.default_rng(<dataset seed>)``): unlabelled keypoints (v = 0, some with zeroed
coordinates), boxes crossing the image border, a face whose normalising keypoints coincide (normaliser 0), a
face with no labelled keypoint, and instances mmpose drops (crowd, ``num_keypoints`` 0, a box outside the
image). Predictions (3 cases per dataset, rounded to 2 decimals) are GT plus noise, plus, for hands, offsets
lying exactly on the PCK and AUC thresholds.

The reference then runs unchanged: the dataset class of mmpose (``Face300WDataset``, ``WFLWDataset``,
``COFWDataset``, ``AFLWDataset``, ``OneHand10KDataset``, ``Rhd2DDataset``; top-down, ``test_mode=True``, no
pipeline) reads the GT file; each data info becomes a data sample as ``PackPoseInputs`` packs it (``keypoints``,
``keypoints_visible``, ``bboxes``) with the prediction as float32 ``pred_instances.keypoints``; the evaluators
of mmpose's configs score them: ``NME(norm_mode='keypoint_distance')`` with the dataset's meta (300w, wflw,
cofw), ``NME(norm_mode='use_norm_item', norm_item='bbox_size')`` (aflw), ``PCKAccuracy(thr=0.2)``, ``AUC()``,
``EPE()`` (hands). For faces, PIPNet's ``compute_fr_and_auc(nmes)`` (thres 0.1, step 1e-4) runs on per-face
NMEs: the float64 mean of the face's entries of mmpose's ``_calc_distances`` with the same normaliser.

mmpose is imported from the checkout with stub parent packages (so that ``mmpose/__init__.py`` and the package
``__init__`` files, which need mmcv, never run); the modules that run are the real ones. Command and
environment: tests/data/landmarks_golden/PROVENANCE.md.
"""
from __future__ import annotations

import argparse
import ast
import copy
import json
import sys
import tempfile
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent

DATASETS = {  # name: (test file, module, class, meta file, seed)
    "300w": ("300w/test_300w.json", "face.face_300w_dataset", "Face300WDataset", "300w.py", 300),
    "wflw": ("wflw/test_wflw.json", "face.wflw_dataset", "WFLWDataset", "wflw.py", 98),
    "cofw": ("cofw/test_cofw.json", "face.cofw_dataset", "COFWDataset", "cofw.py", 29),
    "aflw": ("aflw/test_aflw.json", "face.aflw_dataset", "AFLWDataset", "aflw.py", 19),
    "onehand10k": ("onehand10k/test_onehand10k.json", "hand.onehand10k_dataset", "OneHand10KDataset",
                   "onehand10k.py", 10),
    "rhd": ("rhd/test_rhd.json", "hand.rhd2d_dataset", "Rhd2DDataset", "rhd2d.py", 2),
}
FACES = ("300w", "wflw", "cofw", "aflw")
NORM_PAIR = {"300w": (36, 45), "wflw": (60, 72), "cofw": (8, 9)}


def load_reference(ref: Path, pipnet: Path) -> dict:
    """The reference modules from the checkouts: mmpose's metrics, functional and dataset classes, PIPNet's
    ``compute_fr_and_auc`` (compiled from ``lib/functions.py``, whose module imports torch and cv2)."""
    import importlib

    import numpy as np
    from scipy.integrate import simps

    sys.path.insert(0, str(ref))
    for name in ("mmpose", "mmpose.evaluation", "mmpose.evaluation.functional", "mmpose.evaluation.metrics",
                 "mmpose.codecs", "mmpose.datasets", "mmpose.datasets.datasets", "mmpose.datasets.datasets.face",
                 "mmpose.datasets.datasets.hand"):
        pkg = types.ModuleType(name)
        pkg.__path__ = [str(ref / name.replace(".", "/"))]
        sys.modules[name] = pkg
    ke = importlib.import_module("mmpose.evaluation.functional.keypoint_eval")
    for fn in ("keypoint_auc", "keypoint_epe", "keypoint_nme", "keypoint_pck_accuracy"):
        setattr(sys.modules["mmpose.evaluation.functional"], fn, getattr(ke, fn))
    metrics = importlib.import_module("mmpose.evaluation.metrics.keypoint_2d_metrics")
    src = pipnet / "lib" / "functions.py"
    tree = ast.parse(src.read_text())
    fn = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "compute_fr_and_auc"]
    ns = {"np": np, "simps": simps}
    exec(compile(ast.Module(body=fn, type_ignores=[]), str(src), "exec"), ns)  # noqa: S102 (the reference)
    classes = {d: getattr(importlib.import_module("mmpose.datasets.datasets." + mod), cls)
               for d, (_, mod, cls, _, _) in DATASETS.items()}
    return {"metrics": metrics, "calc_distances": ke._calc_distances, "fr_and_auc": ns["compute_fr_and_auc"],
            "classes": classes}


# ------------------------------------------------------------------ inputs


def _kp_array(ann: dict):
    import numpy as np

    return np.array(ann["keypoints"], dtype=np.float64).reshape(-1, 3)


def _set_kp(ann: dict, kp) -> None:
    nested = isinstance(ann["keypoints"][0], list)
    rows = [[round(float(x), 2), round(float(y), 2), int(v)] for x, y, v in kp]
    ann["keypoints"] = rows if nested else [v for r in rows for v in r]
    if "num_keypoints" in ann:
        ann["num_keypoints"] = int((kp[:, 2] > 0).sum())


def build_gt(name: str, raw: dict, seed: int) -> dict:
    """mmpose's test file plus synthetic instances (see the module docstring)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    gt = copy.deepcopy(raw)
    base = list(gt["annotations"])
    images = {im["id"]: im for im in gt["images"]}
    next_id = max(a["id"] for a in base) + 1000
    center_scale = "center" in base[0]

    def add(a: dict) -> dict:
        nonlocal next_id
        a["id"] = next_id
        next_id += 1
        gt["annotations"].append(a)
        return a

    for i in range(8):  # jittered copies: unlabelled points, boxes over the border
        src = base[i % len(base)]
        a = copy.deepcopy(src)
        img = images[a["image_id"]]
        kp = _kp_array(a)
        shift = rng.normal(0, 15, 2)
        kp[:, :2] += shift + rng.normal(0, 2, kp[:, :2].shape)
        off = rng.random(len(kp)) < 0.2
        kp[off, 2] = 0
        kp[off & (rng.random(len(kp)) < 0.5), :2] = 0  # some unlabelled points keep no coordinates
        kp[~off, 2] = np.maximum(kp[~off, 2], 1)
        _set_kp(a, kp)
        if center_scale:
            a["center"] = [round(a["center"][0] + shift[0], 1), round(a["center"][1] + shift[1], 1)]
            a["scale"] = round(a["scale"] * float(rng.uniform(0.8, 1.3)), 3)
            if i % 3 == 0:
                a["center"][0] = round(float(rng.uniform(0, 0.1)) * img["width"], 1)  # box over the left border
            if "box_size" in a:
                a["box_size"] = round(a["scale"] * 200, 1)
        else:
            _, y, w, h = a["bbox"]
            if i % 2 == 0:  # over the left / top border
                a["bbox"] = [round(-0.3 * w, 2), round(y - 0.2 * h, 2), w, round(h * 1.1, 2)]
            else:  # over the right / bottom border
                a["bbox"] = [round(img["width"] - 0.6 * w, 2), round(img["height"] - 0.7 * h, 2), w, h]
        add(a)
    a = add(copy.deepcopy(base[0]))  # no labelled keypoint, coordinates kept: scored, contributes nothing
    kp = _kp_array(a)
    kp[:, 2] = 0
    _set_kp(a, kp)
    if "num_keypoints" in a:
        a["num_keypoints"] = len(kp)  # mmpose trusts the field
    if name in NORM_PAIR:  # normalising keypoints coincide: normaliser 0, the face is not scored
        a = add(copy.deepcopy(base[-1]))
        kp = _kp_array(a)
        i, j = NORM_PAIR[name]
        kp[j, :2] = kp[i, :2]
        _set_kp(a, kp)
    a = add(copy.deepcopy(base[0]))  # dropped: crowd
    a["iscrowd"] = 1
    a = add(copy.deepcopy(base[-1]))  # dropped: nothing labelled by count
    if "num_keypoints" in a:
        a["num_keypoints"] = 0
    else:
        kp = _kp_array(a)
        kp[:, :] = 0
        _set_kp(a, kp)
    if not center_scale:
        a = add(copy.deepcopy(base[0]))  # dropped: the box lies right of the image, clipped to zero width
        a["bbox"] = [images[a["image_id"]]["width"] + 5.0, 10.0, 40.0, 40.0]
    return gt


def make_predictions(name: str, info: list[dict], case: int, seed: int) -> list[dict]:
    """One record per scored instance (mmpose's data list, in a shuffled order)."""
    import numpy as np

    rng = np.random.default_rng(seed * 10 + case)
    out = []
    for d in info:
        g = d["keypoints"][0].astype(np.float64)
        bb = d["bbox"][0]
        size = float(max(bb[2] - bb[0], bb[3] - bb[1]))
        if case == 0:
            p = g + rng.normal(0, 0.02 * size, g.shape)
        elif case == 1:  # per instance error level, some far off (failures)
            p = g + rng.normal(0, float(rng.uniform(0.002, 0.12)) * size, g.shape)
        elif name in FACES:  # snapped to whole pixels
            p = np.round(g + rng.normal(0, 0.03 * size, g.shape))
        else:  # exactly on the thresholds: 0.2 x box size, and i x 1.5 px (AUC's i / 20 x 30 px)
            p = g.copy()
            k = len(g)
            p[: k // 3, 0] += 0.2 * size
            p[k // 3:, 1] -= 1.5 * rng.integers(0, 20, k - k // 3)
        out.append({"id": int(d["id"]), "keypoints": [[round(float(x), 2), round(float(y), 2)] for x, y in p]})
    order = rng.permutation(len(out))
    return [out[i] for i in order]


# ------------------------------------------------------------------ the reference


def dataset_infos(refmods: dict, ref: Path, name: str, gt_path: Path) -> tuple[list[dict], dict]:
    _, _, _, meta, _ = DATASETS[name]
    ds = refmods["classes"][name](ann_file=str(gt_path), data_mode="topdown", test_mode=True, pipeline=[],
                                  metainfo={"from_file": str(ref / "configs/_base_/datasets" / meta)})
    return [ds[i] for i in range(len(ds))], ds.metainfo


def score(refmods: dict, name: str, infos: list[dict], meta: dict, preds: list[dict]) -> dict[str, float]:
    """The evaluators of mmpose's configs for ``name`` on ``preds``; PIPNet's FR / AUC for faces."""
    import numpy as np

    m = refmods["metrics"]
    by_id = {p["id"]: np.array(p["keypoints"], dtype=np.float32)[None] for p in preds}
    samples = [{"gt_instances": {"keypoints": d["keypoints"], "keypoints_visible": d["keypoints_visible"],
                                 "bboxes": d["bbox"]},
                "pred_instances": {"keypoints": by_id[d["id"]]}} for d in infos]
    if name == "aflw":
        evaluators = [m.NME(norm_mode="use_norm_item", norm_item="bbox_size")]
    elif name in FACES:
        evaluators = [m.NME(norm_mode="keypoint_distance")]
    else:
        evaluators = [m.PCKAccuracy(thr=0.2), m.AUC(), m.EPE()]
    out: dict[str, float] = {}
    for ev in evaluators:
        ev.dataset_meta = meta
        for s in samples:
            ev.process([], [s])
        if name in FACES:
            res = copy.deepcopy(ev.results)
        out.update({k: float(v) for k, v in ev.evaluate(len(samples)).items()})
    if name in FACES:
        pred = np.concatenate([r["pred_coords"] for r in res])
        gt = np.concatenate([r["gt_coords"] for r in res])
        mask = np.concatenate([r["mask"] for r in res])
        if name == "aflw":
            norm = np.tile(np.concatenate([r["bbox_size"] for r in res]), [1, 2])
        else:
            norm = evaluators[0]._get_normalize_factor(gt)
        dist = refmods["calc_distances"](pred, gt, mask, norm).T
        nmes = np.array([row[row != -1].astype(np.float64).mean() for row in dist if (row != -1).any()])
        fr, auc = refmods["fr_and_auc"](nmes)
        out["FR@0.1"], out["AUC@0.1"] = float(fr), float(auc)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", type=Path, required=True, help="checkout of open-mmlab/mmpose @ 759b39c")
    ap.add_argument("--pipnet", type=Path, required=True, help="checkout of jhb86253817/PIPNet @ b9eab58")
    ap.add_argument("--out", type=Path, required=True, help="folder for golden.json and the <dataset>_gt.json files")
    args = ap.parse_args()
    from importlib.metadata import version

    print(f"numpy {version('numpy')}, scipy {version('scipy')}, mmengine {version('mmengine')}, "
          f"xtcocotools {version('xtcocotools')}", file=sys.stderr)
    refmods = load_reference(args.ref, args.pipnet)
    args.out.mkdir(parents=True, exist_ok=True)
    golden: dict = {"datasets": {}}
    for name, (test_file, _, _, _, seed) in DATASETS.items():
        raw = json.loads((args.ref / "tests" / "data" / test_file).read_text())
        gt = build_gt(name, raw, seed)
        gt_path = args.out / f"{name}_gt.json"
        gt_path.write_text(json.dumps(gt, separators=(",", ":")))
        with tempfile.TemporaryDirectory():
            infos, meta = dataset_infos(refmods, args.ref, name, gt_path)
        cases = []
        for c in range(3):
            preds = make_predictions(name, infos, c, seed)
            cases.append({"name": f"case{c}", "predictions": preds, "expected": score(refmods, name, infos, meta, preds)})
        golden["datasets"][name] = {"gt_file": gt_path.name, "scored_ids": [int(d["id"]) for d in infos],
                                    "cases": cases}
        print(name, len(infos), "scored of", len(gt["annotations"]), [c["expected"] for c in cases], file=sys.stderr)
    (args.out / "golden.json").write_text(json.dumps(golden, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
