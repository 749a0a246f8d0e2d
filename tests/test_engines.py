"""The two ways a run scores: a plain loop for a results file in one process, a Lightning Trainer for a model or
several processes. They must give the same numbers, and the plain one must not import what it does not use."""
from __future__ import annotations

import subprocess
import sys

import pytest

from bench.config import compose
from bench.run import score
from tests.conftest import REPO

BOP_CASE = REPO / "tests" / "data" / "bop_golden" / "case2"
H36M_PREDS = REPO / "tests" / "data" / "h36m_golden" / "predictions_seed7.npz"


def _cases(coco7):
    root, preds = coco7
    return {
        "coco": ["dataset=coco", f"data_root={root}", f"predictions={preds}", "batch_size=3"],
        "ycbv": ["dataset=ycbv", f"data_root={BOP_CASE / 'datasets' / 'ycbv'}",
                 f"predictions={BOP_CASE / 'results' / 'goldcase2_ycbv-test.csv'}", "batch_size=4"],
        "h36m": ["dataset=h36m", f"predictions={H36M_PREDS}", "batch_size=7"],
    }


@pytest.mark.parametrize("case", ["coco", "ycbv", "h36m"])
def test_plain_loop_and_lightning_give_identical_scores(case, coco7, tmp_path):
    args = ["method=mine", *_cases(coco7)[case], "bootstrap.samples=200", "progress=false"]
    plain = score(compose([*args, "engine=plain"]))
    lightning = score(compose([*args, "engine=lightning"]))
    assert plain.metrics == lightning.metrics and plain.num_samples == lightning.num_samples
    assert plain.curves == lightning.curves and plain.provenance["bootstrap"] == lightning.provenance["bootstrap"]
    assert f"{next(iter(plain.metrics))}_ci_low" in plain.metrics  # the interval is part of what is compared


def test_auto_picks_the_plain_loop_only_for_a_results_file_in_one_process(coco7):
    from bench.run import use_lightning

    root, preds = coco7
    base = ["method=mine", "dataset=coco", f"data_root={root}"]
    assert not use_lightning(compose([*base, f"predictions={preds}"]))
    assert use_lightning(compose([*base, f"predictions={preds}", "devices=2"]))
    assert use_lightning(compose(["method=vitpose-b", "dataset=coco", f"data_root={root}"]))
    from bench.errors import InputError

    with pytest.raises(InputError, match="engine=plain scores a results file"):
        use_lightning(compose(["method=vitpose-b", "dataset=coco", "engine=plain"]))


def test_scoring_a_results_file_imports_no_model_code(tmp_path, coco7):
    root, preds = coco7
    code = ("import sys\nfrom bench.__main__ import main\n"
            f"rc = main(['evaluate', 'method=mine', 'dataset=coco', 'data_root={root}', 'predictions={preds}', "
            f"'out={tmp_path / 'out'}', 'leaderboard_dir={tmp_path / 'lb'}'])\n"
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'lightning', 'lightning_fabric', "
            "'pytorch_lightning', 'timm', 'methods', 'torchvision', 'matplotlib'})\n"
            "heavy += [m for m in ('torchmetrics.functional', 'torchmetrics.classification') if m in sys.modules]\n"
            "assert rc == 0 and not heavy, (rc, heavy)\n"
            # the rest of torchmetrics loads on first use, as after a plain import (bench/lazy_torchmetrics.py)
            "import logging, torchmetrics\n"
            "from torchmetrics import MeanMetric\n"
            "from torchmetrics.metric import Metric\n"
            "assert torchmetrics.Metric is Metric and issubclass(MeanMetric, Metric) and torchmetrics.Accuracy\n"
            "assert 'torchmetrics.functional' in sys.modules and torchmetrics.__version__\n"
            "assert len(logging.getLogger('torchmetrics').handlers) == 1\n"
            "import torchmetrics.utilities.imports as flags\n"
            "assert torchmetrics.utilities.imports is flags and bool(flags._MATPLOTLIB_AVAILABLE)\n"
            "try:\n    torchmetrics.no_such_name\nexcept AttributeError:\n    pass\nelse:\n    raise AssertionError\n")
    r = subprocess.run([sys.executable, "-c", code], check=False, cwd=REPO, capture_output=True, text=True,
                       timeout=300, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr[-2000:]


def test_list_names_what_the_registries_hold():
    """``bench list`` reads the config names (fast); they must be exactly the registered datasets and methods."""
    from bench.registry import DATASETS, METHODS, load_all

    load_all()
    r = subprocess.run([sys.executable, "-m", "bench", "list"], check=False, cwd=REPO, capture_output=True,
                       text=True, timeout=60, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    lines = dict(line.split(":", 1) for line in r.stdout.splitlines())
    assert lines["datasets"].split() == sorted(DATASETS)
    assert lines["methods"].split() == sorted(METHODS)


def test_only_a_lone_process_leaves_without_the_teardown(monkeypatch):
    """``python -m bench`` skips the interpreter's teardown (bench/__main__.py ``leave``) only when nothing else
    waits on it: not in a rank of a multi-process run, not with a live non-daemon thread."""
    import threading

    from bench.__main__ import _single_process

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert _single_process()
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert not _single_process()
    monkeypatch.delenv("WORLD_SIZE")
    release = threading.Event()
    worker = threading.Thread(target=release.wait, daemon=False)
    worker.start()
    try:
        assert not _single_process()
    finally:
        release.set()
        worker.join()
    assert _single_process()


def test_output_and_exit_code_survive_the_fast_exit(tmp_path):
    """Everything printed before the fast exit arrives, through a pipe, and the exit code is the command's."""
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    ok = subprocess.run([sys.executable, "-m", "bench", "list"], check=False, cwd=REPO, capture_output=True,
                        text=True, timeout=60, env=env)
    assert ok.returncode == 0 and ok.stdout.startswith("datasets:") and ok.stdout.endswith("\n")
    bad = subprocess.run([sys.executable, "-m", "bench", "evaluate", "dataset=nonexistent"], check=False, cwd=REPO,
                         capture_output=True, text=True, timeout=120, env=env)
    assert bad.returncode == 2 and bad.stderr.startswith("posearena: error:") and "nonexistent" in bad.stderr
