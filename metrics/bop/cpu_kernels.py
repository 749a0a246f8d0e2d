"""Compiled CPU kernels for the BOP errors: VSD, and the symmetric min-max of MSSD and MSPD.

VSD renders and compares per (estimate, GT) pair in compiled loops. Why: the torch path
(:func:`metrics.bop.pose_error.vsd_batch`, used on CUDA) is batched over pairs, but on a CPU its
dozens of full-size temporaries per pixel cost more than the arithmetic; compiled loops touch each pixel a few
times. Both paths share every convention of ``metrics/render/raster.py`` (pixel centres at ``c + 0.5``, window
coordinates snapped to 1/256 px, the top-left fill rule as a half-lattice bias, exact float64 edge functions,
perspective-correct ``1/z`` plane, float32 depth buffer) and of ``pose_error._vsd_chunk`` (distance images at
integer pixel coordinates, float32 visibility differences, ``bop19`` visibility), so they agree bit for bit
(``tests/metrics/bop/test_bop_cpu_kernels.py``); ``tests/metrics/bop`` checks both against the toolkit.

Pairs are grouped by GT instance: each GT is rendered once, its distances and visibility mask computed once, and
its pairs then visit only their estimate's pixels while the GT's buffers are still in cache. Groups are dealt
round-robin to numba's threads, each with its own scratch buffers. The per-pixel passes are branch-free so that
the compiler vectorises them (square roots and divisions four at a time).

MSSD and MSPD take ``min_S max_x`` over up to hundreds of symmetries; per pair, symmetries are visited in the
order of a lower bound (the max over a small point subset) and a symmetry stops as soon as its running max
reaches the best one found, which gives the exact minimum with a fraction of the work.

Callers run torch single-threaded around the kernels (``metrics.common.one_cpu_thread``): torch's OpenMP pool
and numba's are distinct, and both spinning on the same cores is 5-10x slower.
"""
from __future__ import annotations

import math
import os

import numpy as np
import torch
from torch import Tensor

# numba's OpenMP pool (a libgomp of its own, loaded at the first parallel kernel, after torch's) would keep its
# threads spinning after each kernel, taking the cores from torch and from other processes; sleeping threads
# cost a few microseconds per kernel launch instead.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
try:
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover - numba is a dependency; the torch path still works without it
    numba = None

__all__ = ["available", "min_max_sym_pairs", "vsd_pairs"]


def available() -> bool:
    return numba is not None




if numba is not None:

    @njit(cache=True, nogil=True)
    def _project(verts, R, t, K, snap, u, v, z):
        for i in range(verts.shape[0]):
            x, y, w = verts[i, 0], verts[i, 1], verts[i, 2]
            cx = ((R[0, 0] * x + R[0, 1] * y) + R[0, 2] * w) + t[0]
            cy = ((R[1, 0] * x + R[1, 1] * y) + R[1, 2] * w) + t[1]
            cz = ((R[2, 0] * x + R[2, 1] * y) + R[2, 2] * w) + t[2]
            xn, yn = cx / cz, cy / cz
            uu = (K[0, 0] * xn + K[0, 1] * yn) + K[0, 2]
            vv = K[1, 1] * yn + K[1, 2]
            if snap > 0.0:
                uu = np.rint(uu * snap) / snap
                vv = np.rint(vv * snap) / snap
            u[i], v[i], z[i] = uu, vv, cz

    @njit(cache=True, nogil=True)
    def _raster(faces, u, v, z, x0, y0, w, h, off, near, snap, iz_buf):
        """Largest ``1/z`` of one mesh per pixel into ``iz_buf[:h*w]`` (float64, ROI at x0, y0), 0 where empty;
        ``iz_buf`` is scratch reused across calls (fresh large arrays cost page faults).

        The depth of a pixel is ``float32(1 / iz)`` (:func:`_depth`): float32(1/x) is monotone, so this equals the
        minimum of the per-triangle float32 depths that the torch path takes."""
        iz_buf[:w * h] = 0.0
        x1, y1 = x0 + w - 1, y0 + h - 1
        bias = 0.5 / (snap * snap) if snap > 0.0 else 1e-12
        for f in range(faces.shape[0]):
            a0, a1, a2 = faces[f, 0], faces[f, 1], faces[f, 2]
            z0, z1, z2 = z[a0], z[a1], z[a2]
            if not (z0 > near and z1 > near and z2 > near):
                continue
            u0, u1, u2 = u[a0], u[a1], u[a2]
            v0, v1, v2 = v[a0], v[a1], v[a2]
            if not (np.isfinite(u0) and np.isfinite(u1) and np.isfinite(u2) and np.isfinite(v0)
                    and np.isfinite(v1) and np.isfinite(v2)):
                continue
            cmin = max(math.ceil(min(u0, u1, u2) - off), x0)
            cmax = min(math.floor(max(u0, u1, u2) - off), x1)
            rmin = max(math.ceil(min(v0, v1, v2) - off), y0)
            rmax = min(math.floor(max(v0, v1, v2) - off), y1)
            if cmax < cmin or rmax < rmin:
                continue
            area = (u1 - u0) * (v2 - v0) - (u2 - u0) * (v1 - v0)
            if area == 0.0:
                continue
            sgn = 1.0 if area > 0 else -1.0
            # edge i is opposite vertex i: (1, 2), (2, 0), (0, 1); E_i = A_i pu + B_i pv + C_i > 0 inside
            A0 = -(v2 - v1) * sgn
            B0 = (u2 - u1) * sgn
            C0 = -(A0 * u1 + B0 * v1)
            A1 = -(v0 - v2) * sgn
            B1 = (u0 - u2) * sgn
            C1 = -(A1 * u2 + B1 * v2)
            A2 = -(v1 - v0) * sgn
            B2 = (u1 - u0) * sgn
            C2 = -(A2 * u0 + B2 * v0)
            # fill rule: left edges (dv < 0) and top edges (dv == 0, du > 0) own their samples
            o0 = (A0 > 0) or (A0 == 0 and B0 > 0)
            o1 = (A1 > 0) or (A1 == 0 and B1 > 0)
            o2 = (A2 > 0) or (A2 == 0 and B2 > 0)
            Cb0 = C0 + (bias if o0 else 0.0)
            Cb1 = C1 + (bias if o1 else 0.0)
            Cb2 = C2 + (bias if o2 else 0.0)
            # the depth plane uses the unbiased edge values, recovered as the torch path does
            Cu0 = Cb0 - (bias if o0 else 0.0)
            Cu1 = Cb1 - (bias if o1 else 0.0)
            Cu2 = Cb2 - (bias if o2 else 0.0)
            aa = abs(area)
            iz0, iz1, iz2 = 1.0 / z0, 1.0 / z1, 1.0 / z2
            dA = ((A0 * iz0 + A1 * iz1) + A2 * iz2) / aa
            dB = ((B0 * iz0 + B1 * iz1) + B2 * iz2) / aa
            dC = ((Cu0 * iz0 + Cu1 * iz1) + Cu2 * iz2) / aa
            # per row, the columns between the edge crossings, widened by 1e-3 px for their rounding (far smaller)
            r0 = -1.0 / A0 if A0 != 0 else 0.0
            r1 = -1.0 / A1 if A1 != 0 else 0.0
            r2 = -1.0 / A2 if A2 != 0 else 0.0
            fcmin, fcmax = cmin + off, cmax + off
            for r in range(rmin, rmax + 1):
                py = r + off
                R0 = B0 * py + Cb0
                R1 = B1 * py + Cb1
                R2 = B2 * py + Cb2
                # inside: pu > -R_i/A_i for A_i > 0, pu < -R_i/A_i for A_i < 0 (A_i == 0: the test decides)
                lo, hi = fcmin, fcmax
                if A0 > 0:
                    lo = max(lo, R0 * r0)
                elif A0 < 0:
                    hi = min(hi, R0 * r0)
                if A1 > 0:
                    lo = max(lo, R1 * r1)
                elif A1 < 0:
                    hi = min(hi, R1 * r1)
                if A2 > 0:
                    lo = max(lo, R2 * r2)
                elif A2 < 0:
                    hi = min(hi, R2 * r2)
                lo, hi = min(lo, fcmax + 1.0), max(hi, fcmin - 1.0)  # finite before the integer conversion
                c0 = max(math.ceil(lo - off - 1e-3), cmin)
                c1 = min(math.floor(hi - off + 1e-3), cmax)
                if c1 < c0:
                    continue
                if (A0 == 0 and R0 <= 0) or (A1 == 0 and R1 <= 0) or (A2 == 0 and R2 <= 0):
                    continue  # outside a horizontal edge
                p1 = dB * py + dC
                start = (r - y0) * w + (c0 - x0)
                seg = iz_buf[start:start + (c1 - c0) + 1]  # a view indexed from 0: no wraparound checks
                pu0 = c0 + off
                n = seg.shape[0]
                # the two end columns may lie on either side of an edge: the exact test decides (one column when
                # n == 1: the max is idempotent); the columns between are at least 1 - 1e-3 px inside every edge
                for j in (0, n - 1):
                    pu = pu0 + j
                    if (A0 * pu + R0 > 0) & (A1 * pu + R1 > 0) & (A2 * pu + R2 > 0):
                        seg[j] = max(seg[j], dA * pu + p1)
                for j in range(1, n - 1):
                    seg[j] = max(seg[j], dA * (pu0 + j) + p1)

    @njit(cache=True, nogil=True, inline="always")
    def _depth(iz):
        """The float32 depth of a pixel from its largest ``1/z`` (0: empty)."""
        return np.float32(1.0 / iz) if iz > 0 else np.float32(0.0)

    @njit(cache=True, nogil=True, inline="always")
    def _dist(px, py, d):
        """Distance from the camera centre of a pixel at depth d, the toolkit's ``depth_im_to_dist_im_fast``
        formula term by term (px, py: ``(c - cx) / fx``, ``(r - cy) / fy``)."""
        return math.sqrt(((px * d) * (px * d) + (py * d) * (py * d)) + d * d)

    @njit(cache=True, nogil=True)
    def _box(u, v, z, n, H, W, near):
        """Inclusive pixel box of a projected mesh, one pixel of margin, clipped to the image; the whole image
        when a vertex is behind the camera (the box only bounds where the render can be non-zero)."""
        umin, umax, vmin, vmax = np.inf, -np.inf, np.inf, -np.inf
        for i in range(n):
            if not (z[i] > near):
                return 0, 0, W, H
            umin, umax = min(umin, u[i]), max(umax, u[i])
            vmin, vmax = min(vmin, v[i]), max(vmax, v[i])
        if not (np.isfinite(umin) and np.isfinite(umax) and np.isfinite(vmin) and np.isfinite(vmax)):
            return 0, 0, W, H
        x0 = max(0.0, math.floor(umin) - 1.0)
        y0 = max(0.0, math.floor(vmin) - 1.0)
        x1 = min(W - 1.0, math.ceil(umax) + 1.0)
        y1 = min(H - 1.0, math.ceil(vmax) + 1.0)
        if x1 < x0 or y1 < y0:
            return 0, 0, 0, 0
        return int(x0), int(y0), int(x1 - x0) + 1, int(y1 - y0) + 1

    @njit(cache=True, nogil=True, error_model="numpy")
    def _gt_visibility(iz, x0, y0, w, h, K, depth, base, W, delta, dist, vis):
        """Distance image (float64) and bop19 visibility mask of a GT render (``iz`` from :func:`_raster`)
        against the test depth, into ``dist`` / ``vis`` (h*w); returns the visible pixel count. Branch-free per
        row so that the compiler vectorises it (the divisions by 0 of empty pixels are discarded)."""
        fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
        px = np.empty(w)
        for c in range(w):
            px[c] = (c + x0 - cx) / fx
        k = 0
        for r in range(y0, y0 + h):
            py = (r - cy) / fy
            izr = iz[(r - y0) * w:(r - y0 + 1) * w]
            dr = dist[(r - y0) * w:(r - y0 + 1) * w]
            vr = vis[(r - y0) * w:(r - y0 + 1) * w]
            tr = depth[base + r * W + x0:base + r * W + x0 + w]
            for c in range(w):
                iv = izr[c]
                dg = np.float32(1.0 / iv) if iv > 0 else np.float32(0.0)
                dist_g = _dist(px[c], py, np.float64(dg))
                dist_t = _dist(px[c], py, np.float64(tr[c]))
                ok = ((np.float32(dist_g) - np.float32(dist_t) <= delta) | (dist_t == 0)) & (dist_g > 0)
                dr[c] = dist_g
                vr[c] = ok
                k += ok
        return k

    @njit(cache=True, nogil=True, error_model="numpy")
    def _vsd_pair(iz, ex0, ey0, ew, eh, gdist, gvis, gcount, gx0, gy0, gw, gh, K, depth, base, W, diam, delta, taus,
                  err):
        """VSD of one pair from its estimate render and its GT's distances and visibility, into ``err`` (T,).

        Only the estimate's pixels are visited: with V_g the GT's visible pixels, the union of the two visible
        masks is |V_g| plus the estimate pixels outside V_g that pass the visibility test, and the intersection is
        the estimate pixels inside V_g (bop19: an estimate pixel on a visible GT pixel is visible). Each row runs
        as branch-free loops that the compiler vectorises: distances and visibility of the estimate, then the
        columns shared with the GT box, then one count per threshold."""
        T = taus.shape[0]
        fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
        px = np.empty(ew)
        for c in range(ew):
            px[c] = (c + ex0 - cx) / fx
        dist_e, vis_e, cov_e = np.empty(ew), np.empty(ew, np.bool_), np.empty(ew, np.bool_)
        dd = np.empty(ew)
        # the estimate columns [s0, s1) fall in the GT box, at GT columns starting at s0 + ex0 - gx0
        s0 = min(max(gx0 - ex0, 0), ew)
        s1 = max(min(gx0 + gw - ex0, ew), s0)
        visible = 0  # estimate pixels that pass the visibility test
        inter = 0
        vis_in_g = 0  # of those, pixels in V_g (already in |V_g|)
        costs = np.zeros(T, np.int64)
        for r in range(ey0, ey0 + eh):
            py = (r - cy) / fy
            izr = iz[(r - ey0) * ew:(r - ey0 + 1) * ew]
            tr = depth[base + r * W + ex0:base + r * W + ex0 + ew]
            for c in range(ew):
                iv = izr[c]
                de = np.float32(1.0 / iv) if iv > 0 else np.float32(0.0)
                d_e = _dist(px[c], py, np.float64(de))
                d_t = _dist(px[c], py, np.float64(tr[c]))
                cov = de > 0
                ok = cov & ((np.float32(d_e) - np.float32(d_t) <= delta) | (d_t == 0))
                dist_e[c], cov_e[c], vis_e[c] = d_e, cov, ok
                visible += ok
            if not (r >= gy0 and r < gy0 + gh) or s1 == s0:
                continue
            go = (r - gy0) * gw + (s0 + ex0 - gx0)
            gvr = gvis[go:go + (s1 - s0)]
            gdr = gdist[go:go + (s1 - s0)]
            n = s1 - s0
            for k in range(n):
                vg = gvr[k]
                both = cov_e[s0 + k] & vg
                inter += both
                vis_in_g += vis_e[s0 + k] & vg
                d = abs(gdr[k] - dist_e[s0 + k]) / diam
                dd[k] = d if both else -np.inf
            for j in range(T):
                tj = taus[j]
                cnt = 0
                for k in range(n):
                    cnt += dd[k] >= tj
                costs[j] += cnt
        union = gcount + (visible - vis_in_g)
        for j in range(T):
            err[j] = (np.float64(costs[j]) + np.float64(union - inter)) / np.float64(union) if union > 0 else 1.0

    @njit(cache=True, parallel=True)
    def _vsd_kernel(verts, faces, vstart, vcount, fstart, fcount, mesh, R_e, t_e, R_g, t_g, K, image, group_start,
                    order, depth, doff, dhw, diam, delta, taus, off, near, snap, n_workers):
        """VSD of pairs grouped by GT instance (``order[group_start[g]:group_start[g + 1]]`` share one GT): each
        GT is rendered once and its pairs follow while its buffers are in cache. Groups are dealt to the workers
        round-robin, which balances them without a shared queue."""
        P = mesh.shape[0]
        G = group_start.shape[0] - 1
        err = np.ones((P, taus.shape[0]))
        for wk in prange(n_workers):
            giz, gdist, gvis, eiz = np.empty(0), np.empty(0), np.empty(0, np.bool_), np.empty(0)
            for g in range(wk, G, n_workers):
                q = order[group_start[g]]
                img = image[q]
                H, W, base = dhw[img, 0], dhw[img, 1], doff[img]
                m = mesh[q]
                n = vcount[m]
                u, v, z = np.empty(n), np.empty(n), np.empty(n)
                _project(verts[vstart[m]:vstart[m] + n], R_g[q], t_g[q], K[q], snap, u, v, z)
                gx0, gy0, gw, gh = _box(u, v, z, n, H, W, near)
                if gw * gh > giz.shape[0]:
                    giz, gdist, gvis = np.empty(gw * gh), np.empty(gw * gh), np.empty(gw * gh, np.bool_)
                gcount = 0
                if gw * gh > 0:
                    _raster(faces[fstart[m]:fstart[m] + fcount[m]], u, v, z, gx0, gy0, gw, gh, off, near, snap, giz)
                    gcount = _gt_visibility(giz, gx0, gy0, gw, gh, K[q], depth, base, W, delta, gdist, gvis)
                for i in range(group_start[g], group_start[g + 1]):
                    p = order[i]
                    _project(verts[vstart[m]:vstart[m] + n], R_e[p], t_e[p], K[p], snap, u, v, z)
                    ex0, ey0, ew, eh = _box(u, v, z, n, H, W, near)
                    if ew * eh > eiz.shape[0]:
                        eiz = np.empty(ew * eh)
                    if ew * eh > 0:
                        _raster(faces[fstart[m]:fstart[m] + fcount[m]], u, v, z, ex0, ey0, ew, eh, off, near, snap,
                                eiz)
                    _vsd_pair(eiz, ex0, ey0, ew, eh, gdist, gvis, gcount, gx0, gy0, gw, gh, K[p], depth, base, W,
                              diam[p], delta, taus, err[p])
        return err

    @njit(cache=True, nogil=True)
    def _min_max_sym_kernel(a, sym_pts, R_g, t_g, K, sub, project):
        """a (P,N,D) estimate points (camera frame 3D, or pixels when ``project``); sym_pts (S,N,3) in the model
        frame; GT points of symmetry s: R_g sym_pts[s] + t_g (MSPD: projected with K; MSSD: a is already in
        the GT model frame and R_g = I, t_g = 0 are passed)."""
        P, N = a.shape[0], a.shape[1]
        S = sym_pts.shape[0]
        out = np.empty(P)
        for p in range(P):  # serial: called once per object with few pairs; the pruning makes it cheap
            Rg, tg, Kp = R_g[p], t_g[p], K[p]
            lb = np.empty(S)
            for s in range(S):
                m = 0.0
                for q in range(sub.shape[0]):
                    n = sub[q]
                    d = _pt_dist(a[p, n], sym_pts[s, n], Rg, tg, Kp, project)
                    m = max(m, d)
                lb[s] = m
            order = np.argsort(lb, kind="mergesort")
            best = np.inf
            for i in range(S):
                s = order[i]
                if lb[s] >= best:
                    break
                m = 0.0
                for n in range(N):
                    d = _pt_dist(a[p, n], sym_pts[s, n], Rg, tg, Kp, project)
                    if d > m:
                        m = d
                        if m >= best:
                            break
                best = min(best, m)
            out[p] = best
        return out

    @njit(cache=True, nogil=True, inline="always")
    def _pt_dist(ap, x, Rg, tg, K, project):
        X0 = ((Rg[0, 0] * x[0] + Rg[0, 1] * x[1]) + Rg[0, 2] * x[2]) + tg[0]
        X1 = ((Rg[1, 0] * x[0] + Rg[1, 1] * x[1]) + Rg[1, 2] * x[2]) + tg[1]
        X2 = ((Rg[2, 0] * x[0] + Rg[2, 1] * x[1]) + Rg[2, 2] * x[2]) + tg[2]
        if project:
            w = (K[2, 0] * X0 + K[2, 1] * X1) + K[2, 2] * X2
            u = ((K[0, 0] * X0 + K[0, 1] * X1) + K[0, 2] * X2) / w
            v = ((K[1, 0] * X0 + K[1, 1] * X1) + K[1, 2] * X2) / w
            du, dv = ap[0] - u, ap[1] - v
            return math.sqrt(du * du + dv * dv)
        d0, d1, d2 = ap[0] - X0, ap[1] - X1, ap[2] - X2
        return math.sqrt((d0 * d0 + d1 * d1) + d2 * d2)


def min_max_sym_pairs(a: Tensor, sym_pts: Tensor, sub: Tensor, R_g: Tensor | None = None, t_g: Tensor | None = None,
                      K: Tensor | None = None) -> Tensor:
    """``min_s max_n |a[p, n] - g_p(sym_pts[s, n])|`` for every pair p (CPU), exactly.

    MSSD: ``a`` (P,N,3) estimate points in the GT model frame, no R_g/t_g/K (g = identity). MSPD: ``a`` (P,N,2)
    projected estimate points, and g projects ``R_g x + t_g`` with ``K`` (P,3,3)."""
    P = int(a.shape[0])
    project = K is not None
    eye = torch.eye(3, dtype=torch.float64).expand(P, 3, 3)
    R_g = eye if R_g is None else R_g
    t_g = torch.zeros(P, 3, dtype=torch.float64) if t_g is None else t_g
    K = eye if K is None else K.expand(P, 3, 3)

    def f64(x):
        return np.ascontiguousarray(x.detach().cpu().to(torch.float64).numpy())

    out = _min_max_sym_kernel(f64(a), f64(sym_pts), f64(R_g), f64(t_g), f64(K),
                              np.ascontiguousarray(sub.cpu().to(torch.int64).numpy()), project)
    return torch.from_numpy(out).to(a.dtype)


def vsd_pairs(bank, mesh: Tensor, R_e: Tensor, t_e: Tensor, R_g: Tensor, t_g: Tensor, K: Tensor, image: Tensor,
              depth_flat: Tensor, depth_offset: Tensor, depth_hw: Tensor, diameter: Tensor, delta: float, taus: Tensor,
              *, pixel_offset: float = 0.5, near: float = 1e-3, subpixel_bits: int = 8) -> Tensor:
    """(P, T) VSD errors of P pairs on the CPU; arguments as ``pose_error.vsd_batch``. Each distinct GT instance
    (mesh, pose, camera, image) is rendered once however many estimates it is paired with."""
    def f64(x):
        return np.ascontiguousarray(x.detach().cpu().to(torch.float64).numpy())

    def i64(x):
        return np.ascontiguousarray(x.detach().cpu().to(torch.int64).numpy())

    P = int(mesh.shape[0])
    if P == 0:
        return torch.ones(0, int(taus.shape[0]), dtype=torch.float64)
    if taus.numel() > 1 and not bool((taus[1:] > taus[:-1]).all()):
        order = torch.argsort(taus)
        err = vsd_pairs(bank, mesh, R_e, t_e, R_g, t_g, K, image, depth_flat, depth_offset, depth_hw, diameter, delta,
                        taus[order], pixel_offset=pixel_offset, near=near, subpixel_bits=subpixel_bits)
        return err[:, torch.argsort(order)]
    key = torch.cat([mesh[:, None].double(), image[:, None].double(), R_g.reshape(P, 9).double(), t_g.double(),
                     K.reshape(P, 9).double()], 1).cpu()
    _, pair_gt = torch.unique(key, dim=0, return_inverse=True)
    order = torch.argsort(pair_gt, stable=True)
    group_start = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(torch.bincount(pair_gt), 0)])
    snap = float(1 << subpixel_bits) if subpixel_bits else 0.0
    # float32 depth (what BOPAR holds) is passed as is and widened per pixel, exactly as the torch path does
    depth = depth_flat.detach().cpu()
    depth = np.ascontiguousarray(depth.numpy() if depth.dtype == torch.float32 else f64(depth))
    n_workers = max(1, min(int(group_start.numel()) - 1, numba.get_num_threads()))
    err = _vsd_kernel(f64(bank.vertices), i64(bank.faces), i64(bank.vert_start), i64(bank.vert_count),
                      i64(bank.face_start), i64(bank.face_count), i64(mesh), f64(R_e), f64(t_e), f64(R_g), f64(t_g),
                      f64(K), i64(image), i64(group_start), i64(order), depth, i64(depth_offset), i64(depth_hw),
                      f64(diameter), float(delta), f64(taus), float(pixel_offset), float(near), snap, n_workers)
    return torch.from_numpy(err)
