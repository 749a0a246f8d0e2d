"""Recompute every ``stats`` list of golden.json with xtcocotools itself, so the numbers can be re-derived.

Run in a throwaway venv with the reference (xtcocotools needs numpy<2), not in the project's environment::

    python3.11 -m venv /tmp/provenance/venv-np1
    /tmp/provenance/venv-np1/bin/pip install "numpy<2" xtcocotools==1.14.3
    /tmp/provenance/venv-np1/bin/python tests/data/crowdpose_golden/gen_golden.py --out /tmp/crowdpose.json
    cmp /tmp/crowdpose.json tests/data/crowdpose_golden/golden.json

The case inputs (GT and detections) are read from the committed golden.json: only the stats are recomputed.
The reference is imported inside ``main`` so that pytest's doctest collection can import this file anywhere.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SAMPLE_GT = HERE.parents[2] / "bench/data/samples/crowdpose/annotations/crowdpose_test.json"
# CrowdPose sigmas as the case docstring in tests/data/test_crowdpose.py gives them
SIGMAS_X10 = [.79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89, .79, .79]


def case_stats(case: dict, tmp: Path) -> list[float]:
    """xtcocotools' nine keypoints_crowd stats for one case, from the reference's own calls."""
    import numpy as np
    from xtcocotools.coco import COCO
    from xtcocotools.cocoeval import COCOeval

    gt_file = SAMPLE_GT
    if case["gt"] != "sample":
        gt_file = tmp / f"{case['name']}.json"
        gt_file.write_text(json.dumps(case["gt"]))
    sigmas = np.array(case["sigmas"]) if "sigmas" in case else np.array(SIGMAS_X10) / 10
    gt = COCO(str(gt_file))
    dt = gt.loadRes(copy.deepcopy(case["dets"]))
    ev = COCOeval(gt, dt, "keypoints_crowd", sigmas, use_area=False)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return [float(x) for x in ev.stats]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--golden", type=Path, default=HERE / "golden.json", help="inputs are read from here")
    ap.add_argument("--out", type=Path, required=True, help="the same JSON with recomputed stats")
    args = ap.parse_args()
    from importlib.metadata import version

    golden = json.loads(args.golden.read_text())
    print(f"xtcocotools {version('xtcocotools')}, numpy {version('numpy')}", file=sys.stderr)
    differ = 0
    with tempfile.TemporaryDirectory() as tmp:
        for case in golden["cases"]:
            got = case_stats(case, Path(tmp))
            if got != case["stats"]:
                differ += 1
                print(f"{case['name']}: committed {case['stats']} recomputed {got}", file=sys.stderr)
            case["stats"] = got
    args.out.write_text(json.dumps(golden, separators=(",", ":")))
    print(f"{len(golden['cases'])} cases, {differ} differ from {args.golden}", file=sys.stderr)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
