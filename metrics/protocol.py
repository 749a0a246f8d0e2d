"""The protocol of every suite metric: evaluate once; values, bootstrap and curves read that one result.

A suite metric is a :class:`PoseMetric` (a torchmetrics ``Metric``). ``update`` keeps per-sample states keyed
by sample id; the expensive part (matching, alignment, sorting and deduplicating the states) is
``_evaluate()``, and everything the harness asks for reads its result:

- ``compute()`` is ``values(evaluate())``: the metric's numbers, ``{key: 0-d float64 tensor}``;
- ``bootstrap_stats()`` is ``bootstrap(evaluate())`` (:class:`metrics.bootstrap.BootstrapStats`: the unit ids
  and the vectorised replicate statistic), or None for a metric whose ``bootstrap_unit`` is None;
- ``curves()`` is ``plots(evaluate())``: the page's plot dicts (:func:`plot_dict`), ``[]`` when there is
  nothing to plot.

``evaluate()`` runs ``_evaluate()`` once per synced state and caches the result under ``(update count,
synced)``. Why that key: under DDP torchmetrics' ``compute()`` syncs, computes and unsyncs; the runner then
syncs again (``with metric.sync_context(): metric.bootstrap_stats(); metric.curves()``). With no ``update`` in
between, the second sync gathers the same states under the same key, so the matching runs once per run. Like
torchmetrics' own ``compute`` cache this assumes that no rank updates between the two syncs. ``update``,
``reset``, ``forward``, ``merge_state`` and moving the metric (``.to``) drop the cache; it is not a metric
state and is never pickled or copied. :attr:`PoseMetric.evaluations` counts the ``_evaluate`` runs of the process.

A subclass implements ``_evaluate()`` and ``values(result)``, and optionally ``bootstrap(result)`` and
``plots(result)``; it declares ``bootstrap_unit`` ("image", "sequence", "episode-query", "person", ...; None:
no interval) and ``headline`` (its main keys; the first is the one the bootstrap resamples, which ``compare``
tests).

>>> import torch
>>> class Mean(PoseMetric):
...     headline = ("mean",)
...     def __init__(self):
...         super().__init__()
...         self.add_state("x", default=[], dist_reduce_fx="cat")
...     def update(self, x):
...         self.x.append(x)
...     def _evaluate(self):
...         return torch.cat(self.x)
...     def values(self, result):
...         return {"mean": result.mean()}
>>> m = Mean()
>>> m.update(torch.tensor([1.0, 2.0]))
>>> before = PoseMetric.evaluations
>>> m.compute(), m.bootstrap_stats(), m.curves(), PoseMetric.evaluations - before
({'mean': tensor(1.5000)}, None, [], 1)
>>> m.update(torch.tensor([6.0]))
>>> float(m.compute()["mean"]), PoseMetric.evaluations - before
(3.0, 2)
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, ClassVar

from torch import Tensor
from torchmetrics import Metric

from metrics.bootstrap import BootstrapStats

__all__ = ["PoseMetric", "plot_dict", "round6"]


def round6(x: float) -> float | None:
    """A plotted number as the curves files store it: 6 decimals, NaN as None (JSON has no NaN)."""
    x = float(x)
    return None if math.isnan(x) else round(x, 6)


def plot_dict(title: str, kind: str, xlabel: str, ylabel: str, x: list,
              series: dict[str, list]) -> dict[str, Any]:
    """One plot of a curves file: ``kind`` "line" or "bar"; x values may be labels (str); numbers rounded."""
    return {"title": title, "kind": kind, "xlabel": xlabel, "ylabel": ylabel,
            "x": [v if isinstance(v, str) else round6(v) for v in x],
            "series": {k: [round6(v) for v in ys] for k, ys in series.items()}}


class PoseMetric(Metric):
    """Base of every suite metric: one cached evaluation behind compute, bootstrap_stats and curves."""

    bootstrap_unit: ClassVar[str | None] = None
    headline: ClassVar[tuple[str, ...]] = ()
    evaluations: ClassVar[int] = 0  # _evaluate runs in this process (all PoseMetrics together)

    _evaluated: tuple[tuple[int, bool], Any] | None = None  # (key, result): the cache, never a metric state

    # ------------------------------------------------------------------ what a subclass implements
    def _evaluate(self) -> Any:
        """The matching / alignment over the current, deduplicated states."""
        raise NotImplementedError

    def values(self, result: Any) -> dict[str, Tensor]:
        """The metric's numbers from an evaluation."""
        raise NotImplementedError

    def bootstrap(self, result: Any) -> BootstrapStats:
        """Per-unit statistics of an evaluation (needed when ``bootstrap_unit`` is not None)."""
        raise NotImplementedError(f"{type(self).__name__} declares bootstrap_unit {self.bootstrap_unit!r} "
                                  "but has no bootstrap()")

    def plots(self, result: Any) -> list[dict[str, Any]]:
        """Plot dicts (:func:`plot_dict`) of an evaluation; none by default."""
        return []

    # ------------------------------------------------------------------ what the harness calls
    def evaluate(self) -> Any:
        """The result of ``_evaluate()`` for the current states, computed once per (update count, synced)."""
        key = (self._update_count, self._is_synced)
        if self._evaluated is None or self._evaluated[0] != key:
            self._evaluated = None
            PoseMetric.evaluations += 1
            self._evaluated = (key, self._evaluate())
        return self._evaluated[1]

    def compute(self) -> dict[str, Tensor]:
        return self.values(self.evaluate())

    def bootstrap_stats(self) -> BootstrapStats | None:
        """The bootstrap's unit ids and replicate statistic (metrics/bootstrap.py); None: no interval."""
        if self.bootstrap_unit is None:
            return None
        return self.bootstrap(self.evaluate())

    def curves(self) -> list[dict[str, Any]]:
        """The page's plots of the evaluated states (``[]``: nothing to plot)."""
        return self.plots(self.evaluate())

    # ------------------------------------------------------------------ keeping the cache honest
    def _wrap_update(self, update: Callable) -> Callable:
        """torchmetrics wraps ``update`` in ``__init__`` and ``__setstate__``: drop the cache there too (after
        a ``reset`` the update count starts again at 1, so the count alone cannot tell states apart)."""
        counted = super()._wrap_update(update)

        @functools.wraps(update)
        def wrapped(*args: Any, **kwargs: Any) -> None:
            self._evaluated = None
            counted(*args, **kwargs)

        return wrapped

    def reset(self) -> None:
        self._evaluated = None
        super().reset()

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """torchmetrics' forward evaluates one batch and then restores the update count: forget that batch."""
        try:
            return super().forward(*args, **kwargs)
        finally:
            self._evaluated = None

    def merge_state(self, incoming_state: Any) -> None:
        """torchmetrics merges the states but keeps the update count and compute's cached value: drop both."""
        super().merge_state(incoming_state)
        self._evaluated = None
        self._computed = None

    def _apply(self, fn: Callable, exclude_state: Any = "") -> Any:
        self._evaluated = None  # a result on the old device or dtype
        return super()._apply(fn, exclude_state)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_evaluated", None)
        return state
