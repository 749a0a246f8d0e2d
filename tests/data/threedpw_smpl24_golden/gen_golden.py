"""Recompute metrics_golden.json (3DPW, ``joints=smpl24``) with HybrIK's and TokenHMR's own evaluation code.

Runs in the project's environment with two checkouts (HybrIK's dataset module is loaded with its image and
COCO imports stubbed: ``evaluate_xyz_24`` uses only numpy and ``reconstruction_error``)::

    G=/work/.mirror; P=/tmp/provenance
    git --git-dir=$G/Jeff-sjtu+HybrIK/repo archive 9b8681dcf3c902dd5dacc01520ba04982990e1e2 \
        hybrik/datasets/pw3d.py hybrik/utils/pose_utils.py | tar -x -C $P/HybrIK
    git --git-dir=$G/saidwivedi+TokenHMR/repo archive 198645f7784a27a4df0eac32478b1e7bc3e13574 \
        tokenhmr/lib/utils | tar -x -C $P/TokenHMR
    OPENBLAS_CORETYPE=Haswell .nox/posearena/bin/python tests/data/threedpw_smpl24_golden/gen_golden.py \
        --hybrik $P/HybrIK --tokenhmr $P/TokenHMR --out $P/3dpw_smpl24.json

Inputs: ``golden_meshes()`` of tests/data/threedpw_golden/inputs.py (6 frames) and the 24 joints regressed
from them with the ``J_regressor`` of the synthetic neutral SMPL model (tests/smpl_synthetic.py), as TokenHMR's
``eval.py`` regresses ``J_regressor_24_SMPL`` (the neutral ``smplx.SMPL``'s) from vertices.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]


def load_hybrik(root: Path):
    """HybrIK's ``hybrik.datasets.pw3d`` module (its real ``hybrik.utils.pose_utils``; cv2, joblib, pycocotools
    and the image presets stubbed: the evaluation never touches them)."""
    for name in ("hybrik", "hybrik.utils", "hybrik.datasets"):
        pkg = types.ModuleType(name)
        pkg.__path__ = [str(root / name.replace(".", "/"))]
        sys.modules[name] = pkg
    for name, attrs in (("cv2", ()), ("joblib", ()), ("pycocotools", ()), ("pycocotools.coco", ("COCO",)),
                        ("hybrik.utils.bbox", ("bbox_clip_xyxy", "bbox_xywh_to_xyxy")),
                        ("hybrik.utils.presets", ("SimpleTransform3DSMPL", "SimpleTransform3DSMPLCam"))):
        mod = types.ModuleType(name)
        for a in attrs:
            setattr(mod, a, None)
        sys.modules[name] = mod
    return importlib.import_module("hybrik.datasets.pw3d")


def hybrik_errors(pw3d, gt_j, pred_j) -> dict[str, list[float]]:
    """``PW3D.evaluate_xyz_24`` once per frame (``bbox_3d_shape`` 1 m so predictions stay in metres); the
    per-joint ``error`` / ``error_align`` arrays are read from the function's own locals when it returns."""
    import numpy as np

    seen: dict[str, np.ndarray] = {}

    def grab(frame, event, arg):
        if event == "return" and frame.f_code is pw3d.PW3D.evaluate_xyz_24.__code__:
            seen["error"], seen["error_align"] = frame.f_locals["error"].copy(), frame.f_locals["error_align"].copy()

    mpjpe, pa, ret = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(len(gt_j)):
            db = {"img_id": [i], "bbox": [np.zeros(4)], "root_cam": [gt_j[i, 0].copy()],
                  "joint_cam_29": [np.concatenate([gt_j[i], np.zeros((5, 3))])], "img_path": [f"frame_{i}"]}
            fake = types.SimpleNamespace(db=db, bbox_3d_shape=[1.0, 1.0, 1.0],
                                         root_idx_smpl=pw3d.PW3D.joints_name_24.index("pelvis"))
            sys.setprofile(grab)
            try:
                ret.append(float(pw3d.PW3D.evaluate_xyz_24(fake, {i: {"xyz_24": pred_j[i].copy()}},
                                                           str(Path(tmp) / "out.json"))))
            finally:
                sys.setprofile(None)
            mpjpe.append(float(np.mean(seen["error"]) * 1000))
            pa.append(float(np.mean(seen["error_align"]) * 1000))
    assert mpjpe == ret, (mpjpe, ret)  # its return value is the same mean
    return {"MPJPE_hybrik": mpjpe, "PA-MPJPE_hybrik": pa}


def tokenhmr_errors(tokenhmr: Path, j24, gt, pred) -> dict[str, list[float]]:
    """TokenHMR's ``Evaluator`` with all 24 joints and ``pelvis_ind=0``, fed the regressed SMPL joints (its
    ``mode_re`` is left out: its Procrustes runs in float32)."""
    import torch

    sys.modules.setdefault("cv2", types.ModuleType("cv2"))
    pkg = types.ModuleType("thmr")
    pkg.__path__ = [str(tokenhmr / "tokenhmr/lib/utils")]
    sys.modules["thmr"] = pkg
    thmr = importlib.import_module("thmr.pose_utils")
    ev = thmr.Evaluator(len(gt), list(range(24)), 0, metrics=["mode_mpjpe", "mode_re", "mode_pve"])
    gt_j = torch.matmul(j24[None].expand(len(gt), -1, -1), gt)
    batch = {"imgname": [str(i) for i in range(len(gt))], "vertices": gt,
             "keypoints_3d": torch.cat([gt_j, torch.ones_like(gt_j[..., :1])], dim=-1)}
    ev({"pred_keypoints_3d": torch.matmul(j24[None].expand(len(pred), -1, -1), pred), "pred_vertices": pred}, batch)
    return {"MPJPE_tokenhmr": ev.mode_mpjpe.tolist(), "PVE_tokenhmr": ev.mode_pve.tolist()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hybrik", type=Path, required=True, help="Jeff-sjtu/HybrIK @ 9b8681dc")
    ap.add_argument("--tokenhmr", type=Path, required=True, help="saidwivedi/TokenHMR @ 198645f7")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    import numpy as np
    import torch

    sys.path.insert(0, str(REPO))
    from tests.data.threedpw_golden.inputs import golden_meshes
    from tests.smpl_synthetic import synthetic_smpl

    gt, pred, _ = golden_meshes()
    j24 = synthetic_smpl("neutral", sparse_regressor=False)["J_regressor"]
    per_frame = {**hybrik_errors(load_hybrik(args.hybrik), j24 @ gt, j24 @ pred),
                 **tokenhmr_errors(args.tokenhmr, torch.from_numpy(j24), torch.from_numpy(gt), torch.from_numpy(pred))}
    keys = ["MPJPE_hybrik", "MPJPE_tokenhmr", "PA-MPJPE_hybrik", "PVE_tokenhmr"]
    out = {"per_frame_mm": {k: per_frame[k] for k in keys},
           "mean_mm": {k: float(np.mean(per_frame[k])) for k in keys}}
    args.out.write_text(json.dumps(out, indent=1))
    committed = HERE / "metrics_golden.json"
    same = committed.is_file() and args.out.read_bytes() == committed.read_bytes()
    print("identical to the committed file" if same else "differs from the committed file", file=sys.stderr)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
