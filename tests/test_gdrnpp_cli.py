"""GDRNPP end to end on the bundled synthetic YCB-V sample: ``python -m bench evaluate method=gdrnpp dataset=ycbv
weights=FILE dataset.detections=FILE`` with an official-layout checkpoint (seeded weights of the small variant
that tests/methods/test_gdrnpp.py checks against the official model), the sample's flat-colour RGB images and its
GT-box detections (bench/data/samples/ycbv/detections_gt_boxes.json).

A model run also writes its official BOP19 results CSV beside metrics.json (bench/results_file.py); scored with
``predictions=`` it must give the model run's AR exactly, and two processes must write the same rows.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.data.bop import build as build_bop
from methods.object6d import gdrnpp as G
from tests.conftest import REPO, run_cli
from tests.methods.test_gdrnpp import SMALL, small_checkpoint

SAMPLE = REPO / "bench" / "data" / "samples" / "ycbv"
DETECTIONS = SAMPLE / "detections_gt_boxes.json"
SMALL_OPTIONS = {k: v for k, v in SMALL.items() if k != "num_classes"}   # the classes: YCB-V's 21
SMALL_ARGS = [f"method.{k}={v}" for k, v in SMALL_OPTIONS.items()]
AR_KEYS = ("AR", "AR_VSD", "AR_MSSD", "AR_MSPD")
ENV = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An official-layout checkpoint, saved as detectron2 does (``{"model": sd, "iteration": ...}``), 21 classes."""
    path = tmp_path_factory.mktemp("gdrnpp_cli") / "model_final_wo_optim.pth"
    small_checkpoint(path, seed=3, num_classes=21)
    return path


def test_bundled_sample_detections_and_images():
    """The detections file holds a box per visible GT instance (score 1.0), inside the 640x480 RGB images."""
    from PIL import Image

    dets = json.loads(DETECTIONS.read_text())
    assert len(dets) == 9
    for key, recs in dets.items():
        scene, im = (int(x) for x in key.split("/"))
        gts = json.loads((SAMPLE / "test" / f"{scene:06d}" / "scene_gt.json").read_text())[str(im)]
        assert sorted(r["obj_id"] for r in recs) == sorted(g["obj_id"] for g in gts)
        for r in recs:
            x, y, w, h = r["bbox_est"]
            assert r["score"] == 1.0 and w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= 640 and y + h <= 480
        with Image.open(SAMPLE / "test" / f"{scene:06d}" / "rgb" / f"{im:06d}.png") as rgb:
            assert rgb.mode == "RGB" and rgb.size == (640, 480)


def test_bbox_gt_from_masks_equals_scene_gt_coco(tmp_path):
    """``dataset.task=bbox|segm``: the GT read from the sample's scene_gt_coco.json equals the GT the reader derives
    from its mask/ and mask_visib/ (calc_gt_coco.py's procedure) when the COCO files are absent."""
    import shutil

    from omegaconf import OmegaConf

    copy = tmp_path / "ycbv"
    shutil.copytree(SAMPLE, copy)
    for f in copy.glob("test/*/scene_gt_coco.json"):
        f.unlink()
    for task in ("bbox", "segm"):
        a = build_bop(OmegaConf.create({"name": "ycbv", "task": task, "data_root": str(SAMPLE)}))
        b = build_bop(OmegaConf.create({"name": "ycbv", "task": task, "data_root": str(copy)}))
        assert any(p.name == "scene_gt_coco.json" for p in a.gt_files())
        assert not any(p.name == "scene_gt_coco.json" for p in b.gt_files())
        assert len(a) == len(b) == 9
        n = 0
        for i in range(len(a)):
            ta, tb = a.annotations(i), b.annotations(i)
            assert ta.keys() == tb.keys()
            for k in ta:
                assert torch.equal(ta[k], tb[k]), (task, i, k)
            n += ta["gt_category_id"].numel()
        assert n == 48   # every GT instance of the 9 images has visible pixels


def _main(*args: str) -> int:
    """The CLI entry point in this process."""
    from bench.__main__ import main

    return main(["evaluate", "method=gdrnpp", "dataset=ycbv", "bootstrap.samples=0", *args])


@pytest.fixture(scope="module")
def model_run(checkpoint, tmp_path_factory) -> tuple[Path, dict]:
    """``evaluate method=gdrnpp dataset=ycbv weights=FILE dataset.detections=FILE`` in this process, devices=1."""
    tmp = tmp_path_factory.mktemp("gdrnpp_run")
    code = _main(f"weights={checkpoint}", f"dataset.detections={DETECTIONS}", *SMALL_ARGS, f"out={tmp / 'out'}",
                 f"leaderboard_dir={tmp / 'boards'}")
    assert code == 0
    return tmp, json.loads((tmp / "out" / "metrics.json").read_text())


@pytest.mark.slow
def test_cli_gdrnpp_end_to_end_on_the_bundled_sample(model_run, checkpoint, tmp_path):
    """Crop, network, Patch-PnP, SITE on the 9 images: AR keys in metrics.json and a leaderboard row; the BOP19
    CSV the run writes (one row per kept detection, the poses of ``predict_step``) scores the same AR through
    ``predictions=``."""
    run_dir, payload = model_run
    m = payload["metrics"]
    assert payload["num_samples"] == 9 and payload["bundled_sample"] is True
    assert all(0.0 <= m[k] <= 1.0 for k in AR_KEYS)
    rows = (run_dir / "boards" / "object6d" / "ycbv.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith("gdrnpp,")

    # the same pipeline on the same samples -> an official results CSV
    from omegaconf import OmegaConf

    ds = build_bop(OmegaConf.create({"name": "ycbv", "detections": str(DETECTIONS)}))
    with pytest.warns(UserWarning, match="extents from models_eval"):   # the sample has no models/ folder
        method = G.build(OmegaConf.create({"name": "gdrnpp", **SMALL_OPTIONS}), ds, checkpoint)
    preds = method.predict_step([ds[i] for i in range(len(ds))])
    detections = json.loads(DETECTIONS.read_text())
    for p in preds:
        scene, im = divmod(p.sample_id, G.IM_ID_LIMIT)
        kept = sorted({d["obj_id"] for d in detections[f"{scene}/{im}"]})   # top-1 per object (DET_TOPK_PER_OBJ 1)
        assert p.output["obj_id"].tolist() == kept
        assert torch.isfinite(p.output["R"]).all() and torch.isfinite(p.output["t"]).all()
        assert torch.allclose(torch.linalg.det(p.output["R"]), torch.ones(len(kept), dtype=torch.float64))
        assert (p.output["t"][:, 2] != 0).all()
    csv = run_dir / "out" / "gdrnpp_ycbv-test.csv"
    lines = csv.read_text().splitlines()
    assert lines[0] == "scene_id,im_id,obj_id,score,R,t,time"
    assert len(lines) - 1 == sum(len({d["obj_id"] for d in v}) for v in detections.values()) == 45
    written = {}
    for ln in lines[1:]:
        scene, im, obj, score, R, t, tm = ln.split(",")
        written.setdefault((int(scene), int(im)), []).append(
            (int(obj), float(score), [float(x) for x in R.split()], [float(x) for x in t.split()], float(tm)))
    for p in preds:  # the same poses, bit for bit, in the method's order; one time per image
        rows = written[divmod(p.sample_id, G.IM_ID_LIMIT)]
        assert [r[0] for r in rows] == p.output["obj_id"].tolist() and [r[1] for r in rows] == p.output["score"].tolist()
        assert [r[2] for r in rows] == p.output["R"].reshape(-1, 9).tolist()
        assert [r[3] for r in rows] == p.output["t"].tolist()
        assert len({r[4] for r in rows}) == 1 and rows[0][4] > 0
    assert _main(f"predictions={csv}", f"out={tmp_path / 'out2'}", f"leaderboard_dir={tmp_path / 'boards2'}") == 0
    m2 = json.loads((tmp_path / "out2" / "metrics.json").read_text())["metrics"]
    assert {k: m2[k] for k in AR_KEYS} == {k: m[k] for k in AR_KEYS}


@pytest.mark.slow
def test_cli_gdrnpp_two_processes_and_method_detections_alias(model_run, checkpoint, tmp_path):
    """``python -m bench`` with devices=2 (one image padded in) and ``method.detections=`` (an alias of
    ``dataset.detections=``): the metrics and the leaderboard row of the one-process run."""
    run_dir, payload = model_run
    out, boards = tmp_path / "out", tmp_path / "boards"
    r = run_cli("evaluate", "method=gdrnpp", "dataset=ycbv", f"weights={checkpoint}",
                f"method.detections={DETECTIONS}", *SMALL_ARGS, f"out={out}", f"leaderboard_dir={boards}",
                "bootstrap.samples=0", "devices=2", "batch_size=2", env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    p2 = json.loads((out / "metrics.json").read_text())
    assert p2["provenance"]["world_size"] == 2 and p2["metrics"] == payload["metrics"]
    # the results CSV: the same rows from two processes (the padded image once, images in order). The network is
    # float32 and batches of 2 on one thread per process sum in another order than the in-process run: the poses
    # agree to float32 rounding, not bit for bit (measured over the 45 rows: max |dR| 1.7e-6, max |dt| 1.2e-6 |t|;
    # the bounds below leave a factor of about 10); times are measured
    one, two = (_csv_rows(d / "gdrnpp_ycbv-test.csv") for d in (run_dir / "out", out))
    assert len(two) == len(one) == 45
    dr = max(float(np.abs(a[4] - b[4]).max()) for a, b in zip(one, two))
    dt = max(float(np.abs(a[5] - b[5]).max() / np.linalg.norm(a[5])) for a, b in zip(one, two))
    print(f"max |dR| {dr:.2e}, max |dt| / |t| {dt:.2e}")
    assert [a[:4] for a in one] == [b[:4] for b in two]  # scene, image, object, score
    assert dr <= 2e-5 and dt <= 1e-5
    assert _rows(boards / "object6d" / "ycbv.csv") == _rows(run_dir / "boards" / "object6d" / "ycbv.csv")


def _csv_rows(path: Path) -> list[tuple]:
    """(scene, im, obj, score, R (9), t (3)) per row of a BOP19 results CSV (the header checked)."""
    lines = path.read_text().splitlines()
    assert lines[0] == "scene_id,im_id,obj_id,score,R,t,time"
    out = []
    for ln in lines[1:]:
        scene, im, obj, score, R, t, _ = ln.split(",")
        out.append((int(scene), int(im), int(obj), float(score), np.array(R.split(), float), np.array(t.split(), float)))
    return out


def _rows(path: Path) -> list[dict]:
    """The leaderboard rows but their ``code`` column (a fingerprint of the checkout, which other work changes)."""
    import csv

    with open(path, newline="") as fh:
        return [{k: v for k, v in r.items() if k != "code"} for r in csv.DictReader(fh)]


def test_cli_gdrnpp_without_detections_is_one_line(checkpoint, tmp_path, capsys):
    assert _main(f"weights={checkpoint}", *SMALL_ARGS, f"out={tmp_path / 'out'}",
                 f"leaderboard_dir={tmp_path / 'lb'}") == 2
    err = capsys.readouterr().err.strip()
    assert "dataset.detections=FILE" in err and len(err.splitlines()) == 1 and not (tmp_path / "out").exists()
