"""BOP pose errors, batched over (estimate, GT) pairs: MSSD, MSPD, VSD, ADD, ADI (ADD-S).

Definitions follow the BOP toolkit (bop_toolkit_lib/pose_error.py, scripts/eval_calc_errors.py); each function
states the formula. Shortcuts the toolkit takes, which change results and are therefore reproduced:

- MSSD, ADD, ADI are ``inf`` when ``|t_e - t_g| >= diameter`` (bounding spheres do not overlap);
- VSD is 1.0 for every tau when the projections of the bounding spheres do not overlap
  (``|t_e/z_e - t_g/z_g|_xy >= r (1/z_e + 1/z_g)``, r = diameter/2, or a z is 0);
- MSPD is always computed; its threshold scaling by 640/image width happens at scoring (see recall.py).

Symmetric minima use the symmetry set of symmetries.py. To keep the minimum over hundreds of symmetries
cheap, it is computed exactly with a lower bound (on the CPU by the compiled kernels of cpu_kernels.py;
``backend="torch"`` forces the batched torch code that CUDA runs): the max over a subset of model points bounds each
symmetry's error from below, so only symmetries whose bound beats the best full error found are evaluated.
"""
from __future__ import annotations

import torch
from torch import Tensor

from metrics.bop import cpu_kernels
from metrics.render.raster import MeshBank, RenderJobs, rasterize

__all__ = [
    "add",
    "adi",
    "farthest_point_subset",
    "mspd",
    "mssd",
    "sphere_projections_overlap",
    "spheres_overlap",
    "symmetric_points",
    "vsd",
    "vsd_batch",
]

_CHUNK = 1 << 22  # elements of a (pairs x symmetries x points) block


def spheres_overlap(t_e: Tensor, t_g: Tensor, diameter: Tensor | float) -> Tensor:
    """``|t_e - t_g| < diameter`` (the toolkit's test before MSSD/ADD/ADI)."""
    return torch.linalg.norm(t_e - t_g, dim=-1) < diameter


def sphere_projections_overlap(t_e: Tensor, t_g: Tensor, radius: Tensor | float) -> Tensor:
    """Approximate overlap of the image projections of two spheres of ``radius`` centred at ``t_e``, ``t_g``
    (misc.overlapping_sphere_projections): normalised centre distance < r (1/z_e + 1/z_g); False if a z is 0."""
    ze, zg = t_e[..., 2], t_g[..., 2]
    ok = (ze != 0) & (zg != 0)
    ze_s = torch.where(ok, ze, torch.ones_like(ze))
    zg_s = torch.where(ok, zg, torch.ones_like(zg))
    d = torch.linalg.norm(t_e[..., :2] / ze_s[..., None] - t_g[..., :2] / zg_s[..., None], dim=-1)
    return ok & (d < radius * (1.0 / ze_s + 1.0 / zg_s))


def farthest_point_subset(pts: Tensor, k: int = 32) -> Tensor:
    """Indices of ``k`` well-spread points (greedy farthest-point sampling from the point furthest from the
    centroid): the subset behind the lower bounds. Deterministic."""
    n = pts.shape[0]
    if n <= k:
        return torch.arange(n, device=pts.device)
    d = torch.linalg.norm(pts - pts.mean(0), dim=1)
    idx = [int(torch.argmax(d))]
    best = torch.linalg.norm(pts - pts[idx[0]], dim=1)
    for _ in range(k - 1):
        i = int(torch.argmax(best))
        idx.append(i)
        best = torch.minimum(best, torch.linalg.norm(pts - pts[i], dim=1))
    return torch.tensor(idx, device=pts.device)


def _max_dist(a: Tensor, b: Tensor) -> Tensor:
    """a (P,N,D) vs b (P,S,N,D) or (S,N,D): (P,S) max over N of the L2 distance (chunked over P)."""
    P, N = a.shape[0], a.shape[1]
    S = b.shape[-3]
    step = max(1, _CHUNK // max(1, S * N))
    out = []
    for i in range(0, P, step):
        bb = b if b.dim() == 3 else b[i:i + step]
        out.append(torch.linalg.norm(a[i:i + step, None] - bb, dim=-1).amax(-1))
    return torch.cat(out) if out else a.new_zeros((0, S))


def _min_over_syms(points_a: Tensor, points_b_fn, sub: Tensor, S: int, k_first: int = 4) -> Tensor:
    """min_s max_n |a_n - b_{s,n}| for every pair, exactly, with lower-bound pruning.

    ``points_a`` (P,N,D); ``points_b_fn(pair_idx, sym_idx | None, point_idx | None)`` -> (P',S',N',D) of the
    symmetric points of those pairs (all symmetries / points when None)."""
    P = points_a.shape[0]
    if P == 0:
        return points_a.new_zeros(0)
    if S == 1:
        return _max_dist(points_a, points_b_fn(None, None, None)).squeeze(1)
    lb = _max_dist(points_a[:, sub], points_b_fn(None, None, sub))  # (P, S) lower bounds
    k = min(k_first, S)
    cand = torch.argsort(lb, dim=1, stable=True)[:, :k]  # (P, k) most promising symmetries
    full = _max_dist(points_a, points_b_fn(None, cand, None))  # (P, k)
    ub = full.amin(1)
    lb_rest = lb.scatter(1, cand, float("inf"))
    todo = torch.nonzero((lb_rest < ub[:, None]).any(1)).squeeze(1)
    if todo.numel():
        rest = _max_dist(points_a[todo], points_b_fn(todo, None, None))  # all symmetries for these pairs
        ub[todo] = torch.minimum(ub[todo], rest.amin(1))
    return ub


def _gather_syms(x: Tensor, pair_idx: Tensor | None, sym_idx: Tensor | None) -> Tensor:
    """x (P,S,...) -> rows pair_idx and, per pair, the symmetries sym_idx (P',k)."""
    if pair_idx is not None:
        x = x[pair_idx]
    if sym_idx is not None:
        x = torch.gather(x, 1, sym_idx.reshape(*sym_idx.shape, *([1] * (x.dim() - 2))).expand(
            *sym_idx.shape, *x.shape[2:]))
    return x


def symmetric_points(pts: Tensor, sym_R: Tensor, sym_t: Tensor) -> Tensor:
    """(S, N, 3) model points under each symmetry: ``R_S x + t_S``."""
    return pts @ sym_R.transpose(1, 2).to(pts.dtype) + sym_t[:, None].to(pts.dtype)


def mssd(R_e: Tensor, t_e: Tensor, R_g: Tensor, t_g: Tensor, pts: Tensor, sym_R: Tensor, sym_t: Tensor,
         diameter: float | None = None, sub: Tensor | None = None, backend: str = "auto",
         sym_pts: Tensor | None = None) -> Tensor:
    """Maximum Symmetry-aware Surface Distance (mm), (P,) for P pairs of one object:

        MSSD = min_S max_x |(R_e x + t_e) - (R_g (R_S x + t_S) + t_g)|

    computed in the GT model frame (``R_g^T (R_e x + t_e - t_g)`` vs ``R_S x + t_S``: rotations keep distances).
    With ``diameter``: ``inf`` where ``|t_e - t_g| >= diameter`` (the toolkit's shortcut)."""
    pts = pts.to(R_e.dtype)
    q = torch.einsum("pji,pnj->pni", R_g, pts @ R_e.transpose(1, 2) + (t_e - t_g)[:, None])
    if sym_pts is None:  # (S, N, 3); callers evaluating many batches pass it precomputed (symmetric_points)
        sym_pts = symmetric_points(pts, sym_R, sym_t)
    sub = farthest_point_subset(pts) if sub is None else sub

    def b(pair_idx, sym_idx, pidx):
        x = sym_pts if pidx is None else sym_pts[:, pidx]
        if sym_idx is None:
            return x  # (S, N, 3), shared by all pairs
        return x[sym_idx]  # (P, k, N, 3)

    if backend == "auto" and q.device.type == "cpu" and cpu_kernels.available() and q.shape[0]:
        out = cpu_kernels.min_max_sym_pairs(q, sym_pts, sub)
    else:
        out = _min_over_syms(q, b, sub, sym_R.shape[0])
    if diameter is not None:
        out = torch.where(spheres_overlap(t_e, t_g, diameter), out, torch.full_like(out, float("inf")))
    return out


def _project(X: Tensor, K: Tensor) -> Tensor:
    """Pinhole projection of camera-frame points X (..., 3) with K (..., 3, 3) broadcast over the point dims."""
    uvw = X @ K.transpose(-1, -2)
    return uvw[..., :2] / uvw[..., 2:3]


def mspd(R_e: Tensor, t_e: Tensor, R_g: Tensor, t_g: Tensor, K: Tensor, pts: Tensor, sym_R: Tensor,
         sym_t: Tensor, sub: Tensor | None = None, backend: str = "auto", sym_pts: Tensor | None = None) -> Tensor:
    """Maximum Symmetry-aware Projection Distance (px), (P,) for P pairs of one object:

        MSPD = min_S max_x |proj(K, R_e x + t_e) - proj(K, R_g (R_S x + t_S) + t_g)|

    ``K`` (3,3) or (P,3,3). Not rescaled here (the toolkit multiplies by 640/image width when scoring)."""
    P = R_e.shape[0]
    pts = pts.to(R_e.dtype)
    K = K.to(R_e.dtype).expand(P, 3, 3) if K.dim() == 2 else K.to(R_e.dtype)
    a = _project(pts @ R_e.transpose(1, 2) + t_e[:, None], K)  # (P, N, 2)
    if sym_pts is None:
        sym_pts = symmetric_points(pts, sym_R, sym_t)
    sub = farthest_point_subset(pts) if sub is None else sub

    def b(pair_idx, sym_idx, pidx):
        x = sym_pts if pidx is None else sym_pts[:, pidx]  # (S, N', 3)
        Rg, tg, KK = R_g, t_g, K
        if pair_idx is not None:
            Rg, tg, KK = Rg[pair_idx], tg[pair_idx], KK[pair_idx]
        if sym_idx is None:
            X = torch.einsum("pij,snj->psni", Rg, x) + tg[:, None, None]
        else:
            X = torch.einsum("pij,psnj->psni", Rg, x[sym_idx]) + tg[:, None, None]
        return _project(X, KK[:, None])

    if backend == "auto" and a.device.type == "cpu" and cpu_kernels.available() and P:
        return cpu_kernels.min_max_sym_pairs(a, sym_pts, sub, R_g, t_g, K)
    return _min_over_syms(a, b, sub, sym_R.shape[0])


def add(R_e: Tensor, t_e: Tensor, R_g: Tensor, t_g: Tensor, pts: Tensor, diameter: float | None = None) -> Tensor:
    """ADD (mm): mean_x |(R_e x + t_e) - (R_g x + t_g)|, (P,); ``inf`` if spheres do not overlap (toolkit)."""
    pts = pts.to(R_e.dtype)
    e = torch.linalg.norm(pts @ (R_e - R_g).transpose(1, 2) + (t_e - t_g)[:, None], dim=-1).mean(-1)
    if diameter is not None:
        e = torch.where(spheres_overlap(t_e, t_g, diameter), e, torch.full_like(e, float("inf")))
    return e


def adi(R_e: Tensor, t_e: Tensor, R_g: Tensor, t_g: Tensor, pts: Tensor, diameter: float | None = None) -> Tensor:
    """ADI / ADD-S (mm): mean over GT-posed points of the distance to the nearest estimate-posed point, (P,)."""
    pts = pts.to(R_e.dtype)
    P, N = R_e.shape[0], pts.shape[0]
    pe = pts @ R_e.transpose(1, 2) + t_e[:, None]
    pg = pts @ R_g.transpose(1, 2) + t_g[:, None]
    if pe.device.type == "cpu" and P:  # a k-d tree, as the toolkit's adi (scipy cKDTree): exact, O(N log N)
        from scipy.spatial import cKDTree

        pe_np, pg_np = pe.numpy(), pg.numpy()
        e = torch.tensor([cKDTree(pe_np[i]).query(pg_np[i], k=1)[0].mean() for i in range(P)], dtype=pe.dtype)
        if diameter is not None:
            e = torch.where(spheres_overlap(t_e, t_g, diameter), e, torch.full_like(e, float("inf")))
        return e
    step = max(1, _CHUNK // max(1, N * N))
    out = [torch.cdist(pg[i:i + step], pe[i:i + step], compute_mode="donot_use_mm_for_euclid_dist").amin(-1).mean(-1)
           for i in range(0, P, step)]
    e = torch.cat(out) if out else pe.new_zeros(0)
    if diameter is not None:
        e = torch.where(spheres_overlap(t_e, t_g, diameter), e, torch.full_like(e, float("inf")))
    return e


# ---------------------------------------------------------------------------------------------------- VSD


def _depth_to_dist(d: Tensor, px: Tensor, py: Tensor) -> Tensor:
    """Distance from the camera centre, sqrt((px d)^2 + (py d)^2 + d^2), float64 (0 stays 0); px = (c - cx)/fx,
    py = (r - cy)/fy at integer pixel coordinates, as misc.depth_im_to_dist_im_fast."""
    d = d.to(torch.float64)
    return torch.sqrt((px * d) ** 2 + (py * d) ** 2 + d ** 2)


def vsd_batch(bank: MeshBank, mesh: Tensor, R_e: Tensor, t_e: Tensor, R_g: Tensor, t_g: Tensor, K: Tensor,
              image: Tensor, depth_flat: Tensor, depth_offset: Tensor, depth_hw: Tensor, diameter: Tensor,
              delta: float, taus: Tensor, max_pixels: int = 1 << 19, backend: str = "auto") -> Tensor:
    """Visible Surface Discrepancy, (P, T) for P pairs (any meshes, any images) and T taus, bop19 variant:

        e_tau = (sum_{p in V_e & V_g} [|D_e(p) - D_g(p)| / diameter >= tau] + |V_e ^ V_g|) / |V_e | V_g|

    D_e, D_g: rendered distance (not depth) images of the model in the two poses; D_t: the test image's.
    Visibility (visibility.py, 'bop19': missing test depth counts as visible):
    V_g = D_g > 0 & (D_g - D_t <= delta | D_t == 0); V_e = (D_e > 0 & (D_e - D_t <= delta | D_t == 0))
    | (V_g & D_e > 0). The visibility differences are taken in float32 as the toolkit does. An empty union
    gives 1.0; pairs whose sphere projections do not overlap give 1.0 without rendering (toolkit shortcut).

    ``mesh`` (P,) index into ``bank``; ``image`` (P,) index of the pair's test image whose depth (mm, 0 =
    missing) is ``depth_flat[depth_offset[i] : + H_i*W_i]`` with ``depth_hw[i] = (H_i, W_i)``; ``diameter`` (P,).
    Only the pixels of the bounding box of both projected models are rendered and compared. ``backend``:
    ``"auto"`` runs CPU pairs through the compiled scanline kernel of cpu_kernels.py and CUDA pairs through the
    batched torch rasteriser; ``"torch"`` forces the latter (both give the same pixels)."""
    dev = R_e.device
    P, T = R_e.shape[0], taus.shape[0]
    err = torch.ones(P, T, dtype=torch.float64, device=dev)
    todo = torch.nonzero(sphere_projections_overlap(t_e, t_g, 0.5 * diameter)).squeeze(1)
    if todo.numel() == 0:
        return err
    if backend == "auto" and dev.type == "cpu" and cpu_kernels.available():
        err[todo] = cpu_kernels.vsd_pairs(bank, mesh[todo], R_e[todo], t_e[todo], R_g[todo], t_g[todo], K[todo],
                                          image[todo], depth_flat, depth_offset, depth_hw, diameter[todo], delta, taus)
        return err
    H = depth_hw[image[todo], 0]
    W = depth_hw[image[todo], 1]
    x0, y0, x1, y1 = _pair_rois(bank, mesh[todo], R_e[todo], t_e[todo], R_g[todo], t_g[todo], K[todo], H, W)
    w, h = (x1 - x0 + 1).clamp(min=0), (y1 - y0 + 1).clamp(min=0)
    # Chunk the pairs so that the packed pixel buffers stay bounded.
    sizes = (w * h).tolist()
    start, acc = 0, 0
    bounds = []
    for i, s in enumerate(sizes):
        if acc and acc + s > max_pixels:
            bounds.append((start, i))
            start, acc = i, 0
        acc += s
    bounds.append((start, len(sizes)))
    for a, b in bounds:
        if b <= a:
            continue
        sel = todo[a:b]
        err[sel] = _vsd_chunk(bank, mesh[sel], R_e[sel], t_e[sel], R_g[sel], t_g[sel], K[sel], image[sel],
                              depth_flat, depth_offset, depth_hw, diameter[sel], delta, taus,
                              x0[a:b], y0[a:b], w[a:b], h[a:b])
    return err


def _pair_rois(bank, mesh, R_e, t_e, R_g, t_g, K, H, W):
    """Pixel box (inclusive) holding both projected models, clipped to the image; whole image if a vertex is
    behind the camera."""
    P = mesh.shape[0]
    dev = mesh.device
    vcount = bank.vert_count[mesh]
    vp = torch.repeat_interleave(torch.arange(P, device=dev), vcount)
    vstart = torch.cumsum(vcount, 0) - vcount
    vl = torch.arange(vp.shape[0], device=dev) - vstart[vp]
    pts = bank.vertices[bank.vert_start[mesh][vp] + vl].to(torch.float64)
    INF = float("inf")
    x0 = torch.full((P,), INF, dtype=torch.float64, device=dev)
    y0, x1, y1 = x0.clone(), -x0.clone(), -x0.clone()
    behind = torch.zeros(P, dtype=torch.bool, device=dev)
    for R, t in ((R_e, t_e), (R_g, t_g)):
        cam = torch.einsum("nij,nj->ni", R[vp], pts) + t[vp]
        z = cam[:, 2]
        Kv = K[vp]
        u = Kv[:, 0, 0] * cam[:, 0] / z + Kv[:, 0, 1] * cam[:, 1] / z + Kv[:, 0, 2]
        v = Kv[:, 1, 1] * cam[:, 1] / z + Kv[:, 1, 2]
        behind |= torch.zeros(P, dtype=torch.int64, device=dev).scatter_reduce(
            0, vp, (z <= 1e-3).long(), "amax").bool()
        x0 = torch.minimum(x0, torch.full_like(x0, INF).scatter_reduce(0, vp, u, "amin"))
        x1 = torch.maximum(x1, torch.full_like(x1, -INF).scatter_reduce(0, vp, u, "amax"))
        y0 = torch.minimum(y0, torch.full_like(y0, INF).scatter_reduce(0, vp, v, "amin"))
        y1 = torch.maximum(y1, torch.full_like(y1, -INF).scatter_reduce(0, vp, v, "amax"))
    Wf, Hf = (W - 1).to(torch.float64), (H - 1).to(torch.float64)
    cx0 = torch.where(behind, torch.zeros_like(x0), torch.floor(x0) - 1).clamp(min=0)
    cy0 = torch.where(behind, torch.zeros_like(y0), torch.floor(y0) - 1).clamp(min=0)
    cx1 = torch.where(behind, Wf, torch.minimum(torch.ceil(x1) + 1, Wf))
    cy1 = torch.where(behind, Hf, torch.minimum(torch.ceil(y1) + 1, Hf))
    cx0 = torch.minimum(cx0, Wf + 1)
    cy0 = torch.minimum(cy0, Hf + 1)
    return cx0.long(), cy0.long(), cx1.long(), cy1.long()


def _vsd_chunk(bank, mesh, R_e, t_e, R_g, t_g, K, image, depth_flat, depth_offset, depth_hw, diameter, delta,
               taus, x0, y0, w, h) -> Tensor:
    dev = R_e.device
    P = mesh.shape[0]
    both = RenderJobs(torch.cat([mesh, mesh]), torch.cat([R_e, R_g]), torch.cat([t_e, t_g]), torch.cat([K, K]),
                      torch.cat([x0, x0]), torch.cat([y0, y0]), torch.cat([w, w]), torch.cat([h, h]))
    rendered = rasterize(bank, both)
    n = rendered.shape[0] // 2
    d_est, d_gt = rendered[:n], rendered[n:]
    # Only pixels covered by one of the two renders can be visible (every mask needs D_model > 0).
    keep = torch.nonzero((d_est > 0) | (d_gt > 0)).squeeze(1)
    sizes = w * h
    start = torch.cumsum(sizes, 0) - sizes
    pid = torch.searchsorted(start, keep, right=True) - 1
    local = keep - start[pid]
    ww = w[pid]
    r = y0[pid] + torch.div(local, ww, rounding_mode="floor")
    c = x0[pid] + local % ww
    img = image[pid]
    d_test = depth_flat[depth_offset[img] + r * depth_hw[img, 1] + c]
    Kd = K.to(torch.float64)
    px = (c.to(torch.float64) - Kd[:, 0, 2][pid]) / Kd[:, 0, 0][pid]
    py = (r.to(torch.float64) - Kd[:, 1, 2][pid]) / Kd[:, 1, 1][pid]
    dist_test = _depth_to_dist(d_test, px, py)
    dist_est = _depth_to_dist(d_est[keep], px, py)
    dist_gt = _depth_to_dist(d_gt[keep], px, py)
    t32 = dist_test.to(torch.float32)
    test_missing = dist_test == 0
    visib_gt = ((dist_gt.to(torch.float32) - t32 <= delta) | test_missing) & (dist_gt > 0)
    visib_est = ((dist_est.to(torch.float32) - t32 <= delta) | test_missing) & (dist_est > 0)
    visib_est |= visib_gt & (dist_est > 0)
    inter = visib_gt & visib_est
    union = visib_gt | visib_est
    union_count = torch.zeros(P, dtype=torch.float64, device=dev).index_add_(0, pid, union.to(torch.float64))
    inter_count = torch.zeros(P, dtype=torch.float64, device=dev).index_add_(0, pid, inter.to(torch.float64))
    ii = torch.nonzero(inter).squeeze(1)
    dists = (dist_gt[ii] - dist_est[ii]).abs() / diameter[pid[ii]].to(torch.float64)
    costs = torch.zeros(P, taus.shape[0], dtype=torch.float64, device=dev)
    costs.index_add_(0, pid[ii], (dists[:, None] >= taus.to(dists)[None]).to(torch.float64))
    e = (costs + (union_count - inter_count)[:, None]) / union_count.clamp(min=1)[:, None]
    return torch.where((union_count > 0)[:, None], e, torch.ones_like(e))


def vsd(R_e: Tensor, t_e: Tensor, R_g: Tensor, t_g: Tensor, depth_test: Tensor, K: Tensor, vertices: Tensor,
        faces: Tensor, diameter: float, delta: float = 15.0, taus=None) -> Tensor:
    """VSD of P pairs of one object in one test image (depth_test (H,W) mm): (P, T). See :func:`vsd_batch`."""
    taus = torch.arange(1, 11, dtype=torch.float64) * 0.05 if taus is None else torch.as_tensor(taus, dtype=torch.float64)
    R_e, R_g = R_e.reshape(-1, 3, 3).to(torch.float64), R_g.reshape(-1, 3, 3).to(torch.float64)
    t_e, t_g = t_e.reshape(-1, 3).to(torch.float64), t_g.reshape(-1, 3).to(torch.float64)
    P = R_e.shape[0]
    dev = R_e.device
    bank = MeshBank.from_meshes([(vertices, faces)], device=dev)
    H, W = depth_test.shape
    zeros = torch.zeros(P, dtype=torch.int64, device=dev)
    return vsd_batch(bank, zeros, R_e, t_e, R_g, t_g, K.to(torch.float64).expand(P, 3, 3), zeros,
                     depth_test.reshape(-1).to(dev), torch.zeros(1, dtype=torch.int64, device=dev),
                     torch.tensor([[H, W]], device=dev), torch.full((P,), float(diameter), dtype=torch.float64,
                                                                    device=dev), delta, taus.to(dev))
