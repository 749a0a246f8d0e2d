"""Leaderboard integrity and the warnings a suspect input deserves (issue: hardening).

- ``predictions=`` without ``method=`` is refused: the config default would name the row and replace another
  method's committed scores.
- A run that replaces a row says so, with the old and the new headline value.
- A run leaves nothing behind in the checkout (no lock files): ``git status`` is what it was.
- BOP estimates for object ids the dataset does not have, and H36M predictions that look absolute under a
  root mode that only touches joint 0, are scored as the references score them, with a warning.
"""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, perturbed_results, run_cli

BOP_CASE = REPO / "tests" / "data" / "bop_golden" / "case2"


def _tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _git_status() -> str:
    return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=REPO, capture_output=True,
                          text=True, check=True).stdout


@pytest.fixture(scope="module")
def coco_preds(tmp_path_factory, coco_gt) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("coco_preds")
    a, b = folder / "a.json", folder / "b.json"
    a.write_text(json.dumps(perturbed_results(coco_gt, seed=3)))
    b.write_text(json.dumps(perturbed_results(coco_gt, seed=11, drop=0.4)))
    return a, b


def test_predictions_without_method_exit_2_one_line_and_no_csv_changes(tmp_path, coco_preds):
    before = _tree_bytes(REPO / "leaderboards")
    r = run_cli("evaluate", "dataset=coco", f"predictions={coco_preds[0]}", f"out={tmp_path / 'out'}")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "predictions= needs method=NAME" in lines[0], r.stderr
    assert _tree_bytes(REPO / "leaderboards") == before
    assert not (tmp_path / "out").exists()


def test_replacing_a_row_says_so_with_old_and_new_headline(tmp_path, coco_preds):
    lb = tmp_path / "lb"
    args = ("evaluate", "method=mine", "dataset=coco", f"leaderboard_dir={lb}", "bootstrap.samples=0")
    first = run_cli(*args, f"predictions={coco_preds[0]}", f"out={tmp_path / 'o1'}")
    assert first.returncode == 0, first.stderr
    assert "replaced" not in first.stdout  # a new row
    ap1 = next(csv.DictReader((lb / "human2d" / "coco.csv").read_text().splitlines()))["AP"]
    second = run_cli(*args, f"predictions={coco_preds[1]}", f"out={tmp_path / 'o2'}")
    assert second.returncode == 0, second.stderr
    ap2 = next(csv.DictReader((lb / "human2d" / "coco.csv").read_text().splitlines()))["AP"]
    assert ap1 != ap2
    assert f"replaced the leaderboard row of 'mine': AP {ap1} -> {ap2}" in " ".join(second.stdout.split())


def test_a_run_leaves_git_status_as_it_was(tmp_path, coco_preds):
    """The leaderboard tree is a git checkout of its own here, so the run can write it for real: only the
    intended CSV (and curve file) change, nothing else appears, and the repository itself stays clean."""
    lb = tmp_path / "leaderboards"
    shutil.copytree(REPO / "leaderboards", lb)
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=lb, check=True)
    subprocess.run([*git, "add", "-A"], cwd=lb, check=True)
    subprocess.run([*git, "commit", "-qm", "base"], cwd=lb, check=True)
    repo_before = _git_status()
    r = run_cli("evaluate", "method=mine", "dataset=coco", f"predictions={coco_preds[0]}", f"leaderboard_dir={lb}",
                f"out={tmp_path / 'out'}", "bootstrap.samples=10")
    assert r.returncode == 0, r.stderr
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=lb, capture_output=True,
                            text=True, check=True).stdout.splitlines()
    assert sorted(status) == [" M human2d/coco.csv", "?? curves/human2d/coco/mine.json"], status
    # the checkout: the committed leaderboards untouched, no new untracked file anywhere (a lock, a log)
    after = _git_status()
    assert [ln for ln in after.splitlines() if "leaderboards/" in ln] == \
        [ln for ln in repo_before.splitlines() if "leaderboards/" in ln]
    new = {ln for ln in after.splitlines() if ln.startswith("??")} - set(repo_before.splitlines())
    assert not new, new


def test_unknown_dataset_is_one_line_naming_the_registered_ones(tmp_path):
    r = run_cli("evaluate", "method=mine", "dataset=cocoo", f"out={tmp_path / 'out'}")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown dataset 'cocoo'; registered:" in lines[0] and "coco," in lines[0], r.stderr
    assert "hydra" not in r.stderr.lower()


@pytest.mark.slow
def test_bop_estimates_for_unknown_object_ids_warn_and_are_ignored(tmp_path):
    src = BOP_CASE / "results" / "goldcase2_ycbv-test.csv"
    lines = src.read_text().splitlines()
    extra = []
    for line in lines[1:4]:  # three real estimates, relabelled to an object ycbv does not have
        cells = line.split(",")
        cells[2] = "99"
        extra.append(",".join(cells))
    bad = tmp_path / "mislabelled_ycbv-test.csv"
    bad.write_text("\n".join([*lines, *extra]) + "\n")
    common = ("evaluate", "method=m", "dataset=ycbv", f"data_root={BOP_CASE / 'datasets' / 'ycbv'}",
              "bootstrap.samples=0")
    good = run_cli(*common, f"predictions={src}", f"out={tmp_path / 'o1'}", f"leaderboard_dir={tmp_path / 'l1'}")
    r = run_cli(*common, f"predictions={bad}", f"out={tmp_path / 'o2'}", f"leaderboard_dir={tmp_path / 'l2'}")
    assert good.returncode == 0 and r.returncode == 0, r.stderr
    assert "obj_id 99" not in good.stderr
    assert "posearena: warning:" in r.stderr and "3 estimates name obj_id 99, which ycbv does not have: ignored" \
        in r.stderr, r.stderr
    m1, m2 = (json.loads((tmp_path / o / "metrics.json").read_text())["metrics"] for o in ("o1", "o2"))
    assert m1 == m2  # ignored, as the toolkit ignores them


def _h36m_absolute(path: Path) -> dict[str, np.ndarray]:
    """Camera-frame absolute poses: the bundled GT (root-relative) moved to a root 4.5 m in front of the
    camera, a typical Human3.6M distance."""
    from bench.registry import DATASETS, load_all

    load_all()
    from omegaconf import OmegaConf

    ds = DATASETS["h36m"](OmegaConf.create({"name": "h36m", "data_root": None}))
    arrays = {}
    for i, q in enumerate(ds.sequences):
        arrays[q.key] = (ds.gt_joints(i).numpy() + np.array([0.2, -0.1, 4.5])).astype(np.float32)
    np.savez(path, **arrays)
    return arrays


@pytest.mark.slow
def test_h36m_absolute_predictions_warn_naming_subtract(tmp_path):
    preds = tmp_path / "absolute.npz"
    _h36m_absolute(preds)
    common = ("evaluate", "method=m", "dataset=h36m", f"predictions={preds}", "bootstrap.samples=0")
    r = run_cli(*common, f"out={tmp_path / 'o1'}", f"leaderboard_dir={tmp_path / 'l1'}")
    assert r.returncode == 0, r.stderr
    assert "dataset.root_relative_pred=subtract" in r.stderr and "posearena: warning:" in r.stderr, r.stderr
    assert json.loads((tmp_path / "o1" / "metrics.json").read_text())["metrics"]["MPJPE"] > 1000
    ok = run_cli(*common, "dataset.root_relative_pred=subtract", f"out={tmp_path / 'o2'}",
                 f"leaderboard_dir={tmp_path / 'l2'}")
    assert ok.returncode == 0, ok.stderr
    assert "root_relative_pred" not in ok.stderr
    assert json.loads((tmp_path / "o2" / "metrics.json").read_text())["metrics"]["MPJPE"] < 1e-3
    rel = run_cli("evaluate", "method=m", "dataset=h36m", "bootstrap.samples=0", f"out={tmp_path / 'o3'}",
                  f"leaderboard_dir={tmp_path / 'l3'}",
                  f"predictions={REPO / 'tests' / 'data' / 'h36m_golden' / 'predictions_seed7.npz'}")
    assert rel.returncode == 0 and "root_relative_pred" not in rel.stderr, rel.stderr
