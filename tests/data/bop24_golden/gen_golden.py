"""The BOP 2024 6D-detection goldens: build two cases, score them with the official ``eval_bop24_pose.py``.

Two steps, both deterministic (seeded numpy, values written with ``repr``)::

    # 1. the case inputs (committed: lmo/, ycbv/, results/); any Python with numpy and pypng
    python tests/data/bop24_golden/gen_golden.py build
    # 2. the toolkit's scores (committed: reference.json); TOOLKIT = thodan/bop_toolkit @ cea62d6
    #    (bop_toolkit_lib/*.py and scripts/*.py written out with git show), VENV: numpy<2, scipy, imageio, pypng
    PATH=VENV/bin:$PATH python tests/data/bop24_golden/gen_golden.py score --toolkit TOOLKIT \
        --out tests/data/bop24_golden/reference.json

Cases (``dataset_root(case, dest)`` assembles each one in the official layout, for the toolkit and the tests):

- ``ycbv``: the dataset of tests/data/bop_golden/case1 (synthetic YCB-V layout, 6 images, two GT with
  visib_fract < 0.1, two objects with two instances in one image) plus ``test_targets_bop24.json`` naming 5 of
  its 6 images; results with duplicates, estimates of objects absent from an image, 130 rows in one image (20 of
  them for obj_id 99, which YCB-V lacks, scored high, push a perfect low-scored estimate out of the top 100),
  rows for the non-target image, and one image whose
  highest-scored row carries a time 0.0005 s off its first row's.
- ``lmo``: a synthetic LM-O layout (scene 2, 5 images, targets listed out of order); GT poses, visib_fract
  (some below 0.1, one exactly 0.1, an object whose only GT are below 0.1, an object with no GT) and flat depth
  PNGs written here; object models = bop_golden case1's meshes of the LM-O ids. 140 rows in one image (the only,
  perfect, estimate of one GT is cut by the top 100, and so is the lowest-scored row, whose time is -1: timings
  stay available); scores on a coarse grid (ties across images and within an image).
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
BOP19_CASE1 = HERE.parent / "bop_golden" / "case1" / "datasets" / "ycbv"
LMO_OBJ_IDS = (1, 5, 6, 8, 9, 10, 11, 12)
LMO_K = [572.4114, 0.0, 325.2611, 0.0, 573.57043, 242.04899, 0.0, 0.0, 1.0]
CASES = ("ycbv", "lmo")
RESULT_FILES = {"ycbv": "synth_ycbv-test.csv", "lmo": "synth_lmo-test.csv"}


# ------------------------------------------------------------------------------------------ case inputs
def _rot(rng, max_deg: float):
    """A rotation of a random axis by an angle uniform in [0, max_deg] degrees (Rodrigues)."""
    import numpy as np

    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    a = np.deg2rad(rng.uniform(0.0, max_deg))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


def _row(scene, im, obj, score, R, t, time) -> str:
    return (f"{scene},{im},{obj},{score!r},{' '.join(repr(float(v)) for v in R.reshape(-1))},"
            f"{' '.join(repr(float(v)) for v in t.reshape(-1))},{time!r}")


def _estimates(rng, scene, im, gts, obj_pool, time, n_rows, score_grid, skip=()):
    """Rows for one image: per GT 1-3 estimates of mixed quality (duplicates; none for objects in ``skip``),
    wrong-object rows, then junk up to ``n_rows``. ``gts``: [(obj_id, R, t)]."""
    import numpy as np

    rows = []
    present = sorted({o for o, _, _ in gts})
    for obj, R, t in gts:
        if obj in skip:
            continue
        for k in range(int(rng.integers(1, 4))):
            level = rng.choice([0.0, 2.0, 8.0, 25.0, 60.0])
            Re = _rot(rng, level) @ R
            te = t + rng.normal(scale=max(level, 0.5), size=3)
            rows.append((obj, float(rng.choice(score_grid)), Re, te))
    for obj in [o for o in obj_pool if o not in present][:2]:  # objects that are not in the image
        rows.append((obj, float(rng.choice(score_grid)), _rot(rng, 180.0), np.array([0.0, 0.0, 900.0])))
    while len(rows) < n_rows:  # junk: random objects of the image at random poses, low scores
        obj = int(rng.choice(present))
        rows.append((obj, float(rng.choice(score_grid[-4:])), _rot(rng, 180.0),
                     rng.normal(scale=200.0, size=3) + np.array([0.0, 0.0, 900.0])))
    order = rng.permutation(len(rows))
    return [_row(scene, im, *rows[i][:2], rows[i][2], rows[i][3], time) for i in order]


def _build_ycbv(rng) -> list[str]:
    import numpy as np

    targets = [{"im_id": 1, "scene_id": 48}, {"im_id": 2, "scene_id": 48}, {"im_id": 3, "scene_id": 48},
               {"im_id": 1, "scene_id": 49}, {"im_id": 2, "scene_id": 49}]  # 49/3 is not a target
    (HERE / "ycbv").mkdir(exist_ok=True)
    (HERE / "ycbv" / "test_targets_bop24.json").write_text(json.dumps(targets, indent=2) + "\n")
    grid = [round(0.05 * i, 2) for i in range(1, 21)]
    rows = []
    for scene in (48, 49):
        gt = json.loads((BOP19_CASE1 / "test" / f"{scene:06d}" / "scene_gt.json").read_text())
        for im in (1, 2, 3):
            gts = [(g["obj_id"], np.array(g["cam_R_m2c"]).reshape(3, 3), np.array(g["cam_t_m2c"]))
                   for g in gt[str(im)]]
            time = round(0.3 + 0.1 * im + 0.01 * (scene - 48), 4)
            n = 95 if (scene, im) == (48, 1) else 0
            img = _estimates(rng, scene, im, gts, list(range(1, 22)), time, n, grid, skip=(3,) if n else ())
            if (scene, im) == (48, 1):
                # 20 high-scored rows of an unknown object take top-100 places: the only (perfect) estimate of
                # obj 3, ranked 116th of 136, is cut; dropping the unknown rows first would keep it (96th)
                img += [_row(48, 1, 99, 0.97, np.eye(3), np.array([0.0, 0.0, 900.0]), time) for _ in range(20)]
                img.append(_row(48, 1, 3, 0.03, gts[2][1], gts[2][2], time))
                img += [_row(48, 1, 1, 0.01, _rot(rng, 180.0), np.array([0.0, 0.0, 900.0]), time) for _ in range(20)]
            if (scene, im) == (48, 3):  # the best row (first in score order) says 0.0005 s more
                img.insert(1, _row(48, 3, gts[0][0], 1.0, gts[0][1], gts[0][2], time + 0.0005))
            rows += img
    return rows


def _build_lmo(rng) -> list[str]:
    import numpy as np
    import png

    root = HERE / "lmo"
    scene_dir = root / "test" / "000002"
    (scene_dir / "depth").mkdir(parents=True, exist_ok=True)
    # image -> [(obj, visib_fract)]: obj 11 only below 0.1 (no target), obj 12 nowhere, obj 5 twice in image 3
    layout = {
        1: [(1, 0.9), (5, 0.55), (6, 0.1), (8, 0.72)],
        2: [(1, 0.31), (9, 0.05), (10, 0.88), (11, 0.02)],
        3: [(5, 0.97), (5, 0.4), (6, 0.08), (8, 0.66), (9, 0.81)],
        4: [(1, 0.0), (6, 0.5), (10, 0.25), (11, 0.09)],
        5: [(8, 0.93), (9, 0.12), (10, 0.6), (1, 0.45)],
    }
    scene_gt, scene_info, scene_cam, poses = {}, {}, {}, {}
    for im, objs in layout.items():
        scene_gt[str(im)], scene_info[str(im)], poses[im] = [], [], []
        for obj, vis in objs:
            R = _rot(rng, 180.0)
            t = np.array([rng.uniform(-120, 120), rng.uniform(-90, 90), rng.uniform(700, 1100)])
            scene_gt[str(im)].append({"cam_R_m2c": [float(v) for v in R.reshape(-1)],
                                      "cam_t_m2c": [float(v) for v in t], "obj_id": obj})
            scene_info[str(im)].append({"bbox_obj": [0, 0, 10, 10], "bbox_visib": [0, 0, 10, 10], "px_count_all": 100,
                                        "px_count_valid": 100, "px_count_visib": int(vis * 100),
                                        "visib_fract": vis})
            poses[im].append((obj, R, t))
        scene_cam[str(im)] = {"cam_K": LMO_K, "depth_scale": 1.0}
        with open(scene_dir / "depth" / f"{im:06d}.png", "wb") as fh:
            png.Writer(640, 480, greyscale=True, bitdepth=16).write(fh, [[0] * 640] * 480)
    for name, data in (("scene_gt.json", scene_gt), ("scene_gt_info.json", scene_info),
                       ("scene_camera.json", scene_cam)):
        (scene_dir / name).write_text(json.dumps(data, indent=1) + "\n")
    targets = [{"im_id": im, "scene_id": 2} for im in (3, 1, 5, 2, 4)]  # out of order: the toolkit's tie order
    (root / "test_targets_bop24.json").write_text(json.dumps(targets, indent=2) + "\n")
    grid = [0.9, 0.8, 0.7, 0.5, 0.3, 0.2, 0.1]
    rows = []
    for im in (1, 2, 3, 4, 5):
        time = round(0.25 * im, 3)
        img = _estimates(rng, 2, im, poses[im], list(LMO_OBJ_IDS), time, 138 if im == 3 else 0, grid,
                         skip=(8,) if im == 3 else ())
        if im == 3:  # the only (perfect) estimate of obj 8 scores below the 138 others: cut by the top-100;
            img.append(_row(2, 3, 8, 0.05, poses[3][3][1], poses[3][3][2], time))
            # the lowest score of the image, cut too: its missing time is never read
            img.append(_row(2, 3, 5, 0.01, np.eye(3), np.array([0.0, 0.0, 900.0]), -1.0))
        rows += img
    return rows


def build() -> None:
    import numpy as np

    rng = np.random.default_rng(24)
    (HERE / "results").mkdir(exist_ok=True)
    for case, make in (("ycbv", _build_ycbv), ("lmo", _build_lmo)):
        rows = make(rng)
        (HERE / "results" / RESULT_FILES[case]).write_text("scene_id,im_id,obj_id,score,R,t,time\n"
                                                           + "\n".join(rows) + "\n")


def dataset_root(case: str, dest: Path) -> Path:
    """Assemble ``dest/<case>`` in the official layout (links to the committed files) and return it."""
    root = dest / case
    root.mkdir(parents=True)
    if case == "ycbv":
        for name in ("models_eval", "test"):
            os.symlink(BOP19_CASE1 / name, root / name)
    else:
        os.symlink(BOP19_CASE1 / "models_eval", root / "models_eval")  # LM-O ids 1..12 are among its 21 meshes
        os.symlink(HERE / "lmo" / "test", root / "test")
    shutil.copyfile(HERE / case / "test_targets_bop24.json", root / "test_targets_bop24.json")
    return root


# ------------------------------------------------------------------------------------------ the toolkit
def score(toolkit: Path, out: Path) -> None:
    """Run the toolkit's ``scripts/eval_bop24_pose.py`` on every case; record its scores files."""
    ref = {"toolkit": "thodan/bop_toolkit @ cea62d651c7e395b2e1962b9749e4e89693c6ac4", "cases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for case in CASES:
            datasets, results, evals = tmp / case / "datasets", tmp / case / "results", tmp / case / "eval"
            datasets.mkdir(parents=True)
            results.mkdir()
            evals.mkdir()
            dataset_root(case, datasets)
            shutil.copyfile(HERE / "results" / RESULT_FILES[case], results / RESULT_FILES[case])
            env = {**os.environ, "BOP_PATH": str(datasets), "PYTHONPATH": str(toolkit)}
            cmd = [sys.executable, str(toolkit / "scripts" / "eval_bop24_pose.py"), "--num_workers", "1",
                   "--result_filenames", RESULT_FILES[case], "--results_path", str(results),
                   "--eval_path", str(evals), "--targets_filename", "test_targets_bop24.json"]
            subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
            name = RESULT_FILES[case].rsplit(".", 1)[0]
            rec = {"scores_bop24": json.loads((evals / name / "scores_bop24.json").read_text()), "per_threshold": {}}
            for err, folder, ths in (("mssd", "error=mssd_ntop=0", [0.05 * (i + 1) for i in range(10)]),
                                     ("mssd_mm", "error=mssd_ntop=0", list(range(2, 21, 2))),
                                     ("mspd", "error=mspd_ntop=0", list(range(5, 51, 5)))):
                rec["per_threshold"][err] = []
                for th in ths:
                    f = evals / name / folder / f"scores_th={th:.3f}_min-visib=0.100.json"
                    rec["per_threshold"][err].append({"correct_th": th, **json.loads(f.read_text())})
            ref["cases"][case] = rec
    out.write_text(json.dumps(ref, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=("build", "score"))
    ap.add_argument("--toolkit", type=Path, help="bop_toolkit checkout @ cea62d6 (score)")
    ap.add_argument("--out", type=Path, default=HERE / "reference.json")
    args = ap.parse_args()
    if args.step == "build":
        build()
    else:
        score(args.toolkit, args.out)
