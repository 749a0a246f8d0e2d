"""Live comparison with xtcocotools 1.14.3 itself (not recorded numbers): COCO-WholeBody's six evaluations, the
any-skeleton keypoint AP (Halpe, OCHuman, AIC, Human-Art, a plugin skeleton with ``use_area: false``), AP-10K's per-species AP
(``useCats=1``) and CrowdPose's ``keypoints_crowd``,
on fresh inputs drawn by the golden generators with seeds the recorded goldens do not use, plus the recorded
CrowdPose inputs.

xtcocotools needs numpy<2, so this runs in the nox ``blazepose`` session's environment (``.nox/blazepose``,
where ``POSEARENA_BLAZEPOSE_ENV=1`` makes a missing xtcocotools a failure) and is skipped in the shared
``posearena`` environment (numpy 2), whose tests compare against the recorded goldens instead.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from bench.data.coco_wholebody import ANN_FILE as WB_ANN
from bench.data.coco_wholebody import CocoWholeBody
from bench.data.crowdpose import ANN_FILE as CP_ANN
from bench.data.crowdpose import CrowdPose
from tests.data.ap10k_golden import gen_golden as ap10k_gen
from tests.data.crowdpose_golden import gen_golden as crowdpose_gen
from tests.data.skeleton_golden import gen_golden as skeleton_gen
from tests.data.wholebody_golden import gen_golden as wholebody_gen

try:
    import xtcocotools  # noqa: F401

    HAVE_XTC = True
except ImportError:
    HAVE_XTC = False
    if os.environ.get("POSEARENA_BLAZEPOSE_ENV") == "1":
        raise

pytestmark = pytest.mark.skipif(
    not HAVE_XTC, reason="xtcocotools (numpy<2) is installed in the nox 'blazepose' environment (.nox/blazepose) only; "
    "the shared 'posearena' environment (numpy 2) checks the recorded goldens instead")

REPO = Path(__file__).resolve().parents[2]


def _score(ds, preds) -> dict[str, float]:
    m = ds.build_metric()
    samples = [ds[i] for i in range(len(ds))]
    m.update([(preds.get(s.sample_id) or ds.empty_prediction(s)).output for s in samples], [s.target for s in samples])
    return {k: float(v) for k, v in m.compute().items()}


def _wholebody_cases() -> list[tuple[str, object, list]]:
    import numpy as np

    sample = json.loads(wholebody_gen.SAMPLE_GT.read_text())
    out = []
    for seed in (50, 51, 52):
        rng = np.random.default_rng(seed)
        out.append((f"sample_seed{seed}", "sample", wholebody_gen.make_dets(rng, sample, 0.1 * (seed - 49), 4, 0.5,
                                                                          seed == 52)))
    for seed in range(60, 66):
        rng = np.random.default_rng(seed)
        gt = wholebody_gen.make_gt(rng, seed)
        out.append((f"random_seed{seed}", gt, wholebody_gen.make_dets(rng, gt, 0.15, 25 if seed == 61 else 3, 0.5,
                                                                       seed == 64)))
    return out


@pytest.mark.parametrize("name, gt, dets", _wholebody_cases(), ids=lambda x: x if isinstance(x, str) else "")
def test_wholebody_equals_live_xtcocotools(name, gt, dets, tmp_path):
    root = tmp_path / "wb"
    (root / "annotations").mkdir(parents=True)
    if gt == "sample":
        shutil.copy(wholebody_gen.SAMPLE_GT, root / WB_ANN)
    else:
        (root / WB_ANN).write_text(json.dumps(gt))
    res = tmp_path / "res.json"
    res.write_text(json.dumps(dets))
    want = wholebody_gen.mmpose_eval(root / WB_ANN, res)
    ds = CocoWholeBody(root)
    got = _score(ds, ds.read_predictions(res))
    for part, stats in want.items():
        for k, v in zip(wholebody_gen.STAT_KEYS, stats):
            assert got[f"{part}/{k}"] == pytest.approx(v, abs=1e-9, rel=0), f"{part}/{k}"


@pytest.mark.parametrize("seed", [30, 31, 32, 33])
def test_skeletons_equal_live_xtcocotools(seed, tmp_path):
    import numpy as np
    from omegaconf import OmegaConf

    from bench.data import skeleton_keypoints as sk

    rng = np.random.default_rng(seed)
    if seed % 2:  # the plugin skeleton (use_area false)
        __import__("tests.data.skeleton_plugin.hand5_plugin")
        spec = sk.load_skeleton("hand5")
        gt = skeleton_gen.make_hand_gt(rng, seed, 5)
        dets = skeleton_gen.make_dets(rng, gt, 5, 0.05, 22, seed == 33)
    else:
        spec = sk.skeleton_spec(OmegaConf.to_container(OmegaConf.load(REPO / "bench/conf/dataset/halpe.yaml")))
        gt = json.loads(skeleton_gen.HALPE_GT.read_text())
        dets = skeleton_gen.make_dets(rng, gt, 136, 0.1, 4, seed == 32)
    root = tmp_path / "sk"
    (root / spec.ann_file).parent.mkdir(parents=True)
    (root / spec.ann_file).write_text(json.dumps(gt))
    res = tmp_path / "res.json"
    res.write_text(json.dumps(dets))
    want = skeleton_gen.mmpose_eval(root / spec.ann_file, res, list(spec.sigmas), spec.use_area)
    ds = sk.SkeletonKeypoints(root, spec)
    got = _score(ds, ds.read_predictions(res))
    for k, v in zip(skeleton_gen.STAT_KEYS, want):
        assert got[k] == pytest.approx(v, abs=1e-9, rel=0), k


@pytest.mark.parametrize(("name", "seed"), [("ochuman", 34), ("aic", 35), ("aic", 36), ("humanart", 37)])
def test_mmpose_samples_equal_live_xtcocotools(name, seed, tmp_path):
    import numpy as np
    from omegaconf import OmegaConf

    from bench.data import skeleton_keypoints as sk

    rng = np.random.default_rng(seed)
    spec = sk.skeleton_spec(OmegaConf.to_container(OmegaConf.load(REPO / f"bench/conf/dataset/{name}.yaml")))
    gt_file = skeleton_gen.SAMPLES[name][0]
    dets = skeleton_gen.make_dets(rng, json.loads(gt_file.read_text()), len(spec.keypoints),
                                  0.03 if name == "aic" else 0.1, 4, seed % 2 == 0)
    root = tmp_path / name
    (root / spec.ann_file).parent.mkdir(parents=True)
    shutil.copy(gt_file, root / spec.ann_file)
    res = tmp_path / "res.json"
    res.write_text(json.dumps(dets))
    want = skeleton_gen.mmpose_eval(gt_file, res, list(spec.sigmas), spec.use_area)
    ds = sk.SkeletonKeypoints(root, spec)
    got = _score(ds, ds.read_predictions(res))
    for k, v in zip(skeleton_gen.STAT_KEYS, want):
        assert got[k] == pytest.approx(v, abs=1e-9, rel=0), k


@pytest.mark.parametrize("seed", [900, 901, 902, 903, 904])
def test_ap10k_equals_live_xtcocotools(seed, tmp_path):
    import numpy as np
    from omegaconf import OmegaConf

    from bench.data import skeleton_keypoints as sk

    rng = np.random.default_rng(seed)
    spec = sk.skeleton_spec(OmegaConf.to_container(OmegaConf.load(REPO / "bench/conf/dataset/ap10k.yaml")))
    if seed == 904:  # the bundled sample (mmpose's real annotations)
        gt = json.loads(ap10k_gen.SAMPLE_GT.read_text())
        dets = ap10k_gen.make_dets(rng, gt, 0.2, 5, False, min_copies=1)
    else:
        gt = ap10k_gen.make_gt(rng, seed)
        dets = ap10k_gen.make_dets(rng, gt, 0.5, 4, seed == 901, gt["images"][0]["id"] if seed == 902 else None)
    root = tmp_path / "ap10k"
    (root / spec.ann_file).parent.mkdir(parents=True)
    (root / spec.ann_file).write_text(json.dumps(gt))
    res = tmp_path / "res.json"
    res.write_text(json.dumps(dets))
    want, _ = ap10k_gen.mmpose_eval(root / spec.ann_file, res)
    ds = sk.CategoryKeypoints(root, spec)
    got = _score(ds, ds.read_predictions(res))
    for k, v in zip(ap10k_gen.STAT_KEYS, want):
        assert got[k] == pytest.approx(v, abs=1e-9, rel=0), k


CP_GOLDEN = json.loads((REPO / "tests/data/crowdpose_golden/golden.json").read_text())


@pytest.mark.parametrize("case", CP_GOLDEN["cases"][::3], ids=lambda c: c["name"])
def test_crowdpose_equals_live_xtcocotools(case, tmp_path):
    root = tmp_path / "cp"
    (root / "annotations").mkdir(parents=True)
    if case["gt"] == "sample":
        shutil.copy(crowdpose_gen.SAMPLE_GT, root / CP_ANN)
    else:
        (root / CP_ANN).write_text(json.dumps(case["gt"]))
    want = crowdpose_gen.case_stats(case, tmp_path)
    res = tmp_path / "res.json"
    res.write_text(json.dumps(case["dets"]))
    ds = CrowdPose(root, sigmas=case.get("sigmas"))
    got = _score(ds, ds.read_predictions(res))
    for k, v in zip(CP_GOLDEN["stat_keys"], want):
        assert got[k] == pytest.approx(v, abs=1e-9, rel=0), k

