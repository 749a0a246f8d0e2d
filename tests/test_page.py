"""The HTML leaderboard page (bench/page.py), rendered by headless Chromium.

The page is built from a copy of the committed leaderboards/ (CSVs and the curve files their runs wrote),
opened with ``chromium --headless --dump-dom``; an
inline script in the page records how many tables and rows exist and how many <img> loaded with a non-zero
natural width. A screenshot is saved to build/page-screenshot.png.
"""
from __future__ import annotations

import csv
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bench import page
from tests.conftest import REPO, run_cli

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOT = REPO / "build" / "page-screenshot.png"


def _chromium(tmp: Path, url: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
         f"--user-data-dir={tmp / 'profile'}", "--virtual-time-budget=10000", *extra, url],
        capture_output=True, text=True, timeout=180, check=False)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("page")
    lb = tmp / "lb"
    shutil.copytree(REPO / "leaderboards", lb)
    return page.build(lb, tmp / "site"), lb


def test_page_renders_tables_and_plots_in_chromium(built, tmp_path):
    index, lb = built
    if not Path(CHROMIUM).exists():
        pytest.fail(f"chromium not found at {CHROMIUM}: install Debian's chromium")
    r = _chromium(tmp_path, index.as_uri(), "--dump-dom")
    assert r.returncode == 0, r.stderr[-2000:]
    m = re.search(r'<div id="render-check"([^>]*)>', r.stdout)
    assert m, r.stdout[-2000:]
    attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', m.group(1)))
    counts = [len(list(csv.DictReader(p.read_text().splitlines()))) for p in lb.rglob("*.csv")
              if "curves" not in p.parts]
    n_rows = sum(counts)
    n_imgs = len(re.findall(r"<img ", index.read_text()))
    assert attrs["done"] == "yes"
    assert int(attrs["tables"]) == sum(1 for c in counts if c)
    assert int(attrs["rows"]) == n_rows > 0
    assert int(attrs["images"]) == n_imgs >= 4  # COCO's PR curves and the three BOP recall plots, at least
    assert int(attrs["images-ok"]) == n_imgs  # every plot decoded (naturalWidth > 0)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    r = _chromium(tmp_path, index.as_uri(), f"--screenshot={SCREENSHOT}", "--window-size=1280,2000")
    assert r.returncode == 0 and SCREENSHOT.stat().st_size > 10_000, r.stderr[-2000:]


def test_page_folds_confidence_intervals_and_sorts_numerically(tmp_path):
    table = page.render_table(["method", "variant", "AP", "AP_ci_low", "AP_ci_high", "code"],
                              [{"method": "a<b", "variant": "", "AP": "0.5", "AP_ci_low": "0.4", "AP_ci_high": "0.6",
                                "code": "x"}])
    assert "AP_ci_low" not in table and "[0.4000, 0.6000]" in table and 'data-v="0.5"' in table
    assert "a&lt;b" in table  # text is escaped


def test_report_command_and_bad_option(tmp_path):
    r = run_cli("report", f"out={tmp_path / 'site'}", f"leaderboard_dir={REPO / 'leaderboards'}")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "site" / "index.html").is_file()
    r = run_cli("report", "nosuch=1")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


def test_curves_file_bytes_are_stable():
    data = {"method": "m", "plots": [{"title": "t", "kind": "line", "xlabel": "x", "ylabel": "y", "x": [0.1],
                                      "series": {"s": [1 / 3]}}]}
    assert page.dumps(data) == page.dumps(dict(reversed(list(data.items()))))
    assert page._plot("t", "line", "x", "y", [0.1], {"s": [1 / 3]})["series"]["s"] == [0.333333]
