"""Run 6DRepNet's own evaluation and opal23_headpose's geodesic error on the cases of golden.json; write what they compute.

Nothing of 6DRepNet is copied here: ``sixdrepnet/utils.py`` is imported from the checkout, the ``AFLW2000`` and
``BIWI`` dataset classes are compiled from its ``datasets.py`` (ast), ``create_filename_list.py`` runs as a
script, and the body of test.py's evaluation loop (``for i, (images, r_label, cont_labels, name) in
enumerate(test_loader)``) is compiled from ``test.py`` and run unchanged but for three statements: the two that
move images to the GPU and run the network (``images = ...cuda(gpu)``, ``R_pred = model(images)``: here
``R_pred`` is the case's predicted rotations of that batch, float32) and the ``if args.show_viz`` block. The
loop runs on the CPU over a DataLoader with ``batch_size=64`` (test.py's default), ``num_workers=0``.

Recorded per case: ``files`` (the list create_filename_list.py writes, sorted; AFLW2000 cases), the
per-image errors (float32 -> float) that the loop sums (read by wrapping ``torch.sum``: its one-argument
calls are the six per-batch sums), test.py's final values (``yaw_error / total``, ..., and the commented-out
VMAE ``(v1_err + v2_err + v3_err) / (total * 3)``, float32) and the float64 means of the per-image errors
(``math.fsum``).

GE (``--opal``): the class ``Evaluator`` of pcr-upm/opal23_headpose's ``test/evaluator.py`` (compiled from the
file; its module imports images_framework, which scoring does not need) runs ``compute_ge()`` on the float64 GT
matrices that 6DRepNet's dataset classes build with ``utils.get_R`` (recorded in loop order, before their
``torch.FloatTensor`` copy) and the case's predicted matrices (float64; angles through ``utils.get_R``), and
``np.mean`` of it as ``test/opal23_headpose_aflw2000.py`` prints it: ``ge`` (per image), ``GE``, and
``GE_transposed`` (the same on both matrices transposed: opal's own ``Rx Ry Rz`` frame). Any Python with
torch, numpy, scipy and Pillow::

    git --git-dir=/work/.mirror/thohemp+6DRepNet/repo archive 464b2ba55c3d9b3d3b707c6271cf329a983ded20 \\
        | tar -x -C /tmp/headpose/6drepnet-464b2ba
    mkdir -p /tmp/headpose/opal23-78c0c45/test && git --git-dir=/work/.mirror/pcr-upm+opal23_headpose/repo \\
        show 78c0c45e13e88a757534fd99d682448ff5436ca8:test/evaluator.py > /tmp/headpose/opal23-78c0c45/test/evaluator.py
    .nox/posearena/bin/python tests/data/headpose_golden/gen_golden.py --ref /tmp/headpose/6drepnet-464b2ba \\
        --opal /tmp/headpose/opal23-78c0c45 --out /tmp/headpose/golden.json
    cmp /tmp/headpose/golden.json tests/data/headpose_golden/golden.json

Inputs (``gt``, ``predictions``) are read from the committed golden.json (``--inputs`` to start from
another file: ``make_inputs()`` writes the cases' inputs, drawn from ``np.random.default_rng(2025)``).
"""
from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
KEYS = ("MAE_yaw", "MAE_pitch", "MAE_roll", "MAE", "MAEV")


# ------------------------------------------------------------------ the inputs (drawn once, then committed)
def make_inputs() -> dict:
    """Three cases: AFLW2000 with R predictions, the same GT with angle predictions, BIWI with R predictions."""
    import numpy as np

    rng = np.random.default_rng(2025)
    d2r = math.pi / 180
    # AFLW2000: 110 images; angles around the [-99, 99] degree border, exactly on it, and far outside
    n = 110
    deg = np.stack([rng.uniform(-60, 60, n), rng.uniform(-95, 95, n), rng.uniform(-50, 50, n)], 1)  # p, y, r
    deg[0] = (99.0, 10.0, 5.0)
    deg[1] = (-20.0, -99.0, 0.0)
    deg[2] = (1.0, 2.0, 99.0)
    deg[3] = (99.0000001, 0.0, 0.0)
    deg[4] = (0.0, -99.0000001, 0.0)
    deg[5] = (0.0, 0.0, 150.0)
    deg[6] = (-170.0, 30.0, 175.0)
    deg[7] = (89.9999, 5.0, 3.0)   # near the singular branch of the GT's own angles
    rad = deg * d2r
    rad[8] = (np.nextafter(99 * d2r, 10), 0.1, 0.1)   # one float64 step either side of 99 degrees
    rad[9] = (np.nextafter(99 * d2r, 0), 0.1, 0.1)
    pose_para = [[float(x) for x in (*r, 60.0, 60.0, 0.0, 0.001)] for r in rad]
    gt_aflw = {f"image{k:05d}": p for k, p in zip(sorted(rng.choice(4000, n, replace=False).tolist()), pose_para)}
    names = list(gt_aflw)

    def noisy_R(p, y, r, sigma):
        from scipy.spatial.transform import Rotation

        base = Rotation.from_euler("ZYX", [r, y, p]).as_matrix()
        noise = Rotation.from_rotvec(rng.normal(0, sigma, 3)).as_matrix()
        return base @ noise

    recs = []
    for i, name in enumerate(names):
        p, y, r = gt_aflw[name][:3]
        R = noisy_R(p, y, r, 0.08)
        if i % 17 == 3:   # a pose 180 degrees off in yaw: the lenient +-180 terms
            R = noisy_R(p, y + math.pi, r, 0.01)
        if i % 23 == 5:   # looking straight up: sy < 1e-6, the singular branch
            R = noisy_R(math.pi / 2, 0.0, 0.3, 0.0)
        if i % 29 == 7:   # a slightly non-orthonormal output
            R = R * 1.01
        recs.append({"image": name, "R": [[float(x) for x in row] for row in R]})
    rng.shuffle(recs)
    angle_recs = []
    for name in names:
        p, y, r = gt_aflw[name][:3]
        e = rng.normal(0, 6, 3)
        angle_recs.append({"image": name, "yaw": float(y / d2r + e[0]), "pitch": float(p / d2r + e[1]),
                           "roll": float(r / d2r + e[2])})
    angle_recs[4]["yaw"] += 180.0
    # BIWI: 70 rows, [yaw, pitch, roll] degrees as FSA-Net stores them
    m = 70
    pose = np.stack([rng.uniform(-75, 75, m), rng.uniform(-60, 60, m), rng.uniform(-45, 45, m)], 1)
    biwi_recs = []
    for i in range(m):
        y, p, r = pose[i] * d2r
        biwi_recs.append({"index": i, "R": [[float(x) for x in row] for row in noisy_R(p, y, r, 0.05)]})
    rng.shuffle(biwi_recs)
    return {"cases": [
        {"name": "aflw2000_rotations", "dataset": "aflw2000", "gt": gt_aflw, "predictions": recs},
        {"name": "aflw2000_angles", "dataset": "aflw2000", "gt": gt_aflw, "predictions": angle_recs},
        {"name": "biwi_rotations", "dataset": "biwi", "gt": pose.tolist(), "predictions": biwi_recs},
    ]}


# ------------------------------------------------------------------ the reference, from the checkout
def load_reference(ref: Path) -> dict:
    """utils (imported), the AFLW2000 / BIWI classes (their ``utils.get_R`` results recorded in ``gt_R``) and
    test.py's loop body (compiled)."""
    import numpy as np
    import torch
    from PIL import Image, ImageFilter
    from torch.utils.data.dataset import Dataset

    try:
        import cv2  # noqa: F401
    except ImportError:  # only the drawing helpers use it; not needed to score
        sys.modules["cv2"] = types.ModuleType("cv2")
    src = ref / "sixdrepnet"
    spec = importlib.util.spec_from_file_location("utils", src / "utils.py")
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)
    tree = ast.parse((src / "datasets.py").read_text())
    classes = [n for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))
               and n.name in ("AFLW2000", "BIWI", "get_list_from_filenames")]
    gt_R: list = []

    class RecordingUtils(types.ModuleType):
        def __getattr__(self, name):
            return getattr(utils, name)

        @staticmethod
        def get_R(*args):
            R = utils.get_R(*args)
            gt_R.append(np.array(R, dtype=np.float64))
            return R

    ns = {"os": os, "np": np, "torch": torch, "Image": Image, "ImageFilter": ImageFilter, "Dataset": Dataset,
          "utils": RecordingUtils("utils")}
    exec(compile(ast.Module(body=classes, type_ignores=[]), str(src / "datasets.py"), "exec"), ns)  # noqa: S102
    test = ast.parse((src / "test.py").read_text())
    loop = next(n for n in ast.walk(test) if isinstance(n, ast.For) and ast.unparse(n.target).startswith("(i, (images"))
    body = [s for s in loop.body
            if not (isinstance(s, ast.If) and "show_viz" in ast.unparse(s.test))
            and ast.unparse(s) not in ("images = torch.Tensor(images).cuda(gpu)", "R_pred = model(images)")]
    assert len(body) == len(loop.body) - 3, "test.py changed: check the statements this script skips"
    return {"utils": utils, "datasets": ns, "gt_R": gt_R,
            "body": compile(ast.Module(body=body, type_ignores=[]), str(src / "test.py"), "exec")}


def load_opal_evaluator(opal: Path):
    """The class ``Evaluator`` of opal23_headpose's test/evaluator.py (compiled from the file)."""
    import numpy as np
    from scipy.spatial.transform import Rotation

    path = opal / "test" / "evaluator.py"
    tree = ast.parse(path.read_text())
    cls = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Evaluator"]
    assert len(cls) == 1, "evaluator.py changed: no class Evaluator"
    ns = {"np": np, "Rotation": Rotation, "cv2": sys.modules.get("cv2") or types.ModuleType("cv2")}
    exec(compile(ast.Module(body=cls, type_ignores=[]), str(path), "exec"), ns)  # noqa: S102
    return ns["Evaluator"]


def geodesic(evaluator, gt_R: list, pred_rows: list) -> dict:
    """compute_ge() per image and its np.mean, as opal's test scripts print GE; and on the transposed matrices."""
    import numpy as np

    ann, pred = np.array(gt_R, dtype=np.float64), np.array(pred_rows, dtype=np.float64)
    ge = evaluator(ann.copy(), pred.copy()).compute_ge()
    ge_t = evaluator(ann.transpose(0, 2, 1).copy(), pred.transpose(0, 2, 1).copy()).compute_ge()
    return {"ge": [float(x) for x in ge], "GE": float(np.mean(ge)), "GE_transposed": float(np.mean(ge_t))}


def run_test_loop(ref: dict, dataset, R_pred_rows) -> dict:
    """test.py's loop over ``dataset`` (DataLoader, batch 64) with R_pred = the rows for each batch."""
    import numpy as np
    import torch

    recorded: list = []

    class RecordingTorch(types.ModuleType):
        def __getattr__(self, name):
            return getattr(torch, name)

        @staticmethod
        def sum(*args, **kwargs):
            if len(args) == 1 and not kwargs:
                recorded.append(args[0].detach().clone())
            return torch.sum(*args, **kwargs)

    loader = torch.utils.data.DataLoader(dataset=dataset, batch_size=64, num_workers=0)
    env = {"torch": RecordingTorch("torch"), "np": np, "utils": ref["utils"], "total": 0,
           "yaw_error": .0, "pitch_error": .0, "roll_error": .0, "v1_err": .0, "v2_err": .0, "v3_err": .0}
    start = 0
    per = {k: [] for k in ("v1", "v2", "v3", "pitch", "yaw", "roll")}
    with torch.no_grad():
        for i, (images, r_label, cont_labels, name) in enumerate(loader):
            b = cont_labels.size(0)
            env.update(i=i, images=images, r_label=r_label, cont_labels=cont_labels, name=name,
                       R_pred=torch.tensor(np.asarray(R_pred_rows[start:start + b]), dtype=torch.float32))
            start += b
            recorded.clear()
            exec(ref["body"], env)  # noqa: S102
            assert len(recorded) == 6
            for k, t in zip(per, recorded):
                per[k].extend(float(x) for x in t)
    total = env["total"]
    final = {"MAE_yaw": env["yaw_error"] / total, "MAE_pitch": env["pitch_error"] / total,
             "MAE_roll": env["roll_error"] / total,
             "MAE": (env["yaw_error"] + env["pitch_error"] + env["roll_error"]) / (total * 3),
             "MAEV": (env["v1_err"] + env["v2_err"] + env["v3_err"]) / (total * 3)}
    errors = [list(r) for r in zip(per["yaw"], per["pitch"], per["roll"], per["v1"], per["v2"], per["v3"])]
    n = len(errors)
    mean = {f"MAE_{a}": math.fsum(e[j] for e in errors) / n for j, a in enumerate(("yaw", "pitch", "roll"))}
    mean["MAE"] = math.fsum(e[j] for e in errors for j in range(3)) / (3 * n)
    mean["MAEV"] = math.fsum(e[j] for e in errors for j in range(3, 6)) / (3 * n)
    return {"errors": errors, "reference_float32": {k: float(final[k]) for k in KEYS},
            "mean_of_errors": {k: mean[k] for k in KEYS}}


def prediction_rows(ref: dict, case: dict, order: list) -> list:
    """The case's predictions as float64 3x3 rows in the loop's order (angles in degrees -> utils.get_R)."""
    by_key = {}
    for r in case["predictions"]:
        key = r.get("image", r.get("index"))
        if "R" in r:
            by_key[key] = r["R"]
        else:
            d2r = math.pi / 180
            by_key[key] = ref["utils"].get_R(r["pitch"] * d2r, r["yaw"] * d2r, r["roll"] * d2r).tolist()
    return [by_key[k] for k in order]


def run_case(ref: dict, ref_dir: Path, case: dict, tmp: Path, evaluator=None) -> dict:
    import numpy as np
    import torch
    from PIL import Image
    from scipy.io import savemat

    def dummy(img):  # the transform: the network input is not scored
        return torch.zeros(1)

    if case["dataset"] == "aflw2000":
        folder = tmp / case["name"] / "AFLW2000"
        folder.mkdir(parents=True)
        for stem, para in case["gt"].items():
            Image.new("RGB", (8, 8), (128, 128, 128)).save(folder / f"{stem}.jpg")
            savemat(folder / f"{stem}.mat", {"Pose_Para": np.array([para]),
                                             "pt2d": np.array([[1.0] * 21, [1.0] * 21]) + np.arange(21)[None] / 4})
        env = dict(os.environ, PYTHONPATH=str(ref_dir / "sixdrepnet"))
        if "cv2" not in sys.modules or not getattr(sys.modules["cv2"], "__file__", None):
            stub = tmp / "stub"
            stub.mkdir(exist_ok=True)
            (stub / "cv2.py").write_text("")
            env["PYTHONPATH"] += os.pathsep + str(stub)
        subprocess.run([sys.executable, str(ref_dir / "sixdrepnet" / "create_filename_list.py"),
                        "--root_dir = ", str(folder), "--filename", "files.txt"], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        files = sorted((folder / "files.txt").read_text().splitlines())
        (folder / "sorted.txt").write_text("\n".join(files))
        ds = ref["datasets"]["AFLW2000"](str(folder), str(folder / "sorted.txt"), dummy)
        order = [f.removeprefix("./") for f in files]
        out = {"files": order}
    else:
        path = tmp / f"{case['name']}.npz"
        pose = np.array(case["gt"], dtype=np.float64)
        np.savez(path, image=np.zeros((len(pose), 4, 4, 3), np.uint8), pose=pose, img_size=4)
        ds = ref["datasets"]["BIWI"](str(tmp), str(path), dummy, train_mode=False)
        order = list(range(len(pose)))
        out = {}
    rows = prediction_rows(ref, case, order)
    ref["gt_R"].clear()
    out.update(run_test_loop(ref, ds, rows))
    if evaluator is not None:
        assert len(ref["gt_R"]) == len(rows), "one get_R per image expected"
        out.update(geodesic(evaluator, ref["gt_R"], rows))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", type=Path, required=True, help="checkout of thohemp/6DRepNet @ 464b2ba")
    ap.add_argument("--opal", type=Path, required=True, help="checkout of pcr-upm/opal23_headpose @ 78c0c45 (test/evaluator.py)")
    ap.add_argument("--inputs", type=Path, default=HERE / "golden.json", help="cases are read from here")
    ap.add_argument("--new-inputs", action="store_true", help="draw the inputs with make_inputs() instead")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    import numpy
    import torch

    print(f"torch {torch.__version__}, numpy {numpy.__version__}", file=sys.stderr)
    golden = make_inputs() if args.new_inputs else json.loads(args.inputs.read_text())
    ref = load_reference(args.ref)
    evaluator = load_opal_evaluator(args.opal)
    with tempfile.TemporaryDirectory() as tmp:
        for case in golden["cases"]:
            for k in ("files", "errors", "reference_float32", "mean_of_errors", "ge", "GE", "GE_transposed"):
                case.pop(k, None)
            case.update(run_case(ref, args.ref, case, Path(tmp), evaluator))
            print(case["name"], len(case["errors"]), case["reference_float32"], case.get("GE"), file=sys.stderr)
    args.out.write_text(json.dumps(golden, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
