"""``dataset=ap10k``: AP-10K's 54 animal species as categories of one 17-keypoint skeleton, scored per category
and averaged as xtcocotools' ``COCOeval(gt, dt, 'keypoints', sigmas, use_area=True)`` with ``useCats=1`` (mmpose's
``CocoMetric`` for AP-10K), on mmpose's real test annotations and on synthetic GT with several species.

Golden numbers: tests/data/ap10k_golden/golden.json, made by ``gen_golden.py`` there with xtcocotools 1.14.3
(PROVENANCE.md): ``stats`` and each category's AP. Cases: ``ap10k_sample_seed0..2`` (``default_rng(700 + seed)``):
the bundled sample with noisy copies of both animals, some under another species' id, false positives of any
listed species, all-zero confidences, duplicates, score ties, a ``bbox`` in every record of seed 1;
``animals_seed0..5`` (``default_rng(800 + seed)``): 5 species listed out of order, one without GT, small to large
animals, crowd and unlabelled GT, annotation ids 0 and negative (even seeds), more than 20 detections of one
species in an image (seeds 2, 5), ``bbox`` in every record of seeds 1 and 4.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from bench.data import skeleton_keypoints as sk
from bench.data.base import SAMPLES_DIR
from bench.errors import InputError
from bench.registry import DATASETS
from metrics.xtcoco_category_ap import XtcocoCategoryKeypointAP
from tests.conftest import REPO, run_cli

CONF = REPO / "bench" / "conf" / "dataset"
GOLDEN = json.loads((Path(__file__).parent / "ap10k_golden" / "golden.json").read_text())
CASES = {c["name"]: c for c in GOLDEN["cases"]}
SKELETON_GOLDEN = json.loads((Path(__file__).parent / "skeleton_golden" / "golden.json").read_text())
# open-mmlab/mmpose @ 759b39c13 configs/_base_/datasets/ap10k.py: sigmas, and the flip pairs of its 'swap' names
MMPOSE_SIGMAS = [0.025, 0.025, 0.026, 0.035, 0.035, 0.079, 0.072, 0.062, 0.079, 0.072, 0.062, 0.107, 0.087, 0.089,
                 0.107, 0.087, 0.089]
MMPOSE_FLIP = ((0, 1), (5, 8), (6, 9), (7, 10), (11, 14), (12, 15), (13, 16))


def spec() -> sk.SkeletonSpec:
    return sk.skeleton_spec(OmegaConf.to_container(OmegaConf.load(CONF / "ap10k.yaml")))


def case_root(tmp: Path, case: dict) -> tuple[Path, Path]:
    s = spec()
    root = tmp / case["name"]
    (root / s.ann_file).parent.mkdir(parents=True)
    if case["gt"] == "sample":
        shutil.copy(SAMPLES_DIR / "ap10k" / s.ann_file, root / s.ann_file)
    else:
        (root / s.ann_file).write_text(json.dumps(case["gt"]))
    res = tmp / f"{case['name']}.json"
    res.write_text(json.dumps(case["dets"]))
    return root, res


def scored(ds, preds, order, batch: int, pad: int = 0) -> XtcocoCategoryKeypointAP:
    m = ds.build_metric()
    idx = list(order) + list(order[:pad])
    for s in range(0, len(idx), batch):
        samples = [ds[i] for i in idx[s : s + batch]]
        m.update([(preds.get(x.sample_id) or ds.empty_prediction(x)).output for x in samples],
                 [x.target for x in samples])
    return m


def test_ap10k_config_is_mmposes(monkeypatch):
    monkeypatch.delenv("POSEARENA_DATA", raising=False)
    assert DATASETS["ap10k"] is sk.build_skeleton_dataset
    ds = DATASETS["ap10k"](OmegaConf.load(CONF / "ap10k.yaml"))
    assert isinstance(ds, sk.CategoryKeypoints) and ds.bundled and ds.name == "ap10k" and ds.family == "animal2d"
    assert len(ds) == 2 and ds.gt.categories == tuple(range(1, 55)) and ds.gt.ann_category.tolist() == [26, 1]
    assert ds.gt.num_keypoints == 17 and ds.spec.use_area and ds.spec.per_category and ds.flip_pairs == MMPOSE_FLIP
    m = ds.build_metric()
    assert isinstance(m, XtcocoCategoryKeypointAP) and m.use_area and m.categories == tuple(range(1, 55))
    assert np.array_equal(m.sigmas.numpy(), np.array(MMPOSE_SIGMAS, dtype=np.float32))
    assert [ds[i].target["category_id"].tolist() for i in range(2)] == [[1], [26]]  # image 4, then image 37516


@pytest.mark.parametrize("name", list(CASES))
def test_matches_xtcocotools(name, tmp_path):
    case = CASES[name]
    root, res = case_root(tmp_path, case)
    ds = sk.CategoryKeypoints(root, spec())
    preds = ds.read_predictions(res)
    n = len(ds)
    m = scored(ds, preds, range(n), batch=n)
    got = {k: float(v) for k, v in m.compute().items()}
    for k, v in zip(GOLDEN["stat_keys"], case["stats"], strict=True):
        assert got[k] == pytest.approx(v, abs=1e-9, rel=0), k
    r = m.evaluate()
    assert [str(c) for c in r.categories] == sorted(case["category_ap"], key=int)
    for k, c in enumerate(r.categories):
        p = r.category_precision[:, :, k, 0]
        ap = float(p[p > -1].mean()) if bool((p > -1).any()) else -1.0
        assert ap == pytest.approx(case["category_ap"][str(c)], abs=1e-9, rel=0), c
    order = torch.randperm(n, generator=torch.Generator().manual_seed(n)).tolist()
    assert {k: float(v) for k, v in scored(ds, preds, order, batch=2, pad=min(n, 2)).compute().items()} == got


@pytest.mark.parametrize("name", ["hand5_seed0", "hand5_seed3", "hand5_seed5"])
def test_one_category_is_the_single_category_number(name, tmp_path):
    """per_category with a one-category file gives XtcocoKeypointAP's bits (recorded xtcocotools numbers)."""
    importlib.import_module("tests.data.skeleton_plugin.hand5_plugin")
    hand5 = sk.load_skeleton("hand5")
    case = next(c for c in SKELETON_GOLDEN["cases"] if c["name"] == name)
    root = tmp_path / "h"
    (root / hand5.ann_file).parent.mkdir(parents=True)
    (root / hand5.ann_file).write_text(json.dumps(case["gt"]))
    res = tmp_path / "res.json"
    res.write_text(json.dumps(case["dets"]))
    single = sk.SkeletonKeypoints(root, hand5)
    multi = sk.CategoryKeypoints(root, dataclasses.replace(hand5, per_category=True))
    a = scored(single, single.read_predictions(res), range(len(single)), 4).compute()
    b = scored(multi, multi.read_predictions(res), range(len(multi)), 4).compute()
    assert {k: float(v) for k, v in b.items()} == {k: float(v) for k, v in a.items()}
    for k, v in zip(SKELETON_GOLDEN["stat_keys"], case["stats"], strict=True):
        assert float(b[k]) == pytest.approx(v, abs=1e-9, rel=0), k


def _bad_results(tmp: Path, mutate) -> Path:
    dets = json.loads(json.dumps(CASES["ap10k_sample_seed2"]["dets"]))
    mutate(dets)
    p = tmp / "bad.json"
    p.write_text(json.dumps(dets))
    return p


@pytest.mark.parametrize(("mutate", "problem"), [
    (lambda d: d[3].pop("category_id"), "missing"),
    (lambda d: d[3].update(category_id=55), "category 55 is not in the ground truth's categories (54 ids from 1 to 54)"),
    (lambda d: d[3].update(category_id="7"), "expected an integer, found '7'"),
    (lambda d: (d[1].update(score=None), d[3].update(category_id=0)), "expected a number, found None"),
])
def test_bad_results_name_record_and_field(mutate, problem, tmp_path, monkeypatch):
    monkeypatch.delenv("POSEARENA_DATA", raising=False)
    ds = DATASETS["ap10k"](OmegaConf.load(CONF / "ap10k.yaml"))
    path = _bad_results(tmp_path, mutate)
    with pytest.raises(InputError) as e:
        ds.read_predictions(path)
    want = ("index 1", "score") if "score" in problem or "number" in problem else ("index 3", "category_id")
    assert (e.value.record, e.value.field, e.value.problem) == (*want, problem)
    assert str(path) in e.value.line()


def test_slow_path_reads_what_the_fast_path_reads(tmp_path, monkeypatch):
    monkeypatch.delenv("POSEARENA_DATA", raising=False)
    ds = DATASETS["ap10k"](OmegaConf.load(CONF / "ap10k.yaml"))
    fast = ds.read_predictions(_bad_results(tmp_path, lambda d: None))
    slow = ds.read_predictions(_bad_results(tmp_path, lambda d: d[0].update(extra=[[1]])))  # nested: slow path
    assert fast.keys() == slow.keys()
    for i in fast:
        assert fast[i].output.keys() == slow[i].output.keys() >= {"category_id", "keypoints"}
        for k, v in fast[i].output.items():
            assert torch.equal(v, slow[i].output[k]), k


def test_bad_gt_and_options_are_refused(tmp_path):
    s = spec()
    gt = json.loads((SAMPLES_DIR / "ap10k" / s.ann_file).read_text())
    root = tmp_path / "a"
    (root / s.ann_file).parent.mkdir(parents=True)
    for mutate, where, field in (
        (lambda d: d["annotations"][1].update(category_id=99), "annotations index 1", "category_id"),
        (lambda d: d["categories"][3].update(id=1), "categories index 3", "id"),
        (lambda d: d["annotations"][0].pop("area"), "annotations index 0", "area"),
    ):
        bad = json.loads(json.dumps(gt))
        mutate(bad)
        (root / s.ann_file).write_text(json.dumps(bad))
        with pytest.raises(InputError) as e:
            sk.CategoryKeypoints(root, s)
        assert (e.value.record, e.value.field) == (where, field)
    with pytest.raises(InputError) as e:
        sk.skeleton_spec({**OmegaConf.to_container(OmegaConf.load(CONF / "ap10k.yaml")), "per_category": "yes"})
    assert e.value.field == "dataset.per_category"
    with pytest.raises(InputError) as e:
        DATASETS["ap10k"](OmegaConf.merge(OmegaConf.load(CONF / "ap10k.yaml"), {"person_boxes": "boxes.json"}))
    assert e.value.field == "dataset.person_boxes"


def test_ap10k_sample_through_the_cli(tmp_path, monkeypatch):
    monkeypatch.delenv("POSEARENA_DATA", raising=False)
    case = CASES["ap10k_sample_seed2"]
    res = tmp_path / "res.json"
    res.write_text(json.dumps(case["dets"]))
    r = run_cli("evaluate", "method=mine", "dataset=ap10k", f"predictions={res}", f"out={tmp_path / 'out'}",
                f"leaderboard_dir={tmp_path / 'lb'}", "bootstrap.samples=50")
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["dataset"] == "ap10k" and m["num_samples"] == 2
    for k, v in zip(GOLDEN["stat_keys"], case["stats"], strict=True):
        assert m["metrics"][k] == pytest.approx(v, abs=1e-9, rel=0), k
    assert (tmp_path / "lb" / "animal2d" / "ap10k.csv").read_text().splitlines()[1].startswith("mine,,")
