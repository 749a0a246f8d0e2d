"""``python -m bench evaluate dataset=co3d`` on the bundled sample: every key, the official numbers, devices=2 bytes,
one-line errors (golden: tests/data/co3d_golden, made by the official code)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from metrics.camera_pose import CAMERA_KEYS
from tests.conftest import run_cli

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "data" / "co3d_golden"
CASE = json.loads((GOLDEN_DIR / "golden.json").read_text())["cases"][0]  # num_frames 10: the config's default


def run(tmp_path, preds, devices, tag):
    return run_cli("evaluate", "method=mine", "dataset=co3d", f"predictions={preds}", f"devices={devices}",
                   "batch_size=2", f"out={tmp_path / f'out{tag}'}", f"leaderboard_dir={tmp_path / f'lb{tag}'}",
                   env={"POSEARENA_DATA": str(tmp_path / "none")})


@pytest.mark.slow
def test_bundled_sample_every_key_official_and_devices_2_identical_bytes(tmp_path):
    preds = GOLDEN_DIR / CASE["predictions"]
    outs = {}
    for devices in (1, 2):
        r = run(tmp_path, preds, devices, devices)
        assert r.returncode == 0, r.stderr[-3000:]
        m = json.loads((tmp_path / f"out{devices}" / "metrics.json").read_text())
        assert m["dataset"] == "co3d" and m["num_samples"] == 6 and m["provenance"]["world_size"] == devices
        outs[devices] = (m["metrics"], (tmp_path / f"lb{devices}" / "camera" / "co3d.csv").read_bytes())
    assert "BUNDLED SAMPLE" in r.stdout
    metrics, csv = outs[1]
    assert outs[2] == outs[1]
    assert list(metrics)[:len(CAMERA_KEYS)] == list(CAMERA_KEYS)
    for k in CAMERA_KEYS:
        assert metrics[k] == pytest.approx(CASE["metrics"][k], abs=1e-9), k
    assert metrics["mAA@30_ci_low"] <= metrics["mAA@30"] <= metrics["mAA@30_ci_high"]
    assert csv.decode().splitlines()[1].startswith("mine,,")


def test_bad_predictions_give_one_line_and_write_nothing(tmp_path):
    recs = json.loads((GOLDEN_DIR / CASE["predictions"]).read_text())
    recs[1]["T"] = recs[1]["T"][:-1]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(recs))
    r = run(tmp_path, bad, 1, "bad")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert str(bad) in lines[0] and "index 1" in lines[0] and "'T'" in lines[0]
    assert not (tmp_path / "outbad").exists() and not (tmp_path / "lbbad").exists()
