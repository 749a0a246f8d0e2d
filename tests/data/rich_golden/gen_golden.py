"""Recompute golden.json (RICH end to end: WHAM's label file + SMPL-X/SMPL + predictions) with WHAM's own steps.

Runs in a scratch venv with torch, smplx 0.1.28 and joblib (WHAM reads its files with joblib), a WHAM checkout
and this repository on the path (for the synthetic model writers and the inputs), torch's default dtype float64::

    G=/work/.mirror; P=/tmp/provenance/WHAM; mkdir -p $P/lib/eval $P/lib/utils
    W="git --git-dir=$G/yohanshin+WHAM/repo show 2b54f7797391c94876848b905ed875b154c4a295"
    for f in lib/eval/eval_utils.py lib/utils/transforms.py lib/utils/data_utils.py; do $W:$f > $P/$f; done
    python3 -m venv /tmp/rich/venv
    /tmp/rich/venv/bin/pip install torch==2.13.0 smplx==0.1.28 joblib==1.6.0 scipy==1.17.1 numpy==2.4.6
    /tmp/rich/venv/bin/python tests/data/rich_golden/gen_golden.py --wham $P --out /tmp/provenance/rich.json

What runs, per sequence of ``bench/data/samples/rich/rich_test_vit.pth`` (read by ``joblib.load``, as WHAM's
``EvalDataset``): ``dataset_eval.py``'s label lines (``transforms.axis_angle_to_matrix(labels['pose'][i]
.reshape(-1, 24, 3))``, ``betas``, ``gender``), WHAM's own ``data_utils.prepare_smpl_data`` (6D, ``[1:]``), then
``lib/eval/evaluate_rich.py``'s loop body as written (restated: the file needs CUDA and WHAM's network at import):
the prediction through ``smplx.SMPL(gender='neutral')`` with ``pose2rot=False`` and ``J_regressor_eval``, the GT
through ``smplx.SMPLX(folder, gender, batch_size)`` on ``matrix_to_axis_angle(rotation_6d_to_matrix(...))`` with
``body_pose=gt_pose[:, 1:-2]``, ``torch.matmul(smplx2smpl, vertices)`` and ``J_regressor_eval``, then
``batch_align_by_pelvis(..., [1, 2])``, ``batch_compute_similarity_transform_torch``, ``compute_error_accel``
(``[1:-1]``, x 30**2), mm. The model files are the synthetic ones of tests/smpl_synthetic.py and
tests/smplx_synthetic.py, opened by smplx's own loaders. Departures, on purpose: float64 (WHAM: float32 on CUDA);
``smplx2smpl``'s matrix is pickled sparse here (``.toarray()`` before WHAM's ``torch.from_numpy``); the predicted
parameters come from tests/data/rich_golden/inputs.py instead of WHAM's network (axis-angle ones through
``transforms.axis_angle_to_matrix``; every-frame ones cut to ``[1:]``, the frames WHAM's network outputs); the
unused ``matplotlib`` import of ``eval_utils`` is stubbed.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
KEYS = ("PA-MPJPE", "MPJPE", "PVE", "ACCEL")


def wham_sequence(tr, du, ev, labels, i, pred_fields, smpl, smplx_folder, smplx2smpl, j_reg) -> dict:
    """evaluate_rich.py's loop body on label entry ``i`` and one sequence's predicted parameters."""
    import numpy as np
    import smplx
    import torch

    target = {"pose": tr.axis_angle_to_matrix(labels["pose"][i].double().reshape(-1, 24, 3)),
              "betas": labels["betas"][i].double(), "gender": labels["gender"][i],
              "init_pose": torch.eye(3)[None]}  # init_pose: prepare_smpl_data converts it too (unused here)
    target = du.prepare_smpl_data(target)
    gt = {"pose": target["pose"][None], "betas": target["betas"][None]}  # load_data's unsqueeze(0)
    m2mm = 1e3
    n = len(gt["pose"][0])

    def mats(key, joints):
        a = torch.from_numpy(pred_fields[key])
        a = a if a.shape[-2:] == (3, 3) and a.ndim > 2 else tr.axis_angle_to_matrix(a.reshape(len(a), joints, 3))
        return a.reshape(len(a), joints, 3, 3)[-n:]  # every-frame predictions: WHAM's network outputs [1:]

    betas = torch.from_numpy(pred_fields["betas"])
    betas = (betas[None].expand(n, 10) if betas.ndim == 1 else betas[-n:]).contiguous()
    pred = {"poses_body": mats("poses_body", 23), "poses_root_cam": mats("poses_root_cam", 1), "betas": betas[None]}
    # <======= Build predicted SMPL
    pred_output = smpl(body_pose=pred['poses_body'], global_orient=pred['poses_root_cam'],
                       betas=pred['betas'].squeeze(0), pose2rot=False)
    pred_verts = pred_output.vertices.cpu()
    pred_j3d = torch.matmul(j_reg, pred_output.vertices).cpu()
    # <======= Build groundtruth SMPL (from SMPLX)
    model = smplx.SMPLX(str(smplx_folder), gender=target['gender'], batch_size=len(pred_verts), dtype=torch.float64)
    gt_pose = tr.matrix_to_axis_angle(tr.rotation_6d_to_matrix(gt['pose'][0]))
    target_output = model(body_pose=gt_pose[:, 1:-2].reshape(-1, 63), global_orient=gt_pose[:, 0],
                          betas=gt['betas'][0])
    target_verts = torch.matmul(smplx2smpl, target_output.vertices).cpu()
    target_j3d = torch.matmul(j_reg, target_verts).cpu()
    # <======= Compute performance of the current sequence
    pred_j3d, target_j3d, pred_verts, target_verts = ev.batch_align_by_pelvis(
        [pred_j3d, target_j3d, pred_verts, target_verts], [1, 2])
    s1_hat = ev.batch_compute_similarity_transform_torch(pred_j3d, target_j3d)
    pa_mpjpe = torch.sqrt(((s1_hat - target_j3d) ** 2).sum(dim=-1)).mean(dim=-1).numpy() * m2mm
    mpjpe = torch.sqrt(((pred_j3d - target_j3d) ** 2).sum(dim=-1)).mean(dim=-1).numpy() * m2mm
    pve = torch.sqrt(((pred_verts - target_verts) ** 2).sum(dim=-1)).mean(dim=-1).numpy() * m2mm
    accel = ev.compute_error_accel(joints_pred=pred_j3d, joints_gt=target_j3d)[1:-1]
    accel = accel * (30 ** 2)
    return {"PA-MPJPE": pa_mpjpe, "MPJPE": mpjpe, "PVE": pve, "ACCEL": np.asarray(accel)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wham", type=Path, required=True, help="yohanshin/WHAM @ 2b54f779 (lib/ files)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    import joblib
    import numpy as np
    import smplx
    import torch

    torch.set_default_dtype(torch.float64)
    sys.modules["matplotlib"] = types.ModuleType("matplotlib")  # eval_utils imports pyplot; unused here
    sys.modules["matplotlib.pyplot"] = types.ModuleType("matplotlib.pyplot")
    sys.modules["matplotlib"].pyplot = sys.modules["matplotlib.pyplot"]
    sys.path[:0] = [str(args.wham), str(REPO)]
    from lib.eval import eval_utils as ev
    from lib.utils import data_utils as du
    from lib.utils import transforms as tr

    from tests.data.rich_golden.inputs import CASES, SAMPLE, predictions
    from tests.smpl_synthetic import write_smpl_dir
    from tests.smplx_synthetic import write_smplx_dir

    labels = joblib.load(SAMPLE)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        models = write_smplx_dir(write_smpl_dir(Path(tmp), ("neutral",)))
        matrix = joblib.load(models / "smplx2smpl.pkl")["matrix"].toarray()
        smplx2smpl = torch.from_numpy(matrix).unsqueeze(0).double()
        smpl = smplx.SMPL(str(models / "smpl"), gender="neutral", dtype=torch.float64)
        j_reg = smpl.J_regressor.clone().unsqueeze(0)
        for case in CASES:
            fields = predictions(case)
            per_seq = []
            for i, vid in enumerate(labels["vid"]):
                seq = {k[len(vid) + 1:]: v for k, v in fields.items() if k.startswith(vid + "/")}
                with torch.no_grad():
                    values = wham_sequence(tr, du, ev, labels, i, seq, smpl, models / "smplx", smplx2smpl, j_reg)
                per_seq.append({"vid": vid, **{k: [float(x) for x in values[k]] for k in KEYS}})
            out[case] = {"per_sequence": per_seq,
                         "mean": {k: float(np.concatenate([s[k] for s in per_seq]).mean()) for k in KEYS}}
    args.out.write_text(json.dumps(out, indent=1))
    committed = HERE / "golden.json"
    same = committed.is_file() and args.out.read_bytes() == committed.read_bytes()
    print("identical to the committed file" if same else "differs from the committed file", file=sys.stderr)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
