"""A DDP worker that dies makes the run exit non-zero, in bounded time, writing no metrics.json and no row.

A plugin method (``POSEARENA_PLUGINS``, see bench/registry.py) runs on the bundled COCO sample with
``devices=2``; its ``predict_step`` calls ``os._exit(1)`` on rank 1 (after leaving a marker file, so the test
knows the death happened and the failure is not something else). Two timings of the death:

- ``collective``: rank 0 carries on and reaches the metric's all-gather, whose peer is gone; gloo reports
  the reset connection and rank 0 fails.
- ``busy``: rank 0 sleeps for 600 s inside its first batch, i.e. it is NOT waiting in a collective that
  could notice. Only Lightning's ``_ChildProcessObserver`` (lightning/fabric/strategies/launchers/
  subprocess_script.py: it polls the launched ranks every 5 s and SIGKILLs the main process and the other
  ranks once one exits non-zero) can end this run early, so finishing far below 600 s proves that guard
  is in force: no guard of our own (bench/ddp_guard.py) is needed.

The method is named through ``method=predictions method.name=dying``: the CLI only accepts a method name
that has a YAML in bench/conf/method (plugins have none).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LIMIT_S = 120

PLUGIN = '''
import os
import time

from bench.registry import register_method
from methods.base import PoseMethod


class Dying(PoseMethod):
    family = "human2d"

    def __init__(self, dataset, marker, mode):
        super().__init__()
        self.dataset, self.marker, self.mode = dataset, marker, mode

    def predict_step(self, batch, batch_idx=0):
        if self.global_rank == 1:
            open(self.marker, "w").close()
            os._exit(1)
        if self.mode == "busy":
            time.sleep(600)
        return [self.dataset.empty_prediction(s) for s in batch]


@register_method("dying")
def build(cfg, dataset, weights):
    return Dying(dataset, os.environ["DYING_MARKER"], os.environ["DYING_MODE"])
'''


def _run(tmp: Path, mode: str) -> tuple[int, float, str, Path, Path, Path]:
    tmp.mkdir()
    (tmp / "dying_plugin.py").write_text(PLUGIN)
    lb = tmp / "lb" / "human2d"
    lb.mkdir(parents=True)
    (lb / "coco.csv").write_text("method,variant,AP\nold,,0.5\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp}{os.pathsep}{REPO}", "POSEARENA_PLUGINS": "dying_plugin",
           "DYING_MARKER": str(tmp / "rank1_died"), "DYING_MODE": mode}
    env.pop("POSEARENA_DEBUG", None)
    cmd = [sys.executable, "-m", "bench", "evaluate", "method=predictions", "method.name=dying", "dataset=coco",
           "devices=2", "batch_size=1", "accelerator=cpu", f"out={tmp / 'out'}", f"leaderboard_dir={tmp / 'lb'}"]
    t0 = time.monotonic()
    # own session: on a timeout the whole group (the launched rank included) is killed, nothing is left behind
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=LIMIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"{mode}: the run did not end within {LIMIT_S} s after a worker died")
    return proc.returncode, time.monotonic() - t0, err, tmp / "rank1_died", tmp / "out", lb / "coco.csv"


@pytest.mark.slow
def test_dead_rank_ends_the_run_nonzero_without_writing(tmp_path):
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = dict(zip(("collective", "busy"), pool.map(lambda m: _run(tmp_path / m, m), ("collective", "busy"))))
    for mode, (rc, elapsed, err, marker, out, csv) in runs.items():
        assert marker.exists(), f"{mode}: rank 1 never ran predict_step:\n{err[-3000:]}"
        assert rc != 0, mode
        assert elapsed < LIMIT_S, (mode, elapsed)
        assert not out.exists(), f"{mode}: metrics.json folder written"
        assert csv.read_text() == "method,variant,AP\nold,,0.5\n", f"{mode}: leaderboard changed"
    rc, elapsed, *_ = runs["busy"]
    assert rc == -signal.SIGKILL, rc  # killed by Lightning's child-process observer, not by a collective error
    assert elapsed < 300, elapsed  # far below rank 0's 600 s sleep
