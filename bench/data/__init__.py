"""Dataset readers, one module per dataset family; importing this package registers them.

Every public module of the package is imported, so a new reader registers by existing (no list to edit).
"""
import pkgutil
from importlib import import_module

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _info.name.startswith("_"):
        import_module(f"{__name__}.{_info.name}")
