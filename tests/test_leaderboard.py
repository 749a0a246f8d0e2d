"""Leaderboard CSV writing: determinism, row replacement, formula neutralisation, atomicity, locking."""
from __future__ import annotations

import csv
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time

from bench import leaderboard as lb

PROV = {"num_samples": 4, "code": "0.1.0+abc", "data": "f00d", "predictions": "beef"}


def test_format_value_is_canonical():
    assert lb.format_value(0.1 + 0.2) == "0.3"
    assert lb.format_value(-0.0) == "0"
    assert lb.format_value(-1.0) == "-1"
    assert lb.format_value(1 / 3) == "0.333333333333"
    assert lb.format_value(float("inf")) == "inf"
    assert lb.format_value(7) == "7"


def test_upsert_sorts_replaces_and_is_byte_stable(tmp_path):
    path = tmp_path / "human2d" / "coco.csv"
    lb.upsert_row(path, lb.make_row("zeta", "", {"AP": 0.5, "AR": 0.6}, PROV), ["AP", "AR"])
    lb.upsert_row(path, lb.make_row("alpha", "", {"AP": 0.25, "AR": 0.75}, PROV), ["AP", "AR"])
    first = path.read_bytes()
    rows = list(csv.DictReader(first.decode().splitlines()))
    assert [r["method"] for r in rows] == ["alpha", "zeta"]
    assert first.decode().splitlines()[0] == "method,variant,AP,AR,num_samples,code,data,predictions"
    # same row again: same bytes
    lb.upsert_row(path, lb.make_row("zeta", "", {"AP": 0.5, "AR": 0.6}, PROV), ["AP", "AR"])
    assert path.read_bytes() == first
    # a new result for zeta replaces its row, the other row is untouched
    lb.upsert_row(path, lb.make_row("zeta", "", {"AP": 0.125, "AR": 0.6}, PROV), ["AP", "AR"])
    rows = list(csv.DictReader(path.read_text().splitlines()))
    assert [(r["method"], r["AP"]) for r in rows] == [("alpha", "0.25"), ("zeta", "0.125")]
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_text_cells_that_look_like_formulas_are_neutralised(tmp_path):
    path = tmp_path / "x.csv"
    lb.upsert_row(path, lb.make_row("=HYPERLINK(1)", "+v", {"AP": -1.0}, PROV), ["AP"])
    row = next(csv.DictReader(path.read_text().splitlines()))
    assert row["method"] == "'=HYPERLINK(1)" and row["variant"] == "'+v"
    assert row["AP"] == "-1"  # numbers keep their sign


def _add_row(args):
    path, i = args
    lb.upsert_row(path, lb.make_row(f"m{i:02d}", "", {"AP": i / 10}, PROV), ["AP"])


def test_concurrent_updates_lose_no_rows(tmp_path):
    path = tmp_path / "c.csv"
    with mp.get_context("fork").Pool(6) as pool:
        pool.map(_add_row, [(path, i) for i in range(30)])
    rows = list(csv.DictReader(path.read_text().splitlines()))
    assert sorted(r["method"] for r in rows) == [f"m{i:02d}" for i in range(30)]
    # the lock is taken on the folder: no lock or temp file is left beside the CSV
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.csv"]


def test_upsert_returns_the_row_it_replaced(tmp_path):
    path = tmp_path / "r.csv"
    assert lb.upsert_row(path, lb.make_row("m", "", {"AP": 0.5}, PROV), ["AP"]) is None
    old = lb.upsert_row(path, lb.make_row("m", "", {"AP": 0.25}, PROV), ["AP"])
    assert old is not None and old["AP"] == "0.5"
    assert lb.upsert_row(path, lb.make_row("m", "v2", {"AP": 0.75}, PROV), ["AP"]) is None


WRITER = r"""
import sys
from bench import leaderboard as lb
path = sys.argv[1]
big = {f"M{i}": 0.5 for i in range(2000)}
print("ready", flush=True)
while True:
    lb.upsert_row(__import__("pathlib").Path(path), lb.make_row("spam", "", big, {"num_samples": 1, "code": "c", "data": "d", "predictions": "p"}), list(big))
"""


def test_sigkill_mid_write_leaves_the_old_csv(tmp_path):
    path = tmp_path / "k.csv"
    lb.upsert_row(path, lb.make_row("keep", "", {"AP": 0.5}, PROV), ["AP"])
    before = path.read_bytes()
    for delay in (0.05, 0.2, 0.4):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": os.getcwd()})
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        rows = list(csv.DictReader(path.read_text().splitlines()))
        # either the old file or a complete newer one, never a torn one
        assert {r["method"] for r in rows} in ({"keep"}, {"keep", "spam"})
        assert all(len(r) == len(rows[0]) and None not in r.values() for r in rows)
        # the old row survives with its values, whichever of the two files is there
        old_row = next(csv.DictReader(before.decode().splitlines()))
        assert rows[0]["method"] == "keep" and {k: rows[0][k] for k in old_row} == old_row


def test_ar_c_only_for_methods_with_all_seven_core_datasets(tmp_path):
    ars = {"lmo": 0.5, "tless": 0.25, "tudl": 0.75, "icbin": 0.125, "itodd": 0.375, "hb": 0.625, "ycbv": 0.875}
    for ds, ar in ars.items():
        path = lb.csv_path(tmp_path, "object6d", ds)
        lb.upsert_row(path, lb.make_row("full", "", {"AR": ar}, PROV), ["AR"])
        if ds != "hb":
            lb.upsert_row(path, lb.make_row("partial", "", {"AR": 1.0}, PROV), ["AR"])
    rows = list(csv.DictReader(lb.update_bop_core(tmp_path).read_text().splitlines()))
    assert [r["method"] for r in rows] == ["full"]
    assert float(rows[0]["AR_C"]) == sum(ars.values()) / 7
    assert rows[0]["AR_ycbv"] == "0.875"
