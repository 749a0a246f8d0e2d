"""Compiled CPU kernels of the 3D joint errors: one pass per frame for MPJPE, P-MPJPE, N-MPJPE and MPJVE.

Why: on the CPU the vectorised torch kernels of :mod:`metrics.mpjpe` pay for memory traffic, not arithmetic
(each of the Procrustes alignment's ~40 steps writes a temporary per frame; 550,000 poses took 3-5 s). Here each
frame is read once and everything is computed in registers: the similarity Procrustes optimum by Horn's
quaternion method (the largest eigenpair of a symmetric 4x4 matrix by Jacobi rotations, run until a sweep finds
nothing left to rotate), then the four per-frame errors. float64 throughout, no fast-math; every frame is
computed on its own, so a frame's values do not depend on the batch around it. Single-threaded: the harness
feeds one sequence per update, and a second thread on a shared 2-core machine costs more than it saves.

The formulas are those of :mod:`metrics.mpjpe` (VideoPose3D ``common/loss.py``); the two paths agree to a few
ulps and ``tests/metrics/test_mpjpe_cpu.py`` checks both against VideoPose3D's own numbers.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["frame_errors", "procrustes_align_frames"]

_SKIP = 1e-18  # an off-diagonal entry below this fraction of |N|_F moves no eigenvector by a float64 ulp
_MAX_SWEEPS = 16  # Jacobi on 4x4 converges quadratically (4-7 sweeps measured); a bound for safety only


@njit(cache=True, nogil=True, error_model="numpy")
def _similarity(p, g, f, a, v, rot):
    """Similarity ``x -> s x R + t`` that aligns frame ``f`` of ``p (T, J, 3)`` to ``g``; returns ``s, t``.

    VideoPose3D's ``p_mpjpe``: centre both, divide by the Frobenius norms, ``H = X0^T Y0``, ``R`` the proper
    rotation maximising ``tr(R H)`` (Horn: the top eigenvector of the 4x4 ``N`` of ``M = H^T``, as quaternion),
    ``s = tr(R H) |X0| / |Y0|``, ``t = mu_X - s mu_Y R``. A prediction collapsed to a point gets ``s = 0`` (the
    limit) and a target collapsed to a point gives ``R = I, s = 0``. ``a``, ``v`` (4, 4) and ``rot`` (3, 3) are
    scratch; ``rot`` holds ``R`` on return.
    """
    nj = p.shape[1]
    mx0 = mx1 = mx2 = my0 = my1 = my2 = 0.0
    for j in range(nj):
        mx0 += g[f, j, 0]
        mx1 += g[f, j, 1]
        mx2 += g[f, j, 2]
        my0 += p[f, j, 0]
        my1 += p[f, j, 1]
        my2 += p[f, j, 2]
    mx0 /= nj
    mx1 /= nj
    mx2 /= nj
    my0 /= nj
    my1 /= nj
    my2 /= nj
    # H = X0^T Y0 of the centred poses; the Frobenius normalisation is applied once to H (9 divisions, not 6J)
    nx = ny = 0.0
    h00 = h01 = h02 = h10 = h11 = h12 = h20 = h21 = h22 = 0.0
    for j in range(nj):
        x0, x1, x2 = g[f, j, 0] - mx0, g[f, j, 1] - mx1, g[f, j, 2] - mx2
        y0, y1, y2 = p[f, j, 0] - my0, p[f, j, 1] - my1, p[f, j, 2] - my2
        nx += x0 * x0 + x1 * x1 + x2 * x2
        ny += y0 * y0 + y1 * y1 + y2 * y2
        h00 += x0 * y0
        h01 += x0 * y1
        h02 += x0 * y2
        h10 += x1 * y0
        h11 += x1 * y1
        h12 += x1 * y2
        h20 += x2 * y0
        h21 += x2 * y1
        h22 += x2 * y2
    nx = math.sqrt(nx)
    ny = math.sqrt(ny)
    sxy = (nx if nx > 0.0 else 1.0) * (ny if ny > 0.0 else 1.0)
    h00, h01, h02 = h00 / sxy, h01 / sxy, h02 / sxy
    h10, h11, h12 = h10 / sxy, h11 / sxy, h12 / sxy
    h20, h21, h22 = h20 / sxy, h21 / sxy, h22 / sxy
    # Horn's N for M = H^T (m_ij = h_ji): q^T N q = tr(R(q) H)
    a[0, 0] = h00 + h11 + h22
    a[0, 1] = a[1, 0] = h12 - h21
    a[0, 2] = a[2, 0] = h20 - h02
    a[0, 3] = a[3, 0] = h01 - h10
    a[1, 1] = h00 - h11 - h22
    a[1, 2] = a[2, 1] = h10 + h01
    a[1, 3] = a[3, 1] = h20 + h02
    a[2, 2] = -h00 + h11 - h22
    a[2, 3] = a[3, 2] = h21 + h12
    a[3, 3] = -h00 - h11 + h22
    lam = _top_eigenpair(a, v)
    best = 0
    for i in range(1, 4):
        if a[i, i] > a[best, best]:
            best = i
    w, x, y, z = v[0, best], v[1, best], v[2, best], v[3, best]
    inv = 1.0 / math.sqrt(w * w + x * x + y * y + z * z)
    w, x, y, z = w * inv, x * inv, y * inv, z * inv
    rot[0, 0] = w * w + x * x - y * y - z * z
    rot[0, 1] = 2 * (x * y - w * z)
    rot[0, 2] = 2 * (x * z + w * y)
    rot[1, 0] = 2 * (x * y + w * z)
    rot[1, 1] = w * w - x * x + y * y - z * z
    rot[1, 2] = 2 * (y * z - w * x)
    rot[2, 0] = 2 * (x * z - w * y)
    rot[2, 1] = 2 * (y * z + w * x)
    rot[2, 2] = w * w - x * x - y * y + z * z
    s = lam * nx / ny if ny > 0.0 else 0.0
    t0 = mx0 - s * (my0 * rot[0, 0] + my1 * rot[1, 0] + my2 * rot[2, 0])
    t1 = mx1 - s * (my0 * rot[0, 1] + my1 * rot[1, 1] + my2 * rot[2, 1])
    t2 = mx2 - s * (my0 * rot[0, 2] + my1 * rot[1, 2] + my2 * rot[2, 2])
    return s, t0, t1, t2


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _jacobi_angle(app, aqq, apq, tol):
    """``c, s, t`` of the rotation that zeroes ``apq`` (``t = tan``, the smaller root); none below ``tol``."""
    if abs(apq) <= tol:
        return 1.0, 0.0, 0.0
    theta = (aqq - app) / (2.0 * apq)
    t = 1.0 / (abs(theta) + math.sqrt(theta * theta + 1.0))
    if theta < 0.0:
        t = -t
    c = 1.0 / math.sqrt(t * t + 1.0)
    return c, t * c, t


@njit(cache=True, nogil=True, error_model="numpy")
def _top_eigenpair(a, v):
    """Jacobi on the symmetric ``a (4, 4)`` (diagonalised in place, eigenvectors into the columns of ``v``);
    returns the largest eigenvalue.

    Each sweep visits the six pairs in three rounds of two disjoint pairs, (0,1)+(2,3), (0,2)+(1,3),
    (0,3)+(1,2): the two angles of a round depend on separate entries, so the CPU computes their divisions and
    square roots side by side (half the latency of the row-cyclic order). A rotation is skipped when its entry
    is below ``_SKIP |a|_F``; the sweeps stop when a whole sweep skips all six.
    """
    fro = 0.0
    for i in range(4):
        for k in range(4):
            fro += a[i, k] * a[i, k]
            v[i, k] = 1.0 if i == k else 0.0
    tol = _SKIP * math.sqrt(fro)
    for _ in range(_MAX_SWEEPS):
        rotated = False
        for r in range(3):
            p1, q1 = 0, r + 1
            p2 = 2 if r == 0 else 1
            q2 = 6 - q1 - p2
            a1, a2 = a[p1, q1], a[p2, q2]
            c1, s1, t1 = _jacobi_angle(a[p1, p1], a[q1, q1], a1, tol)
            c2, s2, t2 = _jacobi_angle(a[p2, p2], a[q2, q2], a2, tol)
            if t1 == 0.0 and t2 == 0.0:
                continue
            rotated = True
            # the 2x2 block between the pairs: rotation 1 on its rows, then rotation 2 on its columns
            for k in (p2, q2):
                akp, akq = a[k, p1], a[k, q1]
                a[k, p1] = a[p1, k] = c1 * akp - s1 * akq
                a[k, q1] = a[q1, k] = s1 * akp + c1 * akq
            for k in (p1, q1):
                akp, akq = a[k, p2], a[k, q2]
                a[k, p2] = a[p2, k] = c2 * akp - s2 * akq
                a[k, q2] = a[q2, k] = s2 * akp + c2 * akq
            a[p1, p1] -= t1 * a1
            a[q1, q1] += t1 * a1
            a[p2, p2] -= t2 * a2
            a[q2, q2] += t2 * a2
            a[p1, q1] = a[q1, p1] = 0.0
            a[p2, q2] = a[q2, p2] = 0.0
            for k in range(4):
                vp, vq = v[k, p1], v[k, q1]
                v[k, p1] = c1 * vp - s1 * vq
                v[k, q1] = s1 * vp + c1 * vq
                vp, vq = v[k, p2], v[k, q2]
                v[k, p2] = c2 * vp - s2 * vq
                v[k, q2] = s2 * vp + c2 * vq
        if not rotated:
            break
    lam = a[0, 0]
    for i in range(1, 4):
        lam = max(lam, a[i, i])
    return lam


@njit(cache=True, nogil=True, error_model="numpy")
def procrustes_align_frames(p, g, out):
    """``out[f] = s_f p[f] R_f + t_f``: every frame of ``p (T, J, 3)`` similarity-aligned to ``g`` (float64)."""
    a, v, rot = np.empty((4, 4)), np.empty((4, 4)), np.empty((3, 3))
    for f in range(p.shape[0]):
        s, t0, t1, t2 = _similarity(p, g, f, a, v, rot)
        for j in range(p.shape[1]):
            q0, q1, q2 = p[f, j, 0], p[f, j, 1], p[f, j, 2]
            out[f, j, 0] = s * (q0 * rot[0, 0] + q1 * rot[1, 0] + q2 * rot[2, 0]) + t0
            out[f, j, 1] = s * (q0 * rot[0, 1] + q1 * rot[1, 1] + q2 * rot[2, 1]) + t1
            out[f, j, 2] = s * (q0 * rot[0, 2] + q1 * rot[1, 2] + q2 * rot[2, 2]) + t2


@njit(cache=True, nogil=True, error_model="numpy")
def frame_errors(p, g, out):
    """Per frame of ``p, g (T, J, 3)`` into ``out (T, 4)``: MPJPE, P-MPJPE, N-MPJPE, and the velocity error of
    the pair (f, f+1) (``out[T-1, 3]`` is 0). N-MPJPE's scale ``<p,g> / <p,p>`` is NaN for an all-zero
    prediction, as in VideoPose3D."""
    a, v, rot = np.empty((4, 4)), np.empty((4, 4)), np.empty((3, 3))
    nf, nj = p.shape[0], p.shape[1]
    for f in range(nf):
        s, t0, t1, t2 = _similarity(p, g, f, a, v, rot)
        e_mp = e_pa = e_n = e_v = 0.0
        pp = pg = 0.0
        for j in range(nj):
            q0, q1, q2 = p[f, j, 0], p[f, j, 1], p[f, j, 2]
            g0, g1, g2 = g[f, j, 0], g[f, j, 1], g[f, j, 2]
            d0, d1, d2 = q0 - g0, q1 - g1, q2 - g2
            e_mp += math.sqrt(d0 * d0 + d1 * d1 + d2 * d2)
            d0 = s * (q0 * rot[0, 0] + q1 * rot[1, 0] + q2 * rot[2, 0]) + t0 - g0
            d1 = s * (q0 * rot[0, 1] + q1 * rot[1, 1] + q2 * rot[2, 1]) + t1 - g1
            d2 = s * (q0 * rot[0, 2] + q1 * rot[1, 2] + q2 * rot[2, 2]) + t2 - g2
            e_pa += math.sqrt(d0 * d0 + d1 * d1 + d2 * d2)
            pp += q0 * q0 + q1 * q1 + q2 * q2
            pg += g0 * q0 + g1 * q1 + g2 * q2
            if f + 1 < nf:
                d0 = (p[f + 1, j, 0] - q0) - (g[f + 1, j, 0] - g0)
                d1 = (p[f + 1, j, 1] - q1) - (g[f + 1, j, 1] - g1)
                d2 = (p[f + 1, j, 2] - q2) - (g[f + 1, j, 2] - g2)
                e_v += math.sqrt(d0 * d0 + d1 * d1 + d2 * d2)
        scale = pg / pp
        for j in range(nj):
            d0 = scale * p[f, j, 0] - g[f, j, 0]
            d1 = scale * p[f, j, 1] - g[f, j, 1]
            d2 = scale * p[f, j, 2] - g[f, j, 2]
            e_n += math.sqrt(d0 * d0 + d1 * d1 + d2 * d2)
        out[f, 0] = e_mp / nj
        out[f, 1] = e_pa / nj
        out[f, 2] = e_n / nj
        out[f, 3] = e_v / nj
