"""Dataset readers, one module per dataset family; importing a module registers its datasets.

:func:`load` imports the reader of one dataset, the module that ``READERS`` names for it: scoring a results file
needs that one only (importing every reader, scipy and the BOP kernels included, costs about a second). A name
that ``READERS`` does not list makes it import every module of the package, so a new reader works before it is
listed (tests/data/test_readers_index.py fails until it is, and checks that each listed module registers the
name).
"""
from __future__ import annotations

import pkgutil
from importlib import import_module

_BOP = ("lm", "lmo", "tless", "tudl", "tyol", "ruapc", "icmi", "icbin", "itodd", "itoddmv", "hb", "hbs", "ycbv",
        "hope", "hopev2", "handal", "ipd", "xyzibd", "hot3d")
READERS: dict[str, str] = {
    "coco": "coco", "crowdpose": "crowdpose", "mpii": "mpii", "mp100": "mp100", "coco_wholebody": "coco_wholebody",
    "halpe": "skeleton_keypoints", "keypoints": "skeleton_keypoints",
    **{n: "skeleton_keypoints" for n in ("ochuman", "aic", "humanart", "ap10k")},
    "h36m": "h36m", "mpi_inf_3dhp": "mpi_inf_3dhp", "3dpw": "threedpw", "emdb": "emdb", "co3d": "co3d",
    "rich": "rich", "aflw2000": "headpose", "biwi": "headpose",
    **{n: "landmarks" for n in ("300w", "wflw", "cofw", "aflw", "onehand10k", "rhd")},
    "real275": "nocs", "camera25": "nocs",
    **{n: "bop" for n in _BOP},
}


def load(name: str | None = None) -> None:
    """Import the reader of dataset ``name`` (every reader when ``name`` is None or not listed)."""
    if name in READERS:
        import_module(f"{__name__}.{READERS[name]}")
        return
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            import_module(f"{__name__}.{info.name}")
