"""``evaluate ... dataset.task=bbox|segm`` through the CLI: the toolkit's BOP22 scores, the task's own leaderboard
CSV, the same numbers with two DDP processes; a bad results file refused in one line with nothing written."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "bop22_golden"
REF = json.loads((GOLDEN / "reference.json").read_text())
KEYS = ["AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR1", "AR10", "AR100", "AR_small", "AR_medium",
        "AR_large", "average_time_per_image"]


def _evaluate(tmp_path: Path, task: str, predictions: Path, name: str, *extra: str):
    return run_cli("evaluate", "method=mine", "dataset=ycbv", f"dataset.task={task}", f"data_root={GOLDEN / 'ycbv'}",
                   f"predictions={predictions}", f"out={tmp_path / name / 'out'}",
                   f"leaderboard_dir={tmp_path / name / 'lb'}", "progress=false", *extra)


@pytest.mark.slow
@pytest.mark.parametrize("task, stem", [("bbox", "synth_ycbv-test"), ("segm", "synthsegm_ycbv-test")])
def test_coco_json_with_one_and_two_processes_equals_the_toolkit(tmp_path: Path, task: str, stem: str):
    ref = REF[f"{stem}:{task}:amodal"]
    runs = {}
    for devices in ((1, 2) if task == "bbox" else (2,)):  # segm: one run (the data tests check batch invariance)
        r = _evaluate(tmp_path, task, GOLDEN / "results" / f"{stem}.json", f"d{devices}", f"devices={devices}",
                      "batch_size=2")
        assert r.returncode == 0, r.stderr[-3000:]
        m = json.loads((tmp_path / f"d{devices}" / "out" / "metrics.json").read_text())
        assert m["provenance"]["world_size"] == devices and m["num_samples"] == 6
        assert list(m["metrics"]) == [*KEYS, "AP_ci_low", "AP_ci_high"]
        for k in KEYS:
            assert m["metrics"][k] == pytest.approx(ref[k], abs=1e-9), k
        board = tmp_path / f"d{devices}" / "lb" / "object6d"
        assert sorted(p.name for p in board.glob("*.csv")) == [f"bop_core_{task}.csv", f"ycbv_{task}.csv"]
        core = (board / f"bop_core_{task}.csv").read_text().splitlines()  # AP_C: a row needs all 7 core datasets
        assert core == ["method,variant,AP_C," + ",".join(f"AP_{d}" for d in ("lmo", "tless", "tudl", "icbin",
                                                                              "itodd", "hb", "ycbv"))]
        header, row = (board / f"ycbv_{task}.csv").read_text().splitlines()
        runs[devices] = ([c for h, c in zip(header.split(","), row.split(",")) if h != "code"], m["metrics"])
        assert header.split(",")[:15] == ["method", "variant", *KEYS] and row.startswith("mine,,")
    assert task == "segm" or runs[1] == runs[2]


def test_bad_rle_is_refused_in_one_line(tmp_path: Path):
    recs = json.loads((GOLDEN / "results" / "synthsegm_ycbv-test.json").read_text())
    recs[2]["segmentation"]["counts"] = "0@@@"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(recs))
    r = _evaluate(tmp_path, "segm", bad, "bad")
    assert r.returncode == 2
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "bad.json" in err[0] and "index 2" in err[0] and "segmentation.counts" in err[0], r.stderr
    assert not (tmp_path / "bad").exists()


def test_hot3d_is_refused_in_one_line(tmp_path: Path):
    r = run_cli("evaluate", "method=mine", "dataset=hot3d", f"predictions={GOLDEN / 'results' / 'synth_ycbv-test.json'}",
                f"out={tmp_path / 'out'}", f"leaderboard_dir={tmp_path / 'lb'}")
    assert r.returncode == 2
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "fisheye" in err[0], r.stderr
    assert not (tmp_path / "out").exists()
