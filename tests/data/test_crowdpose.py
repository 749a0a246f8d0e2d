"""The ``crowdpose`` dataset: official layout, bundled sample, GT checks, and the whole read -> score path
against xtcocotools ``COCOeval(gt, dt, 'keypoints_crowd', sigmas, use_area=False)``.

Golden numbers (tests/data/crowdpose_golden/golden.json) were produced by xtcocotools 1.14.3 with numpy
1.26.4 in a scratch venv outside the repo::

    python3.11 -m venv /tmp/venv-xtc && /tmp/venv-xtc/bin/pip install "numpy<2" xtcocotools
    /tmp/venv-xtc/bin/python gen.py golden.json

``gen.py`` (not in the repo) writes each case's GT to a file, ``COCO(gt_file)``, ``loadRes(deepcopy(dets))``,
``COCOeval(..., 'keypoints_crowd', sigmas, use_area=False)``, ``evaluate(); accumulate(); summarize()`` and
stores ``E.stats`` (AP AP50 AP75 AR AR50 AR75 APe APm APh). Sigmas: ``np.array([.79, .79, .72, .72, .62,
.62, 1.07, 1.07, .87, .87, .89, .89, .79, .79]) / 10`` (one case: mmpose's literals). Cases (inputs are
stored in the JSON, with the seed that generated them in the case name):

- ``sample_seed0..3``: the bundled real CrowdPose GT (mmpose's test file) with detections made from the GT
  by ``np.random.default_rng(seed)`` (noise 0 / 0.05 / 0.1 / 0.3 of sqrt(w h) / 10, random false positives,
  copies with all-zero confidences and score 1.0), shuffled; ``sample_seed2_mmpose_sigmas`` the same as seed 2
  with mmpose's sigma literals; ``sample_ids_negative_zero_seed7``: the sample GT with annotation ids
  -1, 0, -7, 5, 6 (xtcocotools counts a match to a negative id as unmatched, id 0 as matched) and
  detections from ``default_rng(7)``;
- ``random_seed0..19``: ``default_rng(1000 + seed)``: 3-8 images whose crowdIndex is drawn partly from the
  split boundaries (0.2, 0.8, 0.0, 1.0 ...), 0-5 GTs each (some crowd, some with no labelled keypoint, some
  with ``num_keypoints`` forced to 0, annotation ids including 0 and negatives when seed % 4 == 0), 0-2
  noisy detections per GT, 0-3 random detections per image or sometimes 20-29 (more than maxDets), some
  with all-zero or negative confidences, scores rounded to 0.1 (many ties), every fifth case with a
  ``bbox`` in the first record (loadRes then takes all detection areas from the boxes).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from bench.data.crowdpose import (
    ANN_FILE,
    BUNDLED_BOXES,
    METRIC_KEYS,
    CrowdPose,
    build_crowdpose,
    read_crowdpose_gt,
)
from bench.errors import InputError
from bench.registry import DATASETS
from metrics.crowdpose_ap import CrowdPoseAP, crowd_split
from metrics.skeletons import CROWDPOSE_SIGMAS

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "bench" / "data" / "samples" / "crowdpose"
CONF = REPO / "bench" / "conf" / "dataset" / "crowdpose.yaml"
GOLDEN = json.loads((Path(__file__).parent / "crowdpose_golden" / "golden.json").read_text())


def cfg(**over):
    c = OmegaConf.load(CONF)
    for k, v in over.items():
        c[k] = v
    return c


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("POSEARENA_DATA", raising=False)


def write_case(root: Path, gt, dets) -> tuple[Path, Path]:
    (root / "annotations").mkdir(parents=True)
    ann = root / ANN_FILE
    if gt == "sample":
        shutil.copy(SAMPLE / ANN_FILE, ann)
    else:
        ann.write_text(json.dumps(gt))
    res = root / "results.json"
    res.write_text(json.dumps(dets))
    return ann, res


def score(ds: CrowdPose, preds, order, batch: int, pad: int = 0) -> dict[str, float]:
    """Score like the harness: batches of samples, some repeated (DistributedSampler padding)."""
    m = ds.build_metric()
    idx = list(order) + list(order[:pad])
    for s in range(0, len(idx), batch):
        samples = [ds[i] for i in idx[s : s + batch]]
        outs = [(preds.get(x.sample_id) or ds.empty_prediction(x)).output for x in samples]
        m.update(outs, [x.target for x in samples])
    return {k: float(v) for k, v in m.compute().items()}


def test_registered_and_config():
    assert DATASETS["crowdpose"] is build_crowdpose
    c = OmegaConf.load(CONF)
    assert c.name == "crowdpose" and c.data_root is None and c.person_boxes is None and c.sigmas is None


def test_bundled_sample(no_env):
    ds = build_crowdpose(cfg())
    assert ds.bundled and ds.family == "human2d" and ds.metric_keys == METRIC_KEYS
    raw = json.loads((SAMPLE / ANN_FILE).read_text())
    assert [ds[i].sample_id for i in range(len(ds))] == sorted(im["id"] for im in raw["images"])
    by_id = {im["id"]: im for im in raw["images"]}
    for i in range(len(ds)):
        s = ds[i]
        im = by_id[s.sample_id]
        assert s.inputs["crowd_index"] == im["crowdIndex"] and float(s.target["crowd_index"]) == im["crowdIndex"]
        assert Path(s.inputs["image_path"]).is_file()
        anns = [a for a in raw["annotations"] if a["image_id"] == s.sample_id]
        assert s.target["ann_id"].tolist() == [a["id"] for a in anns]
        assert s.target["area"].tolist() == [a["bbox"][3] * a["bbox"][2] * 0.53 for a in anns]
        assert s.target["num_keypoints"].tolist() == [a["num_keypoints"] for a in anns]
    boxes = json.loads((SAMPLE / BUNDLED_BOXES).read_text())
    s = ds[0]
    assert s.inputs["person_boxes"].tolist() == [b["bbox"] for b in boxes if b["image_id"] == s.sample_id]


def test_sigmas():
    want = [0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089, 0.079, 0.079]
    assert torch.allclose(CROWDPOSE_SIGMAS, torch.tensor(want, dtype=torch.float64), rtol=0, atol=1e-15)


def test_crowd_split_boundaries():
    ci = torch.tensor([0.0, 0.19999, 0.2, 0.5, 0.79999, 0.8, 1.0], dtype=torch.float64)
    assert crowd_split(ci).tolist() == [0, 0, 1, 1, 1, 2, 2]


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=[c["name"] for c in GOLDEN["cases"]])
def test_matches_xtcocotools(case, tmp_path):
    root = tmp_path / "crowdpose"
    _, res = write_case(root, case["gt"], case["dets"])
    ds = CrowdPose(root, sigmas=case.get("sigmas"))
    preds = ds.read_predictions(res)
    want = dict(zip(GOLDEN["stat_keys"], case["stats"]))
    n = len(ds)
    got = score(ds, preds, range(n), batch=n)
    assert got.keys() == want.keys()
    for k, v in want.items():
        assert got[k] == pytest.approx(v, abs=1e-9, rel=0), k
    # batch size, order and padding repeats cannot change a bit
    g = torch.Generator().manual_seed(len(case["dets"]))
    order = torch.randperm(n, generator=g).tolist()
    assert score(ds, preds, order, batch=2, pad=min(n, 3)) == got


def test_zero_confidence_detections_are_dropped(tmp_path):
    """A perfect, all-zero-confidence copy with the top score would be a false positive if kept: AP stays 1."""
    raw = json.loads((SAMPLE / ANN_FILE).read_text())
    dets = []
    for a in raw["annotations"]:
        if a["num_keypoints"] > 0:
            kp = list(a["keypoints"])
            dets.append({"image_id": a["image_id"], "category_id": 1, "keypoints": kp, "score": 0.5})
            zero = list(kp)
            zero[2::3] = [0] * 14
            dets.append({"image_id": a["image_id"], "category_id": 1, "keypoints": zero, "score": 0.9})
    _, res = write_case(tmp_path / "c", "sample", dets)
    ds = CrowdPose(tmp_path / "c")
    got = score(ds, ds.read_predictions(res), range(len(ds)), batch=1)
    assert got["AP"] == 1.0 and got["APm"] == 1.0 and got["APe"] == -1.0 and got["APh"] == -1.0


def test_empty_results_and_metric_without_updates(tmp_path):
    _, res = write_case(tmp_path / "c", "sample", [])
    ds = CrowdPose(tmp_path / "c")
    got = score(ds, ds.read_predictions(res), range(len(ds)), batch=2)
    assert got == {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, "AR": 0.0, "AR50": 0.0, "AR75": 0.0,
                   "APe": -1.0, "APm": 0.0, "APh": -1.0}
    assert set(CrowdPoseAP().compute()) == set(METRIC_KEYS)


def test_gt_errors_name_record_and_field(tmp_path):
    raw = json.loads((SAMPLE / ANN_FILE).read_text())
    bad = json.loads(json.dumps(raw))
    del bad["images"][1]["crowdIndex"]
    p = tmp_path / "a.json"
    p.write_text(json.dumps(bad))
    with pytest.raises(InputError) as e:
        read_crowdpose_gt(p)
    assert (e.value.record, e.value.field) == ("images index 1", "crowdIndex")
    bad = json.loads(json.dumps(raw))
    bad["annotations"][2]["keypoints"] = bad["annotations"][2]["keypoints"][:-1]
    p.write_text(json.dumps(bad))
    with pytest.raises(InputError) as e:
        read_crowdpose_gt(p)
    assert (e.value.record, e.value.field) == ("annotations index 2", "keypoints")
    bad = json.loads(json.dumps(raw))
    bad["annotations"][3]["bbox"] = [1, 2, 3]
    p.write_text(json.dumps(bad))
    with pytest.raises(InputError) as e:
        read_crowdpose_gt(p)
    assert (e.value.record, e.value.field) == ("annotations index 3", "bbox")
    p.write_text("{not json")
    with pytest.raises(InputError):
        read_crowdpose_gt(p)


def test_prediction_errors(tmp_path):
    dets = [{"image_id": 103319, "category_id": 1, "keypoints": [1.0] * 42, "score": 0.5},
            {"image_id": 5, "category_id": 1, "keypoints": [1.0] * 42, "score": 0.5}]
    _, res = write_case(tmp_path / "c", "sample", dets)
    ds = CrowdPose(tmp_path / "c")
    with pytest.raises(InputError) as e:
        ds.read_predictions(res)
    assert (e.value.record, e.value.field) == ("index 1", "image_id")
    res.write_text(json.dumps([{"image_id": 103319, "category_id": 1, "keypoints": [1.0] * 51, "score": 0.5}]))
    with pytest.raises(InputError) as e:
        ds.read_predictions(res)
    assert (e.value.record, e.value.field) == ("index 0", "keypoints")


def test_missing_data_root_and_wrong_sigmas(tmp_path, no_env):
    with pytest.raises(InputError) as e:
        build_crowdpose(cfg(data_root=str(tmp_path)))
    assert e.value.field == "data_root" and "crowdpose_test.json" in e.value.problem
    with pytest.raises(InputError) as e:
        build_crowdpose(cfg(sigmas=[0.1] * 17))
    assert e.value.field == "dataset.sigmas"
