"""``evaluate ... dataset.task=detection`` through the CLI: the toolkit's BOP24 scores, its own leaderboard CSV,
the same bytes with two DDP processes; ``bbox``/``segm`` and bad results files refused in one line."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.data.bop24_golden.gen_golden import RESULT_FILES, dataset_root

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "bop24_golden"
REF = json.loads((GOLDEN / "reference.json").read_text())["cases"]["ycbv"]["scores_bop24"]
KEYS = {"mAP": "bop24_mAP", "mAP_MSSD": "bop24_mAP_mssd", "mAP_MSPD": "bop24_mAP_mspd",
        "mAP_MSSD_mm": "bop24_mAP_mssd_mm", "bop25_mAP": "bop25_mAP",
        "average_time_per_image": "bop24_average_time_per_image"}


def _evaluate(tmp_path: Path, root: Path, predictions: Path, name: str, *extra: str):
    return run_cli("evaluate", "method=mine", "dataset=ycbv", "dataset.task=detection", f"data_root={root}",
                   f"predictions={predictions}", f"out={tmp_path / name / 'out'}",
                   f"leaderboard_dir={tmp_path / name / 'lb'}", "progress=false", *extra)


@pytest.mark.slow
def test_detection_csv_with_one_and_two_processes_equals_the_toolkit(tmp_path: Path):
    root = dataset_root("ycbv", tmp_path)
    csv = GOLDEN / "results" / RESULT_FILES["ycbv"]
    runs = {}
    for devices in (1, 2):
        r = _evaluate(tmp_path, root, csv, f"d{devices}", f"devices={devices}", "batch_size=2")
        assert r.returncode == 0, r.stderr[-3000:]
        m = json.loads((tmp_path / f"d{devices}" / "out" / "metrics.json").read_text())
        assert m["provenance"]["world_size"] == devices and m["num_samples"] == 5
        assert list(m["metrics"]) == [*KEYS, "mAP_ci_low", "mAP_ci_high"]
        assert m["metrics"]["mAP_ci_low"] < m["metrics"]["mAP"] < m["metrics"]["mAP_ci_high"]
        for ours, theirs in KEYS.items():
            assert m["metrics"][ours] == pytest.approx(REF[theirs], abs=1e-9), ours
        board = tmp_path / f"d{devices}" / "lb" / "object6d"
        assert sorted(p.name for p in board.glob("*.csv")) == ["ycbv_detection.csv"]  # no ycbv.csv, no AR_C
        header, row = (board / "ycbv_detection.csv").read_text().splitlines()
        # every cell but ``code``, the hash of the working tree (which another session may edit between the runs)
        runs[devices] = ([c for h, c in zip(header.split(","), row.split(",")) if h != "code"], m["metrics"])
        assert header.split(",")[:8] == ["method", "variant", *KEYS] and row.startswith("mine,,")
    assert runs[1] == runs[2]


def test_bad_results_row_is_refused_in_one_line(tmp_path: Path):
    """The BOP19 CSV checks hold for detection: a scaled rotation on line 3 is named, nothing is written."""
    root = dataset_root("ycbv", tmp_path)
    lines = (GOLDEN / "results" / RESULT_FILES["ycbv"]).read_text().splitlines()
    fields = lines[2].split(",")
    fields[4] = " ".join(str(2 * float(v)) for v in fields[4].split())
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([*lines[:2], ",".join(fields), *lines[3:]]) + "\n")
    r = _evaluate(tmp_path, root, bad, "bad")
    assert r.returncode == 2
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "bad.csv" in err[0] and "line 3" in err[0] and "R" in err[0], r.stderr
    assert not (tmp_path / "bad").exists()
