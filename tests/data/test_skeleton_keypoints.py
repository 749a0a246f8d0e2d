"""Keypoint AP of any skeleton from a dataset config: ``dataset=halpe`` (136 keypoints), ``ochuman``, ``aic`` (14
keypoints, ``use_area: false``) and ``humanart`` on mmpose's real test annotations, and a user-defined 5-keypoint
skeleton registered by a plugin (``dataset=keypoints dataset.skeleton=hand5``, ``use_area: false``), against
xtcocotools as mmpose's ``CocoMetric`` calls it.

Golden numbers: tests/data/skeleton_golden/golden.json, made by ``gen_golden.py`` there with xtcocotools 1.14.3
(PROVENANCE.md). Cases: ``halpe_sample_seed0..2`` (``np.random.default_rng(seed)``): the bundled Halpe GT with
noisy copies of the people, false positives, records with every confidence 0, duplicates, score ties, a
``bbox`` in every record of seed 2; ``hand5_seed0..7`` (``default_rng(200 + seed)``): synthetic GT without
``area`` (0.53 * w * h), crowd hands, hands with no labelled keypoint, annotation ids 0 and negative (even
seeds), more than 20 detections in an image (seeds 3, 7); ``{ochuman,aic,humanart}_sample_seed0..2``
(``default_rng(300|400|500 + seed)``): the bundled samples as the Halpe cases, ``bbox`` in every record of seed 1.
"""
from __future__ import annotations

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
from metrics.xtcoco_ap import STAT_KEYS
from tests.conftest import REPO, run_cli

CONF = REPO / "bench" / "conf" / "dataset"
GOLDEN = json.loads((Path(__file__).parent / "skeleton_golden" / "golden.json").read_text())
CASES = {c["name"]: c for c in GOLDEN["cases"]}
PLUGIN = "tests.data.skeleton_plugin.hand5_plugin"
HALPE_GT = REPO / "bench" / "data" / "samples" / "halpe" / "annotations" / "halpe_val_v1.json"


@pytest.fixture(scope="module")
def hand5():
    importlib.import_module(PLUGIN)
    return sk.load_skeleton("hand5")


def case_root(tmp: Path, case: dict, spec: sk.SkeletonSpec) -> tuple[Path, Path]:
    root = tmp / case["name"]
    (root / spec.ann_file).parent.mkdir(parents=True)
    if case["gt"] == "sample":
        shutil.copy(SAMPLES_DIR / spec.sample / spec.ann_file, root / spec.ann_file)
    else:
        (root / spec.ann_file).write_text(json.dumps(case["gt"]))
    res = tmp / f"{case['name']}.json"
    res.write_text(json.dumps(case["dets"]))
    return root, res


def spec_of(name: str) -> sk.SkeletonSpec:
    if name == "hand5":
        importlib.import_module(PLUGIN)
        return sk.load_skeleton("hand5")
    return sk.skeleton_spec(OmegaConf.to_container(OmegaConf.load(CONF / f"{name}.yaml")))


def score(ds, preds, order, batch: int, pad: int = 0) -> dict[str, float]:
    m = ds.build_metric()
    idx = list(order) + list(order[:pad])
    for s in range(0, len(idx), batch):
        samples = [ds[i] for i in idx[s : s + batch]]
        m.update([(preds.get(x.sample_id) or ds.empty_prediction(x)).output for x in samples],
                 [x.target for x in samples])
    return {k: float(v) for k, v in m.compute().items()}


def test_halpe_config_is_mmposes_skeleton(monkeypatch):
    monkeypatch.delenv("POSEARENA_DATA", raising=False)
    assert DATASETS["halpe"] is sk.build_skeleton_dataset and DATASETS["keypoints"] is sk.build_skeleton_dataset
    ds = DATASETS["halpe"](OmegaConf.load(CONF / "halpe.yaml"))
    assert ds.bundled and ds.name == "halpe" and ds.family == "human2d" and len(ds) == 4
    spec = ds.spec
    assert len(spec.keypoints) == len(spec.sigmas) == 136 and spec.use_area and spec.iou_type == "keypoints"
    assert spec.keypoints[:3] == ("nose", "left_eye", "right_eye") and (20, 21) in spec.flip_pairs
    assert ds.build_metric().sigmas.dtype == torch.float32  # mmpose's parse_pose_metainfo
    assert np.array_equal(ds.build_metric().sigmas.numpy(), np.array(spec.sigmas, dtype=np.float32))


# name: (keypoints, use_area, first names, a flip pair, images, annotations) of mmpose @ 759b39c13's
# configs/_base_/datasets/<name>.py, the metric calls of its configs and tests/data/<name>/test_<name>.json
MMPOSE = {
    "ochuman": (17, True, ("nose", "left_eye"), (15, 16), 3, 5),
    "aic": (14, False, ("right_shoulder", "right_elbow"), (8, 11), 3, 9),
    "humanart": (17, True, ("nose", "left_eye"), (1, 2), 3, 4),
}


@pytest.mark.parametrize("name", list(MMPOSE))
def test_mmpose_skeleton_configs(name, monkeypatch):
    monkeypatch.delenv("POSEARENA_DATA", raising=False)
    K, use_area, first, pair, n_images, n_anns = MMPOSE[name]
    assert DATASETS[name] is sk.build_skeleton_dataset
    ds = DATASETS[name](OmegaConf.load(CONF / f"{name}.yaml"))
    spec = ds.spec
    assert ds.bundled and ds.name == name and ds.family == "human2d" and len(ds) == n_images
    assert len(ds.gt.ann_id) == n_anns and ds.gt.num_keypoints == K
    assert len(spec.keypoints) == len(spec.sigmas) == K and spec.use_area is use_area and spec.iou_type == "keypoints"
    assert spec.keypoints[:2] == first and pair in spec.flip_pairs
    assert np.array_equal(ds.build_metric().sigmas.numpy(), np.array(spec.sigmas, dtype=np.float32))
    assert ds.build_metric().use_area is use_area


@pytest.mark.parametrize("name", list(CASES))
def test_matches_xtcocotools(name, tmp_path):
    case = CASES[name]
    spec = spec_of(case["skeleton"])
    root, res = case_root(tmp_path, case, spec)
    ds = sk.SkeletonKeypoints(root, spec)
    preds = ds.read_predictions(res)
    n = len(ds)
    got = score(ds, preds, range(n), batch=n)
    assert list(got) == list(STAT_KEYS)
    for k, v in zip(GOLDEN["stat_keys"], case["stats"]):
        assert got[k] == pytest.approx(v, abs=1e-9, rel=0), k
    order = torch.randperm(n, generator=torch.Generator().manual_seed(n)).tolist()
    assert score(ds, preds, order, batch=2, pad=min(n, 2)) == got


def test_skeleton_errors_name_the_option(tmp_path, hand5):
    bad = tmp_path / "bad.yaml"
    raw = OmegaConf.to_container(OmegaConf.load(sk.SKELETONS["hand5"]))
    for key, value, field in (("sigmas", [0.1] * 4, "dataset.sigmas"), ("flip_pairs", [[0, 5]], "dataset.flip_pairs"),
                              ("iou_type", "keypoints_crowd", "dataset.iou_type"), ("use_area", "yes", "dataset.use_area")):
        bad.write_text(json.dumps({**raw, key: value}))
        with pytest.raises(InputError) as e:
            sk.load_skeleton(str(bad))
        assert e.value.field == field and str(bad) in e.value.line()
    with pytest.raises(InputError) as e:
        sk.load_skeleton("no-such-skeleton")
    assert e.value.field == "dataset.skeleton" and "hand5" in e.value.problem
    with pytest.raises(InputError) as e:
        DATASETS["keypoints"](OmegaConf.load(CONF / "keypoints.yaml"))
    assert e.value.field == "dataset.skeleton"


def test_gt_with_another_skeleton_is_refused(tmp_path, hand5):
    root = tmp_path / "h"
    (root / "annotations").mkdir(parents=True)
    shutil.copy(HALPE_GT, root / hand5.ann_file)
    with pytest.raises(InputError) as e:
        sk.SkeletonKeypoints(root, hand5)
    assert e.value.record == "annotations index 0" and e.value.field == "keypoints" and "15 finite" in e.value.problem


def test_plugin_skeleton_through_the_cli(tmp_path):
    case = CASES["hand5_seed1"]
    root, res = case_root(tmp_path, case, spec_of("hand5"))
    r = run_cli("evaluate", "method=mine", "dataset=keypoints", "dataset.skeleton=hand5", f"data_root={root}",
                f"predictions={res}", f"out={tmp_path / 'out'}", f"leaderboard_dir={tmp_path / 'lb'}",
                env={"POSEARENA_PLUGINS": PLUGIN})
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["dataset"] == "hand5"
    for k, v in zip(GOLDEN["stat_keys"], case["stats"]):
        assert m["metrics"][k] == pytest.approx(v, abs=1e-9, rel=0), k
    assert (tmp_path / "lb" / "hand2d" / "hand5.csv").read_text().splitlines()[1].startswith("mine,,")


def test_aic_sample_through_the_cli(tmp_path, monkeypatch):
    monkeypatch.delenv("POSEARENA_DATA", raising=False)
    case = CASES["aic_sample_seed2"]
    res = tmp_path / "res.json"
    res.write_text(json.dumps(case["dets"]))
    r = run_cli("evaluate", "method=mine", "dataset=aic", f"predictions={res}", f"out={tmp_path / 'out'}",
                f"leaderboard_dir={tmp_path / 'lb'}", "bootstrap.samples=0")
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["dataset"] == "aic" and m["num_samples"] == 3
    for k, v in zip(GOLDEN["stat_keys"], case["stats"]):
        assert m["metrics"][k] == pytest.approx(v, abs=1e-9, rel=0), k
