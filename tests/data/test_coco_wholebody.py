"""The ``coco_wholebody`` dataset: official layout, bundled sample, GT and results checks, and the whole read ->
score path against xtcocotools 1.14.3 as mmpose's ``CocoWholeBodyMetric`` calls it (six ``COCOeval`` runs).

Golden numbers: tests/data/wholebody_golden/golden.json, made by ``gen_golden.py`` there with the reference
itself (PROVENANCE.md). Cases: ``sample_seed0..4``, the bundled real GT (mmpose's test file) with detections
from ``np.random.default_rng(seed)``: noisy copies of the GT people (0-2 each), random false-positive people,
exact duplicates, scores rounded to 0.1 (ties), per-part score keys on a fraction of the records, parts whose
confidences are all zero (dropped from that part only), a ``bbox`` in every record of seed 4;
``random_seed0..11`` (``default_rng(100 + seed)``): synthetic GT with unlabelled parts, ``*_valid`` flags that
disagree with the labels (invalid hands that are labelled, valid ones that are all zeros), crowd people,
people with no body keypoint, annotation ids 0 and negative (seeds 0, 3, 6, 9), more than 20 detections in an
image (seeds 1, 5, 9), areas across the COCO ranges. tests/data/test_xtcocotools_live.py compares the same
with xtcocotools itself where it is installed.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from bench.data.coco_wholebody import ANN_FILE, CocoWholeBody, build_coco_wholebody, read_wholebody_gt
from bench.errors import InputError
from bench.registry import DATASETS
from metrics.wholebody_ap import METRIC_KEYS, PART_NAMES, PARTS, WHOLEBODY_SIGMAS, WholeBodyAP
from tests.data.wholebody_golden import gen_golden

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "bench" / "data" / "samples" / "coco_wholebody"
CONF = REPO / "bench" / "conf" / "dataset" / "coco_wholebody.yaml"
GOLDEN = json.loads((Path(__file__).parent / "wholebody_golden" / "golden.json").read_text())
CASES = {c["name"]: c for c in GOLDEN["cases"]}


def write_case(root: Path, gt, dets) -> Path:
    (root / "annotations").mkdir(parents=True)
    if gt == "sample":
        shutil.copy(SAMPLE / ANN_FILE, root / ANN_FILE)
    else:
        (root / ANN_FILE).write_text(json.dumps(gt))
    res = root / "results.json"
    res.write_text(json.dumps(dets))
    return res


def score(ds: CocoWholeBody, preds, order, batch: int, pad: int = 0) -> dict[str, float]:
    """Score like the harness: batches of samples, some repeated (DistributedSampler padding)."""
    m = ds.build_metric()
    idx = list(order) + list(order[:pad])
    for s in range(0, len(idx), batch):
        samples = [ds[i] for i in idx[s : s + batch]]
        m.update([(preds.get(x.sample_id) or ds.empty_prediction(x)).output for x in samples],
                 [x.target for x in samples])
    return {k: float(v) for k, v in m.compute().items()}


def expected(case: dict) -> dict[str, float]:
    want = {f"{p}/{k}": v for p in GOLDEN["parts"] for k, v in zip(GOLDEN["stat_keys"], case["stats"][p])}
    return {"AP": want["wholebody/AP"], "AR": want["wholebody/AR"], **want}


def test_registered_config_and_keys():
    assert DATASETS["coco_wholebody"] is build_coco_wholebody
    c = OmegaConf.load(CONF)
    assert c.name == "coco_wholebody" and c.data_root is None and c.person_boxes is None
    assert len(METRIC_KEYS) == 62 and METRIC_KEYS[:2] == ("AP", "AR") and "face/AP" in METRIC_KEYS
    assert "wholebody/ARm" in METRIC_KEYS and PART_NAMES == tuple(GOLDEN["parts"])
    assert [(lo, hi) for _, lo, hi, _ in PARTS] == [(0, 17), (17, 23), (23, 91), (91, 112), (112, 133), (0, 133)]


def test_sigmas_are_mmposes_float32():
    assert WHOLEBODY_SIGMAS.dtype == torch.float32
    assert np.array_equal(WHOLEBODY_SIGMAS.numpy(), np.array(gen_golden.SIGMAS, dtype=np.float32))


def test_bundled_sample(monkeypatch):
    monkeypatch.delenv("POSEARENA_DATA", raising=False)
    ds = build_coco_wholebody(OmegaConf.load(CONF))
    assert ds.bundled and ds.family == "wholebody2d" and ds.metric_keys == METRIC_KEYS
    raw = json.loads((SAMPLE / ANN_FILE).read_text())
    assert [ds[i].sample_id for i in range(len(ds))] == sorted(im["id"] for im in raw["images"])
    for i in range(len(ds)):
        s = ds[i]
        assert Path(s.inputs["image_path"]).is_file()
        anns = [a for a in raw["annotations"] if a["image_id"] == s.sample_id]
        assert s.target["ann_id"].tolist() == [a["id"] for a in anns]
        flat = [a["keypoints"] + a["foot_kpts"] + a["face_kpts"] + a["lefthand_kpts"] + a["righthand_kpts"] for a in anns]
        assert s.target["keypoints"].reshape(len(anns), -1).tolist() == flat
        assert s.target["area"].tolist() == [a["area"] for a in anns]


@pytest.mark.parametrize("name", list(CASES))
def test_matches_xtcocotools(name, tmp_path):
    case = CASES[name]
    res = write_case(tmp_path / "wb", case["gt"], case["dets"])
    ds = CocoWholeBody(tmp_path / "wb")
    preds = ds.read_predictions(res)
    n = len(ds)
    got = score(ds, preds, range(n), batch=n)
    want = expected(case)
    assert list(got) == list(METRIC_KEYS)
    for k, v in want.items():
        assert got[k] == pytest.approx(v, abs=1e-9, rel=0), k
    g = torch.Generator().manual_seed(len(case["dets"]))
    order = torch.randperm(n, generator=g).tolist()
    assert score(ds, preds, order, batch=2, pad=min(n, 3)) == got  # batches, order and padding: the same bits


def test_part_score_keys_rank_their_part(tmp_path):
    """A face false positive ranked first by its ``face_score`` costs face AP; ranked below the true detection it
    costs nothing (the same face AP as the true detection alone); the body ranks by ``score`` whatever
    ``face_score`` says."""
    raw = json.loads((SAMPLE / ANN_FILE).read_text())
    a = next(a for a in raw["annotations"] if a["id"] == 437295)  # labelled body, face, both hands, feet
    det = {k: list(a[k]) for k in ("keypoints", "foot_kpts", "face_kpts", "lefthand_kpts", "righthand_kpts")}
    good = {"image_id": a["image_id"], "category_id": 1, **det, "score": 0.5}
    # far from every person (an unlabelled face matches anything within twice its person's box, and is ignored)
    bad = dict(good, face_kpts=[v + 2000.0 if i % 3 != 2 else v for i, v in enumerate(a["face_kpts"])],
               keypoints=[v + 2000.0 if i % 3 != 2 else v for i, v in enumerate(a["keypoints"])], score=0.4)
    results = {}
    for name, dets in (("alone", [good]), ("first", [good, dict(bad, face_score=0.9)]),
                       ("last", [good, dict(bad, face_score=0.1)])):
        res = write_case(tmp_path / name, "sample", dets)
        ds = CocoWholeBody(tmp_path / name)
        results[name] = score(ds, ds.read_predictions(res), range(len(ds)), batch=4)
    assert results["last"]["face/AP"] == results["alone"]["face/AP"] > results["first"]["face/AP"] > 0
    assert results["first"]["body/AP"] == results["last"]["body/AP"]


def test_empty_results_and_metric_without_updates(tmp_path):
    res = write_case(tmp_path / "wb", "sample", [])
    ds = CocoWholeBody(tmp_path / "wb")
    got = score(ds, ds.read_predictions(res), range(len(ds)), batch=3)
    assert got["AP"] == 0.0 and got["face/AR"] == 0.0 and got["body/APl"] == 0.0
    assert set(WholeBodyAP().compute()) == set(METRIC_KEYS)


def _sample_raw():
    return json.loads((SAMPLE / ANN_FILE).read_text())


@pytest.mark.parametrize("field, value, problem", [
    ("lefthand_kpts", None, "63 finite numbers"),
    ("face_kpts", [1.0] * 10, "204 finite numbers"),
    ("foot_kpts", "x", "18 finite numbers"),
    ("bbox", [1, 2, 3], "[x, y, w, h]"),
])
def test_gt_errors_name_record_and_field(tmp_path, field, value, problem):
    bad = _sample_raw()
    if value is None:
        del bad["annotations"][2][field]
    else:
        bad["annotations"][2][field] = value
    p = tmp_path / "a.json"
    p.write_text(json.dumps(bad))
    with pytest.raises(InputError) as e:
        read_wholebody_gt(p)
    assert (e.value.record, e.value.field) == ("annotations index 2", field) and problem in e.value.problem


def _rec(**over):
    r = {"image_id": 785, "category_id": 1, "keypoints": [1.0] * 51, "foot_kpts": [1.0] * 18,
         "face_kpts": [1.0] * 204, "lefthand_kpts": [1.0] * 63, "righthand_kpts": [1.0] * 63, "score": 0.5}
    r.update(over)
    return {k: v for k, v in r.items() if v is not None}


@pytest.mark.parametrize("bad, field", [
    (_rec(face_kpts=None), "face_kpts"),
    (_rec(righthand_kpts=[1.0] * 62), "righthand_kpts"),
    (_rec(foot_kpts=[1.0] * 17 + [float("nan")]), "foot_kpts"),
    (_rec(lefthand_score="high"), "lefthand_score"),
    (_rec(image_id=5), "image_id"),
    (_rec(category_id=2), "category_id"),
    (_rec(score=None), "score"),
])
def test_prediction_errors_name_record_and_field(tmp_path, bad, field):
    res = write_case(tmp_path / "wb", "sample", [_rec(), bad])
    ds = CocoWholeBody(tmp_path / "wb")
    with pytest.raises(InputError) as e:
        ds.read_predictions(res)
    assert (e.value.record, e.value.field) == ("index 1", field)
    res.write_text("{not json")
    with pytest.raises(InputError):
        ds.read_predictions(res)


def test_missing_data_root(tmp_path, monkeypatch):
    monkeypatch.delenv("POSEARENA_DATA", raising=False)
    c = OmegaConf.load(CONF)
    c.data_root = str(tmp_path)
    with pytest.raises(InputError) as e:
        build_coco_wholebody(c)
    assert e.value.field == "data_root" and "coco_wholebody_val_v1.0.json" in e.value.problem
