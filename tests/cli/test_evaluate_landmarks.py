"""``python -m bench evaluate`` on the face and hand landmark datasets: keys, leaderboard row, golden numbers end
to end, one-line errors, and (slow) devices=2 giving the same bytes as one process."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli

GOLDEN_DIR = REPO / "tests" / "data" / "landmarks_golden"
GOLDEN = json.loads((GOLDEN_DIR / "golden.json").read_text())


def _data_root(tmp: Path, name: str, ann_file: str) -> Path:
    root = tmp / name
    (root / "annotations").mkdir(parents=True)
    shutil.copy(GOLDEN_DIR / GOLDEN["datasets"][name]["gt_file"], root / "annotations" / ann_file)
    return root


def _preds(tmp: Path, name: str, case: int) -> Path:
    p = tmp / f"{name}_case{case}.json"
    p.write_text(json.dumps(GOLDEN["datasets"][name]["cases"][case]["predictions"]))
    return p


def test_300w_writes_the_keys_and_a_row(tmp_path):
    root = _data_root(tmp_path, "300w", "face_landmarks_300w_test.json")
    case = GOLDEN["datasets"]["300w"]["cases"][1]
    r = run_cli("evaluate", "method=mine", "dataset=300w", f"data_root={root}", f"predictions={_preds(tmp_path, '300w', 1)}",
                f"out={tmp_path / 'out'}", f"leaderboard_dir={tmp_path / 'lb'}")
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["dataset"] == "300w" and m["num_samples"] == len(GOLDEN["datasets"]["300w"]["scored_ids"])
    assert list(m["metrics"])[:3] == ["NME", "FR@0.1", "AUC@0.1"] and "NME_ci_low" in m["metrics"]
    for key, want in case["expected"].items():  # mmpose's NME and PIPNet's FR / AUC through the whole harness
        assert m["metrics"][key] == pytest.approx(want, rel=1e-12), key
    assert m["metrics"]["NME_ci_low"] < m["metrics"]["NME"] < m["metrics"]["NME_ci_high"]
    csv = (tmp_path / "lb" / "face2d" / "300w.csv").read_text().splitlines()
    assert csv[0].split(",")[:3] == ["method", "variant", "NME"] and "FR@0.1" in csv[0] and "AUC@0.1" in csv[0]
    assert csv[1].startswith("mine,,")
    curves = list((tmp_path / "lb" / "curves" / "face2d" / "300w").glob("*.json"))
    plot = json.loads(curves[0].read_text())["plots"][0]
    assert plot["kind"] == "line" and len(plot["x"]) == 101
    assert plot["series"]["CED"][-1] == pytest.approx(1 - case["expected"]["FR@0.1"], abs=1e-6)


def test_bad_predictions_give_one_line_and_write_nothing(tmp_path):
    root = _data_root(tmp_path, "rhd", "rhd_test.json")
    recs = GOLDEN["datasets"]["rhd"]["cases"][0]["predictions"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{**recs[0], "keypoints": recs[0]["keypoints"][:20]}] + recs[1:]))
    r = run_cli("evaluate", "method=mine", "dataset=rhd", f"data_root={root}", f"predictions={bad}",
                f"out={tmp_path / 'out'}", f"leaderboard_dir={tmp_path / 'lb'}")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert str(bad) in lines[0] and "index 0" in lines[0] and "keypoints" in lines[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "lb").exists()


@pytest.mark.slow
def test_onehand10k_devices_1_and_2_give_identical_metrics_and_csv_bytes(tmp_path):
    root = _data_root(tmp_path, "onehand10k", "onehand10k_test.json")
    preds = _preds(tmp_path, "onehand10k", 1)
    outs = {}
    for devices, batch in ((1, 5), (2, 2)):
        lb = tmp_path / f"lb{devices}"
        r = run_cli("evaluate", "method=mine", "dataset=onehand10k", f"data_root={root}", f"predictions={preds}",
                    f"devices={devices}", f"batch_size={batch}", f"out={tmp_path / f'out{devices}'}",
                    f"leaderboard_dir={lb}")
        assert r.returncode == 0, r.stderr[-3000:]
        m = json.loads((tmp_path / f"out{devices}" / "metrics.json").read_text())
        assert m["provenance"]["world_size"] == devices
        rows = (lb / "hand2d" / "onehand10k.csv").read_text().splitlines()
        code = rows[0].split(",").index("code")  # the code version: other work in a shared checkout moves it
        outs[devices] = (m["metrics"], [[v for j, v in enumerate(r.split(",")) if j != code] for r in rows])
    assert outs[1] == outs[2]
    want = GOLDEN["datasets"]["onehand10k"]["cases"][1]["expected"]
    for key in ("PCK", "AUC", "EPE"):
        assert outs[1][0][key] == pytest.approx(want[key], rel=1e-12), key
