"""``python -m bench evaluate dataset=coco_wholebody``: the 60 per-part keys plus the headline, xtcocotools' golden
numbers end to end, one-line errors, and (slow) devices=2 giving the same bytes as one process."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli

GOLDEN = json.loads((REPO / "tests" / "data" / "wholebody_golden" / "golden.json").read_text())
CASES = {c["name"]: c for c in GOLDEN["cases"]}
SAMPLE_GT = REPO / "bench" / "data" / "samples" / "coco_wholebody" / "annotations" / "coco_wholebody_val_v1.0.json"
ANN = "annotations/coco_wholebody_val_v1.0.json"


def _case(tmp: Path, name: str) -> tuple[Path, Path]:
    case = CASES[name]
    root = tmp / "wb"
    (root / "annotations").mkdir(parents=True)
    if case["gt"] == "sample":
        shutil.copy(SAMPLE_GT, root / ANN)
    else:
        (root / ANN).write_text(json.dumps(case["gt"]))
    preds = tmp / f"{name}.json"
    preds.write_text(json.dumps(case["dets"]))
    return root, preds


def _want(name: str) -> dict[str, float]:
    st = CASES[name]["stats"]
    return {f"{p}/{k}": v for p in GOLDEN["parts"] for k, v in zip(GOLDEN["stat_keys"], st[p])}


def test_writes_the_60_keys_equal_to_xtcocotools(tmp_path):
    root, preds = _case(tmp_path, "sample_seed2")
    r = run_cli("evaluate", "method=mine", "dataset=coco_wholebody", f"data_root={root}", f"predictions={preds}",
                f"out={tmp_path / 'out'}", f"leaderboard_dir={tmp_path / 'lb'}")
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["dataset"] == "coco_wholebody" and m["num_samples"] == 4
    want = _want("sample_seed2")
    assert len(want) == 60 and set(want) <= set(m["metrics"])
    for key, v in want.items():
        assert m["metrics"][key] == pytest.approx(v, abs=1e-9, rel=0), key
    assert m["metrics"]["AP"] == m["metrics"]["wholebody/AP"] and m["metrics"]["AR"] == m["metrics"]["wholebody/AR"]
    assert m["metrics"]["AP_ci_low"] <= m["metrics"]["AP"] <= m["metrics"]["AP_ci_high"]
    csv = (tmp_path / "lb" / "wholebody2d" / "coco_wholebody.csv").read_text().splitlines()
    head = csv[0].split(",")
    assert head[:4] == ["method", "variant", "AP", "AR"] and "face/AP" in head and "wholebody/ARl" in head
    assert csv[1].startswith("mine,,")


def test_bad_predictions_give_one_line_and_write_nothing(tmp_path):
    root, _ = _case(tmp_path, "sample_seed1")
    recs = CASES["sample_seed1"]["dets"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(recs[:3] + [{**recs[3], "lefthand_kpts": recs[3]["lefthand_kpts"][:60]}] + recs[4:]))
    r = run_cli("evaluate", "method=mine", "dataset=coco_wholebody", f"data_root={root}", f"predictions={bad}",
                f"out={tmp_path / 'out'}", f"leaderboard_dir={tmp_path / 'lb'}")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert str(bad) in lines[0] and "index 3" in lines[0] and "lefthand_kpts" in lines[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "lb").exists()


@pytest.mark.slow
def test_devices_1_and_2_give_identical_metrics_and_csv_bytes(tmp_path):
    root, preds = _case(tmp_path, "random_seed1")  # more than 20 detections in an image, crowd, unlabelled parts
    outs = {}
    for devices, batch in ((1, 8), (2, 2)):
        lb = tmp_path / f"lb{devices}"
        r = run_cli("evaluate", "method=mine", "dataset=coco_wholebody", f"data_root={root}", f"predictions={preds}",
                    f"devices={devices}", f"batch_size={batch}", f"out={tmp_path / f'out{devices}'}",
                    f"leaderboard_dir={lb}")
        assert r.returncode == 0, r.stderr[-3000:]
        m = json.loads((tmp_path / f"out{devices}" / "metrics.json").read_text())
        assert m["provenance"]["world_size"] == devices
        rows = (lb / "wholebody2d" / "coco_wholebody.csv").read_text().splitlines()
        code = rows[0].split(",").index("code")  # the code version: other work in a shared checkout moves it
        outs[devices] = (m["metrics"], [[v for j, v in enumerate(x.split(",")) if j != code] for x in rows])
    assert outs[1] == outs[2]
    for key, v in _want("random_seed1").items():
        assert outs[1][0][key] == pytest.approx(v, abs=1e-9, rel=0), key
