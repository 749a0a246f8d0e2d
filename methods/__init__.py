"""Methods (LightningModules), grouped by family; importing this package registers them."""
from importlib import import_module

_METHODS = ("human2d.blazepose", "human2d.vitpose", "human2d.simcc", "human2d.dwpose", "human3d.videopose3d",
            "human3d.gla_gcn", "mesh.tokenhmr", "object6d.ppf", "object6d.gdrnpp", "cape.pose_anything",
            "headpose.mediapipe_pnp", "wholebody.mediapipe_wholebody")

for _name in _METHODS:
    try:
        import_module(f"{__name__}.{_name}")
    except ModuleNotFoundError as e:  # BlazePose needs the blazepose extra (mediapipe); the rest are core
        if e.name != "mediapipe":
            raise
