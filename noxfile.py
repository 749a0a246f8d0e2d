"""posearena's sessions: tests, evaluate, bench, lint (and more as the families land).

All sessions share one virtual environment, ``.nox/posearena`` (torch alone is ~5 GB, so one install serves
every session); it is rebuilt when pyproject.toml or the pins below change. BlazePose needs numpy<2 and
protobuf<5 (mediapipe), so it gets its own environment, ``.nox/blazepose``.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "none"

ROOT = Path(__file__).parent
# torch and torchvision are pinned to the builds this platform serves from local disk; an open range would
# make pip fetch the newest CUDA build from the registry.
TORCH = ("torch==2.14.1", "torchvision==0.29.1")
ENVS = {
    "posearena": ("-e", ".[dev]"),
    "blazepose": ("-e", ".[dev,blazepose]"),
}


def _env(session: nox.Session, name: str = "posearena") -> str:
    """Create or refresh the shared environment ``.nox/<name>``; return its python."""
    env = ROOT / ".nox" / name
    py = env / "bin" / "python"
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + repr((TORCH, ENVS[name])).encode()).hexdigest()
    stamp = env / ".posearena-stamp"
    if py.exists() and stamp.exists() and stamp.read_text() == want:
        return str(py)
    if env.exists() and not py.exists():
        shutil.rmtree(env)
    if not py.exists():
        session.run(sys.executable, "-m", "venv", str(env), external=True)
    pip = (str(py), "-m", "pip", "install", "--quiet", "--progress-bar", "off")
    session.run(*pip, *TORCH, external=True)
    session.run(*pip, *ENVS[name], external=True)
    stamp.write_text(want)
    return str(py)


CHROMIUM = "/usr/bin/chromium"
# tests that need the numpy<2 environment (mediapipe, xtcocotools); elsewhere they skip with a reason
NUMPY1_TESTS = ("tests/methods/test_blazepose.py", "tests/methods/test_mediapipe_headpose.py",
                "tests/methods/test_mediapipe_wholebody.py", "tests/data/test_xtcocotools_live.py")
MEDIAPIPE_METHODS = ("blazepose", "mediapipe-headpose", "mediapipe-wholebody")


def _chromium(session: nox.Session, required: bool) -> None:
    """The page test opens the leaderboard page in Debian's headless Chromium: install it when it is missing
    and this session may (root, apt-get); otherwise say in one line what to install."""
    if Path(CHROMIUM).exists():
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        session.log("installing Debian's chromium for the leaderboard page test (tests/test_page.py)")
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        session.run("apt-get", "update", "-qq", external=True, env=env)
        session.run("apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium", external=True, env=env)
        return
    msg = (f"tests/test_page.py needs Chromium at {CHROMIUM}: install Debian's package "
           "(sudo apt-get install chromium) and run again")
    if required:
        session.error(msg)
    session.warn(msg)


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite (``nox -s tests -- -k coco`` passes options to pytest).

    Without options it runs everything: the suite in the shared environment, then ``NUMPY1_TESTS`` in the
    mediapipe/xtcocotools environment, where they must run (POSEARENA_BLAZEPOSE_ENV=1 turns a missing mediapipe
    or xtcocotools into a failure instead of a skip).
    """
    py = _env(session)
    _chromium(session, required=not session.posargs)
    session.run(py, "-m", "pytest", *(session.posargs or ["-q"]), external=True)
    if not session.posargs:
        bp = _env(session, "blazepose")
        session.run(bp, "-m", "pytest", "-q", *NUMPY1_TESTS, external=True,
                    env={"POSEARENA_BLAZEPOSE_ENV": "1"})


@nox.session
def evaluate(session: nox.Session) -> None:
    """``nox -s evaluate -- method=NAME dataset=NAME ...``; no arguments: BlazePose on the bundled COCO images."""
    args = session.posargs
    methods = [a.split("=", 1)[1] for a in args if a.startswith("method=")]
    needs_mediapipe = ((not methods or methods[-1] in MEDIAPIPE_METHODS)
                       and not any(a.startswith("predictions=") for a in args))
    py = _env(session, "blazepose" if needs_mediapipe else "posearena")
    session.run(py, "-m", "bench", "evaluate", *args, external=True)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against the references: ``nox -s bench -- metric=keypoint_ap`` (or bop, mpjpe)."""
    py = _env(session)
    metrics = [a.split("=", 1)[1] for a in session.posargs if a.startswith("metric=")] or ["keypoint_ap"]
    rest = [a for a in session.posargs if not a.startswith("metric=")]
    for m in metrics:
        session.run(py, "-m", f"bench.benchmarks.{m}", *rest, external=True)


@nox.session
def lint(session: nox.Session) -> None:
    py = _env(session)
    session.run(py, "-m", "ruff", "check", "bench", "methods", "metrics", "tests", "noxfile.py", external=True)


@nox.session
def leaderboards(session: nox.Session) -> None:
    """Regenerate every committed leaderboard CSV from leaderboards/manifest.yaml (byte-identical)."""
    env = {"POSEARENA_PYTHON_BLAZEPOSE": _env(session, "blazepose")}
    session.run(_env(session), "-m", "bench", "leaderboards", env=env, external=True)


@nox.session
def regression(session: nox.Session) -> None:
    """Recompute the committed leaderboard rows and fail, with a diff table, on any change."""
    env = {"POSEARENA_PYTHON_BLAZEPOSE": _env(session, "blazepose")}
    session.run(_env(session), "-m", "bench", "regression", env=env, external=True)


@nox.session
def compare(session: nox.Session) -> None:
    """Paired bootstrap of two leaderboard rows: ``nox -s compare -- a=ycbv/ppf b=ycbv/gdrnpp`` (see README)."""
    session.run(_env(session), "-m", "bench", "compare", *session.posargs, external=True)


@nox.session
def report(session: nox.Session) -> None:
    """The static leaderboard page from the committed CSVs: ``build/leaderboard/index.html``."""
    session.run(_env(session), "-m", "bench", "report", *session.posargs, external=True)
