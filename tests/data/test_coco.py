"""The ``coco`` dataset: official layout, bundled sample, GT checks, and the whole read -> score path against
pycocotools run on the same files (``COCO(ann_file)``, ``loadRes(results_file)``, COCOeval keypoints)."""
from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from bench.data.coco import ANN_FILE, BUNDLED_BOXES, CocoKeypoints, build_coco, read_coco_keypoint_gt
from bench.errors import InputError
from bench.registry import DATASETS
from metrics.keypoint_ap import STAT_KEYS

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "bench" / "data" / "samples" / "coco"
CONF = REPO / "bench" / "conf" / "dataset" / "coco.yaml"


def cfg(**over):
    c = OmegaConf.load(CONF)
    for k, v in over.items():
        c[k] = v
    return c


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("POSEARENA_DATA", raising=False)


@pytest.fixture
def data_copy(tmp_path):
    root = tmp_path / "coco"
    shutil.copytree(SAMPLE, root)
    for p in root.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return root


def test_registered_and_config():
    assert DATASETS["coco"] is build_coco
    c = OmegaConf.load(CONF)
    assert c.name == "coco" and c.data_root is None and c.person_boxes is None


def test_bundled_sample_with_detector_boxes(no_env):
    ds = build_coco(cfg())
    assert ds.bundled and ds.family == "human2d" and ds.metric_keys == STAT_KEYS
    assert [ds[i].sample_id for i in range(len(ds))] == [785, 40083, 196141, 197388]
    boxes = json.loads((SAMPLE / BUNDLED_BOXES).read_text())
    for i in range(len(ds)):
        s = ds[i]
        want = [b["bbox"] for b in boxes if b["image_id"] == s.sample_id]
        assert s.inputs["person_boxes"].tolist() == want
        assert Path(s.inputs["image_path"]).is_file()
        assert s.inputs["width"] > 0 and s.inputs["height"] > 0
    t = ds[1].target  # image 40083: 3 people, one without keypoints
    assert t["keypoints"].shape == (3, 17, 3) and t["keypoints"].dtype == torch.float64
    assert t["num_keypoints"].tolist() == [14, 15, 0]
    assert t["ann_id"].tolist() == [198196, 230195, 1202706]
    assert list(ds.gt_files()) == [SAMPLE / ANN_FILE]
    assert len(ds.fingerprint()) == 16


def test_data_root_without_boxes_uses_gt_boxes(data_copy):
    ds = build_coco(cfg(data_root=str(data_copy)))
    assert not ds.bundled
    gt = json.loads((data_copy / ANN_FILE).read_text())
    s = ds[2]
    want = [a["bbox"] for a in gt["annotations"] if a["image_id"] == s.sample_id and a["num_keypoints"] > 0
            and not a["iscrowd"]]
    assert s.inputs["person_boxes"].tolist() == want
    assert s.inputs["person_scores"].tolist() == [1.0] * len(want)


def test_missing_data_root_file(tmp_path):
    with pytest.raises(InputError) as e:
        build_coco(cfg(data_root=str(tmp_path)))
    assert "person_keypoints_val2017.json" in str(e.value)


def _perturbed(gt: dict, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for a in gt["annotations"]:
        for _ in range(int(rng.integers(0, 3))):
            kp = np.asarray(a["keypoints"], dtype=np.float64).reshape(17, 3)
            kp[:, :2] += rng.normal(0, np.sqrt(a["area"]) * rng.uniform(0, 0.1), (17, 2))
            kp[:, 2] = rng.uniform(0, 1, 17)
            out.append({"image_id": a["image_id"], "category_id": 1, "keypoints": kp.ravel().tolist(),
                        "score": float(rng.choice([0.5, 0.7, rng.uniform()]))})
    for im in gt["images"][:3]:
        kp = np.stack([rng.uniform(0, 400, 17), rng.uniform(0, 300, 17), np.ones(17)], 1)
        out.append({"image_id": im["id"], "category_id": 1, "keypoints": kp.ravel().tolist(), "score": 0.5})
    rng.shuffle(out)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_read_and_score_matches_pycocotools_on_the_files(no_env, tmp_path, seed):
    ds = build_coco(cfg())
    gt = json.loads((SAMPLE / ANN_FILE).read_text())
    res_file = tmp_path / "results.json"
    res_file.write_text(json.dumps(_perturbed(gt, seed)))

    preds = ds.read_predictions(res_file)
    metric = ds.build_metric()
    samples = [ds[i] for i in range(len(ds))]
    for b in range(0, len(samples), 3):  # batches as the harness sends them
        batch = samples[b : b + 3]
        outs = [(preds.get(s.sample_id) or ds.empty_prediction(s)).output for s in batch]
        metric.update(outs, [s.target for s in batch])
    got = metric.compute()
    assert set(got) == set(STAT_KEYS)

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(SAMPLE / ANN_FILE))
        ev = COCOeval(coco, coco.loadRes(str(res_file)), "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    np.testing.assert_allclose([float(got[k]) for k in STAT_KEYS], ev.stats, rtol=0, atol=1e-12)


def test_empty_prediction(no_env):
    ds = build_coco(cfg())
    p = ds.empty_prediction(ds[0])
    assert p.sample_id == 785 and p.output["keypoints"].shape == (0, 17, 3) and p.output["scores"].shape == (0,)


# ------------------------------------------------------------------ malformed GT / boxes

def _break(gt: dict, case: str) -> tuple[str | None, str | None]:
    a = gt["annotations"][5]
    if case == "missing num_keypoints":
        del a["num_keypoints"]
        return "annotations index 5", "num_keypoints"
    if case == "short keypoints":
        a["keypoints"] = a["keypoints"][:-3]
        return "annotations index 5", "keypoints"
    if case == "string in keypoints":
        a["keypoints"][4] = "7"
        return "annotations index 5", "keypoints"
    if case == "unknown image":
        a["image_id"] = 1
        return "annotations index 5", "image_id"
    if case == "bad bbox":
        a["bbox"] = [1, 2, 3]
        return "annotations index 5", "bbox"
    if case == "bad area":
        a["area"] = None
        return "annotations index 5", "area"
    if case == "bad iscrowd":
        a["iscrowd"] = "no"
        return "annotations index 5", "iscrowd"
    if case == "other category":
        a["category_id"] = 3
        return "annotations index 5", "category_id"
    if case == "image without id":
        del gt["images"][2]["id"]
        return "images index 2", "id"
    if case == "no annotations":
        del gt["annotations"]
        return None, "annotations"
    raise AssertionError(case)


GT_CASES = ["missing num_keypoints", "short keypoints", "string in keypoints", "unknown image", "bad bbox",
            "bad area", "bad iscrowd", "other category", "image without id", "no annotations"]


@pytest.mark.parametrize("case", GT_CASES)
def test_malformed_gt_names_annotation_and_field(tmp_path, case):
    gt = json.loads((SAMPLE / ANN_FILE).read_text())
    where, field = _break(gt, case)
    p = tmp_path / "gt.json"
    p.write_text(json.dumps(gt))
    with pytest.raises(InputError) as e:
        read_coco_keypoint_gt(p)
    assert (e.value.record, e.value.field) == (where, field)
    assert e.value.file == str(p)


def test_nan_in_gt_keypoints(tmp_path):
    gt = json.loads((SAMPLE / ANN_FILE).read_text())
    gt["annotations"][3]["keypoints"][0] = float("nan")
    p = tmp_path / "gt.json"
    p.write_text(json.dumps(gt))  # writes the NaN token
    with pytest.raises(InputError) as e:
        read_coco_keypoint_gt(p)
    assert (e.value.record, e.value.field) == ("annotations index 3", "keypoints")


def test_gt_not_json(tmp_path):
    p = tmp_path / "gt.json"
    p.write_text('{"images": [')
    with pytest.raises(InputError) as e:
        read_coco_keypoint_gt(p)
    assert "not valid JSON" in e.value.problem


def test_malformed_person_boxes(data_copy, tmp_path):
    boxes = json.loads((SAMPLE / BUNDLED_BOXES).read_text())
    boxes[7]["bbox"] = [1.0, 2.0]
    bad = tmp_path / "boxes.json"
    bad.write_text(json.dumps(boxes))
    with pytest.raises(InputError) as e:
        CocoKeypoints(data_copy, person_boxes=bad)
    assert (e.value.record, e.value.field) == ("index 7", "bbox")


def test_wrong_number_of_sigmas(data_copy):
    with pytest.raises(InputError) as e:
        build_coco(cfg(data_root=str(data_copy), sigmas=[0.1] * 5))
    assert e.value.field == "dataset.sigmas"
