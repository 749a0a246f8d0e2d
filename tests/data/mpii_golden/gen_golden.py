"""Recompute every ``percent`` dict of golden.json with mmpose 0.x's own ``TopDownMpiiDataset.evaluate``.

The method body is taken from the reference checkout at run time (parsed with ``ast``, its mmcv decorator
dropped) and run unchanged on a stand-in ``self``; nothing of mmpose is copied here. Any numpy<2 venv with
scipy works (mmpose and mmcv themselves are not needed)::

    git --git-dir=/work/.mirror/open-mmlab+mmpose/repo archive 939c49daab15caad468e07e5c0028496898f4f09 \
        | tar -x -C /tmp/provenance/mmpose-939c49d
    /tmp/provenance/venv-np1/bin/python tests/data/mpii_golden/gen_golden.py \
        --ref /tmp/provenance/mmpose-939c49d --out /tmp/provenance/mpii.json
    cmp /tmp/provenance/mpii.json tests/data/mpii_golden/golden.json

Inputs (the GT ``mpii_gt_val.mat`` and each case's predictions) are the committed ones.
"""
from __future__ import annotations

import argparse
import ast
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REF_FILE = "mmpose/datasets/datasets/top_down/topdown_mpii_dataset.py"


def reference_methods(ref: Path) -> dict:
    """``evaluate`` and ``_sort_and_unique_bboxes`` of ``TopDownMpiiDataset``, compiled from the checkout."""
    import os.path as osp
    from collections import OrderedDict

    import numpy as np
    from scipy.io import loadmat, savemat

    tree = ast.parse((ref / REF_FILE).read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "TopDownMpiiDataset")
    wanted = [n for n in cls.body if isinstance(n, ast.FunctionDef)
              and n.name in ("evaluate", "_sort_and_unique_bboxes")]
    for fn in wanted:
        fn.decorator_list = []  # mmcv's deprecated_api_warning only renames a keyword argument
    ns = {"np": np, "osp": osp, "OrderedDict": OrderedDict, "loadmat": loadmat, "savemat": savemat}
    code = compile(ast.Module(body=wanted, type_ignores=[]), str(ref / REF_FILE), "exec")
    exec(code, ns)  # noqa: S102 (running the reference is the point)
    return {fn.name: ns[fn.name] for fn in wanted}


def case_percent(methods: dict, ann_dir: Path, predictions: list[dict]) -> dict[str, float]:
    """The reference's output for one prediction set, fed as one batch in the file's record order."""
    import numpy as np

    self = type("MpiiStandIn", (), {"ann_file": str(ann_dir / "mpii_val.json"),
                                    "_sort_and_unique_bboxes": methods["_sort_and_unique_bboxes"]})()
    preds = np.zeros((len(predictions), 16, 3))
    preds[:, :, :2] = [r["keypoints"] for r in predictions]  # our format is mmpose's 0-based frame
    results = [{"preds": preds, "bbox_ids": [r["index"] for r in predictions]}]
    return {k: float(v) for k, v in methods["evaluate"](self, results, metric="PCKh").items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", type=Path, required=True, help="checkout of open-mmlab/mmpose @ 939c49da")
    ap.add_argument("--golden", type=Path, default=HERE / "golden.json", help="inputs are read from here")
    ap.add_argument("--out", type=Path, required=True, help="the same JSON with recomputed percentages")
    args = ap.parse_args()
    import shutil
    from importlib.metadata import version

    print(f"numpy {version('numpy')}, scipy {version('scipy')}", file=sys.stderr)
    methods = reference_methods(args.ref)
    golden = json.loads(args.golden.read_text())
    differ = 0
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(HERE / "mpii_gt_val.mat", Path(tmp) / "mpii_gt_val.mat")
        for case in golden["cases"]:
            got = case_percent(methods, Path(tmp), case["predictions"])
            if got != case["percent"]:
                differ += 1
                print(f"{case['name']}: committed {case['percent']} recomputed {got}", file=sys.stderr)
            case["percent"] = got
    args.out.write_text(json.dumps(golden, separators=(",", ":")))
    print(f"{len(golden['cases'])} cases, {differ} differ from {args.golden}", file=sys.stderr)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
