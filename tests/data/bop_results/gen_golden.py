"""Recompute toolkit_load_bop_results.json with bop_toolkit's own results loader.

Runs in the project's environment with a checkout of thodan/bop_toolkit @ cea62d6 (``inout`` imports
imageio and pypng at module level; they are stubbed when missing, the loader uses neither)::

    git --git-dir=/work/.mirror/thodan+bop_toolkit/repo archive cea62d651c7e395b2e1962b9749e4e89693c6ac4 \
        bop_toolkit_lib | tar -x -C /tmp/provenance/bop_toolkit
    .nox/posearena/bin/python tests/data/bop_results/gen_golden.py --ref /tmp/provenance/bop_toolkit \
        --out /tmp/provenance/bop_results.json
    cmp /tmp/provenance/bop_results.json tests/data/bop_results/toolkit_load_bop_results.json
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent


def load_inout(ref: Path) -> types.ModuleType:
    for name in ("imageio", "imageio.v2", "png"):
        try:
            importlib.import_module(name)
        except ImportError:
            sys.modules[name] = types.ModuleType(name)
    sys.modules["imageio"].v2 = sys.modules["imageio.v2"]
    sys.path.insert(0, str(ref))
    return importlib.import_module("bop_toolkit_lib.inout")


def row(r: dict) -> dict:
    return {"scene_id": r["scene_id"], "im_id": r["im_id"], "obj_id": r["obj_id"], "score": r["score"],
            "R": r["R"].flatten().tolist(), "t": r["t"].flatten().tolist(), "time": r["time"]}


def summary(inout: types.ModuleType, path: Path) -> dict:
    """What the test compares: counts, exact sums, the average time per image, first and last rows."""
    res = inout.load_bop_results(str(path), version="bop19")
    ok, _, times, available = inout.check_consistent_timings(res, "im_id")
    assert ok and available, path.name
    return {"num_estimates": len(res), "num_images": len(times),
            "sum_score": math.fsum(r["score"] for r in res),
            "sum_R": math.fsum(x for r in res for x in r["R"].flatten().tolist()),
            "sum_t": math.fsum(x for r in res for x in r["t"].flatten().tolist()),
            "sum_obj_id": sum(r["obj_id"] for r in res),
            # the recorded value is Python's sum / count; eval_bop19_pose.py's np.mean differs by 1-2 ulp
            "average_time_per_image": sum(times.values()) / len(times),
            "first": row(res[0]), "last": row(res[-1])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", type=Path, required=True, help="checkout of thodan/bop_toolkit @ cea62d6")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    inout = load_inout(args.ref)
    out = {p.name: summary(inout, p) for p in sorted(HERE.glob("*.csv"))}
    args.out.write_text(json.dumps(out, indent=1))
    same = args.out.read_bytes() == (HERE / "toolkit_load_bop_results.json").read_bytes()
    print("identical to the committed file" if same else "differs from the committed file", file=sys.stderr)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
