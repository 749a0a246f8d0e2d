"""Recompute golden.json (EMDB end to end: sample files + SMPL + predictions) with WHAM's own evaluation steps.

Runs in the project's environment with WHAM, EMDB and aitviewer checkouts, OpenCV and roma on the path (a
scratch ``--target`` folder, not the project's environment), torch's default dtype float64::

    G=/work/.mirror; P=/tmp/provenance; mkdir -p $P/WHAM/lib/eval $P/WHAM/lib/utils $P/emdb $P/ait/aitviewer/utils
    W="git --git-dir=$G/yohanshin+WHAM/repo show 2b54f7797391c94876848b905ed875b154c4a295"
    $W:lib/eval/eval_utils.py > $P/WHAM/lib/eval/eval_utils.py
    $W:lib/utils/transforms.py > $P/WHAM/lib/utils/transforms.py
    git --git-dir=$G/eth-ait+emdb/repo show 9a4eab677181a3789bda7ba5c36ab8cff797380c:evaluation_metrics.py \
        > $P/emdb/evaluation_metrics.py
    A="git --git-dir=$G/eth-ait+aitviewer/repo show 8fb6d4661303579ef04b3bf63ac907dbaecff2ff"
    for f in __init__.py utils/__init__.py utils/decorators.py utils/utils.py utils/so3.py; do
        $A:aitviewer/$f > $P/ait/aitviewer/$f; done
    .nox/posearena/bin/python -m pip install --no-deps --target $P/pkgs opencv-python-headless==5.1.0.95 \
        roma==1.8.0 trimesh==5.2.0
    PYTHONPATH=$P/pkgs OPENBLAS_CORETYPE=Haswell .nox/posearena/bin/python \
        tests/data/emdb_reader_golden/gen_golden.py --wham $P/WHAM --emdb $P/emdb --aitviewer $P/ait \
        --out $P/emdb_reader.json

What runs, per subset ``1`` / ``2``: WHAM's sequence selection (``emdb_eval_utils.is_dset``: the pickle's
``emdb<split>`` flag, over ``sorted(glob(root/'*/*/*_data.pkl'))``); per sequence the "Prepare groundtruth data"
block of ``lib/eval/evaluate_emdb.py`` as written (plain ``pickle.load``, ``betas`` repeated over ``n_frames``,
``transforms.matrix_to_axis_angle(R_ext @ transforms.axis_angle_to_matrix(poses_root))``, ``smplx.SMPL(folder,
gender=...)`` built by smplx's own loader from the synthetic SMPL-format files of tests/smpl_synthetic.py,
``joints[:, :24][masks]``); the prediction built as its "Build predicted motion" block (neutral SMPL,
``pose2rot=False`` on rotation matrices: axis-angle predictions go through ``transforms.axis_angle_to_matrix``;
every-frame predictions are cut to the good frames, as EMDB's ``evaluation_engine`` does); then its metric
block (the same calls as tests/data/emdb_golden/gen_golden.py). Camera-frame MPJPE, PA-MPJPE and PVE are also
computed by EMDB's ``compute_positional_errors`` (``*_emdb``). Two deliberate departures, both named in
PROVENANCE.md: float64 instead of WHAM's ``.float()``, and no ``yup2ydown`` turn of the predicted world motion
(that is WHAM's own output convention; predictions here are given in the world frame).

EMDB 1's ``MPJAE`` is EMDB's ``compute_metrics`` itself, called as its ``evaluation_engine.compare2method`` calls
it (good frames, predicted translation zeroed, neutral prediction as for its HybrIK baseline, the extrinsics), with
the real OpenCV (``joint_angle_error``'s ``cv2.Rodrigues``) and aitviewer's ``local_to_global``; only aitviewer's
``SMPLLayer`` / ``SMPLSequence`` (OpenGL-bound) are replaced by :class:`SMPLSequence` below, which does what
``get_data`` reads from them: smplx's SMPL on the axis-angle poses (``vertices``, ``joints[:, :24]``), the poses as
tensors and the ``(parent, joint)`` skeleton. Rotation-matrix predictions become axis-angle by scipy first (EMDB's
``evaluation_loaders.load_hybrik``). Per frame the mean over the 9 joints (``evaluation_engine.run``).
"""
from __future__ import annotations

import argparse
import json
import pickle
import sys
import tempfile
import types
from glob import glob
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
CAMERA = ("PA-MPJPE", "MPJPE", "PVE", "ACCEL")
WORLD = ("WA-MPJPE100", "W-MPJPE100", "RTE", "JITTER", "FS")


def load_pickle(path: str):
    """``pickle.load(open(path, 'rb'))`` as WHAM writes it (the bundled sample is our own synthetic file)."""
    with open(path, "rb") as fh:
        return pickle.load(fh)


class SMPLSequence:
    """What EMDB's ``get_data`` reads of aitviewer's ``SMPLSequence``, from smplx (float64; aitviewer uses its
    float32 ``C.f_precision``): ``vertices``, ``joints`` (the 24 body joints), ``poses_root``, ``poses_body`` and
    ``skeleton`` (``(parent, joint)`` rows, ``skeletons()["body"].T``)."""

    def __init__(self, poses_body, smpl_layer, poses_root, betas, trans):
        import torch

        tt = lambda x: torch.from_numpy(x).double()
        self.poses_body, self.poses_root = tt(poses_body), tt(poses_root)
        with torch.no_grad():
            out = smpl_layer(body_pose=self.poses_body, global_orient=self.poses_root, betas=tt(betas),
                             transl=tt(trans))
        self.vertices, self.joints = out.vertices.numpy(), out.joints[:, :24].numpy()
        parents = smpl_layer.parents
        self.skeleton = torch.stack([parents, torch.arange(len(parents))]).T.numpy()


def load_emdb_metrics(emdb: Path, aitviewer: Path, smpl_folder: Path):
    """EMDB's ``evaluation_metrics`` with the real cv2 and ``aitviewer.utils``, aitviewer's SMPL classes replaced
    (``SMPLLayer(model_type="smpl", gender=g)`` -> smplx's SMPL from ``smpl_folder``)."""
    import smplx
    import torch

    from tests.data.emdb_golden.gen_golden import load

    sys.path.insert(0, str(aitviewer))
    import aitviewer.utils  # the real local_to_global (roma's rotvec_to_rotmat)
    import cv2  # noqa: F401

    layers: dict[str, object] = {}

    def smpl_layer(model_type: str, gender: str):
        assert model_type == "smpl"
        if gender not in layers:
            layers[gender] = smplx.SMPL(str(smpl_folder), gender=gender, dtype=torch.float64)
        return layers[gender]

    for name, attrs in {"aitviewer.models": {}, "aitviewer.models.smpl": {"SMPLLayer": smpl_layer},
                        "aitviewer.renderables": {}, "aitviewer.renderables.smpl": {"SMPLSequence": SMPLSequence}
                        }.items():
        mod = types.ModuleType(name)
        for a, v in attrs.items():
            setattr(mod, a, v)
        sys.modules[name] = mod
    return load("emdb_evaluation_metrics", emdb / "evaluation_metrics.py")


def emdb_mpjae(em, annot: dict, pred: dict, vid: str) -> list[float]:
    """Per good frame the mean over the 9 joints of EMDB's ``compute_metrics`` ``mpjae_all``, as
    ``evaluation_engine.compare2method`` and ``run`` compute it."""
    import numpy as np
    from scipy.spatial.transform import Rotation

    masks = annot["good_frames_mask"]
    smpl = annot["smpl"]
    poses_gt = np.concatenate([smpl["poses_root"], smpl["poses_body"]], axis=-1)
    betas_gt = np.repeat(smpl["betas"].reshape((1, -1)), repeats=annot["n_frames"], axis=0)
    body, root = np.asarray(pred[f"{vid}/poses_body"]), np.asarray(pred[f"{vid}/poses_root_cam"])
    n = len(body)
    if body.shape[1:] == (23, 3, 3):  # load_hybrik: R.as_rotvec(R.from_matrix(...))
        body = Rotation.from_matrix(body.reshape(-1, 3, 3)).as_rotvec().reshape(n, -1)
        root = Rotation.from_matrix(root).as_rotvec()
    betas = np.asarray(pred[f"{vid}/betas"])
    betas = np.repeat(betas[None], n, axis=0) if betas.ndim == 1 else betas
    poses_cmp = np.concatenate([root, body], axis=-1)
    trans_cmp = np.zeros((n, 3))  # ignore_smpl_trans
    keep = masks if n == annot["n_frames"] else slice(None)  # good-frame predictions are already cut
    _, extra = em.compute_metrics(poses_gt[masks], betas_gt[masks], smpl["trans"][masks], poses_cmp[keep],
                                  betas[keep], trans_cmp[keep], annot["gender"], "neutral",
                                  annot["camera"]["extrinsics"][masks])
    return [float(x) for x in np.mean(extra["mpjae_all"], axis=-1)]


def evaluate_split(ev, tf, em, root: Path, split: str, smpl_folder: Path, pred: dict, angles=None) -> dict:
    """evaluate_emdb.py's loop body for every sequence of ``split``; per-sequence values of the split's keys."""
    import numpy as np
    import smplx
    import torch

    smpl = {k: smplx.SMPL(str(smpl_folder), gender=k, dtype=torch.float64) for k in ["male", "female", "neutral"]}
    tt = lambda x: torch.from_numpy(np.asarray(x)).double()  # WHAM's helper, in float64
    m2mm = 1e3
    files = [f for f in sorted(glob(str(root / "*/*/*_data.pkl"))) if load_pickle(f)[f"emdb{split}"]]
    per_seq = {}
    for annot_pth in files:
        subj, seq = Path(annot_pth).parent.parent.name, Path(annot_pth).parent.name
        vid = f"{subj}_{seq}"
        annot = load_pickle(annot_pth)
        masks = annot["good_frames_mask"]
        gender = annot["gender"]
        poses_body = annot["smpl"]["poses_body"]
        poses_root = annot["smpl"]["poses_root"]
        betas = np.repeat(annot["smpl"]["betas"].reshape((1, -1)), repeats=annot["n_frames"], axis=0)
        trans = annot["smpl"]["trans"]
        extrinsics = annot["camera"]["extrinsics"]
        poses_root_cam = tf.matrix_to_axis_angle(tt(extrinsics[:, :3, :3]) @ tf.axis_angle_to_matrix(tt(poses_root)))
        target_glob = smpl[gender](body_pose=tt(poses_body), global_orient=tt(poses_root), betas=tt(betas),
                                   transl=tt(trans))
        target_j3d_glob = target_glob.joints[:, :24][masks]
        target_cam = smpl[gender](body_pose=tt(poses_body), global_orient=poses_root_cam, betas=tt(betas))
        target_verts_cam = target_cam.vertices[masks]
        target_j3d_cam = target_cam.joints[:, :24][masks]

        p = {k: np.asarray(pred[f"{vid}/{k}"]) for k in ("poses_body", "poses_root_cam", "poses_root_world",
                                                          "betas", "trans_world")}
        if len(p["poses_body"]) == annot["n_frames"] and not masks.all():
            p = {k: (v[masks] if v.ndim > 1 else v) for k, v in p.items()}
        n = len(p["poses_body"])
        if p["poses_body"].shape[1:] == (69,):
            p["poses_body"] = tf.axis_angle_to_matrix(tt(p["poses_body"]).reshape(n, 23, 3)).numpy()
            for k in ("poses_root_cam", "poses_root_world"):
                p[k] = tf.axis_angle_to_matrix(tt(p[k])).numpy()
        if p["betas"].ndim == 1:
            p["betas"] = np.repeat(p["betas"][None], n, axis=0)
        pred_trans = tt(p["trans_world"])
        pred_glob = smpl["neutral"](body_pose=tt(p["poses_body"]), global_orient=tt(p["poses_root_world"]).unsqueeze(1),
                                    betas=tt(p["betas"]), transl=pred_trans, pose2rot=False)
        pred_j3d_glob = pred_glob.joints[:, :24]
        pred_cam = smpl["neutral"](body_pose=tt(p["poses_body"]), global_orient=tt(p["poses_root_cam"]).unsqueeze(1),
                                   betas=tt(p["betas"]), pose2rot=False)
        pred_verts_cam = pred_cam.vertices
        pred_j3d_cam = pred_cam.joints[:, :24]

        pj, gj, pv, gv = ev.batch_align_by_pelvis([pred_j3d_cam, target_j3d_cam, pred_verts_cam, target_verts_cam],
                                                  [1, 2])
        s1_hat = ev.batch_compute_similarity_transform_torch(pj, gj)
        values = {
            "PA-MPJPE": torch.sqrt(((s1_hat - gj) ** 2).sum(dim=-1)).mean(dim=-1).numpy() * m2mm,
            "MPJPE": torch.sqrt(((pj - gj) ** 2).sum(dim=-1)).mean(dim=-1).numpy() * m2mm,
            "PVE": torch.sqrt(((pv - gv) ** 2).sum(dim=-1)).mean(dim=-1).numpy() * m2mm,
            "ACCEL": ev.compute_error_accel(joints_pred=pj, joints_gt=gj)[1:-1] * (30 ** 2),
        }
        w_mpjpe, wa_mpjpe = [], []
        for start in range(0, masks.sum(), 100):
            end = min(masks.sum(), start + 100)
            target_j3d = target_j3d_glob[start:end].clone()
            pred_j3d = pred_j3d_glob[start:end].clone()
            w_mpjpe.append(ev.compute_jpe(target_j3d, ev.first_align_joints(target_j3d, pred_j3d)))
            wa_mpjpe.append(ev.compute_jpe(target_j3d, ev.global_align_joints(target_j3d, pred_j3d)))
        values.update({
            "W-MPJPE100": np.concatenate(w_mpjpe) * m2mm, "WA-MPJPE100": np.concatenate(wa_mpjpe) * m2mm,
            "RTE": ev.compute_rte(torch.from_numpy(trans[masks]), pred_trans) * 1e2,
            "JITTER": ev.compute_jitter(pred_glob, fps=30),
            "FS": ev.compute_foot_sliding(target_glob, pred_glob, masks) * m2mm,
        })
        keys = CAMERA if split == "1" else WORLD
        out = {k: values[k] for k in keys}
        if split == "1":
            r = em.compute_positional_errors(pred_j3d_cam.numpy() * 1000.0, target_j3d_cam.numpy() * 1000.0,
                                             pred_verts_cam.numpy() * 1000.0, target_verts_cam.numpy() * 1000.0)
            out.update({"MPJPE_emdb": r["mpjpe_pf"], "PA-MPJPE_emdb": r["mpjpe_pf_pa"], "PVE_emdb": r["mve_pf"]})
            out["MPJAE"] = emdb_mpjae(angles, annot, pred, vid)
        per_seq[vid] = {k: [float(x) for x in np.asarray(v).reshape(-1)] for k, v in out.items()}
    return per_seq


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wham", type=Path, required=True, help="yohanshin/WHAM @ 2b54f779 (eval_utils, transforms)")
    ap.add_argument("--emdb", type=Path, required=True, help="eth-ait/emdb @ 9a4eab67 (evaluation_metrics)")
    ap.add_argument("--aitviewer", type=Path, required=True, help="eth-ait/aitviewer @ 8fb6d466 (aitviewer/utils)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    import numpy as np
    import torch

    torch.set_default_dtype(torch.float64)
    sys.path.insert(0, str(REPO))
    from tests.data.emdb_golden.gen_golden import load, load_emdb
    from tests.data.emdb_reader_golden.inputs import CASES, SAMPLE, predictions
    from tests.smpl_synthetic import write_smpl_dir

    ev = load("wham_eval_utils", args.wham / "lib/eval/eval_utils.py")
    tf = load("wham_transforms", args.wham / "lib/utils/transforms.py")
    em = load_emdb(args.emdb)
    result: dict = {"cases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_smpl_dir(Path(tmp)) / "smpl"
        for stub in [m for m in sys.modules if m == "cv2" or m.startswith("aitviewer")]:
            del sys.modules[stub]  # load_emdb's stubs; the MPJAE module gets the real ones
        angles = load_emdb_metrics(args.emdb, args.aitviewer, folder)
        for case in CASES:
            pred = predictions(case)
            result["cases"][case] = {}
            for split in ("1", "2"):
                with torch.no_grad():  # evaluate_emdb.py's main() runs under torch.no_grad()
                    per_seq = evaluate_split(ev, tf, em, SAMPLE, split, folder, pred, angles)
                keys = list(next(iter(per_seq.values())))
                mean = {k: float(np.concatenate([s[k] for s in per_seq.values()]).mean()) for k in keys}
                result["cases"][case][f"emdb{split}"] = {"per_sequence": per_seq, "mean": mean}
    args.out.write_text(json.dumps(result, indent=1))
    committed = HERE / "golden.json"
    same = committed.is_file() and args.out.read_bytes() == committed.read_bytes()
    print("identical to the committed file" if same else "differs from the committed file", file=sys.stderr)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
