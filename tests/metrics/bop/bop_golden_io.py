"""Test-local readers for the bop_golden cases (tests/data/bop_golden): BOP layout -> BOPAR inputs.

Deliberately small and independent of bench/data/bop.py (written separately); they build exactly the
target/pred dicts that BOPAR documents. Depth = PNG value * depth_scale in float32, as the toolkit's
``inout.load_depth(...) * depth_scale``.
"""
from __future__ import annotations

import csv
import json
from functools import cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from metrics.bop.ar import BOPAR
from metrics.bop.model import ObjectModel

ROOT = Path(__file__).resolve().parents[2] / "data" / "bop_golden"


def case_dir(case: str) -> Path:
    return ROOT / case


def load_ply(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """ASCII PLY with x y z vertices and triangle faces."""
    lines = path.read_text().splitlines()
    end = lines.index("end_header")
    nv = int(next(l for l in lines if l.startswith("element vertex")).split()[-1])
    nf = int(next(l for l in lines if l.startswith("element face")).split()[-1])
    V = np.array([[float(x) for x in l.split()[:3]] for l in lines[end + 1:end + 1 + nv]])
    F = np.array([[int(x) for x in l.split()[1:4]] for l in lines[end + 1 + nv:end + 1 + nv + nf]])
    return torch.tensor(V, dtype=torch.float64), torch.tensor(F, dtype=torch.int64)


@cache
def load_models(case: str) -> dict[int, ObjectModel]:
    d = case_dir(case) / "datasets" / "ycbv" / "models_eval"
    info = json.loads((d / "models_info.json").read_text())
    models = {}
    for k, v in info.items():
        oid = int(k)
        V, F = load_ply(d / f"obj_{oid:06d}.ply")
        models[oid] = ObjectModel(oid, V, F, float(v["diameter"]), v.get("symmetries_discrete", []),
                                  v.get("symmetries_continuous", []))
    return models


def load_reference(case: str) -> dict:
    return json.loads((case_dir(case) / "reference.json").read_text())


@cache
def load_targets(case: str) -> list[dict]:
    """One target dict per image listed in test_targets_bop19.json (in first-appearance order)."""
    root = case_dir(case) / "datasets" / "ycbv"
    tlist = json.loads((root / "test_targets_bop19.json").read_text())
    images: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for t in tlist:
        images.setdefault((t["scene_id"], t["im_id"]), []).append((t["obj_id"], t["inst_count"]))
    out = []
    for (scene, im), tg in images.items():
        sd = root / "test" / f"{scene:06d}"
        gt = json.loads((sd / "scene_gt.json").read_text())[str(im)]
        gi = json.loads((sd / "scene_gt_info.json").read_text())[str(im)]
        cam = json.loads((sd / "scene_camera.json").read_text())[str(im)]
        png = np.array(Image.open(sd / "depth" / f"{im:06d}.png")).astype(np.float32)
        depth = png * np.float32(cam["depth_scale"])
        out.append({
            "sample_id": torch.tensor(scene * 1_000_000 + im, dtype=torch.int64),
            "scene_id": torch.tensor(scene, dtype=torch.int64),
            "im_id": torch.tensor(im, dtype=torch.int64),
            "K": torch.tensor(cam["cam_K"], dtype=torch.float64).reshape(3, 3),
            "depth": torch.from_numpy(depth),
            "gt_obj_id": torch.tensor([g["obj_id"] for g in gt], dtype=torch.int64),
            "gt_R": torch.tensor([g["cam_R_m2c"] for g in gt], dtype=torch.float64).reshape(-1, 3, 3),
            "gt_t": torch.tensor([g["cam_t_m2c"] for g in gt], dtype=torch.float64).reshape(-1, 3),
            "gt_visib_fract": torch.tensor([g["visib_fract"] for g in gi], dtype=torch.float64),
            "target_obj_id": torch.tensor([o for o, _ in tg], dtype=torch.int64),
            "target_inst_count": torch.tensor([c for _, c in tg], dtype=torch.int64),
        })
    return out


def _empty_pred() -> dict:
    return {"obj_id": torch.zeros(0, dtype=torch.int64), "R": torch.zeros(0, 3, 3, dtype=torch.float64),
            "t": torch.zeros(0, 3, dtype=torch.float64), "score": torch.zeros(0, dtype=torch.float64)}


def load_preds(case: str, targets: list[dict], csv_name: str | None = None) -> list[dict]:
    """Pred dicts aligned with ``targets``, rows in CSV order (which fixes ties and est ids)."""
    res = case_dir(case) / "results"
    path = res / csv_name if csv_name else next(res.glob("*.csv"))
    rows: dict[int, list] = {}
    with open(path) as f:
        for row in csv.DictReader(f):
            sid = int(row["scene_id"]) * 1_000_000 + int(row["im_id"])
            rows.setdefault(sid, []).append(row)
    preds = []
    for tg in targets:
        rs = rows.get(int(tg["sample_id"]), [])
        if not rs:
            preds.append(_empty_pred())
            continue
        preds.append({
            "obj_id": torch.tensor([int(r["obj_id"]) for r in rs], dtype=torch.int64),
            "R": torch.tensor([[float(x) for x in r["R"].split()] for r in rs], dtype=torch.float64).reshape(-1, 3, 3),
            "t": torch.tensor([[float(x) for x in r["t"].split()] for r in rs], dtype=torch.float64).reshape(-1, 3),
            "score": torch.tensor([float(r["score"]) for r in rs], dtype=torch.float64),
        })
    return preds


def gt_preds(targets: list[dict]) -> list[dict]:
    """The GT poses submitted as estimates (score = visib_fract), as in case2/results_gt_check.txt."""
    return [{"obj_id": t["gt_obj_id"].clone(), "R": t["gt_R"].clone(), "t": t["gt_t"].clone(),
             "score": t["gt_visib_fract"].clone()} for t in targets]


class Scored:
    def __init__(self, case: str, gt: bool = False):
        self.case = case
        self.models = load_models(case)
        self.targets = load_targets(case)
        self.preds = gt_preds(self.targets) if gt else load_preds(case, self.targets)
        self.reference = load_reference(case)
        self.metric = BOPAR(self.models)
        self.metric.update(self.preds, self.targets)
        self.details = self.metric.compute_details()
        self.metrics = self.metric.compute()
        self.errors = {(r["scene_id"], r["im_id"], r["obj_id"], r["est_id"], r["gt_id"]): r
                       for r in self.metric.per_estimate_errors()}


_cache: dict = {}


def scored(case: str, gt: bool = False) -> Scored:
    if (case, gt) not in _cache:
        _cache[(case, gt)] = Scored(case, gt)
    return _cache[(case, gt)]
