"""Start-up of the CLI: torchmetrics' ``Metric`` without the rest of the package until something asks for it.

``import torchmetrics`` runs a package ``__init__`` that imports every metric family, and with them torchvision
(torch._dynamo) and scipy.signal: about 2.5 s of a 5 s process on 2 cores, for a results file whose metric
needs ``Metric`` and ``dim_zero_cat`` only. So the CLI (bench/__main__.py, nothing else) registers the package
lazily: the module object is the real package's (same path and spec), its core submodules load as usual
(``torchmetrics.metric``, ``torchmetrics.utilities``; the plotting helpers as if matplotlib were absent, since
the CLI never calls ``Metric.plot``), ``torchmetrics.Metric`` is set, and the first access to any other
attribute runs the real ``__init__`` in that same module object. After that the package is exactly
what a plain import gives, so ``torchmetrics.Accuracy``, ``from torchmetrics import MeanMetric`` or
Lightning's own imports work unchanged (tests/test_engines.py checks both). Importing the suite as a library
(a training loop, the tests) does not call this and changes nothing.
"""
from __future__ import annotations

import importlib.util
import logging
import sys
from types import ModuleType

NAME = "torchmetrics"


def install() -> None:
    """Register torchmetrics lazily, unless it is already imported; on any surprise, import it plainly."""
    if NAME in sys.modules:
        return
    spec = importlib.util.find_spec(NAME)
    if spec is None or spec.loader is None or not spec.submodule_search_locations:
        return
    mod = importlib.util.module_from_spec(spec)
    # torchmetrics.utilities.prints reads the package's logger; the real __init__ adds its handler later
    mod._logger = logging.getLogger(NAME)

    def __getattr__(name: str):
        complete(mod)
        try:
            return mod.__dict__[name]
        except KeyError:
            raise AttributeError(f"module {NAME!r} has no attribute {name!r}") from None

    mod.__getattr__ = __getattr__
    sys.modules[NAME] = mod
    try:
        # torchmetrics.utilities.plot imports matplotlib.pyplot (0.6 s) for Metric.plot, which the CLI never
        # calls: it loads as if matplotlib were absent (Metric.plot then says so), the flag is restored after
        # (the flags module is loaded on its own first: importing it normally would run utilities/__init__)
        flags = _load_alone(f"{NAME}.utilities.imports")
        had_matplotlib = flags._MATPLOTLIB_AVAILABLE
        flags._MATPLOTLIB_AVAILABLE = False
        try:
            import torchmetrics.utilities  # (imports torchmetrics.metric; this order avoids a cycle)
        finally:
            flags._MATPLOTLIB_AVAILABLE = had_matplotlib
        torchmetrics.utilities.imports = flags
        mod.Metric = sys.modules[f"{NAME}.metric"].Metric
    except (ImportError, AttributeError, KeyError, StopIteration):  # a torchmetrics whose layout differs: forget the partial import, import it plainly
        for key in [k for k in sys.modules if k == NAME or k.startswith(f"{NAME}.")]:
            del sys.modules[key]
        importlib.import_module(NAME)


def _load_alone(name: str) -> ModuleType:
    """Import module ``name`` without running its parent packages' ``__init__`` (registered in sys.modules)."""
    parent, _, leaf = name.rpartition(".")
    spec = importlib.util.find_spec(parent)
    path = next(p for p in spec.submodule_search_locations)
    sub = importlib.util.spec_from_file_location(name, f"{path}/{leaf}.py")
    module = importlib.util.module_from_spec(sub)
    sys.modules[name] = module
    sub.loader.exec_module(module)
    return module


def complete(mod: ModuleType) -> None:
    """Run the real package ``__init__`` in ``mod`` (once)."""
    if mod.__dict__.pop("__getattr__", None) is None:
        return
    mod.__spec__.loader.exec_module(mod)


def is_complete() -> bool:
    """Whether torchmetrics' whole package has been imported (False while only the core is loaded)."""
    mod = sys.modules.get(NAME)
    return mod is not None and "__getattr__" not in mod.__dict__
