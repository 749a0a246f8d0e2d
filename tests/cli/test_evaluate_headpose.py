"""``python -m bench evaluate`` on the bundled AFLW2000 sample: keys, leaderboard row, devices=2 bytes, one-line errors."""
from __future__ import annotations

import json

import pytest

from metrics.headpose import HEADPOSE_KEYS
from tests.conftest import run_cli

# predictions for the 6 images the filter keeps (yaw, pitch, roll degrees, a few degrees off the sample's GT)
# plus one for a filtered image (ignored with a warning)
PREDS = [{"image": "image00002", "yaw": 22.0, "pitch": -10.0, "roll": 4.0},
         {"image": "image00004", "yaw": -40.0, "pitch": 9.0, "roll": -3.0},
         {"image": "image00008", "yaw": 85.0, "pitch": 25.0, "roll": 12.0},
         {"image": "image00013", "yaw": 6.0, "pitch": -7.0, "roll": 0.0},
         {"image": "image00023", "yaw": -80.0, "pitch": 12.0, "roll": 25.0},
         {"image": "image00043", "yaw": -12.0, "pitch": -35.0, "roll": 5.0},
         {"image": "image00029", "yaw": 0.0, "pitch": 0.0, "roll": 0.0}]


@pytest.fixture
def preds(tmp_path):
    p = tmp_path / "mine.json"
    p.write_text(json.dumps(PREDS))
    return p


def run(tmp_path, preds, devices, tag):
    return run_cli("evaluate", "method=mine", "dataset=aflw2000", f"predictions={preds}", f"devices={devices}",
                   "batch_size=2", f"out={tmp_path / f'out{tag}'}", f"leaderboard_dir={tmp_path / f'lb{tag}'}",
                   env={"POSEARENA_DATA": str(tmp_path / "none")})


@pytest.mark.slow
def test_bundled_sample_row_and_devices_2_identical_bytes(tmp_path, preds):
    outs = {}
    for devices in (1, 2):
        r = run(tmp_path, preds, devices, devices)
        assert r.returncode == 0, r.stderr[-3000:]
        m = json.loads((tmp_path / f"out{devices}" / "metrics.json").read_text())
        assert m["dataset"] == "aflw2000" and m["num_samples"] == 6 and m["provenance"]["world_size"] == devices
        outs[devices] = (m["metrics"], (tmp_path / f"lb{devices}" / "headpose" / "aflw2000.csv").read_bytes())
    assert "BUNDLED SAMPLE" in r.stdout
    metrics, csv = outs[1]
    assert outs[2] == outs[1]
    assert list(metrics)[:len(HEADPOSE_KEYS)] == list(HEADPOSE_KEYS)
    assert all(0 < metrics[k] < 20 for k in HEADPOSE_KEYS)
    assert metrics["MAE_ci_low"] <= metrics["MAE"] <= metrics["MAE_ci_high"]
    lines = csv.decode().splitlines()
    assert lines[0].split(",")[:2 + len(HEADPOSE_KEYS)] == ["method", "variant", *HEADPOSE_KEYS] and lines[1].startswith("mine,,")


def test_bad_predictions_give_one_line_and_write_nothing(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"image": "image00002", "yaw": 1.0, "pitch": "x", "roll": 0.0}]))
    r = run(tmp_path, bad, 1, "bad")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert str(bad) in lines[0] and "index 0" in lines[0] and "'pitch'" in lines[0]
    assert not (tmp_path / "outbad").exists() and not (tmp_path / "lbbad").exists()
