"""What one scoring found, the same whichever path (plain loop or Lightning) produced it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from metrics import bootstrap


@dataclass
class Outcome:
    """What scoring found before it is ordered and given provenance (either path gives the same)."""

    results: dict[str, float]
    num_samples: int
    intervals: dict[str, float] = field(default_factory=dict)
    curves: dict[str, Any] = field(default_factory=dict)
    stats: bootstrap.BootstrapStats | None = None
    bootstrap_info: dict[str, Any] = field(default_factory=dict)
    world_size: int = 1
    results_file: bytes | None = None  # a model run's predictions in the dataset's official format


def summarize(metric: Any, values: dict[str, Any], num_samples: int, samples: int, seed: int) -> Outcome:
    """Values, bootstrap interval and curves of a metric after its last update, all read from the metric's one
    cached evaluation (metrics/protocol.py)."""
    out = Outcome({k: float(v) for k, v in values.items()}, num_samples)
    out.stats = metric.bootstrap_stats()
    if samples > 0 and out.stats is not None:
        out.intervals = bootstrap.confidence_intervals(out.stats, samples, seed)
        out.bootstrap_info = {"samples": samples, "seed": seed, "level": bootstrap.DEFAULT_LEVEL,
                              "unit": out.stats.unit, "units": int(out.stats.ids.numel())}
    plots = metric.curves()
    out.curves = {"plots": plots} if plots else {}
    return out
