"""Generate add_adi_reference.json: the official tools' ADD / ADD-S numbers on the bop_golden cases.

Our glue around their code (see PROVENANCE.md for the exact command and commits):
- bop_toolkit ``scripts/eval_calc_errors.py --error_type add|adi|ad --n_top -1`` writes the per-pair errors
  (its ``pose_error.add`` / ``adi`` behind the sphere-overlap shortcut);
- bop_toolkit ``scripts/eval_calc_scores.py`` matches them (visib_gt_min -1): recall at 0.1 x diameter, and
  at raw thresholds in mm (``--normalized_by_diameter=mssd``) for the AUC inputs;
- the YCB_Video_toolbox ``VOCap`` (read from its plot_accuracy_keyframe.m at run time) runs in GNU Octave on
  the per-GT errors in metres, after the same ``D(D > 0.1) = inf; sort; cumsum / n`` steps as that file.

Needs no project code: run it with any Python 3 (the toolkit runs under ``--toolkit-python``, numpy<2).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CASES = ("case1", "case2")
POSECNN_SYMMETRIC = [13, 16, 19, 20, 21]  # PoseCNN's ADD(-S) objects (bowl, wood block, clamps, foam brick)
GDRNPP_THRESHOLDS_MM = [10.0 * k for k in range(1, 11)]  # GDRNPP AUCad*: np.linspace(1, 10, 10) cm

OCTAVE_DRIVER = """D = load('{errors}') / 1000;
max_distance = 0.1;
D(D > max_distance) = inf;
d = sort(D);
n = numel(d);
accuracy = cumsum(ones(1, n)) / n;
printf('%.17g\\n', VOCap(d, accuracy));
"""


def run_toolkit(args, script: str, *flags: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(args.toolkit))
    cmd = [str(args.toolkit_python), str(Path(args.toolkit) / "scripts" / script), *flags]
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def case_paths(case: str) -> tuple[Path, Path, str]:
    root = HERE / case
    csv = next((root / "results").glob("*.csv"))
    return root / "datasets", root / "results", csv.name


def calc_errors(args, case: str, eval_path: Path, error_type: str) -> Path:
    datasets, results, csv = case_paths(case)
    run_toolkit(args, "eval_calc_errors.py", "--n_top=-1", f"--error_type={error_type}", "--renderer_type=vispy",
                "--num_workers=1", "--targets_filename=test_targets_bop19.json", f"--result_filenames={csv}",
                f"--results_path={results}", f"--eval_path={eval_path}", f"--datasets_path={datasets}")
    return eval_path / Path(csv).stem / f"error={error_type}_ntop=-1"


def calc_scores(args, case: str, eval_path: Path, error_dir: Path, error_type: str, th: float,
                raw: bool) -> tuple[dict, list]:
    """(scores, matches) of the toolkit at one threshold; ``raw``: errors in mm, not divided by the diameter."""
    datasets, _, _ = case_paths(case)
    flags = [f"--error_dir_paths={error_dir.relative_to(eval_path)}", f"--eval_path={eval_path}",
             f"--datasets_path={datasets}", "--targets_filename=test_targets_bop19.json", "--visib_gt_min=-1",
             f"--correct_th_{error_type}={th}"]
    if raw:
        flags.append("--normalized_by_diameter=mssd")
    run_toolkit(args, "eval_calc_scores.py", *flags)
    sign = f"th={th:.3f}_min-visib=-1.000"
    scores = json.loads((error_dir / f"scores_{sign}.json").read_text())
    matches = json.loads((error_dir / f"matches_{sign}.json").read_text())
    return scores, matches


def load_errors(error_dir: Path) -> list[dict]:
    out = []
    for f in sorted(error_dir.glob("errors_*.json")):
        out += json.loads(f.read_text())
    return out


def mixed_error_dir(eval_path: Path, add_dir: Path, adi_dir: Path, symmetric: set[int], name: str) -> Path:
    """An errors folder (named error=ad so that eval_calc_scores accepts it) holding adi for ``symmetric``
    objects and add otherwise, record for record."""
    out = eval_path / name / add_dir.parent.name / "error=ad_ntop=-1"
    out.mkdir(parents=True)
    for f in sorted(add_dir.glob("errors_*.json")):
        add, adi = json.loads(f.read_text()), json.loads((adi_dir / f.name).read_text())
        key = ("scene_id", "im_id", "obj_id", "est_id")
        assert [[a[k] for k in key] for a in add] == [[i[k] for k in key] for i in adi]
        (out / f.name).write_text(json.dumps([i if a["obj_id"] in symmetric else a for a, i in zip(add, adi)]))
    return out


def matched_errors_mm(matches: list) -> list[float]:
    """Per valid GT: the error of the estimate matched to it (mm), inf where none."""
    return [m["error"][0] if m["est_id"] != -1 else math.inf for m in matches if m["valid"]]


def vocap(args, errors_mm: list[float], work: Path) -> float:
    """The toolbox's VOCap on these errors, run by Octave exactly as plot_accuracy_keyframe.m prepares them."""
    src = Path(args.toolbox_file).read_text()
    (work / "VOCap.m").write_text(src[re.search(r"^function ap = VOCap", src, re.MULTILINE).start():])
    (work / "errors.txt").write_text("".join(f"{e!r}\n".replace("inf", "Inf") for e in errors_mm))
    (work / "driver.m").write_text(OCTAVE_DRIVER.format(errors="errors.txt"))
    out = subprocess.run([args.octave, "--no-gui", "--quiet", "--no-init-file", "driver.m"], cwd=work, check=True,
                         capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def pair_records(add: list[dict], adi: list[dict]) -> list[dict]:
    recs = []
    for a, i in zip(add, adi):  # same records in the same order (the toolkit writes both from one loop)
        for gt_id, e in a["errors"].items():
            recs.append({"scene_id": a["scene_id"], "im_id": a["im_id"], "obj_id": a["obj_id"],
                         "est_id": a["est_id"], "gt_id": int(gt_id), "score": a["score"],
                         "add": e[0], "adi": i["errors"][gt_id][0]})
    return recs


def symmetric_ids(case: str) -> set[int]:
    info = json.loads((HERE / case / "datasets/ycbv/models_eval/models_info.json").read_text())
    return {int(k) for k, v in info.items() if v.get("symmetries_discrete") or v.get("symmetries_continuous")}


def one_case(args, case: str, tmp: Path) -> dict:
    ev = tmp / case
    dirs = {e: calc_errors(args, case, ev, e) for e in ("add", "adi", "ad")}
    add, adi = load_errors(dirs["add"]), load_errors(dirs["adi"])
    out: dict = {"pairs": pair_records(add, adi), "recall_at_0.1d": {}, "auc_vocap": {}, "gdrnpp_auc": {}}
    for e in ("add", "adi"):
        s, _ = calc_scores(args, case, ev, dirs[e], e, 0.1, raw=False)
        out["recall_at_0.1d"][e] = {k: s[k] for k in ("recall", "tp_count", "targets_count", "gt_count")}
    sym = symmetric_ids(case)
    dirs["ad_models_info"] = mixed_error_dir(tmp, dirs["add"], dirs["adi"], sym, f"{case}_mi")
    dirs["ad_posecnn"] = mixed_error_dir(tmp, dirs["add"], dirs["adi"], set(POSECNN_SYMMETRIC), f"{case}_pc")
    for name in ("add", "adi", "ad_models_info", "ad_posecnn"):
        etype = name.split("_")[0]
        _, m = calc_scores(args, case, dirs[name].parents[1], dirs[name], etype, 100.0, raw=True)
        errs = matched_errors_mm(m)
        work = tmp / f"oct_{case}_{name}"
        work.mkdir()
        out["auc_vocap"][name] = {"matched_errors_mm": errs, "auc": vocap(args, errs, work)}
    for name in ("add", "adi", "ad"):  # 'ad': the toolkit's own ycbv list [1, 13, 14, 16, 18, 19, 20, 21]
        rec = [calc_scores(args, case, ev, dirs[name], name, th, raw=True)[0]["recall"]
               for th in GDRNPP_THRESHOLDS_MM]
        out["gdrnpp_auc"][name] = {"recalls": rec, "mean": sum(rec) / len(rec)}
    out["symmetric_obj_ids_models_info"] = sorted(sym)
    return out


def hand_cases(args, tmp: Path) -> dict:
    """Small error lists (mm) whose VOCap is derived on paper in tests/metrics/bop/test_bop_add_adi.py."""
    cases = {"boundary": [0.0, 50.0, 100.0, 150.0], "ties": [10.0, 30.0, 30.0, 60.0, 250.0, math.inf],
             "zeros": [0.0, 0.0, 0.0], "single_at_max": [100.0]}
    out = {}
    for name, errs in cases.items():
        work = tmp / f"oct_hand_{name}"
        work.mkdir()
        out[name] = {"errors_mm": errs, "auc": vocap(args, errs, work)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--toolkit", required=True, help="bop_toolkit checkout (bop_toolkit_lib/, scripts/)")
    ap.add_argument("--toolkit-python", required=True, help="a python with numpy<2, scipy, imageio, pypng")
    ap.add_argument("--toolbox-file", required=True, help="YCB_Video_toolbox plot_accuracy_keyframe.m")
    ap.add_argument("--octave", default=shutil.which("octave") or "octave")
    ap.add_argument("--out", default=str(HERE / "add_adi_reference.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        ref = {"cases": {c: one_case(args, c, tmp) for c in CASES}, "vocap_hand_cases": hand_cases(args, tmp)}
    Path(args.out).write_text(json.dumps(ref, indent=1) + "\n")


if __name__ == "__main__":
    main()
