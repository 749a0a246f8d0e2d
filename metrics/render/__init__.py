"""Batched torch depth rendering (z-buffer, pinhole K, triangle meshes), CPU and CUDA, no OpenGL."""
from metrics.render.raster import (
    MeshBank,
    RenderJobs,
    project_points,
    rasterize,
    render_depth,
    render_scene_depth,
)

__all__ = ["MeshBank", "RenderJobs", "project_points", "rasterize", "render_depth", "render_scene_depth"]
