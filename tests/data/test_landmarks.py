"""Face and hand landmark readers (bench/data/landmarks.py, bench/predictions/landmarks_json.py) against mmpose.

Golden numbers (tests/data/landmarks_golden/): mmpose 1.x's own dataset classes and evaluators (``NME``,
``PCKAccuracy``, ``AUC``, ``EPE`` of open-mmlab/mmpose @ 759b39c) and PIPNet's ``compute_fr_and_auc`` run on
mmpose's real test annotations plus synthetic instances (unlabelled points, boxes over the image border, a zero
normaliser, instances mmpose drops); command and versions in its PROVENANCE.md.
"""
from __future__ import annotations

import json
import random
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from bench.data.landmarks import SPECS, LandmarkDataset
from bench.errors import InputError
from bench.registry import DATASETS, load_datasets
from bench.replay import PredictionsFile

load_datasets()
REPO = Path(__file__).resolve().parents[2]
GOLDEN_DIR = REPO / "tests" / "data" / "landmarks_golden"
GOLDEN = json.loads((GOLDEN_DIR / "golden.json").read_text())
TOL = 1e-12  # acceptance asks 1e-6; the float32 distances and their pairwise sum are reproduced bit for bit


def _root(tmp: Path, name: str, gt: dict | None = None) -> Path:
    (tmp / "annotations").mkdir(parents=True, exist_ok=True)
    dst = tmp / SPECS[name].ann_file
    if gt is None:
        shutil.copy(GOLDEN_DIR / GOLDEN["datasets"][name]["gt_file"], dst)
    else:
        dst.write_text(json.dumps(gt))
    return tmp


def _golden_gt(name: str) -> dict:
    return json.loads((GOLDEN_DIR / GOLDEN["datasets"][name]["gt_file"]).read_text())


def _score(ds: LandmarkDataset, records: list[dict], path: Path) -> dict[str, float]:
    """The harness's replay of a results file: shuffled batches of 3, with two padding repeats."""
    path.write_text(json.dumps(records))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # records of dropped instances (checked in their own test)
        method = PredictionsFile(ds.read_predictions(path), ds)
    m = ds.build_metric()
    order = list(range(len(ds)))
    random.Random(1).shuffle(order)
    order += order[:2]
    for s in range(0, len(order), 3):
        batch = [ds[i] for i in order[s:s + 3]]
        m.update([p.output for p in method.predict_step(batch)], [x.target for x in batch])
    return {k: float(v) for k, v in m.compute().items()}


@pytest.mark.parametrize("name", list(GOLDEN["datasets"]))
def test_matches_mmpose(name, tmp_path):
    ds = LandmarkDataset(SPECS[name], _root(tmp_path, name))
    # the instances mmpose scores, in its data-list order (drops: crowd, nothing labelled, empty box)
    assert [i.ann_id for i in ds.instances] == GOLDEN["datasets"][name]["scored_ids"]
    assert len(ds.dropped) == len(_golden_gt(name)["annotations"]) - len(ds)
    for case in GOLDEN["datasets"][name]["cases"]:
        got = _score(ds, case["predictions"], tmp_path / "pred.json")
        assert list(got) == list(ds.metric_keys)
        for key, want in case["expected"].items():
            assert got[key] == pytest.approx(want, rel=TOL, abs=TOL), (case["name"], key)


def test_golden_cases_exercise_the_edges():
    """What the golden files hold: boxes over the border, unlabelled points, drops, failures, exact thresholds."""
    for name in ("cofw", "onehand10k", "rhd"):
        gt = _golden_gt(name)
        widths = {im["id"]: im["width"] for im in gt["images"]}
        assert any(a["bbox"][0] < 0 for a in gt["annotations"]), name
        assert any(a["bbox"][0] + a["bbox"][2] > widths[a["image_id"]] for a in gt["annotations"]), name
    for name in GOLDEN["datasets"]:
        gt = _golden_gt(name)
        vis = [torch.tensor(a["keypoints"], dtype=torch.float64).reshape(-1, 3)[:, 2] for a in gt["annotations"]]
        assert any(bool((v == 0).any()) and bool((v != 0).any()) for v in vis), name
        assert any(a.get("iscrowd") for a in gt["annotations"]), name
    faces = [c["expected"] for n in ("300w", "wflw", "cofw", "aflw") for c in GOLDEN["datasets"][n]["cases"]]
    assert any(0 < e["FR@0.1"] < 1 for e in faces)
    hands = [c["expected"] for n in ("onehand10k", "rhd") for c in GOLDEN["datasets"][n]["cases"]]
    assert any(0 < e["PCK"] < 1 for e in hands)


def test_strict_threshold_on_exact_offsets(tmp_path):
    """Hand case 2 puts a third of the keypoints exactly 0.2 x box size away: mmpose's strict ``<`` on float32
    distances decides them, and a ``<=`` would score more hits (so the golden does test the comparison)."""
    from metrics.landmarks import mean_valid_pck, pck_per_keypoint

    ds = LandmarkDataset(SPECS["onehand10k"], _root(tmp_path, "onehand10k"))
    case = GOLDEN["datasets"]["onehand10k"]["cases"][2]
    (tmp_path / "p.json").write_text(json.dumps(case["predictions"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        preds = ds.read_predictions(tmp_path / "p.json")
    m = ds.build_metric()
    m.update([preds[i].output for i in range(len(ds))], [ds[i].target for i in range(len(ds))])
    d = m.evaluate().pck
    strict = float(mean_valid_pck(pck_per_keypoint(d, 0.2)))
    assert strict == pytest.approx(case["expected"]["PCK"], rel=TOL)
    assert bool(((d == torch.tensor(0.2, dtype=torch.float32))).any())
    assert float(mean_valid_pck(pck_per_keypoint(d, 0.2 + 1e-6))) > strict


def test_bundled_samples_build(monkeypatch):
    monkeypatch.delenv("POSEARENA_DATA", raising=False)
    sizes = {"300w": 2, "wflw": 4, "cofw": 2, "aflw": 2, "onehand10k": 4, "rhd": 3}
    for name, n in sizes.items():
        ds = DATASETS[name](OmegaConf.load(REPO / "bench" / "conf" / "dataset" / f"{name}.yaml"))
        assert ds.bundled and len(ds) == n and ds.family == SPECS[name].family
        s = ds[0]
        assert s.sample_id == 0 and s.target["keypoints"].dtype == torch.float32
        assert s.target["keypoints"].shape == (SPECS[name].num_keypoints, 2)


def test_normalisers_follow_each_dataset():
    """300W: GT distance of keypoints 36/45; AFLW: 200 x scale (the box mmpose builds); hands: the clipped box."""
    ds = DATASETS["300w"](OmegaConf.create({"data_root": None}))
    raw = json.loads((ds.ann_path).read_text())["annotations"][0]
    kp = torch.tensor(raw["keypoints"], dtype=torch.float32).reshape(-1, 3)
    d = kp[36, :2] - kp[45, :2]
    assert float(ds[0].target["norm"]) == pytest.approx(float(d.double().norm()), rel=1e-6)
    aflw = DATASETS["aflw"](OmegaConf.create({"data_root": None}))
    assert [float(aflw[i].target["norm"]) for i in range(2)] == [362.0, 128.0]  # scale 1.81, 0.64 (= box_size)
    hand = DATASETS["onehand10k"](OmegaConf.create({"data_root": None}))
    assert float(hand[0].target["norm"]) == 194.0  # bbox [63, 92, 99, 194] inside a 238 x 358 image


def _write(tmp: Path, name: str, mutate) -> Path:
    gt = _golden_gt(name)
    mutate(gt)
    return _root(tmp, name, gt)


@pytest.mark.parametrize("name,mutate,record,field", [
    ("300w", lambda g: g["annotations"][1].pop("center"), "annotations[1]", "center"),
    ("aflw", lambda g: g["annotations"][0].pop("box_size"), "annotations[0]", "box_size"),
    ("wflw", lambda g: g["annotations"][2]["keypoints"].pop(), "annotations[2]", "keypoints"),
    ("cofw", lambda g: g["annotations"][0]["bbox"].pop(), "annotations[0]", "bbox"),
    ("rhd", lambda g: g["annotations"][3].update(id=g["annotations"][0]["id"]), "annotations[3]", "id"),
    ("onehand10k", lambda g: g["images"][1].update(width="wide"), "images[1]", "width"),
])
def test_bad_annotation_files_name_record_and_field(tmp_path, name, mutate, record, field):
    with pytest.raises(InputError) as e:
        LandmarkDataset(SPECS[name], _write(tmp_path, name, mutate))
    assert (e.value.record, e.value.field) == (record, field)


def test_data_root_without_the_annotation_file(tmp_path):
    with pytest.raises(InputError, match="annotations/face_landmarks_wflw_test.json"):
        DATASETS["wflw"](OmegaConf.create({"data_root": str(tmp_path)}))


@pytest.fixture()
def cofw(tmp_path):
    ds = LandmarkDataset(SPECS["cofw"], _root(tmp_path, "cofw"))
    return ds, GOLDEN["datasets"]["cofw"]["cases"][0]["predictions"]


def _bad(tmp_path, ds, records) -> InputError:
    p = tmp_path / "bad.json"
    p.write_text(records if isinstance(records, str) else json.dumps(records))
    with pytest.raises(InputError) as e:
        ds.read_predictions(p)
    assert str(p) in e.value.line()
    return e.value


def test_bad_predictions_name_record_and_field(tmp_path, cofw):
    ds, recs = cofw
    assert _bad(tmp_path, ds, "{oops").record.startswith("line")
    assert _bad(tmp_path, ds, {"id": 1}).problem.startswith("expected a JSON list")
    e = _bad(tmp_path, ds, recs[:-1])
    assert e.field == "id" and "no prediction for annotation" in e.problem
    e = _bad(tmp_path, ds, recs + [dict(recs[0])])
    assert (e.record, e.field) == (f"index {len(recs)}", "id") and "duplicate" in e.problem
    e = _bad(tmp_path, ds, recs[:1] + [{"id": 99999999, "keypoints": recs[1]["keypoints"]}] + recs[2:])
    assert (e.record, e.field) == ("index 1", "id") and "not in the ground truth" in e.problem
    e = _bad(tmp_path, ds, [{**recs[0], "keypoints": recs[0]["keypoints"][:-1]}] + recs[1:])
    assert (e.record, e.field) == ("index 0", "keypoints") and "expected 29" in e.problem
    bad_kp = [list(p) for p in recs[2]["keypoints"]]
    bad_kp[5] = [float("nan"), 1.0]
    e = _bad(tmp_path, ds, recs[:2] + [{**recs[2], "keypoints": bad_kp}] + recs[3:])
    assert (e.record, e.field) == ("index 2", "keypoints") and "keypoint 5" in e.problem
    e = _bad(tmp_path, ds, [{"keypoints": []}])
    assert (e.record, e.field) == ("index 0", "id")


def test_predictions_for_dropped_instances_are_ignored_with_a_warning(tmp_path, cofw):
    ds, recs = cofw
    dropped = sorted(ds.dropped)
    p = tmp_path / "p.json"
    p.write_text(json.dumps(recs + [{"id": dropped[0], "keypoints": recs[0]["keypoints"]}]))
    with pytest.warns(UserWarning, match=f"id {dropped[0]}"):
        preds = ds.read_predictions(p)
    assert sorted(preds) == list(range(len(ds)))
    assert preds[0].output["keypoints"].dtype == torch.float32
