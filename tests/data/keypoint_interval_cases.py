"""tests/test_intervals.py's cases for coco_wholebody, halpe, ochuman, aic, humanart and keypoints (a plugin
skeleton): a dataset built by its own builder and config, and a results file that is neither perfect nor useless
(golden inputs, whose numbers xtcocotools produced: tests/data/wholebody_golden, tests/data/skeleton_golden)."""
from __future__ import annotations

import importlib
import json
from pathlib import Path

from omegaconf import OmegaConf

from bench.registry import DATASETS

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "bench" / "conf" / "dataset"
_WB = json.loads((REPO / "tests/data/wholebody_golden/golden.json").read_text())
_SK = json.loads((REPO / "tests/data/skeleton_golden/golden.json").read_text())


def _dets(golden: dict, name: str) -> list:
    return next(c for c in golden["cases"] if c["name"] == name)["dets"]


def coco_wholebody(tmp: Path):
    """The bundled sample (mmpose's real annotations) with golden case sample_seed2's results."""
    res = tmp / "wholebody.json"
    res.write_text(json.dumps(_dets(_WB, "sample_seed2")))
    return DATASETS["coco_wholebody"](OmegaConf.load(CONF / "coco_wholebody.yaml")), res


def halpe(tmp: Path):
    """The bundled Halpe sample with golden case halpe_sample_seed0's results."""
    res = tmp / "halpe.json"
    res.write_text(json.dumps(_dets(_SK, "halpe_sample_seed0")))
    return DATASETS["halpe"](OmegaConf.load(CONF / "halpe.yaml")), res


def keypoints(tmp: Path):
    """The plugin skeleton hand5 (use_area false) on golden case hand5_seed1."""
    importlib.import_module("tests.data.skeleton_plugin.hand5_plugin")
    case = next(c for c in _SK["cases"] if c["name"] == "hand5_seed1")
    root = tmp / "hand5"
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "hand5_test.json").write_text(json.dumps(case["gt"]))
    res = tmp / "hand5.json"
    res.write_text(json.dumps(case["dets"]))
    cfg = OmegaConf.merge(OmegaConf.load(CONF / "keypoints.yaml"), {"skeleton": "hand5", "data_root": str(root)})
    return DATASETS["keypoints"](cfg), res


def _sample_case(name: str, case: str):
    """The bundled sample of ``name`` (mmpose's real test annotations) with golden case ``case``'s results."""
    def make(tmp: Path):
        res = tmp / f"{name}.json"
        res.write_text(json.dumps(_dets(_SK, case)))
        return DATASETS[name](OmegaConf.load(CONF / f"{name}.yaml")), res
    make.__name__ = name
    return make


CASES = {name: (name, fn) for name, fn in (("coco_wholebody", coco_wholebody), ("halpe", halpe),
                                           ("keypoints", keypoints),
                                           ("ochuman", _sample_case("ochuman", "ochuman_sample_seed0")),
                                           ("aic", _sample_case("aic", "aic_sample_seed2")),
                                           ("humanart", _sample_case("humanart", "humanart_sample_seed2")))}
