"""The leaderboard manifest: every committed row and how to reproduce it; regeneration and regression.

``leaderboards/manifest.yaml`` lists one entry per row: ``method``, ``dataset``, and what the row was computed
from (``predictions`` file, ``data_root``, ``overrides``), plus optional per-metric ``tolerances`` for the
regression check (exact by default). ``python -m bench leaderboards`` recomputes every row into a scratch tree
and then replaces the committed CSVs (so rows that left the manifest disappear); ``python -m bench regression``
recomputes them and compares with the committed CSVs, printing a table of every difference. Each run also
writes ``leaderboards/curves/<family>/<dataset>/<method>[__<variant>].json`` (the page's plots, bench/page.py),
regenerated and replaced together with the CSVs.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bench.errors import InputError
from bench.leaderboard import read_rows
from bench.provenance import REPO

MANIFEST = REPO / "leaderboards" / "manifest.yaml"
NON_METRIC = {"method", "variant", "num_samples", "code", "data", "predictions"}


@dataclass
class Entry:
    method: str
    dataset: str
    predictions: str | None = None
    data_root: str | None = None
    overrides: list[str] = field(default_factory=list)
    tolerances: dict[str, float] = field(default_factory=dict)
    env: str = "posearena"  # the nox environment that can run it (BlazePose needs the numpy<2 one)

    @property
    def board(self) -> str:
        """The leaderboard the row is in: the dataset, or ``<dataset>_<task>`` for a BOP task other than
        localization (``dataset.task=detection`` -> ``ycbv_detection``, as the dataset names its CSV)."""
        tasks = [o.split("=", 1)[1] for o in self.overrides if o.startswith("dataset.task=")]
        return f"{self.dataset}_{tasks[-1]}" if tasks and tasks[-1] != "localization" else self.dataset

    def args(self) -> list[str]:
        """The evaluate overrides that reproduce this row (the one place they are built)."""
        args = [f"method={self.method}", f"dataset={self.dataset}"]
        if self.predictions:
            args.append(f"predictions={REPO / self.predictions}")
        if self.data_root:
            args.append(f"data_root={REPO / self.data_root}")
        return args + list(self.overrides) + ["progress=false"]

    def command(self, leaderboard_dir: Path, out: Path) -> list[str]:
        return [*self.args(), f"leaderboard_dir={leaderboard_dir}", f"out={out}"]


def load_manifest(path: Path = MANIFEST) -> list[Entry]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise InputError(path, None, None, f"cannot read the manifest: {e}") from e
    entries = []
    for i, raw in enumerate(data.get("rows", [])):
        try:
            entries.append(Entry(**raw))
        except TypeError as e:
            raise InputError(path, f"rows[{i}]", None, str(e)) from e
    return entries


def python_for(env: str) -> str:
    """The interpreter of a nox environment: ``$POSEARENA_PYTHON_<ENV>`` (set by noxfile), else this one."""
    return os.environ.get(f"POSEARENA_PYTHON_{env.upper()}", sys.executable)


def regenerate_into(entries: list[Entry], leaderboard_dir: Path) -> None:
    """Compute every manifest row into ``leaderboard_dir``: in this process through the runner's ``score`` and
    ``publish`` when this interpreter is the row's environment, else as ``python -m bench evaluate`` in that
    environment's interpreter (BlazePose's numpy<2 one)."""
    from bench.config import compose
    from bench.run import publish, score

    with tempfile.TemporaryDirectory() as scratch:
        for i, e in enumerate(entries):
            print(f"[{i + 1}/{len(entries)}] {e.method} on {e.dataset} {' '.join(e.overrides)}", flush=True)
            out = Path(scratch) / str(i)
            python = python_for(e.env)
            # the same interpreter path (not resolved: every venv's python links to one base interpreter)
            if os.path.abspath(python) == os.path.abspath(sys.executable):
                try:
                    publish(score(compose(e.args())), out, leaderboard_dir)
                except InputError as err:
                    raise InputError(MANIFEST, f"rows[{i}]", None, f"{e.method} on {e.dataset} failed: "
                                     f"{err.line()}") from err
                continue
            cmd = [python, "-m", "bench", "evaluate", *e.command(leaderboard_dir, out)]
            done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
                raise InputError(MANIFEST, f"rows[{i}]", None, f"{e.method} on {e.dataset} failed: {tail}")


def regenerate(manifest: Path = MANIFEST) -> None:
    """Rebuild the committed leaderboards from the manifest (a row not in the manifest is dropped)."""
    target = manifest.parent
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "lb"
        regenerate_into(load_manifest(manifest), fresh)
        for old in _generated(target):
            if not (fresh / old.relative_to(target)).exists():
                old.unlink()
        for new in _generated(fresh):
            dest = target / new.relative_to(fresh)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not dest.exists() or dest.read_bytes() != new.read_bytes():
                shutil.copyfile(new, dest)


def _generated(folder: Path) -> list[Path]:
    """What a regeneration writes: the CSVs and the curve files the page plots (leaderboards/curves/)."""
    return sorted([*folder.rglob("*.csv"), *(folder / "curves").rglob("*.json")])


def _rows(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    return {(r["method"], r["variant"]): r for r in read_rows(path)[1]}


def compare(committed_dir: Path, fresh_dir: Path, entries: list[Entry]) -> list[tuple[str, str, str, str, str, str]]:
    """Differences between committed and recomputed metric cells: (csv, method, variant, metric, old, new)."""
    tolerances = {(e.method, e.dataset): e.tolerances for e in entries}
    diffs = []
    names = sorted({p.relative_to(committed_dir) for p in committed_dir.rglob("*.csv")}
                   | {p.relative_to(fresh_dir) for p in fresh_dir.rglob("*.csv")})
    for name in names:
        old, new = _rows(committed_dir / name), _rows(fresh_dir / name)
        for key in sorted(set(old) | set(new)):
            if key not in old or key not in new:
                diffs.append((str(name), *key, "(row)", "present" if key in old else "missing",
                              "present" if key in new else "missing"))
                continue
            tol = tolerances.get((key[0], name.stem), {})
            for col in sorted((set(old[key]) | set(new[key])) - NON_METRIC):
                a, b = old[key].get(col, ""), new[key].get(col, "")
                if a == b:
                    continue
                t = tol.get(col, 0.0)
                try:
                    if t > 0 and abs(float(a) - float(b)) <= t:
                        continue
                except ValueError:
                    pass
                diffs.append((str(name), *key, col, a, b))
    return diffs


def regression(manifest: Path = MANIFEST) -> int:
    """Recompute every row; 0 when all metric cells equal the committed ones (within tolerances), else 1."""
    from rich.console import Console
    from rich.table import Table

    entries = load_manifest(manifest)
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "lb"
        regenerate_into(entries, fresh)
        diffs = compare(manifest.parent, fresh, entries)
    console = Console()
    if not diffs:
        console.print(f"regression: {len(entries)} rows recomputed, all metrics equal the committed leaderboards")
        return 0
    table = Table(title="regression: recomputed metrics differ from the committed leaderboards")
    for col in ("csv", "method", "variant", "metric", "committed", "recomputed"):
        table.add_column(col)
    for d in diffs:
        table.add_row(*d)
    console.print(table)
    return 1
