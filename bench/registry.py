"""Name -> builder registries for datasets and methods (the names users type on the command line).

A module registers itself with a decorator; ``bench.conf/<group>/<name>.yaml`` holds its options. Both
registries are filled by importing the readers of :mod:`bench.data` and :mod:`methods`.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

DATASETS: dict[str, Callable[..., Any]] = {}
METHODS: dict[str, Callable[..., Any]] = {}


def _register(table: dict[str, Callable[..., Any]], kind: str, *names: str) -> Callable[[F], F]:
    def deco(fn: F) -> F:
        for name in names:
            if name in table and table[name] is not fn:
                raise ValueError(f"{kind} {name!r} is registered twice")
            table[name] = fn
        return fn

    return deco


def register_dataset(*names: str) -> Callable[[F], F]:
    """Register ``builder(cfg) -> BenchmarkDataset`` under one or more dataset names."""
    return _register(DATASETS, "dataset", *names)


def register_method(*names: str) -> Callable[[F], F]:
    """Register ``builder(cfg, dataset, weights) -> PoseMethod`` under one or more method names."""
    return _register(METHODS, "method", *names)


def load_all() -> None:
    """Import every module that registers something, plus the modules named in ``$POSEARENA_PLUGINS``
    (comma-separated), so a user's own dataset or method registers without touching the suite."""
    load_datasets()
    load_methods()


def load_datasets(name: str | None = None) -> None:
    """The dataset readers (only ``name``'s when given: bench/data/__init__.py) and the plugins: all a results
    file needs (no method module, no timm)."""
    import bench.data

    bench.data.load(name)
    _load_plugins()


def load_methods() -> None:
    """The methods (their models import timm and Lightning) and the plugins."""
    import methods  # noqa: F401

    _load_plugins()


def _load_plugins() -> None:
    import importlib
    import os

    for mod in filter(None, (m.strip() for m in os.environ.get("POSEARENA_PLUGINS", "").split(","))):
        importlib.import_module(mod)
