"""Methods (LightningModules), grouped by family; importing this package registers them."""
from importlib import import_module

_METHODS = ("human2d.blazepose", "object6d.ppf")

for _name in _METHODS:
    try:
        import_module(f"{__name__}.{_name}")
    except ModuleNotFoundError as e:
        if e.name not in (f"{__name__}.{_name}", "mediapipe", "cv2"):
            raise
