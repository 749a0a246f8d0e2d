"""Time tools as a user runs them: whole processes, side by side.

Each tool is a command line; the runs alternate (tool A, tool B, tool C, then again), so a machine that gets
busier or quieter during the benchmark shifts every tool alike, and the median of ``runs`` wall times is
reported with the peak resident memory of the process (``os.wait4``'s ``ru_maxrss``: this child alone, its
imports and all). A process that fails stops the benchmark with its stderr.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Timing:
    """Wall seconds and peak RSS (MB) of each run of one tool, and its last stdout."""

    name: str
    walls: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    stdout: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.walls)

    @property
    def peak_mb(self) -> float:
        return max(self.rss_mb)


# Runs in a small process of its own: a child's peak RSS includes what it was forked from (Linux keeps the
# pre-exec high-water mark), so the process that forks the tool must not be the benchmark holding the case.
_RUNNER = """
import json, os, subprocess, sys, time
argv, out_path = json.loads(sys.argv[1]), sys.argv[2]
with open(out_path, "wb") as out:
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
proc.returncode = os.waitstatus_to_exitcode(status)
print(json.dumps({"wall": wall, "rss_kb": usage.ru_maxrss, "code": proc.returncode, "err": err.decode()[-3000:]}))
"""


def run_once(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Run ``argv`` to completion: (wall seconds, peak RSS in MB, stdout). Timed by a small runner process
    (``_RUNNER``): wall from just before the fork to the child's exit, ``ru_maxrss`` of that child alone."""
    with tempfile.NamedTemporaryFile() as out:
        r = subprocess.run([sys.executable, "-c", _RUNNER, json.dumps(argv), out.name], capture_output=True,
                           env=env, check=False)
        if r.returncode != 0:
            raise SystemExit(f"benchmark runner failed:\n{r.stderr.decode()[-3000:]}")
        rep = json.loads(r.stdout)
        if rep["code"] != 0:
            raise SystemExit(f"{' '.join(argv[:4])} ... failed ({rep['code']}):\n{rep['err']}")
        return rep["wall"], rep["rss_kb"] / 1024, Path(out.name).read_text()  # ru_maxrss: KB on Linux


def alternate(tools: dict[str, list[str]], runs: int = 5, env: dict[str, str] | None = None,
              progress: bool = True) -> dict[str, Timing]:
    """``runs`` rounds, each running every tool once in turn; the timings per tool."""
    timings = {name: Timing(name) for name in tools}
    for r in range(runs):
        for name, argv in tools.items():
            wall, rss, out = run_once(argv, env)
            t = timings[name]
            t.walls.append(wall)
            t.rss_mb.append(rss)
            t.stdout = out
            if progress:
                print(f"  round {r + 1}/{runs}  {name:<20} {wall:6.2f} s  {rss:7.0f} MB", file=sys.stderr, flush=True)
    return timings


def table(timings: dict[str, Timing], base: str) -> str:
    """Median wall, its ratio to ``base``, the spread of the runs and the peak RSS (and its ratio)."""
    b = timings[base]
    lines = [f"{'tool':<22}{'median s':>10}{'x ' + base:>24}{'min..max s':>16}{'peak MB':>10}{'x ' + base:>24}"]
    for name, t in timings.items():
        lines.append(f"{name:<22}{t.median:>10.2f}{t.median / b.median:>23.2f}x"
                     f"{min(t.walls):>8.2f}..{max(t.walls):<6.2f}{t.peak_mb:>10.0f}{t.peak_mb / b.peak_mb:>23.2f}x")
    return "\n".join(lines)
