"""The ``mpii`` dataset and PCKh against mmpose 0.x ``TopDownMpiiDataset.evaluate``.

Golden numbers (tests/data/mpii_golden/, reproduced by ``tests/data/mpii_golden/gen_golden.py``; command and
commit in its PROVENANCE.md): the generator takes ``evaluate`` from
open-mmlab/mmpose at the parent of commit 63d7696c1 (``mmpose/datasets/datasets/top_down/
topdown_mpii_dataset.py``, the last 0.x version), ran its body unchanged (decorator stripped) with numpy
1.26.4 / scipy in a scratch venv, on

- ``mpii_gt_val.mat``: 60 synthetic persons from ``np.random.default_rng(2024)`` (joints uniform in
  [50, 900], 15% of joints missing, person 5 with no visible joint, head boxes of half-size 8-40 px around
  the head top; persons 0-9 with integer joints and a 12 x 16 px head box, so 0.6 x diagonal is exactly
  12.0), written with ``scipy.io.savemat`` in the official layout;
- five prediction sets (``default_rng(seed)``, seed 0..4): GT - 1 (mmpose's 0-based frame) plus Gaussian
  noise of 0 / 0.1 / 0.3 / 0.6 / 0.2 head sizes, rounded to 3 decimals, records shuffled; seed 2 puts the
  left hip 0.5 head sizes off along x; seed 4 puts every joint of persons 0-9 exactly 6 px = 0.5 head
  sizes off (a hit only with mmpose's ``<=``).

``golden.json`` holds the predictions (our results format) and mmpose's percentages; ours are fractions.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from bench.data.mpii import GT_FILE, JSON_FILE, Mpii, build_mpii, read_mpii_gt
from bench.errors import InputError
from bench.registry import DATASETS
from metrics.pckh import PCKH_KEYS

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "bench" / "data" / "samples" / "mpii"
CONF = REPO / "bench" / "conf" / "dataset" / "mpii.yaml"
GOLD_DIR = Path(__file__).parent / "mpii_golden"
GOLDEN = json.loads((GOLD_DIR / "golden.json").read_text())


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("POSEARENA_DATA", raising=False)


@pytest.fixture
def golden_ds(tmp_path) -> Mpii:
    (tmp_path / "annotations").mkdir()
    shutil.copy(GOLD_DIR / "mpii_gt_val.mat", tmp_path / GT_FILE)
    return Mpii(tmp_path)


def score(ds, preds, order, batch, pad=0):
    m = ds.build_metric()
    idx = list(order) + list(order[:pad])
    for s in range(0, len(idx), batch):
        samples = [ds[i] for i in idx[s : s + batch]]
        m.update([preds[x.sample_id].output for x in samples], [x.target for x in samples])
    return {k: float(v) for k, v in m.compute().items()}


def test_registered_and_bundled_sample(no_env):
    assert DATASETS["mpii"] is build_mpii
    ds = build_mpii(OmegaConf.load(CONF))
    assert ds.bundled and ds.metric_keys == PCKH_KEYS and len(ds) == 5
    persons = json.loads((SAMPLE / JSON_FILE).read_text())
    for i, p in enumerate(persons):
        s = ds[i]
        assert s.sample_id == i and Path(s.inputs["image_path"]).is_file()
        assert s.target["keypoints"].tolist() == [[x + 1.0, y + 1.0] for x, y in p["joints"]]
        assert s.target["visible"].tolist() == [bool(v) for v in p["joints_vis"]]


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=[c["name"] for c in GOLDEN["cases"]])
def test_matches_mmpose(case, golden_ds, tmp_path):
    p = tmp_path / "pred.json"
    p.write_text(json.dumps(case["predictions"]))
    preds = golden_ds.read_predictions(p)
    n = len(golden_ds)
    got = score(golden_ds, preds, range(n), batch=n)
    assert list(got) == list(PCKH_KEYS)
    for k in PCKH_KEYS:
        # tight: PCKh@0.1 is built from float32 per-joint values in mmpose (a ~1e-10 effect)
        assert got[k] == pytest.approx(case["percent"][k] / 100.0, abs=1e-14, rel=0), k
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0)).tolist()
    assert score(golden_ds, preds, order, batch=7, pad=5) == got


def test_gt_reader_errors(tmp_path):
    from scipy.io import loadmat, savemat

    m = loadmat(GOLD_DIR / "mpii_gt_val.mat")
    bad = tmp_path / "bad.mat"
    savemat(bad, {k: v for k, v in m.items() if k in ("dataset_joints", "jnt_missing", "pos_gt_src")})
    with pytest.raises(InputError) as e:
        read_mpii_gt(bad)
    assert e.value.field == "headboxes_src"
    savemat(bad, {**{k: m[k] for k in ("dataset_joints", "jnt_missing", "pos_gt_src")},
                  "headboxes_src": m["headboxes_src"][:, :, :3]})
    with pytest.raises(InputError) as e:
        read_mpii_gt(bad)
    assert e.value.field == "headboxes_src"
    bad.write_text("not a mat file")
    with pytest.raises(InputError):
        read_mpii_gt(bad)


@pytest.mark.parametrize("records, record, field", [
    ([{"index": 0, "keypoints": [[1, 2]] * 15}], "index 0", "keypoints"),
    ([{"index": 0, "keypoints": [[1, 2]] * 16}, {"index": 0, "keypoints": [[1, 2]] * 16}], "index 1", "index"),
    ([{"index": 60, "keypoints": [[1, 2]] * 16}], "index 0", "index"),
    ([{"index": "3", "keypoints": [[1, 2]] * 16}], "index 0", "index"),
    ([{"index": 1, "keypoints": [[1, "x"]] * 16}], "index 0", "keypoints"),
    ([5], "index 0", None),
])
def test_prediction_errors(records, record, field, golden_ds, tmp_path):
    p = tmp_path / "pred.json"
    p.write_text(json.dumps(records))
    with pytest.raises(InputError) as e:
        golden_ds.read_predictions(p)
    assert (e.value.record, e.value.field) == (record, field)


def test_missing_prediction_is_an_error(golden_ds, tmp_path):
    p = tmp_path / "pred.json"
    p.write_text(json.dumps([{"index": 0, "keypoints": [[1, 2]] * 16}]))
    preds = golden_ds.read_predictions(p)
    assert set(preds) == {0}
    with pytest.raises(InputError):
        golden_ds.empty_prediction(golden_ds[1])
