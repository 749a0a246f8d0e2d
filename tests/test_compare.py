"""``python -m bench compare``: the paired bootstrap of two manifest rows (bench/compare.py).

Constructed pairs with known answers, on the bundled COCO sample (4 images) through a temporary manifest:
- "perfect" (the GT keypoints as detections, score 1) has AP = 1 on every resample, so ``perfect - noisy`` is
  ``1 - AP_noisy`` replicate by replicate: its CI is exactly ``[1 - hi, 1 - lo]`` of noisy's own bootstrap CI
  (same draws), and every replicate difference is > 0, so p = 2 / (B + 1);
- a row against itself: difference 0, CI [0, 0], p = 1.
The analytic paired case (a constant per-frame shift) is in tests/test_bootstrap.py.
"""
from __future__ import annotations

import json

import pytest
import yaml

from bench.compare import compare, score
from bench.errors import InputError
from bench.manifest import load_manifest
from metrics.bootstrap import confidence_intervals
from tests.conftest import perturbed_results, run_cli


@pytest.fixture(scope="module")
def manifest(tmp_path_factory, coco_gt):
    tmp = tmp_path_factory.mktemp("cmp")
    perfect = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
               for a in coco_gt["annotations"] if a["num_keypoints"] > 0 and not a["iscrowd"]]
    (tmp / "perfect.json").write_text(json.dumps(perfect))
    (tmp / "noisy.json").write_text(json.dumps(perturbed_results(coco_gt, seed=3)))
    path = tmp / "manifest.yaml"
    path.write_text(yaml.safe_dump({"rows": [
        {"method": "perfect", "dataset": "coco", "predictions": str(tmp / "perfect.json")},
        {"method": "noisy", "dataset": "coco", "predictions": str(tmp / "noisy.json")},
    ]}))
    return path


def test_perfect_against_noisy_has_the_known_interval(manifest):
    r = compare("coco/perfect", "coco/noisy", samples=400, seed=2, manifest=manifest)
    noisy = score(load_manifest(manifest)[1])
    ap = noisy.metrics["AP"]
    ci = confidence_intervals(noisy.bootstrap, samples=400, seed=2)
    assert r.key == "AP" and r.a == pytest.approx(1.0, abs=1e-12) and r.b == pytest.approx(ap, abs=1e-12)
    assert r.diff == pytest.approx(1 - ap, abs=1e-12)
    assert r.ci_low == pytest.approx(1 - ci["AP_ci_high"], abs=1e-12)
    assert r.ci_high == pytest.approx(1 - ci["AP_ci_low"], abs=1e-12)
    assert r.p_value == pytest.approx(2 / (r.samples + 1)) and r.units == 4


def test_row_against_itself_and_cli(manifest):
    r = run_cli("compare", "a=coco/noisy", "b=coco/noisy", "samples=200", f"manifest={manifest}")
    assert r.returncode == 0, r.stderr
    assert "difference a - b = 0" in r.stdout and "95% CI [0, 0]" in r.stdout and "p = 1" in r.stdout


def test_bad_rows_are_input_errors(manifest):
    with pytest.raises(InputError, match="no manifest entry coco/nosuch"):
        compare("coco/perfect", "coco/nosuch", manifest=manifest)
    with pytest.raises(InputError, match="DATASET/METHOD"):
        compare("perfect", "coco/noisy", manifest=manifest)
    r = run_cli("compare", "a=coco/perfect", f"manifest={manifest}")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "b=ROW" in r.stderr


def test_a_task_row_is_named_by_its_leaderboard(tmp_path):
    """Two rows of one method on one BOP dataset, localization and ``dataset.task=detection``: each is named by
    the leaderboard it is in (``ycbv/ppf``, ``ycbv_detection/ppf``), as the committed manifest holds them."""
    from bench.compare import find_entry

    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump({"rows": [
        {"method": "ppf", "dataset": "ycbv"},
        {"method": "ppf", "dataset": "ycbv", "overrides": ["dataset.task=detection"]},
        {"method": "ppf", "dataset": "lmo", "overrides": ["dataset.task=localization"]},
    ]}))
    entries = load_manifest(path)
    assert [e.board for e in entries] == ["ycbv", "ycbv_detection", "lmo"]
    assert find_entry("ycbv/ppf", entries, path)[0] == [entries[0]]
    assert find_entry("ycbv_detection/ppf", entries, path)[0] == [entries[1]]
    with pytest.raises(InputError, match="entries: lmo/ppf, ycbv/ppf, ycbv_detection/ppf"):
        find_entry("tless/ppf", entries, path)
