"""Leaderboard CSVs and metrics.json: deterministic, atomic, locked.

One CSV per dataset, ``leaderboards/<family>/<dataset>.csv``, one row per (method, variant). Rows are sorted
by (method, variant); floats are written with ``format_value`` so that the same numbers always give the same
bytes. Nothing that depends on the run (wall clock, world size, output folder) goes into the CSV: those go to
metrics.json. Every write goes to a temporary file in the same folder and is renamed over the old file, so a
killed run leaves the previous file intact; a lock on the CSV's folder serialises concurrent updates (a lock on
the folder itself, not a ``.lock`` file beside the CSV, so a run leaves nothing behind in the checkout).
"""
from __future__ import annotations

import csv
import fcntl
import io
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

KEY_COLUMNS = ("method", "variant")
PROVENANCE_COLUMNS = ("num_samples", "code", "data", "predictions")
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def format_value(x: Any) -> str:
    """The one textual form of a number: 12 significant digits, no '-0', 'nan'/'inf' spelled out."""
    if isinstance(x, bool):
        return str(int(x))
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        s = f"{x:.12g}"
        return "0" if s == "-0" else s
    return str(x)


def safe_text(s: str) -> str:
    """Neutralise a text cell that a spreadsheet would run as a formula."""
    return "'" + s if s.startswith(_FORMULA_PREFIXES) else s


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the folder of ``path`` (concurrent runs updating one CSV lose no rows).

    flock on the directory itself creates no file, so nothing is left in the checkout after a run.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def csv_path(leaderboard_dir: Path, family: str, dataset: str) -> Path:
    return Path(leaderboard_dir) / family / f"{dataset}.csv"


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    if not path.exists():
        return [], []
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def render_csv(columns: Sequence[str], rows: Sequence[Mapping[str, str]]) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({c: r.get(c, "") for c in columns})
    return buf.getvalue().encode()


def make_row(method: str, variant: str, metrics: Mapping[str, float], provenance: Mapping[str, Any]) -> dict[str, str]:
    row = {"method": safe_text(method), "variant": safe_text(variant)}
    row.update({k: format_value(v) for k, v in metrics.items()})
    row.update({k: safe_text(format_value(provenance[k])) for k in PROVENANCE_COLUMNS})
    return row


def merge_columns(old: Sequence[str], metric_keys: Sequence[str]) -> list[str]:
    """Key columns, then metric columns (this run's order first, then any older ones), then provenance."""
    fixed = set(KEY_COLUMNS) | set(PROVENANCE_COLUMNS)
    metric_cols = list(metric_keys) + [c for c in old if c not in fixed and c not in metric_keys]
    return [*KEY_COLUMNS, *metric_cols, *PROVENANCE_COLUMNS]


def upsert_row(path: Path, row: dict[str, str], metric_keys: Sequence[str]) -> dict[str, str] | None:
    """Insert or replace the row of (method, variant) in the CSV at ``path``, atomically, under a lock.

    Returns the row it replaced (None for a new row), so the caller can tell the user what changed.
    """
    with locked(path):
        old_cols, rows = read_rows(path)
        key = (row["method"], row["variant"])
        old = next((r for r in rows if (r.get("method"), r.get("variant")) == key), None)
        rows = [r for r in rows if (r.get("method"), r.get("variant")) != key] + [row]
        rows.sort(key=lambda r: (r.get("method", ""), r.get("variant", "")))
        write_atomic(path, render_csv(merge_columns(old_cols, metric_keys), rows))
    return old


def metrics_json(payload: Mapping[str, Any]) -> bytes:
    """metrics.json bytes: sorted keys inside nested dicts would reorder metrics, so keep insertion order."""
    return (json.dumps(payload, indent=2, allow_nan=True) + "\n").encode()


SUMMARIES: dict[str, list[Callable[[Path, str], Any]]] = {}


def register_summary(family: str) -> Callable[[F], F]:
    """Register ``fn(leaderboard_dir, dataset)``, run after every row of ``family`` is published: a family's
    summary table across datasets (AR_C over the BOP core datasets) without an ``if`` in the runner."""
    def deco(fn: F) -> F:
        SUMMARIES.setdefault(family, []).append(fn)
        return fn

    return deco


def summaries(family: str) -> list[Callable[[Path, str], Any]]:
    return list(SUMMARIES.get(family, ()))


BOP_CORE = ("lmo", "tless", "tudl", "icbin", "itodd", "hb", "ycbv")


def update_bop_core(leaderboard_dir: Path) -> Path:
    """Rewrite ``object6d/bop_core.csv``: AR_C, the mean AR over the 7 BOP core datasets.

    A method appears only when it has a row (same variant) in all 7 dataset CSVs; the per-dataset ARs are
    kept beside AR_C so the mean can be checked by eye.
    """
    folder = Path(leaderboard_dir) / "object6d"
    tables = {ds: {(r["method"], r.get("variant", "")): r for r in read_rows(folder / f"{ds}.csv")[1]}
              for ds in BOP_CORE}
    common = set.intersection(*(set(t) for t in tables.values()))
    rows = []
    for key in sorted(common):
        ars = [float(tables[ds][key]["AR"]) for ds in BOP_CORE]
        row = {"method": key[0], "variant": key[1], "AR_C": format_value(sum(ars) / len(ars))}
        row.update({f"AR_{ds}": tables[ds][key]["AR"] for ds in BOP_CORE})
        rows.append(row)
    path = folder / "bop_core.csv"
    columns = ["method", "variant", "AR_C", *(f"AR_{ds}" for ds in BOP_CORE)]
    with locked(path):
        write_atomic(path, render_csv(columns, rows))
    return path
