"""The static HTML leaderboard page (``python -m bench report [out=DIR]``) and the curve data it plots.

Curves: a run writes ``curves.json`` beside metrics.json: the plots the metric returns from ``curves()``
(metrics/protocol.py: PR curves for COCO AP, PCK against the threshold for MP-100 / 3DHP, recall against the
threshold for BOP, per-action errors for H36M, per-part PCKh for MPII); the page only draws them.
``bench leaderboards`` copies each manifest row's file to
``leaderboards/curves/<family>/<dataset>/<method>[__<variant>].json``, so the page is built from committed
files only. The format is generic, one list of plots::

    {"method", "dataset", "variant", "plots": [{"title", "kind": "line" | "bar", "xlabel", "ylabel",
                                                 "x": [...], "series": {"name": [y, ...]}}]}

numbers rounded to 6 decimals and written with sorted keys (:func:`dumps`), so the same run gives the same bytes.

The page: one sortable table per leaderboard CSV (click a header; a few lines of inline JavaScript, nothing
fetched: it works offline), a metric with ``_ci_low`` / ``_ci_high`` columns is shown as ``value [low, high]``,
the sample count, one details cell with the provenance hashes (code version, data fingerprint, predictions) and
one with the per-group columns (``MPJPE/Walking``, ...), so that every table fits a 1400 px window; the date of
the CSV's last commit when git knows it; below each table the PNG plots of its rows' curves (matplotlib, Agg),
fractions on a 0..1 axis. A table with no rows says why (bop_core: AR_C needs all 7 core datasets).
"""
from __future__ import annotations

import html
import json
import math
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

from bench.leaderboard import BOP_CORE, KEY_COLUMNS, read_rows
from bench.provenance import REPO

CI_SUFFIXES = ("_ci_low", "_ci_high")
FOLDED = ("code", "data", "predictions")  # provenance hashes: one details cell on the page
FRACTIONS = frozenset({"recall", "precision", "pck", "pckh", "pck3d", "ap", "ar", "auc", "accuracy"})


# ------------------------------------------------------------------------------------------------ curves


def dumps(data: dict[str, Any]) -> bytes:
    """The one byte form of a curves file."""
    return (json.dumps(data, indent=1, sort_keys=True, allow_nan=False) + "\n").encode()


def curves_path(leaderboard_dir: Path, family: str, dataset: str, method: str, variant: str) -> Path:
    name = method + (f"__{variant}" if variant else "")
    safe = "".join(c if c.isalnum() or c in "-_.@" else "_" for c in name)
    return Path(leaderboard_dir) / "curves" / family / dataset / f"{safe}.json"


# ------------------------------------------------------------------------------------------------ page


def _csv_date(path: Path) -> str:
    try:
        done = subprocess.run(["git", "log", "-1", "--format=%cs %h", "--", str(path)], cwd=path.parent,
                              capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def _num(s: str) -> float | None:
    try:
        return float(s)
    except ValueError:
        return None


def _fmt(s: str) -> str:
    v = _num(s)
    if v is None or math.isnan(v) or float(v).is_integer() and "." not in s:
        return s
    return f"{v:.4f}" if abs(v) < 10 else f"{v:.2f}"


def _short(code: str) -> str:
    """``0.1.0+0ca123e5fbfd`` -> ``0.1.0+0ca123e5``: enough to tell code versions apart at a glance."""
    version, sep, digest = code.partition("+")
    return version + sep + digest[:8] if sep else code[:12]


MAX_SHOWN = 8  # metric columns with a cell of their own; the rest of a wide table (NOCS: 19) go in one cell


def _layout(columns: list[str]) -> tuple[list[str], list[str], list[str], bool]:
    """Columns with a cell of their own, further metrics for one "more" cell, per-group columns
    (``MPJPE/Walking``) for one breakdown cell, and whether there is provenance to fold: long hashes, 19
    metrics or 60 per-action columns would push the first metrics away."""
    plain = [c for c in columns if not c.endswith(CI_SUFFIXES) and c not in FOLDED and "/" not in c]
    keys = [c for c in plain if c in KEY_COLUMNS]
    metrics = [c for c in plain if c not in KEY_COLUMNS]
    per_group = [c for c in columns if "/" in c and not c.endswith(CI_SUFFIXES)]
    shown, more = metrics[:MAX_SHOWN], metrics[MAX_SHOWN:]
    return keys + shown, more, per_group, any(c in FOLDED for c in columns)


def _cell(column: str, row: dict[str, str]) -> str:
    """A metric with its interval (which may wrap under it when space is short), or a key column."""
    raw = row.get(column, "") or ""
    if column == "variant":  # a long variant (``a=x,b=y``) may wrap after its commas
        return f'<td class="key wrap">{html.escape(raw).replace(",", ",<wbr>")}</td>'
    if column in KEY_COLUMNS:
        return f'<td class="key">{html.escape(raw)}</td>'
    v = _num(raw)
    text = f'<span class="v">{html.escape(_fmt(raw))}</span>'
    lo, hi = row.get(column + "_ci_low"), row.get(column + "_ci_high")
    if lo and hi:
        text += f' <span class="ci">[{html.escape(_fmt(lo))}, {html.escape(_fmt(hi))}]</span>'
    sort = "" if v is None or math.isnan(v) else f' data-v="{v!r}"'
    return f'<td class="wrap"{sort}>{text}</td>' if lo and hi else f"<td{sort}>{text}</td>"


def _breakdown_cell(columns: list[str], row: dict[str, str]) -> str:
    """Per-group values as a small group x metric table (or metric x group, whichever is narrower) behind a
    closed <details> (it opens over the page)."""
    metrics = list(dict.fromkeys(c.split("/", 1)[0] for c in columns))
    groups = list(dict.fromkeys(c.split("/", 1)[1] for c in columns))
    cols, rows = (metrics, groups) if len(metrics) <= len(groups) else (groups, metrics)  # the narrow way round

    def value(a: str, b: str) -> str:
        m, g = (a, b) if cols is metrics else (b, a)
        return html.escape(_fmt(row.get(f"{m}/{g}") or ""))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join(f"<tr><th>{html.escape(r)}</th>" + "".join(f"<td>{value(c, r)}</td>" for c in cols) + "</tr>"
                   for r in rows)
    return (f'<td class="more"><details><summary>{len(groups)} groups</summary><div class="pop"><table>'
            f"<thead><tr><th></th>{head}</tr></thead><tbody>{body}</tbody></table></div></details></td>")


def _more_cell(columns: list[str], row: dict[str, str]) -> str:
    """Metrics past ``MAX_SHOWN`` as a small key/value list behind a closed <details>."""
    body = "".join(f"<dt>{html.escape(c)}</dt><dd>{html.escape(_fmt(row.get(c) or ''))}</dd>" for c in columns)
    return (f'<td class="more"><details><summary>{len(columns)} more</summary><dl class="pop">{body}</dl>'
            "</details></td>")


def _provenance_cell(row: dict[str, str]) -> str:
    """code, data and predictions in one closed <details>: a short code version shows, the full hashes are a
    hover (title) or a click away."""
    items = [(k, row.get(k) or "") for k in FOLDED]
    tip = "\n".join(f"{k}: {v or '-'}" for k, v in items)
    body = "".join(f"<dt>{k}</dt><dd>{html.escape(v) or '&ndash;'}</dd>" for k, v in items)
    summary = html.escape(_short(row.get("code") or "")) or "&ndash;"
    return (f'<td class="more"><details title="{html.escape(tip)}"><summary>{summary}</summary>'
            f'<dl class="pop">{body}</dl></details></td>')


def render_table(columns: list[str], rows: list[dict[str, str]]) -> str:
    """One sortable table that fits a 1400 px window: CI columns folded into their metric's cell; metrics past
    ``MAX_SHOWN``, per-group columns and the provenance hashes into one details cell each."""
    plain, more, per_group, prov = _layout(columns)
    heads = plain + ["more"] * bool(more) + ["breakdown"] * bool(per_group) + ["provenance"] * prov
    head = "".join(f'<th data-col="{i}"{cls}>{html.escape(c)}</th>' for i, c in enumerate(heads)
                   for cls in [' class="key"' if c in KEY_COLUMNS else ""])
    body = []
    for r in rows:
        cells = [_cell(c, r) for c in plain] + [_more_cell(more, r)] * bool(more)
        cells += [_breakdown_cell(per_group, r)] * bool(per_group) + [_provenance_cell(r)] * prov
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="lb"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def is_fraction(plot: dict[str, Any]) -> bool:
    """Shares (recall, precision, PCK, AP, AUC, "share of ...") go on a 0..1 axis, so that a flat 0.6875 reads as flat; errors
    in mm or px keep matplotlib's data-driven range."""
    label = plot["ylabel"].strip().lower()
    return label in FRACTIONS or label.startswith(("share of", "fraction of"))


def render_plot(plot: dict[str, Any], rows: list[tuple[str, dict[str, Any]]], path: Path) -> tuple[float, float]:
    """One PNG: the plot of every row (method) that has it, series x methods in one axes; returns the y range
    drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=90)
    if plot["kind"] == "bar":
        n = sum(len(p["series"]) for _, p in rows) or 1
        width = 0.8 / n
        k = 0
        for label, p in rows:
            for s, ys in p["series"].items():
                xs = [i + (k - (n - 1) / 2) * width for i in range(len(p["x"]))]
                ax.bar(xs, [math.nan if y is None else y for y in ys], width, label=f"{label}: {s}")
                k += 1
        ax.set_xticks(range(len(rows[0][1]["x"])), rows[0][1]["x"], rotation=45, ha="right", fontsize=7)
    else:
        for label, p in rows:
            for s, ys in p["series"].items():
                ax.plot(p["x"], [math.nan if y is None else y for y in ys], label=f"{label}: {s}")
    if is_fraction(plot):  # a little margin so a line at exactly 0 or 1 is not hidden under the frame
        ys = [y for _, p in rows for s in p["series"].values() for y in s if y is not None and math.isfinite(y)]
        ax.set_ylim(min([-0.02, *ys]), max([1.02, *ys]))
    ax.set_title(plot["title"], fontsize=10)
    ax.set_xlabel(plot["xlabel"])
    ax.set_ylabel(plot["ylabel"])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", metadata={"Software": None})
    lo, hi = ax.get_ylim()
    plt.close(fig)
    return float(lo), float(hi)


def _methods(path: Path) -> set[str]:
    return {r["method"] + (f" ({r['variant']})" if r.get("variant") else "") for r in read_rows(path)[1]}


def _why_bop_core_empty(lb: Path) -> str:
    """AR_C needs all 7 core datasets: name them, and how far each method has got."""
    have = {ds: _methods(lb / "object6d" / f"{ds}.csv") for ds in BOP_CORE}
    n = len(BOP_CORE)
    text = (f"No rows yet: AR_C is the mean AR over the {n} BOP core datasets ({' '.join(BOP_CORE)}), so a method "
            f"appears here once it has a row (same variant) in all {n}.")
    progress = [f"{m} has {sum(m in s for s in have.values())} of {n} "
                f"({' '.join(ds for ds in BOP_CORE if m in have[ds])})" for m in sorted(set().union(*have.values()))]
    return html.escape(text + (" So far " + "; ".join(progress) + "." if progress else ""))


def _why_empty(lb: Path, family: str, dataset: str) -> str:
    """A section with no rows says what it is waiting for, so that it reads as a rule and not as a bug."""
    if (family, dataset) == ("object6d", "bop_core"):
        return _why_bop_core_empty(lb)
    return (f"No rows yet: <code>python -m bench evaluate method=NAME dataset={html.escape(dataset)}</code> "
            "adds one.")


def _load_curves(lb: Path, family: str, dataset: str) -> list[tuple[str, dict[str, Any]]]:
    folder = lb / "curves" / family / dataset
    out = []
    for f in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        data = json.loads(f.read_text())
        label = data.get("method", f.stem) + (f" ({data['variant']})" if data.get("variant") else "")
        out.append((label, data))
    return out


def build(leaderboard_dir: Path | None = None, out: Path | None = None) -> Path:
    """Write ``index.html`` and its PNGs into ``out`` (default ``build/leaderboard``); returns the page path."""
    lb = Path(leaderboard_dir) if leaderboard_dir else REPO / "leaderboards"
    out = Path(out) if out else REPO / "build" / "leaderboard"
    out.mkdir(parents=True, exist_ok=True)
    sections, toc = [], []
    for path in sorted(p for p in lb.rglob("*.csv") if "curves" not in p.relative_to(lb).parts):
        family, dataset = path.parent.name, path.stem
        columns, rows = read_rows(path)
        anchor = f"{family}-{dataset}"
        toc.append(f'<li><a href="#{anchor}">{html.escape(family)} / {html.escape(dataset)}</a> ({len(rows)})</li>')
        date = _csv_date(path)
        parts = [f'<section id="{anchor}"><h2>{html.escape(family)} / {html.escape(dataset)}</h2>',
                 f'<p class="prov">source: <code>{html.escape(str(path.relative_to(lb)))}</code>'
                 + (f"; last committed {html.escape(date)}" if date else "") + "</p>"]
        parts.append(render_table(columns, rows) if rows else f'<p class="empty">{_why_empty(lb, family, dataset)}</p>')
        curves = _load_curves(lb, family, dataset)
        by_title: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for label, data in curves:
            for p in data.get("plots", []):
                by_title.setdefault(p["title"], []).append((label, p))
        for i, (title, plots) in enumerate(by_title.items()):
            img = Path("img") / f"{anchor}-{i}.png"
            lo, hi = render_plot(plots[0][1], plots, out / img)
            ylabel = html.escape(plots[0][1]["ylabel"])
            parts.append(f'<figure data-ylabel="{ylabel}" data-ylim="{lo:.6g} {hi:.6g}"><img src="{img.as_posix()}" '
                         f'alt="{html.escape(title)}" width="576" height="324"><figcaption>{html.escape(title)}'
                         "</figcaption></figure>")
        parts.append("</section>")
        sections.append("\n".join(parts))
    template = (resources.files("bench") / "page_template.html").read_text()
    page = (template.replace("{{TOC}}", "\n".join(toc))
            .replace("{{SECTIONS}}", "\n".join(sections)))
    index = out / "index.html"
    index.write_text(page)
    return index


def cmd_report(args: list[str]) -> int:
    """``python -m bench report [out=DIR] [leaderboard_dir=DIR]``."""
    from bench.errors import InputError

    opts = {}
    for a in args:
        k, sep, v = a.partition("=")
        if not sep or k not in ("out", "leaderboard_dir"):
            raise InputError(None, None, k, "expected out=DIR or leaderboard_dir=DIR")
        opts[k] = Path(v)
    lb = opts.get("leaderboard_dir")
    if lb is not None and not lb.is_dir():
        raise InputError(lb, None, "leaderboard_dir", "not a folder")
    index = build(lb, opts.get("out"))
    print(f"leaderboard page: {index}")
    return 0
