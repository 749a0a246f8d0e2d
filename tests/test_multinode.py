"""The README's cluster line: ``torchrun --nnodes 2 ... -m bench evaluate ... num_nodes=2`` gives the numbers
and the leaderboard row of a single-process run.

Two torchrun "nodes" of one process each (``--nnodes 2 --nproc-per-node 1 --node-rank 0/1``, static rendezvous
on 127.0.0.1) run the same command with ``devices=1 num_nodes=2``; the cases have an odd number of samples
(COCO: 7 images, BOP case2: 9 images), so the DistributedSampler pads one duplicate in. Compared with ``==``:
metrics.json without its timings and the provenance that names the run (world size, config, code hash), the
curves file, and the CSV bytes without the ``code`` column (a hash of the source tree: it moves when a file is
edited between the two runs). A hang (a node that never joins) fails at the timeout instead of blocking CI.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli

pytestmark = pytest.mark.slow

TIMEOUT_S = 300  # both nodes together; a run takes about 50 s on 2 busy cores
BOP_CASE = REPO / "tests" / "data" / "bop_golden" / "case2"
# set by an outer launcher (a test run under torchrun or SLURM): they would point the nodes elsewhere
LAUNCHER_VARS = ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "NODE_RANK",
                 "GROUP_RANK", "TORCHELASTIC_RUN_ID", "SLURM_JOB_ID", "SLURM_NTASKS", "POSEARENA_DEBUG")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_cmd(rank: int, port: int, args: list[str]) -> list[str]:
    """The documented line for one node: torchrun (``python -m torch.distributed.run``) around the CLI."""
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
            "--node-rank", str(rank), "--master-addr", "127.0.0.1", "--master-port", str(port),
            "-m", "bench", "evaluate", *args]


def _stop(procs: list[subprocess.Popen]) -> None:
    """Kill what is still running, torchrun's workers included (each node leads its own process group)."""
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def _run_two_nodes(tmp: Path, args: list[str]) -> None:
    """Start both nodes; fail as soon as one exits non-zero, or when the pair runs past TIMEOUT_S."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}
    env["PYTHONPATH"] = str(REPO)
    port, procs, logs = _free_port(), [], [tmp / f"node{r}.log" for r in (0, 1)]
    try:
        for rank, log in enumerate(logs):
            with log.open("w") as f:
                procs.append(subprocess.Popen(_node_cmd(rank, port, args), cwd=REPO, env=env, stdout=f,
                                              stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.monotonic() + TIMEOUT_S
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            if any(p.poll() not in (None, 0) for p in procs):
                break
            time.sleep(0.5)
        codes = [p.poll() for p in procs]
    finally:
        _stop(procs)
    tails = "\n".join(f"--- node {r} ---\n{log.read_text()[-2000:]}" for r, log in enumerate(logs))
    assert all(c in (None, 0) for c in codes), f"exit codes {codes} (None: killed)\n{tails}"
    assert None not in codes, f"timed out after {TIMEOUT_S} s\n{tails}"


def _outputs(out: Path, lb: Path, family: str, dataset: str) -> tuple[dict, int, bytes, bytes]:
    """metrics.json less what names the run, its world size, the curves bytes, the CSV less ``code``."""
    m = json.loads((out / "metrics.json").read_text())
    prov = m.pop("provenance")
    world = prov.pop("world_size")
    for k in ("config", "code", "code_version"):
        prov.pop(k)
    m.pop("timings")
    lines = (lb / family / f"{dataset}.csv").read_bytes().splitlines()
    assert len(lines) == 2 and all(b'"' not in x for x in lines)
    drop = lines[0].split(b",").index(b"code")
    csv = b"\n".join(b",".join(c for i, c in enumerate(x.split(b",")) if i != drop) for x in lines)
    return {**m, "provenance": prov}, world, (out / "curves.json").read_bytes(), csv


def _single_and_two_nodes(tmp: Path, family: str, dataset: str, args: list[str]):
    one_out, one_lb, two_out, two_lb = (tmp / n for n in ("out1", "lb1", "out2", "lb2"))
    r = run_cli("evaluate", *args, "devices=1", "accelerator=cpu", f"out={one_out}", f"leaderboard_dir={one_lb}",
                "progress=false", timeout=TIMEOUT_S)
    assert r.returncode == 0, r.stderr[-3000:]
    _run_two_nodes(tmp, [*args, "devices=1", "num_nodes=2", "accelerator=cpu", f"out={two_out}",
                         f"leaderboard_dir={two_lb}", "progress=false"])
    return _outputs(one_out, one_lb, family, dataset), _outputs(two_out, two_lb, family, dataset)


def _check(single, nodes, headline: str, num_samples: int) -> None:
    assert single[1] == 1 and nodes[1] == 2, "world sizes"
    assert single[0]["num_samples"] == num_samples
    metrics = single[0]["metrics"]
    assert 0 < metrics[headline] < 1 and f"{headline}_ci_low" in metrics, metrics
    assert nodes[0] == single[0]
    assert nodes[2] == single[2], "curves.json"
    assert nodes[3] == single[3], "leaderboard CSV"


def test_coco_two_nodes_equal_one_process(tmp_path, coco7):
    root, preds = coco7
    args = ["method=mine", "dataset=coco", f"data_root={root}", f"predictions={preds}"]
    single, nodes = _single_and_two_nodes(tmp_path, "human2d", "coco", args)
    _check(single, nodes, "AP", 7)


def test_bop_two_nodes_equal_one_process(tmp_path):
    args = ["method=synthref", "dataset=ycbv", f"data_root={BOP_CASE / 'datasets' / 'ycbv'}",
            f"predictions={BOP_CASE / 'results' / 'goldcase2_ycbv-test.csv'}"]
    single, nodes = _single_and_two_nodes(tmp_path, "object6d", "ycbv", args)
    _check(single, nodes, "AR", 9)


def test_a_launcher_world_that_devices_and_num_nodes_do_not_match_is_refused(tmp_path, coco7):
    """Without ``num_nodes=`` under a launcher, each process would score every sample as a world of one and
    all would write the same files: the mismatch is one line and exit 2 on every rank, nothing written."""
    root, preds = coco7
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}
    env["PYTHONPATH"] = str(REPO)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "bench",
           "evaluate", "method=mine", "dataset=coco", f"data_root={root}", f"predictions={preds}", "devices=1",
           "accelerator=cpu", f"out={tmp_path / 'out'}", f"leaderboard_dir={tmp_path / 'lb'}"]
    r = subprocess.run(cmd, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert r.returncode != 0
    assert r.stderr.count("the launcher started 2 processes but devices x num_nodes = 1") == 2, r.stderr[-3000:]
    assert not (tmp_path / "out").exists() and not (tmp_path / "lb").exists()
