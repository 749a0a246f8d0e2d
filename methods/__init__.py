"""Methods (LightningModules), grouped by family; importing this package registers them."""
from importlib import import_module

_METHODS = ("human2d.blazepose", "human2d.vitpose", "human2d.simcc", "object6d.ppf", "object6d.gdrnpp", "mesh.tokenhmr",
            "human3d.videopose3d", "human3d.gla_gcn",
            "cape.pose_anything")

for _name in _METHODS:
    try:
        import_module(f"{__name__}.{_name}")
    except ModuleNotFoundError as e:
        if e.name not in (f"{__name__}.{_name}", "mediapipe", "cv2"):
            raise
