"""The evaluate command end to end: bundled sample, outputs, device-count invariance, one-line errors."""
from __future__ import annotations

import json

import pytest

from tests.conftest import perturbed_results, run_cli

COCO_KEYS = ["AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"]


@pytest.fixture(scope="module")
def bundled_preds(tmp_path_factory, coco_gt):
    p = tmp_path_factory.mktemp("preds") / "mine.json"
    p.write_text(json.dumps(perturbed_results(coco_gt, seed=3)))
    return p


def test_predictions_on_bundled_sample_write_metrics_and_row(tmp_path, bundled_preds):
    r = run_cli("evaluate", "method=mine", "dataset=coco", f"predictions={bundled_preds}",
                f"out={tmp_path / 'out'}", f"leaderboard_dir={tmp_path / 'lb'}")
    assert r.returncode == 0, r.stderr
    assert "BUNDLED SAMPLE" in r.stdout
    assert "AP50" in r.stdout  # the results table
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["method"] == "mine" and m["dataset"] == "coco" and m["num_samples"] == 4
    assert list(m["metrics"])[:10] == COCO_KEYS
    assert 0 < m["metrics"]["AP"] < 1
    prov = m["provenance"]
    assert len(prov["predictions"]) == 64 and prov["data"] and prov["world_size"] == 1
    csv = (tmp_path / "lb" / "human2d" / "coco.csv").read_text().splitlines()
    assert csv[0].split(",")[:12] == ["method", "variant", *COCO_KEYS]
    assert csv[1].startswith("mine,,")


@pytest.mark.slow
def test_devices_1_2_3_give_identical_metrics_and_csv_bytes(tmp_path, coco7):
    root, preds = coco7
    outs = {}
    for devices, batch in ((1, 7), (2, 1), (3, 2)):
        lb = tmp_path / f"lb{devices}"
        r = run_cli("evaluate", "method=mine", "dataset=coco", f"data_root={root}", f"predictions={preds}",
                    f"devices={devices}", f"batch_size={batch}", f"out={tmp_path / f'out{devices}'}",
                    f"leaderboard_dir={lb}")
        assert r.returncode == 0, r.stderr[-3000:]
        m = json.loads((tmp_path / f"out{devices}" / "metrics.json").read_text())
        assert m["provenance"]["world_size"] == devices and m["num_samples"] == 7
        outs[devices] = (m["metrics"], (lb / "human2d" / "coco.csv").read_bytes())
    assert outs[1] == outs[2] == outs[3]
    # the bootstrap CI of AP (metrics/bootstrap.py) is part of both, so it is world-size invariant too
    m = outs[1][0]
    assert m["AP_ci_low"] <= m["AP"] <= m["AP_ci_high"] and m["AP_ci_low"] < m["AP_ci_high"]
    assert b"AP_ci_low,AP_ci_high" in outs[1][1]


BAD = {
    "not_json": ("{not json", "not valid JSON"),
    "unknown_image": ([{"image_id": 1, "category_id": 1, "keypoints": [0.0] * 51, "score": 0.5}], "index 0"),
    "wrong_kpt_count": ([{"image_id": 785, "category_id": 1, "keypoints": [0.0] * 50, "score": 0.5}], "keypoints"),
    "nan": ([{"image_id": 785, "category_id": 1, "keypoints": [float("nan")] * 51, "score": 0.5}], "keypoints"),
    "missing_score": ([{"image_id": 785, "category_id": 1, "keypoints": [0.0] * 51}], "score"),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_predictions_give_one_line_and_change_nothing(tmp_path, kind):
    content, expect = BAD[kind]
    bad = tmp_path / "bad.json"
    bad.write_text(content if isinstance(content, str) else json.dumps(content).replace("NaN", "NaN"))
    lb = tmp_path / "lb" / "human2d"
    lb.mkdir(parents=True)
    (lb / "coco.csv").write_text("method,variant,AP\nold,,0.5\n")
    r = run_cli("evaluate", "method=mine", "dataset=coco", f"predictions={bad}", f"out={tmp_path / 'out'}",
                f"leaderboard_dir={tmp_path / 'lb'}")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert str(bad) in lines[0] and expect in lines[0]
    assert (lb / "coco.csv").read_text() == "method,variant,AP\nold,,0.5\n"
    assert not (tmp_path / "out").exists()


def test_unknown_method_without_predictions_is_one_line(tmp_path):
    r = run_cli("evaluate", "method=nosuch", "dataset=coco", f"out={tmp_path}")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "unknown method 'nosuch'" in r.stderr


def test_bad_override_is_one_line():
    r = run_cli("evaluate", "method=mine", "dataset=coco", "nosuchkey=1", "predictions=x.json")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
