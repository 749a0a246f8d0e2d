"""``evaluate`` on a BOP golden case through the CLI, with two DDP processes: the toolkit's own scores."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli

CASE = REPO / "tests" / "data" / "bop_golden" / "case2"


@pytest.mark.slow
def test_bop_csv_scored_with_two_processes_equals_the_toolkit(tmp_path: Path):
    """case2 (9 images, 111 estimates, edge cases) over devices=2 (one image padded in): the scores that
    bop_toolkit's eval_bop19_pose.py wrote in reference.json."""
    ref = json.loads((CASE / "reference.json").read_text())
    r = run_cli("evaluate", "method=synthref", "dataset=ycbv", f"data_root={CASE / 'datasets' / 'ycbv'}",
                f"predictions={CASE / 'results' / 'goldcase2_ycbv-test.csv'}", "devices=2", "batch_size=2",
                f"out={tmp_path / 'out'}", f"leaderboard_dir={tmp_path / 'lb'}")
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["num_samples"] == 9 and m["provenance"]["world_size"] == 2
    for key in ("AR", "AR_VSD", "AR_MSSD", "AR_MSPD"):
        assert m["metrics"][key] == pytest.approx(ref[key], abs=1e-9), key
