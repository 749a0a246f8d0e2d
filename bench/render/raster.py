"""A batched z-buffer depth rasteriser in plain torch (CPU and CUDA, no OpenGL).

Why our own: the BOP toolkit renders depth with vispy/OpenGL, one pose at a time, at full image size. VSD only
needs the pixels an object covers, so we render many (mesh, pose) *jobs* at once, each into its own small
region of interest (ROI), packed one after another in one flat buffer.

Conventions, chosen to reproduce the toolkit's renderer (``renderer_vispy.py``):

- Pinhole camera ``K`` (OpenCV axes: x right, y down, z forward), depth = camera-frame Z in mm.
- Pixel ``(row r, col c)`` samples the ray through ``(u, v) = (c + 0.5, r + 0.5)``. The toolkit's OpenGL
  projection maps ``u = fx X/Z + cx`` to window x directly and OpenGL samples at pixel centres (i + 0.5), so
  its pixel ``c`` covers ``u = c + 0.5`` (same for rows after its vertical flip). ``pixel_offset`` changes it.
- A pixel is covered when its sample lies inside a triangle (edges inclusive, no culling: the toolkit draws
  with ``cull_face=False``); the depth there is the perspective-correct interpolation ``1/z = sum(l_i / z_i)``
  over the screen-space barycentrics ``l_i``, exact for a planar triangle; the nearest surface wins.
- Triangles with a vertex at ``z <= near`` (default 1e-3 mm) are dropped (the toolkit's near plane is the
  nearest corner of the model's bounding box, so it never clips an object in front of the camera).

Algorithm: project the vertices of every job; give each triangle the pixels of its bounding box (clipped to
the job's ROI); test all (triangle, pixel) candidates at once; ``scatter_reduce(amin)`` into the packed
buffer. Work is proportional to the summed triangle bounding-box areas; jobs are processed in chunks that
bound the number of candidates (memory).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["MeshBank", "RenderJobs", "rasterize", "render_depth", "render_scene_depth", "project_points"]

SNAP = 0
_MAX_CANDIDATES = 1 << 22  # (triangle, pixel) candidates per chunk: bounds memory (~ 40 bytes each)


@dataclass
class MeshBank:
    """Several meshes in one set of tensors: ``vertices`` (V, 3), ``faces`` (F, 3) local to each mesh,
    ``vert_start``/``vert_count`` and ``face_start``/``face_count`` (M,) per mesh."""

    vertices: Tensor
    faces: Tensor
    vert_start: Tensor
    vert_count: Tensor
    face_start: Tensor
    face_count: Tensor

    @staticmethod
    def from_meshes(meshes: list[tuple[Tensor, Tensor]], device: torch.device | str | None = None) -> "MeshBank":
        verts = [torch.as_tensor(v, dtype=torch.float64) for v, _ in meshes]
        faces = [torch.as_tensor(f, dtype=torch.int64) for _, f in meshes]
        device = device if device is not None else (verts[0].device if verts else "cpu")
        vc = torch.tensor([v.shape[0] for v in verts], dtype=torch.int64)
        fc = torch.tensor([f.shape[0] for f in faces], dtype=torch.int64)
        vs = torch.cumsum(vc, 0) - vc
        fs = torch.cumsum(fc, 0) - fc
        return MeshBank(
            torch.cat(verts).to(device), torch.cat(faces).to(device), vs.to(device), vc.to(device),
            fs.to(device), fc.to(device),
        )

    @property
    def device(self) -> torch.device:
        return self.vertices.device


@dataclass
class RenderJobs:
    """One job = one mesh in one pose seen by one camera, rendered into the ROI ``[x0, x0+w) x [y0, y0+h)``.

    ``mesh`` (J,) int64 index into the bank; ``R`` (J,3,3), ``t`` (J,3) mm, ``K`` (J,3,3) float64;
    ``x0, y0, w, h`` (J,) int64. The output of job j is ``h*w`` pixels, row-major, at ``offsets[j]``.
    """

    mesh: Tensor
    R: Tensor
    t: Tensor
    K: Tensor
    x0: Tensor
    y0: Tensor
    w: Tensor
    h: Tensor

    def __len__(self) -> int:
        return int(self.mesh.shape[0])

    def sizes(self) -> Tensor:
        return self.w.clamp(min=0) * self.h.clamp(min=0)

    def offsets(self) -> Tensor:
        s = self.sizes()
        return torch.cumsum(s, 0) - s

    def select(self, idx: Tensor) -> "RenderJobs":
        return RenderJobs(*(getattr(self, k)[idx] for k in ("mesh", "R", "t", "K", "x0", "y0", "w", "h")))


def project_points(pts: Tensor, R: Tensor, t: Tensor, K: Tensor) -> tuple[Tensor, Tensor]:
    """Camera-frame points ``R p + t`` and their pixel coordinates ``K``: returns ``(uv (...,N,2), z (...,N))``."""
    cam = pts @ R.transpose(-1, -2) + t.unsqueeze(-2)
    z = cam[..., 2]
    x = cam[..., 0] / z
    y = cam[..., 1] / z
    u = K[..., 0, 0, None] * x + K[..., 0, 1, None] * y + K[..., 0, 2, None]
    v = K[..., 1, 1, None] * y + K[..., 1, 2, None]
    return torch.stack([u, v], -1), z


def _chunks(face_counts_per_job: Tensor, bbox_area_per_job: Tensor) -> list[tuple[int, int]]:
    """Split jobs into consecutive chunks whose estimated candidate count stays under the budget."""
    est = (bbox_area_per_job + face_counts_per_job).tolist()
    chunks, start, acc = [], 0, 0
    for j, c in enumerate(est):
        if acc and acc + c > _MAX_CANDIDATES:
            chunks.append((start, j))
            start, acc = j, 0
        acc += c
    if start < len(est):
        chunks.append((start, len(est)))
    return chunks


def rasterize(bank: MeshBank, jobs: RenderJobs, *, pixel_offset: float = 0.5, near: float = 1e-3) -> Tensor:
    """Render every job's depth into one packed float32 buffer (0 where no surface); see the module docstring."""
    dev = bank.device
    total = int(jobs.sizes().sum())
    out = torch.full((total,), float("inf"), dtype=torch.float32, device=dev)
    if len(jobs) == 0 or total == 0:
        return out.zero_()
    offsets = jobs.offsets()
    fcount = bank.face_count[jobs.mesh]
    # Rough per-job cost to size chunks: the job's ROI area times a small overdraw factor.
    for a, b in _chunks(fcount, 3 * jobs.sizes()):
        _rasterize_chunk(bank, jobs.select(torch.arange(a, b, device=dev)), offsets[a:b], out, pixel_offset, near)
    out[torch.isinf(out)] = 0.0
    return out


def _rasterize_chunk(bank: MeshBank, jobs: RenderJobs, offsets: Tensor, out: Tensor, off: float, near: float) -> None:
    dev = bank.device
    J = len(jobs)
    # Vertices of each job (jobs of different meshes have different vertex counts: flatten them).
    vcount = bank.vert_count[jobs.mesh]
    vjob = torch.repeat_interleave(torch.arange(J, device=dev), vcount)
    vjob_start = torch.cumsum(vcount, 0) - vcount
    vlocal = torch.arange(vjob.shape[0], device=dev) - vjob_start[vjob]
    pts = bank.vertices[bank.vert_start[jobs.mesh][vjob] + vlocal]
    cam = torch.einsum("nij,nj->ni", jobs.R[vjob].to(pts.dtype), pts) + jobs.t[vjob].to(pts.dtype)
    z = cam[:, 2]
    Kv = jobs.K[vjob].to(pts.dtype)
    xn, yn = cam[:, 0] / z, cam[:, 1] / z
    u = Kv[:, 0, 0] * xn + Kv[:, 0, 1] * yn + Kv[:, 0, 2]
    v = Kv[:, 1, 1] * yn + Kv[:, 1, 2]
    if SNAP: u = torch.round(u * SNAP) / SNAP; v = torch.round(v * SNAP) / SNAP

    # Faces of each job, as indices into the flattened vertex arrays.
    fcount = bank.face_count[jobs.mesh]
    fjob = torch.repeat_interleave(torch.arange(J, device=dev), fcount)
    fjob_start = torch.cumsum(fcount, 0) - fcount
    flocal = torch.arange(fjob.shape[0], device=dev) - fjob_start[fjob]
    tri = bank.faces[bank.face_start[jobs.mesh][fjob] + flocal] + vjob_start[fjob, None]
    tu, tv, tz = u[tri], v[tri], z[tri]  # (Fj, 3)

    # Pixel bounding box of each triangle, clipped to its job's ROI (sample of pixel c is at c + off).
    x0, y0 = jobs.x0[fjob], jobs.y0[fjob]
    x1, y1 = x0 + jobs.w[fjob] - 1, y0 + jobs.h[fjob] - 1
    cmin = torch.maximum(torch.ceil(tu.min(1).values - off), x0.to(tu.dtype))
    cmax = torch.minimum(torch.floor(tu.max(1).values - off), x1.to(tu.dtype))
    rmin = torch.maximum(torch.ceil(tv.min(1).values - off), y0.to(tv.dtype))
    rmax = torch.minimum(torch.floor(tv.max(1).values - off), y1.to(tv.dtype))
    ok = (tz > near).all(1) & (cmax >= cmin) & (rmax >= rmin) & torch.isfinite(tu).all(1) & torch.isfinite(tv).all(1)
    # Signed doubled area; degenerate triangles cover nothing.
    area = (tu[:, 1] - tu[:, 0]) * (tv[:, 2] - tv[:, 0]) - (tu[:, 2] - tu[:, 0]) * (tv[:, 1] - tv[:, 0])
    ok &= area != 0
    idx = torch.nonzero(ok).squeeze(1)
    if idx.numel() == 0:
        return
    tu, tv, tz, area, fjob = tu[idx], tv[idx], tz[idx], area[idx], fjob[idx]
    cmin, rmin = cmin[idx].long(), rmin[idx].long()
    bw = cmax[idx].long() - cmin + 1
    bh = rmax[idx].long() - rmin + 1
    counts = bw * bh

    # Process candidates in slices of triangles so that memory stays bounded.
    csum = torch.cumsum(counts, 0)
    n = int(csum[-1])
    bounds = [0]
    if n > _MAX_CANDIDATES:
        cuts = torch.arange(_MAX_CANDIDATES, n, _MAX_CANDIDATES, device=dev)
        bounds += torch.searchsorted(csum, cuts, right=True).tolist()
    bounds.append(idx.numel())
    inv_z = 1.0 / tz
    roi_x0, roi_y0, roi_w = jobs.x0, jobs.y0, jobs.w
    for a, b in zip(bounds[:-1], bounds[1:]):
        if b <= a:
            continue
        cnt = counts[a:b]
        f = torch.repeat_interleave(torch.arange(a, b, device=dev), cnt)
        start = torch.cumsum(cnt, 0) - cnt
        local = torch.arange(f.shape[0], device=dev) - start[f - a]
        c = cmin[f] + local % bw[f]
        r = rmin[f] + torch.div(local, bw[f], rounding_mode="floor")
        px = c.to(tu.dtype) + off
        py = r.to(tv.dtype) + off
        u0, v0 = tu[f, 0], tv[f, 0]
        du, dv = px - u0, py - v0
        l1 = (du * (tv[f, 2] - v0) - (tu[f, 2] - u0) * dv) / area[f]
        l2 = ((tu[f, 1] - u0) * dv - du * (tv[f, 1] - v0)) / area[f]
        l0 = 1.0 - l1 - l2
        inside = (l0 >= 0) & (l1 >= 0) & (l2 >= 0)
        sel = torch.nonzero(inside).squeeze(1)
        if sel.numel() == 0:
            continue
        f, c, r = f[sel], c[sel], r[sel]
        iz = l0[sel] * inv_z[f, 0] + l1[sel] * inv_z[f, 1] + l2[sel] * inv_z[f, 2]
        depth = (1.0 / iz).to(torch.float32)
        j = fjob[f]
        pix = offsets[j] + (r - roi_y0[j]) * roi_w[j] + (c - roi_x0[j])
        out.scatter_reduce_(0, pix, depth, reduce="amin")


def _as_batch(x: Tensor, B: int, shape: tuple[int, ...]) -> Tensor:
    x = torch.as_tensor(x, dtype=torch.float64)
    return x.expand(B, *shape) if x.dim() == len(shape) else x


def render_depth(vertices: Tensor, faces: Tensor, R: Tensor, t: Tensor, K: Tensor, height: int, width: int,
                 *, pixel_offset: float = 0.5) -> Tensor:
    """Depth (B, H, W) float32 mm of one mesh (vertices (N,3) mm, faces (F,3)) in B poses (R (B,3,3), t (B,3) mm)
    seen by ``K`` (3,3) or (B,3,3); 0 where no surface. Runs on the device of ``vertices``."""
    dev = torch.as_tensor(vertices).device
    R = torch.as_tensor(R, dtype=torch.float64, device=dev)
    B = R.shape[0]
    t = torch.as_tensor(t, dtype=torch.float64, device=dev).reshape(B, 3)
    K = _as_batch(torch.as_tensor(K, device=dev), B, (3, 3)).to(dev)
    bank = MeshBank.from_meshes([(vertices, faces)], device=dev)
    zeros = torch.zeros(B, dtype=torch.int64, device=dev)
    jobs = RenderJobs(zeros, R, t, K, zeros, zeros, torch.full_like(zeros, width), torch.full_like(zeros, height))
    return rasterize(bank, jobs, pixel_offset=pixel_offset).reshape(B, height, width)


def render_scene_depth(meshes: list[tuple[Tensor, Tensor]], R: Tensor, t: Tensor, K: Tensor, height: int,
                       width: int, *, pixel_offset: float = 0.5, return_labels: bool = False):
    """Depth (H, W) of M objects together (z-buffer over all): ``meshes[i]`` in pose ``R[i], t[i]``.

    With ``return_labels``, also an (H, W) int64 map of the index of the visible object (-1: background), from
    which per-object visible masks follow (``labels == i``)."""
    M = len(meshes)
    dev = torch.as_tensor(meshes[0][0]).device if M else torch.device("cpu")
    if M == 0:
        d = torch.zeros(height, width, dtype=torch.float32)
        return (d, torch.full((height, width), -1, dtype=torch.int64)) if return_labels else d
    R = torch.as_tensor(R, dtype=torch.float64, device=dev)
    t = torch.as_tensor(t, dtype=torch.float64, device=dev).reshape(M, 3)
    K = _as_batch(torch.as_tensor(K, device=dev), M, (3, 3)).to(dev)
    bank = MeshBank.from_meshes(meshes, device=dev)
    zeros = torch.zeros(M, dtype=torch.int64, device=dev)
    jobs = RenderJobs(torch.arange(M, device=dev), R, t, K, zeros, zeros, torch.full_like(zeros, width),
                      torch.full_like(zeros, height))
    per = rasterize(bank, jobs, pixel_offset=pixel_offset).reshape(M, height, width)
    per = torch.where(per > 0, per, torch.full_like(per, float("inf")))
    depth, labels = per.min(0)
    empty = torch.isinf(depth)
    depth = torch.where(empty, torch.zeros_like(depth), depth)
    if return_labels:
        return depth, torch.where(empty, torch.full_like(labels, -1), labels)
    return depth
