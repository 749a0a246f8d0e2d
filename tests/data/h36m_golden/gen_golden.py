"""Recompute golden_seed7.json and kernels_seed7.json with VideoPose3D's own dataset, camera and loss code.

Runs in the project's environment (torch, numpy) with a checkout of facebookresearch/VideoPose3D @ 1afb1ca0::

    git --git-dir=/work/.mirror/facebookresearch+VideoPose3D/repo archive \
        1afb1ca0f1237776518469876342fc8669d3f6a9 | tar -x -C /tmp/provenance/VideoPose3D
    OPENBLAS_CORETYPE=Haswell .nox/posearena/bin/python tests/data/h36m_golden/gen_golden.py \
        --ref /tmp/provenance/VideoPose3D --out /tmp/provenance/h36m
    cmp /tmp/provenance/h36m/golden_seed7.json tests/data/h36m_golden/golden_seed7.json
    cmp /tmp/provenance/h36m/kernels_seed7.json tests/data/h36m_golden/kernels_seed7.json

Inputs are the committed ones (bundled synthetic GT, predictions_seed7.npz, kernels_seed7.npz). The loops
below restate run.py's "Preparing data" and ``evaluate`` / ``run_evaluation`` in float64 (run.py casts to
float32 and needs a model); every error is computed by the reference's ``common/loss.py``. P-MPJPE's SVD
rounds by the CPU: OpenBLAS's AVX-512 kernels move it by 1-2 ulp, hence the Haswell kernels above.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
GT_FILE = "bench/data/samples/h36m/data_3d_h36m.npz"
COMMIT = "1afb1ca0f1237776518469876342fc8669d3f6a9"
SUBJECTS_TEST = ["S9", "S11"]  # run.py's default --subjects-test


def camera_frame_gt(ref: Path) -> dict:
    """run.py's "Preparing data" loop on the bundled GT, with float64 copies of the extrinsics."""
    import copy

    import numpy as np
    from common import h36m_dataset
    from common.camera import world_to_camera

    dataset = h36m_dataset.Human36mDataset(str(REPO / GT_FILE))
    exact = copy.deepcopy(h36m_dataset.h36m_cameras_extrinsic_params)
    for subject in dataset.subjects():
        for cam, raw in zip(dataset.cameras()[subject], exact[subject]):
            cam["orientation"] = np.array(raw["orientation"], dtype=np.float64)
            cam["translation"] = np.array(raw["translation"], dtype=np.float64) / 1000
    out = {}
    for subject in SUBJECTS_TEST:
        for action in dataset[subject]:
            anim = dataset[subject][action]
            for c, cam in enumerate(anim["cameras"]):
                pos = world_to_camera(anim["positions"].astype(np.float64), R=cam["orientation"],
                                      t=cam["translation"])
                pos[:, 1:] -= pos[:, :1]
                out[(subject, action, c)] = pos
    return out


def evaluate(seqs: list[tuple], zero_pred_root: bool) -> dict[str, float]:
    """run.py ``evaluate``: one (1, T, 17, 3) batch per sequence, errors weighted by T, in mm."""
    import numpy as np
    import torch
    from common.loss import mean_velocity_error, mpjpe, n_mpjpe, p_mpjpe

    sums, n = dict.fromkeys(("MPJPE", "P-MPJPE", "N-MPJPE", "MPJVE"), 0.0), 0
    for pred, gt in seqs:
        predicted = torch.from_numpy(pred.astype(np.float64)).unsqueeze(0)
        inputs = torch.from_numpy(gt.astype(np.float64)).unsqueeze(0)
        inputs[:, :, 0] = 0
        if zero_pred_root:
            predicted[:, :, 0] = 0
        w = inputs.shape[0] * inputs.shape[1]
        sums["MPJPE"] += w * mpjpe(predicted, inputs).item()
        sums["N-MPJPE"] += w * n_mpjpe(predicted, inputs).item()
        n += w
        # numpy-owned copies: on torch-owned buffers OpenBLAS rounded p_mpjpe's products 1-2 ulp differently
        g, p = inputs.numpy().reshape(-1, 17, 3).copy(), predicted.numpy().reshape(-1, 17, 3).copy()
        sums["P-MPJPE"] += w * p_mpjpe(p, g)
        sums["MPJVE"] += w * mean_velocity_error(p, g)
    return {k: v / n * 1000 for k, v in sums.items()}


def golden_case(ref: Path) -> dict:
    """Per action (run_evaluation's grouping and unweighted mean) and pooled, root kept and zeroed."""
    import numpy as np

    gt = camera_frame_gt(ref)
    preds = np.load(HERE / "predictions_seed7.npz")
    by_action: dict[str, list] = {}
    for (subject, action, c), g in gt.items():
        by_action.setdefault(action.split(" ")[0], []).append((preds[f"{subject}/{action}/{c}"], g))
    out = {"gt_file": GT_FILE, "predictions": "predictions_seed7.npz", "seed": 7, "vp3d_commit": COMMIT}
    for mode, zero in (("keep", False), ("zero", True)):
        res = {}
        per_action = {a: evaluate(seqs, zero) for a, seqs in by_action.items()}
        for key in ("MPJPE", "P-MPJPE", "N-MPJPE", "MPJVE"):
            res[key] = float(np.mean([v[key] for v in per_action.values()]))
            res.update({f"{key}/{a}": v[key] for a, v in per_action.items()})
        res["frame"] = evaluate([s for seqs in by_action.values() for s in seqs], zero)
        out[mode] = res
    return out


def kernel_case() -> dict:
    """The loss functions on the stored (40, 17, 3) pair, called as run.py calls them."""
    import numpy as np
    import torch
    from common.loss import mean_velocity_error, mpjpe, n_mpjpe, p_mpjpe

    arr = np.load(HERE / "kernels_seed7.npz")
    p, g = arr["pred"], arr["target"]
    pt, gt = torch.from_numpy(p).unsqueeze(0), torch.from_numpy(g).unsqueeze(0)
    return {"mpjpe": mpjpe(pt, gt).item(), "p_mpjpe": float(p_mpjpe(p, g)), "n_mpjpe": n_mpjpe(pt, gt).item(),
            "mean_velocity_error": float(mean_velocity_error(p, g)),
            "p_mpjpe_per_frame": [float(p_mpjpe(p[i:i + 1], g[i:i + 1])) for i in range(len(p))],
            "units": "metres (inputs), metres (outputs)", "seed": 8}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", type=Path, required=True, help="facebookresearch/VideoPose3D @ 1afb1ca0")
    ap.add_argument("--out", type=Path, required=True, help="folder for the two JSON files")
    args = ap.parse_args()
    sys.path.insert(0, str(args.ref))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "golden_seed7.json").write_text(json.dumps(golden_case(args.ref), indent=1, sort_keys=True))
    (args.out / "kernels_seed7.json").write_text(json.dumps(kernel_case(), indent=1))
    differ = [f for f in ("golden_seed7.json", "kernels_seed7.json")
              if (args.out / f).read_bytes() != (HERE / f).read_bytes()]
    print(f"differ from the committed files: {differ or 'none'}", file=sys.stderr)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
