"""Record the official CO3D camera-pose evaluation on the bundled sample (see PROVENANCE.md for the command).

    python tests/data/co3d_golden/gen_golden.py --refs /tmp/co3d

``--refs`` holds the fetched checkouts (``git archive``): ``amyxlase+relpose-plus-plus``,
``facebookresearch+PoseDiffusion`` and the ``pytorch3d/`` package folder of ``facebookresearch+pytorch3d``. Steps,
each by the official code:

1. RelPose++ ``preprocess/preprocess_co3d.py`` ``process_poses`` turns the sample's official files into
   ``<category>_test.jgz`` (its mask-box file is written with a box for every frame: the sample has no masks);
2. PoseDiffusion's ``Co3dDataset(split="test", eval_time=True, min_num_images=50)`` reads them; test.py's draw
   (``np.random.seed(0)``, ``np.random.choice(len(metadata), num_frames, replace=False)`` per sequence, categories
   sorted) and ``sort_by_filename`` give the frame sets;
3. per set, ``camera_to_rel_deg`` (``PerspectiveCameras``, float32 as in test.py, ``batch_size=1``) and RelPose++'s
   ``get_error("cc", ...)`` and ``full_scene_scale`` (their ``device="cuda"`` cameras built on the CPU);
4. test.py's aggregation (per category ``np.mean(err < a)`` and ``calculate_auc_np``, then the mean over
   categories), the CC shares likewise.

Predictions: the GT cameras perturbed (seeded), written to ``<case>_predictions.json`` in our results format.
"""
from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
import tempfile
import types
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
SAMPLE = REPO / "bench" / "data" / "samples" / "co3d"
CATEGORIES = ["apple", "teddybear"]
# case -> (num_frames, rotation noise deg, translation noise, seed)
CASES = {"n10_noisy": (10, 12.0, 0.25, 4), "n4_noisy": (4, 20.0, 0.6, 2), "n2_mixed": (2, 6.0, 0.15, 3)}


def load_references(refs: Path):
    """Import the official modules (cv2, ipdb, models.util and pytorch3d's compiled renderer are stubbed out)."""
    import importlib

    sys.path.insert(0, str(refs / "facebookresearch+pytorch3d"))
    pkg = types.ModuleType("pytorch3d.renderer")
    pkg.__path__ = [str(refs / "facebookresearch+pytorch3d" / "pytorch3d" / "renderer")]
    sys.modules["pytorch3d.renderer"] = pkg
    cams = importlib.import_module("pytorch3d.renderer.cameras")
    pkg.PerspectiveCameras, pkg.FoVPerspectiveCameras = cams.PerspectiveCameras, cams.FoVPerspectiveCameras
    for name in ("cv2", "ipdb", "models", "models.util"):
        sys.modules[name] = types.ModuleType(name)
    sys.modules["models.util"].get_model = None
    relpose = refs / "amyxlase+relpose-plus-plus"
    sys.path.insert(0, str(relpose))
    preprocess = importlib.import_module("preprocess.preprocess_co3d")
    sys.path.insert(0, str(relpose / "relpose"))
    et = importlib.import_module("eval.eval_translation")

    def cpu_cameras(**kw):  # eval_translation builds its cameras on "cuda"
        return cams.FoVPerspectiveCameras(**{**kw, "device": "cpu"})

    et.FoVPerspectiveCameras = cpu_cameras
    for name in [m for m in sys.modules if m in ("utils", "dataset", "eval") or m.startswith(("utils.", "dataset.", "eval."))]:
        sys.modules[f"relpose_{name}"] = sys.modules.pop(name)  # PoseDiffusion has its own util/, datasets/
    sys.path.remove(str(relpose / "relpose"))
    sys.path.insert(0, str(refs / "facebookresearch+PoseDiffusion" / "pose_diffusion"))
    metric = importlib.import_module("util.metric")
    co3d_v2 = importlib.import_module("datasets.co3d_v2")
    return preprocess, et, metric, co3d_v2, cams


def preprocess_sample(preprocess, out: Path) -> None:
    """RelPose++'s process_poses on the sample, with a box for every frame (no masks are shipped)."""
    for c in CATEGORIES:
        with gzip.open(SAMPLE / c / "frame_annotations.jgz") as f:
            frames = json.loads(f.read())
        boxes = {f["image"]["path"].replace("images", "masks").replace(".jpg", ".png"): [0, 0, 600, 900] for f in frames}
        with gzip.open(out / f"{c}_bbox.jgz", "w") as f:
            f.write(json.dumps(boxes).encode())
        preprocess.args = argparse.Namespace(category=c, output_dir=str(out))
        preprocess.process_poses(str(SAMPLE), c, str(out), 0.5)


def frame_sets(co3d_v2, annotations: Path, num_frames: int) -> list[dict]:
    """test.py's draws over PoseDiffusion's Co3dDataset (one per category, sorted), sets sorted by file path."""
    np.random.seed(0)  # set_seed_and_print(cfg.seed): accelerate's set_seed(0) seeds numpy's global generator
    out = []
    for c in sorted(CATEGORIES):
        ds = co3d_v2.Co3dDataset(category=(c,), split="test", eval_time=True, min_num_images=50, CO3D_DIR=str(SAMPLE),
                                 CO3D_ANNOTATION_DIR=str(annotations), sort_by_filename=True)
        for seq in ds.sequence_list:
            metadata = ds.rotations[seq]
            if len(metadata) < num_frames:
                continue
            ids = np.random.choice(len(metadata), num_frames, replace=False)
            annos = sorted([metadata[i] for i in ids], key=lambda x: x["filepath"])
            out.append({"category": c, "sequence": seq, "annos": annos, "all": metadata})
    return out


def perturb(R: np.ndarray, T: np.ndarray, deg: float, trans: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """GT cameras with a random rotation of ~deg degrees and a translation offset of ~trans x |T| each."""
    from scipy.spatial.transform import Rotation

    noise = Rotation.from_rotvec(rng.normal(0, np.deg2rad(deg) / np.sqrt(3), (len(R), 3))).as_matrix()
    Rp = noise @ R
    Tp = T + rng.normal(0, trans, T.shape) * np.linalg.norm(T, axis=1, keepdims=True)
    if len(R) > 2:
        Rp[1], Tp[1] = np.eye(3), np.array([0.0, 0.0, 1.0])  # one camera the identity prior's
    return Rp, Tp


def run_case(refs_mods, annotations: Path, name: str) -> dict:
    import torch

    _, et, metric, co3d_v2, cams = refs_mods
    num_frames, deg, trans, seed = CASES[name]
    rng = np.random.default_rng(seed)
    sets, preds, per_set = frame_sets(co3d_v2, annotations, num_frames), [], []
    errors = {c: {"r": [], "t": [], "cc": []} for c in CATEGORIES}
    for s in sets:
        R = np.array([a["R"] for a in s["annos"]])
        T = np.array([a["T"] for a in s["annos"]])
        Rp, Tp = perturb(R, T, deg, trans, rng)
        Rp = np.array([np.linalg.qr(r)[0] * np.sign(np.diag(np.linalg.qr(r)[1]))[None] for r in Rp])
        frames = [int(Path(a["filepath"]).stem.removeprefix("frame")) - 1 for a in s["annos"]]
        preds.append({"sequence": s["sequence"], "frames": frames, "R": Rp.tolist(), "T": Tp.tolist()})
        gt_cameras = cams.PerspectiveCameras(R=torch.tensor(R.tolist()), T=torch.tensor(T.tolist()))  # float32
        pred_cameras = cams.PerspectiveCameras(R=torch.tensor(Rp, dtype=torch.float32),
                                               T=torch.tensor(Tp, dtype=torch.float32))
        r, t = metric.camera_to_rel_deg(pred_cameras, gt_cameras, "cpu", 1)
        all_cams = {"R": torch.tensor([a["R"] for a in s["all"]]), "T": torch.tensor([a["T"] for a in s["all"]])}
        scale = et.full_scene_scale(all_cams)
        cc, _ = et.get_error("cc", torch.tensor(Rp, dtype=torch.float32), torch.tensor(Tp, dtype=torch.float32),
                             torch.tensor(R.tolist()), torch.tensor(T.tolist()), scale)
        errors[s["category"]]["r"] += r.numpy().tolist()
        errors[s["category"]]["t"] += t.numpy().tolist()
        errors[s["category"]]["cc"] += cc
        per_set.append({"sequence": s["sequence"], "category": s["category"], "frames": frames,
                        "rre": r.numpy().tolist(), "rte": t.numpy().tolist(), "cce": cc, "scale": scale})
    cat = {}
    for c in sorted(CATEGORIES):  # test.py's per-category lines, then the mean row
        r, t, cc = (np.array(errors[c][k]) for k in ("r", "t", "cc"))
        cat[c] = {"RRA@15": np.mean(r < 15), "RRA@30": np.mean(r < 30), "RTA@15": np.mean(t < 15),
                  "RTA@30": np.mean(t < 30), "mAA@30": metric.calculate_auc_np(r, t, max_threshold=30),
                  "CCA@0.1": np.mean(cc < 0.1), "CCA@0.2": np.mean(cc < 0.2)}
    keys = list(cat[CATEGORIES[0]])
    mean = {k: float(np.mean([cat[c][k] for c in cat])) for k in keys}
    (HERE / f"{name}_predictions.json").write_text(json.dumps(preds) + "\n")
    return {"name": name, "num_frames": num_frames, "predictions": f"{name}_predictions.json", "metrics": mean,
            "per_category": {c: {k: float(v) for k, v in m.items()} for c, m in cat.items()}, "sets": per_set}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--refs", type=Path, required=True)
    args = ap.parse_args()
    mods = load_references(args.refs)
    tmp = Path(tempfile.mkdtemp())
    try:
        preprocess_sample(mods[0], tmp)
        cases = [run_case(mods, tmp, name) for name in CASES]
    finally:
        shutil.rmtree(tmp)
    (HERE / "golden.json").write_text(json.dumps({"cases": cases}, indent=1) + "\n")
    print("wrote", HERE / "golden.json")


if __name__ == "__main__":
    main()
