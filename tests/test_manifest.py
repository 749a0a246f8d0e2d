"""Leaderboard regeneration and the regression check, on a one-row manifest in a scratch tree."""
from __future__ import annotations

import json

import pytest

from bench import manifest
from tests.conftest import perturbed_results


@pytest.mark.slow
def test_regenerate_is_byte_stable_and_regression_catches_a_perturbed_metric(tmp_path, coco_gt, capsys):
    preds = tmp_path / "mine.json"
    preds.write_text(json.dumps(perturbed_results(coco_gt, seed=11)))
    lb = tmp_path / "leaderboards"
    lb.mkdir()
    (lb / "stale").mkdir()
    (lb / "stale" / "gone.csv").write_text("method,variant\nold,\n")
    (lb / "curves" / "stale").mkdir(parents=True)
    (lb / "curves" / "stale" / "old.json").write_text("{}")
    path = lb / "manifest.yaml"
    path.write_text(f"rows:\n  - method: mine\n    dataset: coco\n    predictions: {preds}\n")

    manifest.regenerate(path)
    csv_path = lb / "human2d" / "coco.csv"
    first = csv_path.read_bytes()
    assert not (lb / "stale" / "gone.csv").exists()  # rows that left the manifest disappear
    curves = lb / "curves" / "human2d" / "coco" / "mine.json"
    first_curves = curves.read_bytes()
    assert not (lb / "curves" / "stale" / "old.json").exists()
    assert json.loads(first_curves)["plots"][0]["title"].startswith("Precision-recall")
    assert "AP_ci_low,AP_ci_high" in first.decode().splitlines()[0]
    manifest.regenerate(path)
    assert csv_path.read_bytes() == first
    assert curves.read_bytes() == first_curves

    assert manifest.regression(path) == 0
    header, row = first.decode().splitlines()
    cols = header.split(",")
    cells = row.split(",")
    ap = cells[cols.index("AP")]
    cells[cols.index("AP")] = str(float(ap) + 0.001)
    csv_path.write_text(header + "\n" + ",".join(cells) + "\n")
    capsys.readouterr()
    assert manifest.regression(path) == 1
    out = capsys.readouterr().out
    assert "AP" in out and ap in out and "mine" in out
