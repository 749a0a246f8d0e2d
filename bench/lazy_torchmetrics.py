"""Start-up of the CLI: torchmetrics' ``Metric`` without the rest of the package until something asks for it.

``import torchmetrics`` runs a package ``__init__`` that imports every metric family, and with them torchvision
(torch._dynamo) and scipy.signal: about 2.5 s of a 5 s process on 2 cores, for a results file whose metric
needs ``Metric`` and ``dim_zero_cat`` only. So the CLI (bench/__main__.py, nothing else) registers the package
lazily: the module object is the real package's (same path and spec), its core submodules load as usual
(``torchmetrics.metric``, ``torchmetrics.utilities``), ``torchmetrics.Metric`` is set, and the first access to
any other attribute runs the real ``__init__`` in that same module object. After that the package is exactly
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
        import torchmetrics.utilities  # noqa: F401  (imports torchmetrics.metric; this order avoids their cycle)

        mod.Metric = sys.modules[f"{NAME}.metric"].Metric
    except (ImportError, AttributeError, KeyError):  # a torchmetrics whose layout differs: forget the partial import, import it plainly
        for key in [k for k in sys.modules if k == NAME or k.startswith(f"{NAME}.")]:
            del sys.modules[key]
        importlib.import_module(NAME)


def complete(mod: ModuleType) -> None:
    """Run the real package ``__init__`` in ``mod`` (once)."""
    if mod.__dict__.pop("__getattr__", None) is None:
        return
    mod.__spec__.loader.exec_module(mod)


def is_complete() -> bool:
    """Whether torchmetrics' whole package has been imported (False while only the core is loaded)."""
    mod = sys.modules.get(NAME)
    return mod is not None and "__getattr__" not in mod.__dict__
