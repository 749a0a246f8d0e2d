"""The results table printed to the console at the end of a run (the HTML page is bench/page.py)."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table

from bench.leaderboard import format_value

MAX_ROWS = 24  # per-action breakdowns can add dozens of keys: the table shows the headline ones


def print_result(console: Console, result, published) -> None:
    """``result``: the run's :class:`bench.run.Scores`; ``published``: where it went (:class:`bench.run.Published`)."""
    title = f"{result.method} on {result.dataset}" + (f" ({result.variant})" if result.variant else "")
    if result.bundled:
        title += "  [bundled sample]"
    table = Table(title=title, show_lines=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    keys = [k for k in result.metric_keys if k in result.metrics] or list(result.metrics)
    extra = [k for k in result.metrics if k not in keys]
    for k in (keys + extra)[:MAX_ROWS]:
        table.add_row(k, format_value(round(result.metrics[k], 4)))
    console.print(table)
    if len(keys) + len(extra) > MAX_ROWS:
        console.print(f"({len(keys) + len(extra) - MAX_ROWS} more metrics in metrics.json)")
    console.print(f"samples: {result.num_samples}", soft_wrap=True)
    console.print(f"metrics.json: {published.out_dir / 'metrics.json'}", soft_wrap=True, highlight=False)
    console.print(f"leaderboard:  {published.csv_path}", soft_wrap=True, highlight=False)
    if published.replaced is not None:
        console.print(replaced_line(result, published.replaced), soft_wrap=True, highlight=False)


def replaced_line(result, replaced: dict[str, str]) -> str:
    """One line saying which row this run replaced, with the old and the new headline value."""
    key = next((k for k in result.metric_keys if k in result.metrics), None)
    row = f"{result.method!r}" + (f" (variant {result.variant!r})" if result.variant else "")
    if key is None:
        return f"replaced the leaderboard row of {row}"
    old = replaced.get(key, "") or "none"
    return f"replaced the leaderboard row of {row}: {key} {old} -> {format_value(result.metrics[key])}"
