"""An object model as the BOP metrics need it: the models_eval mesh and its models_info entry."""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class ObjectModel:
    """``vertices`` (N, 3) float64 mm and ``faces`` (F, 3) int64 from models_eval/obj_XXXXXX.ply;
    ``diameter`` (mm), ``symmetries_discrete`` (list of 4x4 row-major lists, translation in mm) and
    ``symmetries_continuous`` (list of ``{"axis": [x, y, z], "offset": [x, y, z]}``) from models_info.json,
    exactly as stored there (the metric expands them)."""

    obj_id: int
    vertices: Tensor
    faces: Tensor
    diameter: float
    symmetries_discrete: list = field(default_factory=list)
    symmetries_continuous: list = field(default_factory=list)
