"""Recompute metrics_golden.json (EMDB motion metrics) with WHAM's and EMDB's own evaluation functions.

Runs in the project's environment with two checkouts, torch's default dtype set to float64 (WHAM's functions
build ``torch.eye``/``torch.ones`` in the default dtype and fail on float64 input otherwise)::

    G=/work/.mirror; P=/tmp/provenance; mkdir -p $P/WHAM $P/emdb
    git --git-dir=$G/yohanshin+WHAM/repo archive 2b54f7797391c94876848b905ed875b154c4a295 \
        lib/eval/eval_utils.py | tar -x -C $P/WHAM
    git --git-dir=$G/eth-ait+emdb/repo archive 9a4eab677181a3789bda7ba5c36ab8cff797380c \
        evaluation_metrics.py | tar -x -C $P/emdb
    OPENBLAS_CORETYPE=Haswell .nox/posearena/bin/python tests/data/emdb_golden/gen_golden.py \
        --wham $P/WHAM --emdb $P/emdb --out $P/emdb.json

WHAM's ``lib/eval/evaluate_emdb.py`` does not import (a missing comma in its import list) and needs the model;
its per-sequence steps are restated here around its ``eval_utils`` functions, which are called as they are:
``batch_align_by_pelvis(..., [1, 2])``, ``batch_compute_similarity_transform_torch``, ``compute_error_accel``
(``[1:-1]``, x 30**2), the 100-frame chunk loop over ``first_align_joints`` / ``global_align_joints`` /
``compute_jpe``, ``compute_rte`` (x 1e2), ``compute_jitter(fps=30)``, ``compute_foot_sliding`` (x 1e3, every frame
scored). EMDB's ``compute_positional_errors`` (cv2 and aitviewer imports stubbed: unused) gives its own camera
MPJPE, PA-MPJPE and MVE (inputs in mm, as its ``compute_metrics`` passes them).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]


def load(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def load_emdb(root: Path) -> types.ModuleType:
    """EMDB's ``evaluation_metrics`` with its cv2 and aitviewer imports stubbed."""
    stubs = {"cv2": (), "aitviewer": (), "aitviewer.models": (), "aitviewer.models.smpl": ("SMPLLayer",),
             "aitviewer.renderables": (), "aitviewer.renderables.smpl": ("SMPLSequence",),
             "aitviewer.utils": ("local_to_global",)}
    for name, attrs in stubs.items():
        mod = types.ModuleType(name)
        for a in attrs:
            setattr(mod, a, None)
        sys.modules[name] = mod
    return load("emdb_evaluation_metrics", root / "evaluation_metrics.py")


def wham_sequence(ev, seq: dict) -> dict[str, list[float]]:
    """evaluate_emdb.py's per-sequence block (WHAM's functions, its expressions) on one sequence."""
    import numpy as np
    import torch

    tt = {k: torch.from_numpy(v) for k, v in seq.items()}
    m2mm = 1e3
    pj, gj, pv, gv = ev.batch_align_by_pelvis(
        [tt["pred_cam_joints"], tt["gt_cam_joints"], tt["pred_cam_verts"], tt["gt_cam_verts"]], [1, 2])
    s1_hat = ev.batch_compute_similarity_transform_torch(pj, gj)
    pa_mpjpe = torch.sqrt(((s1_hat - gj) ** 2).sum(dim=-1)).mean(dim=-1).numpy() * m2mm
    mpjpe = torch.sqrt(((pj - gj) ** 2).sum(dim=-1)).mean(dim=-1).numpy() * m2mm
    pve = torch.sqrt(((pv - gv) ** 2).sum(dim=-1)).mean(dim=-1).numpy() * m2mm
    accel = ev.compute_error_accel(joints_pred=pj, joints_gt=gj)[1:-1] * (30 ** 2)
    n, w, wa = len(seq["gt_joints"]), [], []
    for start in range(0, n, 100):
        end = min(n, start + 100)
        target, pred = tt["gt_joints"][start:end].clone(), tt["pred_joints"][start:end].clone()
        w.append(ev.compute_jpe(target, ev.first_align_joints(target, pred)))
        wa.append(ev.compute_jpe(target, ev.global_align_joints(target, pred)))
    masks = np.ones(n, dtype=bool)
    return {"MPJPE": mpjpe, "PA-MPJPE": pa_mpjpe, "PVE": pve, "ACCEL": accel,
            "W-MPJPE100": np.concatenate(w) * m2mm, "WA-MPJPE100": np.concatenate(wa) * m2mm,
            "RTE": ev.compute_rte(tt["gt_transl"], tt["pred_transl"]) * 1e2,
            "JITTER": ev.compute_jitter(types.SimpleNamespace(joints=tt["pred_joints"]), fps=30),
            "FS": ev.compute_foot_sliding(types.SimpleNamespace(vertices=tt["gt_verts"]),
                                          types.SimpleNamespace(vertices=tt["pred_verts"]), masks) * m2mm}


def emdb_sequence(em, seq: dict) -> dict:
    """EMDB's ``compute_positional_errors`` on the camera-frame joints and vertices (mm in, mm out)."""
    r = em.compute_positional_errors(seq["pred_cam_joints"] * 1000.0, seq["gt_cam_joints"] * 1000.0,
                                     seq["pred_cam_verts"] * 1000.0, seq["gt_cam_verts"] * 1000.0)
    return {"MPJPE_emdb": r["mpjpe_pf"], "PA-MPJPE_emdb": r["mpjpe_pf_pa"], "PVE_emdb": r["mve_pf"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wham", type=Path, required=True, help="yohanshin/WHAM @ 2b54f779")
    ap.add_argument("--emdb", type=Path, required=True, help="eth-ait/emdb @ 9a4eab67")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    import numpy as np
    import torch

    torch.set_default_dtype(torch.float64)
    sys.path.insert(0, str(REPO))
    from tests.data.emdb_golden.inputs import golden_sequences

    ev = load("wham_eval_utils", args.wham / "lib/eval/eval_utils.py")
    em = load_emdb(args.emdb)
    per_seq = []
    for seq in golden_sequences():
        values = {**wham_sequence(ev, seq), **emdb_sequence(em, seq)}
        per_seq.append({k: [float(x) for x in np.asarray(v).reshape(-1)] for k, v in values.items()})
    keys = list(per_seq[0])
    out = {"per_sequence": per_seq,
           "mean": {k: float(np.concatenate([s[k] for s in per_seq]).mean()) for k in keys}}
    args.out.write_text(json.dumps(out, indent=1))
    committed = HERE / "metrics_golden.json"
    same = committed.is_file() and args.out.read_bytes() == committed.read_bytes()
    print("identical to the committed file" if same else "differs from the committed file", file=sys.stderr)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
