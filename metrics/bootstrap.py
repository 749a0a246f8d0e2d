"""Bootstrap confidence intervals of headline metrics, and the paired bootstrap of two methods.

A metric that supports the bootstrap has a ``bootstrap_stats()`` method returning :class:`BootstrapStats`:
the ids of its resampling units (ascending, deduplicated: the same on any number of processes) and a
vectorised ``statistic(weights)`` that recomputes its headline keys for ``B`` replicates at once. A
replicate draws ``n`` units with replacement; unit ``i`` drawn ``k`` times gets weight ``k``, so the
statistic is a weighted sum over per-unit sufficient statistics (no re-matching, no re-alignment).

Each replicate follows the rules of the dataset's own protocol: it re-weights per-unit statistics taken from
the same evaluation that gives the reported value, so the replicate drawing every unit once (``w = ones``) is
that value, for every dataset with a bootstrap (tests/test_intervals.py).

Resampling units (why: the unit is the largest piece whose score does not depend on the other pieces):

- COCO and CrowdPose AP: images (matching is per image; the PR accumulation is re-weighted per image; the
  TP/FP flags come from pycocotools' rules for COCO and from xtcocotools' ``keypoints_crowd`` rules for
  CrowdPose);
- BOP AR: test images (matching is per image and object);
- H36M MPJPE / P-MPJPE and 3DHP: sequences (frames of one sequence are strongly correlated, a sequence is one
  sample of the dataset; per-frame errors are not kept);
- MP-100 PCK: episode-queries (one sample each);
- MPII PCKh: annotated people (one sample each).

Interval: the percentile interval ``[q_{alpha/2}, q_{1-alpha/2}]`` of the B replicates (``torch.quantile``
with linear interpolation), B = 1000 and seed 0 by default. The indices are drawn with a CPU
``torch.Generator`` seeded once, so the interval depends only on (seed, B, n) and the sorted per-unit data:
byte-identical for any batch size, sample order or process count.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

DEFAULT_SAMPLES = 1000
DEFAULT_SEED = 0
DEFAULT_LEVEL = 0.95
_CHUNK_ELEMS = 1 << 24  # replicates are evaluated in chunks of about this many weight entries


@dataclass
class BootstrapStats:
    """What a metric gives the bootstrap: unit ids (ascending, unique), keys and ``statistic``.

    ``statistic(w)`` takes float64 weights ``(B, n)`` (how often each unit was drawn) and returns
    ``(B, len(keys))`` float64; ``w = ones`` must give the metric's own value. ``count_statistic``, when given,
    is the same function for whole-number draw counts, handed over as integers laid out ``(n, B)`` (C order):
    a kernel that sums counts exactly can skip the float conversion and the transpose.
    """

    ids: Tensor
    keys: tuple[str, ...]
    statistic: Callable[[Tensor], Tensor]
    unit: str
    cost: int = 0  # largest intermediate per replicate, in elements (0: the number of units)
    count_statistic: Callable[[np.ndarray], Tensor] | None = None

    def evaluate(self, weights: Tensor) -> Tensor:
        """``statistic`` over chunks of replicates (bounded memory whatever B); integer ``weights`` (draw
        counts) go to ``count_statistic`` when there is one."""
        if self.count_statistic is not None and not weights.is_floating_point():
            return self.count_statistic(np.ascontiguousarray(weights.cpu().numpy().T))
        if not weights.is_floating_point():
            weights = weights.to(torch.float64, memory_format=torch.contiguous_format)
        per = max(int(self.cost) or int(self.ids.numel()), 1)
        step = max(1, _CHUNK_ELEMS // per)
        return torch.cat([self.statistic(weights[i:i + step]) for i in range(0, weights.shape[0], step)])


def resample_counts(n: int, samples: int = DEFAULT_SAMPLES, seed: int = DEFAULT_SEED, chunk: int = 64,
                    dtype: torch.dtype = torch.float64) -> Tensor:
    """``(samples, n)`` draw counts: row b counts how often each of n units was drawn (n draws).

    The draws are ``torch.randint`` from one seeded CPU generator, in chunks of rows (same numbers whatever
    the chunk size, since the generator is consumed row block after row block in order). The counts are
    summed as integers (int16 while n < 32768: no count can pass n) and returned as ``dtype``: float64 weights
    by default, or the integers themselves (``dtype=None``) for a ``count_statistic``, stored unit-major (the
    ``(n, samples)`` C-order layout that ``count_statistic`` takes, so it gets them without a transposed copy).
    """
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    itype = torch.int16 if n <= torch.iinfo(torch.int16).max else torch.int32
    out = torch.zeros(n, samples, dtype=itype).t() if dtype is None else torch.zeros(samples, n, dtype=itype)
    if n > 0:
        one = torch.ones((), dtype=itype)
        for start in range(0, samples, chunk):
            rows = min(chunk, samples - start)
            idx = torch.randint(0, n, (rows, n), generator=gen)
            out[start:start + rows].scatter_add_(1, idx, one.expand(rows, n))
    return out if dtype is None else out.to(dtype)


def percentile_interval(values: Tensor, level: float = DEFAULT_LEVEL) -> tuple[Tensor, Tensor]:
    """Lower and upper percentile bounds over dim 0 (NaN replicates, e.g. a resample with no GT, left out)."""
    a = (1.0 - level) / 2.0
    q = torch.tensor([a, 1.0 - a], dtype=torch.float64)
    v = values.to(torch.float64)
    bounds = torch.nanquantile(v, q, dim=0)
    return bounds[0], bounds[1]


def confidence_intervals(stats: BootstrapStats, samples: int = DEFAULT_SAMPLES, seed: int = DEFAULT_SEED,
                         level: float = DEFAULT_LEVEL) -> dict[str, float]:
    """``{KEY_ci_low, KEY_ci_high}`` for each key of ``stats`` (floats; NaN when there is no unit)."""
    n = int(stats.ids.numel())
    if n == 0 or samples <= 0:
        return {f"{k}_ci_{s}": math.nan for k in stats.keys for s in ("low", "high")}
    reps = stats.evaluate(resample_counts(n, samples, seed, dtype=None))
    lo, hi = percentile_interval(reps, level)
    out = {}
    for j, k in enumerate(stats.keys):
        out[f"{k}_ci_low"] = float(lo[j])
        out[f"{k}_ci_high"] = float(hi[j])
    return out


@dataclass
class PairedResult:
    """Paired bootstrap of ``a - b`` on one key: point difference, percentile CI, two-sided p-value."""

    key: str
    a: float
    b: float
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    samples: int
    units: int


def paired_bootstrap(a: BootstrapStats, b: BootstrapStats, key: str, samples: int = DEFAULT_SAMPLES,
                     seed: int = DEFAULT_SEED, level: float = DEFAULT_LEVEL) -> PairedResult:
    """Paired bootstrap test of ``a[key] - b[key]`` over the same units with the same resample weights.

    Both metrics must score the same unit ids (same dataset and split). p-value (two-sided, percentile
    method): ``min(1, 2 * min(#(d* <= 0) + 1, #(d* >= 0) + 1) / (B + 1))``, the share of replicate
    differences on the far side of 0, counted with the usual +1 so it is never 0 from B draws.
    """
    if a.ids.shape != b.ids.shape or not torch.equal(a.ids.cpu(), b.ids.cpu()):
        raise ValueError(f"paired bootstrap: the two runs score different units ({a.ids.numel()} vs "
                         f"{b.ids.numel()} {a.unit}s, or other ids): compare runs on the same samples")
    ja, jb = a.keys.index(key), b.keys.index(key)
    n = int(a.ids.numel())
    ones = torch.ones(1, n, dtype=torch.float64)
    va, vb = float(a.statistic(ones)[0, ja]), float(b.statistic(ones)[0, jb])
    w = resample_counts(n, samples, seed)
    d = a.evaluate(w)[:, ja] - b.evaluate(w)[:, jb]
    d = d[~torch.isnan(d)]
    lo, hi = percentile_interval(d[:, None], level)
    below = int((d <= 0).sum()) + 1
    above = int((d >= 0).sum()) + 1
    p = min(1.0, 2.0 * min(below, above) / (d.numel() + 1))
    return PairedResult(key, va, vb, va - vb, float(lo[0]), float(hi[0]), p, int(d.numel()), n)
