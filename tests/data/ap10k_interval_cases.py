"""tests/test_intervals.py's cases for ap10k: its own builder and config, with golden inputs whose numbers
xtcocotools produced (tests/data/ap10k_golden): the bundled sample, and synthetic GT with several species, one of
them without GT (left out of every replicate's mean)."""
from __future__ import annotations

import json
from pathlib import Path

from omegaconf import OmegaConf

from bench.registry import DATASETS

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "bench" / "conf" / "dataset" / "ap10k.yaml"
_GOLDEN = json.loads((REPO / "tests/data/ap10k_golden/golden.json").read_text())


def _case(name: str):
    case = next(c for c in _GOLDEN["cases"] if c["name"] == name)

    def make(tmp: Path):
        cfg = OmegaConf.load(CONF)
        if case["gt"] != "sample":
            root = tmp / "ap10k"
            (root / cfg.ann_file).parent.mkdir(parents=True)
            (root / cfg.ann_file).write_text(json.dumps(case["gt"]))
            cfg.data_root = str(root)
        res = tmp / "ap10k.json"
        res.write_text(json.dumps(case["dets"]))
        return DATASETS["ap10k"](cfg), res
    return make


CASES = {"ap10k-sample": ("ap10k", _case("ap10k_sample_seed2")), "ap10k-animals": ("ap10k", _case("animals_seed4"))}
