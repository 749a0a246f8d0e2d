"""COCO keypoint AP/AR (OKS), numerically identical to pycocotools ``COCOeval(iouType='keypoints')``.

Protocol (shared PROTOCOLS.md, facts read from pycocotools' ``cocoeval.py``; the code here is our own):

    OKS(d, g) = mean_{k: v_gk > 0} exp(-|p_dk - p_gk|^2 / (2 (area_g + eps) (2 sigma_k)^2)),  eps = 2^-52

A GT with no visible keypoint measures, per keypoint, the distance from the detection to a box twice the GT
bbox and averages over all K keypoints (it is ignored anyway). Per image, detections are sorted by score
(stable: ties keep file order) and cut to ``max_dets``; each is greedily matched, in that order and for every
OKS threshold and area range, to the free GT with the highest OKS >= threshold, regular GTs before ignored
ones (crowd, ``num_keypoints == 0`` or area out of range), ties to the later GT. A crowd GT absorbs any
number of detections. Detections matched to an ignored GT, and unmatched ones whose keypoint-box area is out
of range, are ignored. Precision is made monotone from the right and sampled at the 101 recall thresholds
(``searchsorted(recall, thr, 'left')``, 0 past the largest recall); AP/AR average over thresholds, entries
of -1 (no regular GT in that area range) are left out.

Exactness details that move numbers and are reproduced on purpose:

- thresholds are ``np.linspace`` values (some recall thresholds are one ulp above i/100), rebuilt with
  numpy's formula ``i * step + start`` (``torch.linspace`` rounds differently);
- all images' detections are concatenated in image-id order then stably sorted by score, so score ties
  break by (image id, position in the results file);
- an unmatched detection's area is the extent of ALL its keypoints (``loadRes``), whatever their score;
- area ranges include both ends (an area of exactly 96^2 is medium and large); 'all' ends at 1e10;
- a GT whose annotation ``id`` is 0 is matched (it takes the detection) but pycocotools stores the GT id as
  the match flag, so the detection counts as unmatched (a false positive, or ignored when its area is out of
  range). We follow pycocotools; xtcocotools differs here;
- sums are done in numpy's pairwise order and, on CPU, ``exp`` is numpy's, so OKS values are the same
  float64 bits as the reference (on CUDA ``torch.exp`` may differ by 1 ulp, which can only matter for an
  OKS within 1 ulp of a threshold).

Where the references disagree we follow pycocotools (xtcocotools and faster-coco-eval give the same
stats otherwise): GT annotation id 0 (above; xtcocotools scores the match); a GT whose ``num_keypoints`` is 0
but has visible keypoints is ignored because the field is trusted (xtcocotools counts v > 0); an empty
results list scores 0 like faster-coco-eval (pycocotools raises; see bench/predictions/coco_json.py).

The kernel is vectorised: OKS for every detection/GT pair of the same image at once (a flat pair list), then
the greedy matching on the candidate pairs only (OKS >= the lowest threshold), packed per image into small
padded blocks (images bucketed by candidate-GT count); the pass is sequential over the detection rank only
(<= ``max_dets`` steps), each step updating every image, threshold and area range together. On CPU it runs
single-threaded (see ``metrics.common.one_cpu_thread``).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np
import torch
from torch import Tensor
from torchmetrics.utilities import dim_zero_cat

from metrics.bootstrap import BootstrapStats
from metrics.common import one_cpu_thread
from metrics.protocol import PoseMetric, plot_dict
from metrics.skeletons import COCO_SIGMAS

STAT_KEYS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")

# (label, lo, hi): pycocotools' keypoint area ranges; both ends inclusive.
COCO_AREA_RANGES: tuple[tuple[str, float, float], ...] = (
    ("all", 0.0, 1e5**2),
    ("medium", 32.0**2, 96.0**2),
    ("large", 96.0**2, 1e5**2),
)

_EPS = float(np.spacing(1))  # pycocotools adds np.spacing(1) to the GT area and to tp + fp


def np_linspace(start: float, stop: float, num: int, device: torch.device | str | None = None) -> Tensor:
    """``np.linspace(start, stop, num)`` bit for bit (``i * step + start``, last value = stop), float64."""
    y = torch.arange(num, dtype=torch.float64, device=device)
    if num > 1:
        y = y * ((stop - start) / (num - 1)) + start
        y[-1] = stop
    else:
        y = y + start
    return y


def coco_oks_thresholds(device=None) -> Tensor:
    """OKS thresholds ``.50:.05:.95`` as pycocotools builds them."""
    return np_linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, device)


def coco_recall_thresholds(device=None) -> Tensor:
    """Recall thresholds ``0:.01:1`` as pycocotools builds them (101 values)."""
    return np_linspace(0.0, 1.0, int(np.round((1.0 - 0.0) / 0.01)) + 1, device)


def np_sum(x: Tensor) -> Tensor:
    """Sum over the last dim in numpy's pairwise order (``np.sum`` of a contiguous float64 row).

    numpy sums fewer than 8 values left to right, up to 128 with 8 interleaved accumulators, more by halving
    at a multiple of 8. Matching that order makes means and OKS the same bits as the reference.
    """
    n = x.shape[-1]
    if n < 8:
        res = torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device)
        for i in range(n):
            res = res + x[..., i]
        return res
    if n <= 128:
        full = n - n % 8
        r = x[..., 0:8]
        for i in range(8, full, 8):
            r = r + x[..., i : i + 8]
        res = ((r[..., 0] + r[..., 1]) + (r[..., 2] + r[..., 3])) + ((r[..., 4] + r[..., 5]) + (r[..., 6] + r[..., 7]))
        for i in range(full, n):
            res = res + x[..., i]
        return res
    n2 = n // 2
    n2 -= n2 % 8
    return np_sum(x[..., :n2]) + np_sum(x[..., n2:])


def _np_sum_ragged(x: Tensor, n: Tensor) -> Tensor:
    """Row-wise ``np.sum(x[i, :n[i]])`` in numpy's order; ``x`` must be zero beyond ``n``.

    For n <= 128 one formula covers every row: the 8 accumulators take the first ``n - n % 8`` values, the
    rest is added one by one; adding the zero padding never changes a float. Longer rows (e.g. 133 whole-body
    keypoints) are grouped by length.
    """
    L = x.shape[-1]
    if L <= 128:
        return _np_sum_short(x, n)
    out = torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device)
    small = n <= 128
    if bool(small.any()):
        out[small] = _np_sum_short(x[small][..., :128], n[small])
    if not bool(small.all()):
        for length in torch.unique(n[~small]).tolist():
            rows = n == length
            out[rows] = np_sum(x[rows][..., :length])
    return out


def _np_sum_short(xs: Tensor, ns: Tensor) -> Tensor:
    """``_np_sum_ragged`` for rows of at most 128 values."""
    x = xs
    Ls = xs.shape[-1]
    if Ls:
        full = (ns - ns % 8).unsqueeze(-1)
        col = torch.arange(Ls, device=x.device)
        if Ls >= 8:
            head = torch.where(col < full, xs, torch.zeros((), dtype=x.dtype, device=x.device))
            nb = Ls // 8
            r = head[..., 0:8]
            for b in range(1, nb):
                r = r + head[..., 8 * b : 8 * b + 8]
            res = ((r[..., 0] + r[..., 1]) + (r[..., 2] + r[..., 3])) + ((r[..., 4] + r[..., 5]) + (r[..., 6] + r[..., 7]))
        else:
            res = torch.zeros(xs.shape[:-1], dtype=x.dtype, device=x.device)
        tail = torch.where(col >= full, xs, torch.zeros((), dtype=x.dtype, device=x.device))
        for i in range(Ls):
            res = res + tail[..., i]
        return res
    return torch.zeros(xs.shape[:-1], dtype=x.dtype, device=x.device)


def _exp(x: Tensor) -> Tensor:
    """``exp`` with numpy's bits on CPU (numpy's and torch's exp differ by 1 ulp on ~0.5% of inputs)."""
    if x.device.type == "cpu":
        return torch.from_numpy(np.exp(x.contiguous().numpy()))
    return torch.exp(x)


def oks_pairs(
    dt_kpts: Tensor, gt_kpts: Tensor, gt_area: Tensor, gt_bbox: Tensor, sigmas: Tensor,
    pair_dt: Tensor, pair_gt: Tensor, chunk: int = 1 << 13,
) -> Tensor:
    """OKS of the detection/GT pairs ``(pair_dt[i], pair_gt[i])``: dt (D, K, 3), gt (G, K, 3) -> (P,).

    Same float operations in the same order as pycocotools' ``computeOks``: ``e = (dx^2 + dy^2) / vars /
    (area + eps) / 2``, then the mean of ``exp(-e)`` over the GT's visible keypoints, which numpy sums after
    compacting them (``e[vg > 0]``): we compact each GT's keypoints the same way and sum in numpy's order.
    Pairs are processed in chunks so that temporaries stay small.
    """
    dev = dt_kpts.device
    K = sigmas.numel()
    var = ((sigmas * 2) * (sigmas * 2)).to(torch.float64)  # float32 sigmas: squared in float32, as numpy does
    vis = gt_kpts[..., 2] > 0
    has_vis = vis.any(-1)
    keep = vis | ~has_vis[:, None]  # no visible keypoint: all K count
    n = keep.sum(-1)
    order = torch.sort((~keep).to(torch.uint8), dim=-1, stable=True).indices  # kept keypoints first, in order
    xg, yg = gt_kpts[..., 0].gather(1, order), gt_kpts[..., 1].gather(1, order)
    varc = var[order]
    den = gt_area + _EPS
    x, y, w, h = gt_bbox.unbind(-1)
    bx0, bx1, by0, by1 = x - w, x + w * 2, y - h, y + h * 2
    col = torch.arange(K, device=dev)
    kp_flat = dt_kpts.reshape(-1)  # a view of (D, K, 3): x and y are read in place, no (D, K) copies
    out = torch.empty(pair_dt.numel(), dtype=torch.float64, device=dev)
    zero = torch.zeros((), dtype=torch.float64, device=dev)
    for s in range(0, pair_dt.numel(), chunk):
        pd, pg = pair_dt[s : s + chunk], pair_gt[s : s + chunk]
        flat = (pd[:, None] * K + order[pg]) * 3
        xd, yd = kp_flat[flat], kp_flat[flat + 1]
        hv = has_vis[pg]
        dx = xd - xg[pg]
        dy = yd - yg[pg]
        if not bool(hv.all()):  # distance to a box twice the GT bbox (order is the identity there)
            nv = ~hv
            xn, yn, gn = xd[nv], yd[nv], pg[nv]
            dx[nv] = (bx0[gn, None] - xn).clamp_min(0) + (xn - bx1[gn, None]).clamp_min(0)
            dy[nv] = (by0[gn, None] - yn).clamp_min(0) + (yn - by1[gn, None]).clamp_min(0)
        e = dx.mul_(dx).add_(dy.mul_(dy))
        e = e.div_(varc[pg]).div_(den[pg, None]).div_(2)
        e = _exp(e.neg_())
        npg = n[pg]
        e = torch.where(col < npg[:, None], e, zero)
        out[s : s + chunk] = _np_sum_ragged(e, npg) / npg.to(torch.float64)
    return out


@dataclass
class KeypointAPResult:
    """Everything COCOeval.accumulate/summarize give for one category and ``maxDets``.

    ``precision``: (T, R, A), -1 where an area range has no regular GT; ``recall``: (T, A);
    ``stats``: the summary numbers (keyed by :data:`STAT_KEYS`; a metric may put its own summary there, as
    CrowdPoseAP does); thresholds and area labels for plotting.
    """

    precision: Tensor
    recall: Tensor
    stats: dict[str, Tensor]
    oks_thresholds: Tensor
    rec_thresholds: Tensor
    area_labels: tuple[str, ...]
    # per kept detection in accumulation (score) order, for the bootstrap: image id, TP / FP flags (D, T, A);
    # and per GT: image id and whether it is a regular (not ignored) GT of each area range (G, A)
    det_image: Tensor | None = None
    det_tp: Tensor | None = None
    det_fp: Tensor | None = None
    gt_image: Tensor | None = None
    gt_regular: Tensor | None = None
    # every scored image id, ascending (set by the metrics: the bootstrap's units, images without GT included)
    image_ids: Tensor | None = None


def _sigma_tensor(sigmas: Tensor | Sequence[float] | None) -> Tensor:
    """The OKS sigmas as the kernel uses them: float64, except a float32 tensor or array, which stays float32.

    Why: mmpose parses every dataset's sigmas into a float32 array and xtcocotools then squares them in
    float32 (``(sigmas * 2) ** 2``) before dividing float64 distances by them; keeping the float32 values
    reproduces those variances bit for bit (metrics/xtcoco_ap.py).
    """
    if sigmas is None:
        return COCO_SIGMAS
    if isinstance(sigmas, np.ndarray) and sigmas.dtype == np.float32:
        return torch.from_numpy(sigmas.copy())
    if isinstance(sigmas, Tensor) and sigmas.dtype == torch.float32:
        return sigmas
    return torch.as_tensor(sigmas, dtype=torch.float64)


def _mean_valid(s: Tensor) -> Tensor:
    """pycocotools ``np.mean(s[s > -1])``, or -1 when nothing is valid."""
    v = s.reshape(-1)
    v = v[v > -1]
    if v.numel() == 0:
        return torch.tensor(-1.0, dtype=torch.float64, device=s.device)
    return np_sum(v) / v.numel()


def _segment_start(sorted_keys: Tensor) -> Tensor:
    """For keys sorted into runs, the index of the first element of each element's run."""
    n = sorted_keys.numel()
    if n == 0:
        return torch.zeros(0, dtype=torch.long, device=sorted_keys.device)
    new = torch.ones(n, dtype=torch.bool, device=sorted_keys.device)
    new[1:] = sorted_keys[1:] != sorted_keys[:-1]
    idx = torch.where(new, torch.arange(n, device=sorted_keys.device), torch.zeros_like(sorted_keys))
    return torch.cummax(idx, 0).values




def keypoint_ap_stats(
    dt_image: Tensor,
    dt_keypoints: Tensor,
    dt_scores: Tensor,
    gt_image: Tensor,
    gt_keypoints: Tensor,
    gt_area: Tensor,
    gt_bbox: Tensor,
    gt_iscrowd: Tensor,
    gt_num_keypoints: Tensor,
    gt_ids: Tensor | None = None,
    sigmas: Tensor | Sequence[float] | None = None,
    max_dets: int = 20,
    oks_thresholds: Tensor | Sequence[float] | None = None,
    area_ranges: Sequence[tuple[str, float, float]] = COCO_AREA_RANGES,
    rec_thresholds: Tensor | Sequence[float] | None = None,
    dt_area: Tensor | None = None,
) -> KeypointAPResult:
    """COCO keypoint evaluation of flat detections and GTs of many images (pycocotools semantics).

    Detections: ``dt_image`` (D,) image ids, ``dt_keypoints`` (D, K, 3), ``dt_scores`` (D,), in results-file
    order (the order breaks score ties); ``dt_area`` (D,) overrides the keypoint-extent area (pycocotools
    takes ``w * h`` of a results ``bbox`` when the first record has one). GTs: ``gt_image`` (G,),
    ``gt_keypoints`` (G, K, 3), ``gt_area``, ``gt_bbox`` (G, 4) xywh, ``gt_iscrowd``, ``gt_num_keypoints``,
    ``gt_ids`` (annotation ids: only id 0 matters, see the module doc). Every detection's image must be one of
    the scored images; images without GT and detections do not change the result.
    """
    with one_cpu_thread(dt_keypoints.device):
        return _keypoint_ap_stats(dt_image, dt_keypoints, dt_scores, gt_image, gt_keypoints, gt_area, gt_bbox,
                                  gt_iscrowd, gt_num_keypoints, gt_ids, sigmas, max_dets, oks_thresholds,
                                  area_ranges, rec_thresholds, dt_area)


def _keypoint_ap_stats(dt_image, dt_keypoints, dt_scores, gt_image, gt_keypoints, gt_area, gt_bbox, gt_iscrowd,
                       gt_num_keypoints, gt_ids, sigmas, max_dets, oks_thresholds, area_ranges, rec_thresholds,
                       dt_area) -> KeypointAPResult:
    dev = dt_keypoints.device
    f64 = torch.float64
    sig = _sigma_tensor(sigmas).to(dev)
    K = sig.numel()
    thr = (coco_oks_thresholds(dev) if oks_thresholds is None else torch.as_tensor(oks_thresholds, dtype=f64)).to(dev)
    rthr = (coco_recall_thresholds(dev) if rec_thresholds is None else torch.as_tensor(rec_thresholds, dtype=f64)).to(dev)
    T, R, A = thr.numel(), rthr.numel(), len(area_ranges)
    lo = torch.tensor([a[1] for a in area_ranges], dtype=f64, device=dev)
    hi = torch.tensor([a[2] for a in area_ranges], dtype=f64, device=dev)
    labels = tuple(a[0] for a in area_ranges)

    dt_image = dt_image.to(dev, torch.long).reshape(-1)
    dt_keypoints = dt_keypoints.to(dev, f64).reshape(-1, K, 3)
    dt_scores = dt_scores.to(dev, f64).reshape(-1)
    gt_image = gt_image.to(dev, torch.long).reshape(-1)
    gt_keypoints = gt_keypoints.to(dev, f64).reshape(-1, K, 3)
    gt_area = gt_area.to(dev, f64).reshape(-1)
    gt_bbox = gt_bbox.to(dev, f64).reshape(-1, 4)
    gt_crowd = gt_iscrowd.to(dev).reshape(-1) != 0
    gt_nkp = gt_num_keypoints.to(dev).reshape(-1)
    gt_id0 = torch.zeros_like(gt_crowd) if gt_ids is None else gt_ids.to(dev).reshape(-1) == 0
    gt_ign = gt_crowd | (gt_nkp == 0)

    # --- detections: per image by score (stable), cut to max_dets, in image-id order ---
    o1 = torch.sort(-dt_scores, stable=True).indices
    o2 = torch.sort(dt_image[o1], stable=True).indices
    order = o1[o2]
    img_sorted = dt_image[order]
    rank = torch.arange(order.numel(), device=dev) - _segment_start(img_sorted)
    keep = rank < max_dets
    order, rank = order[keep], rank[keep]
    d_img = dt_image[order]
    d_score = dt_scores[order]  # keypoints are read through ``order`` (no reordered copy of them: memory)
    if dt_area is None:
        xs, ys = dt_keypoints[order, :, 0], dt_keypoints[order, :, 1]
        d_area = (xs.amax(-1) - xs.amin(-1)) * (ys.amax(-1) - ys.amin(-1)) if K else torch.zeros_like(d_score)
    else:
        d_area = dt_area.to(dev, f64).reshape(-1)[order]
    Dk = d_img.numel()

    # --- GTs grouped by image, original order kept inside an image ---
    go = torch.sort(gt_image, stable=True).indices
    g_img = gt_image[go]
    g_ign_a = gt_ign[go][:, None] | (gt_area[go][:, None] < lo) | (gt_area[go][:, None] > hi)  # (G, A)
    npig = (~g_ign_a).sum(0)  # (A,)

    # per detection and (t, a): matched, matched GT ignored, matched GT has id 0
    matched = torch.zeros(Dk, T, A, dtype=torch.bool, device=dev)
    m_ign = torch.zeros_like(matched)
    m_id0 = torch.zeros_like(matched)

    if Dk and go.numel():
        g_kp, g_area, g_bbox = gt_keypoints[go], gt_area[go], gt_bbox[go]
        uimg, g_cnt = torch.unique_consecutive(g_img, return_counts=True)
        g_start = torch.cumsum(g_cnt, 0) - g_cnt
        pos = torch.searchsorted(uimg, d_img).clamp_max(uimg.numel() - 1)
        dsel = torch.nonzero(uimg[pos] == d_img).squeeze(1)  # kept detections in images with GT
        slot = pos[dsel]
        cnt = g_cnt[slot]
        pair_dt = torch.repeat_interleave(dsel, cnt)
        pair_gt = torch.repeat_interleave(g_start[slot], cnt) + _local_index(cnt)  # index into sorted GTs
        oks = oks_pairs(dt_keypoints, g_kp, g_area, g_bbox, sig, order[pair_dt], pair_gt)
        thr_m = thr.clamp_max(1 - 1e-10)  # pycocotools matches at min(t, 1 - 1e-10)
        cand = oks >= thr_m.min()  # pairs that can match at some threshold
        if bool(cand.any()):
            bm, bi, b0 = _greedy_match(
                pair_dt[cand], pair_gt[cand], oks[cand], d_img, g_img, gt_crowd[go], g_ign_a, gt_id0[go], thr_m
            )
            matched, m_ign, m_id0 = bm, bi, b0

    # --- accumulate (pycocotools accumulate for one category and maxDets) ---
    d_out = (d_area[:, None] < lo) | (d_area[:, None] > hi)  # (D, A)
    unm = ~matched | m_id0  # pycocotools: dtm == 0
    d_ig = (matched & m_ign) | (unm & d_out[:, None, :])
    tps = ~unm & ~d_ig
    fps = unm & ~d_ig
    go2 = torch.sort(-d_score, stable=True).indices  # image-id order, then rank: ties by (image, file position)
    TA = T * A
    tps = tps[go2].reshape(Dk, TA).t().contiguous()  # (T*A, D), rows t-major
    fps = fps[go2].reshape(Dk, TA).t().contiguous()
    precision = torch.zeros(T, R, A, dtype=f64, device=dev)
    recall = torch.zeros(T, A, dtype=f64, device=dev)
    if Dk:
        q, last = _interpolated_precision(tps, fps, npig.to(f64).repeat(T), rthr)
        precision = q.reshape(T, A, R).permute(0, 2, 1).contiguous()
        recall = last.reshape(T, A)
    absent = npig == 0  # no regular GT in this area range (pycocotools: -1, left out of the means)
    precision[:, :, absent] = -1
    recall[:, absent] = -1

    stats = _summarize(precision, recall, thr, labels)
    return KeypointAPResult(precision, recall, stats, thr, rthr, labels, d_img[go2],
                            tps.t().reshape(Dk, T, A), fps.t().reshape(Dk, T, A), g_img, ~g_ign_a)


def _greedy_match(pair_dt, pair_gt, oks, d_img, g_img, g_crowd, g_ign, g_id0, thr):
    """pycocotools ``evaluateImg`` matching, for all images, thresholds and area ranges at once.

    Input: the candidate pairs (OKS >= the lowest threshold), sorted by detection (detections are in
    (image, rank) order) then GT (GTs in (image, position) order). Per image, the candidate detections and
    GTs are packed into a block (images bucketed by GT count, padded), each GT gets a per-detection
    priority (higher OKS first, ties to the later GT), and the greedy pass is sequential over the detection
    rank only: one tensor step updates every image, threshold and area range. Returns (D, T, A) flags for
    every kept detection: matched, matched to an ignored GT, matched to a GT with annotation id 0.
    """
    dev = oks.device
    D = d_img.numel()
    T, A = thr.numel(), g_ign.shape[-1]
    out_m = torch.zeros(D, T, A, dtype=torch.bool, device=dev)
    out_i = torch.zeros_like(out_m)
    out_0 = torch.zeros_like(out_m)
    # candidate detections / GTs, compacted per image with their order kept
    cd, pd_inv = torch.unique_consecutive(pair_dt, return_inverse=True)
    cg, pg_inv = torch.unique(pair_gt, sorted=True, return_inverse=True)
    cd_img, cg_img = d_img[cd], g_img[cg]
    img, cd_cnt = torch.unique_consecutive(cd_img, return_counts=True)
    cd_pos = _local_index(cd_cnt)
    cg_cnt = torch.bincount(torch.searchsorted(img, cg_img), minlength=img.numel())
    cg_pos = _local_index(cg_cnt)
    cd_slot = torch.repeat_interleave(torch.arange(img.numel(), device=dev), cd_cnt)
    cg_slot = torch.repeat_interleave(torch.arange(img.numel(), device=dev), cg_cnt)
    cap = torch.ones_like(cg_cnt)
    while bool((cap < cg_cnt).any()):
        cap = torch.where(cap < cg_cnt, cap * 2, cap)
    thr_ = thr[None, :, None]
    for c in torch.unique(cap).tolist():
        imgs = torch.nonzero(cap == c).squeeze(1)
        imgs = imgs[torch.sort(cd_cnt[imgs], descending=True, stable=True).indices]  # prefix = still active
        nb, Rb = imgs.numel(), int(cd_cnt[imgs[0]])
        row = torch.full((img.numel(),), -1, dtype=torch.long, device=dev)
        row[imgs] = torch.arange(nb, device=dev)
        O = torch.full((nb, Rb, c), -math.inf, dtype=torch.float64, device=dev)
        prow = row[cd_slot[pd_inv]]
        psel = prow >= 0
        O[prow[psel], cd_pos[pd_inv[psel]], cg_pos[pg_inv[psel]]] = oks[psel]
        gsel = torch.nonzero(row[cg_slot] >= 0).squeeze(1)
        gr, gc = row[cg_slot[gsel]], cg_pos[gsel]
        crowd = torch.zeros(nb, c, dtype=torch.bool, device=dev)
        ign = torch.ones(nb, A, c, dtype=torch.bool, device=dev)
        id0 = torch.zeros(nb, c, dtype=torch.bool, device=dev)
        crowd[gr, gc] = g_crowd[cg[gsel]]
        ign[gr, :, gc] = g_ign[cg[gsel]]
        id0[gr, gc] = g_id0[cg[gsel]]
        ign = ign[:, None]  # (nb, 1, A, c)
        reg = ~ign
        crowd = crowd[:, None, None, :]
        id0 = id0[:, None, None, :]
        # priority of each GT for each detection: rank by (OKS, position), highest wins
        prio = ((O[..., None, :] < O[..., :, None]) | ((O[..., None, :] == O[..., :, None]) & torch.tril(
            torch.ones(c, c, dtype=torch.bool, device=dev), -1))).sum(-1).to(torch.int16)  # (nb, Rb, c)
        taken = torch.zeros(nb, T, A, c, dtype=torch.bool, device=dev)
        bm = torch.zeros(nb, Rb, T, A, dtype=torch.bool, device=dev)
        bi = torch.zeros_like(bm)
        b0 = torch.zeros_like(bm)
        n_active = torch.bincount(cd_cnt[imgs], minlength=Rb + 1).flip(0).cumsum(0).flip(0)  # images with > r dets
        minus1 = torch.tensor(-1, dtype=torch.int16, device=dev)
        for r in range(Rb):
            na = int(n_active[r + 1])
            o = O[:na, r]
            avail = (o[:, None, :] >= thr_)[:, :, None, :] & (~taken[:na] | crowd[:na])  # (na, T, A, c)
            cand_r = avail & reg[:na]
            has_r = cand_r.any(-1, keepdim=True)
            subset = torch.where(has_r, cand_r, avail & ign[:na])
            p = prio[:na, r][:, None, None, :]
            best = torch.where(subset, p, minus1).amax(-1, keepdim=True)
            hit = p == best  # best is -1 when nothing is available
            taken[:na] |= hit
            has = best[..., 0] >= 0
            bm[:na, r] = has
            bi[:na, r] = has & ~has_r[..., 0]
            b0[:na, r] = (hit & id0[:na]).any(-1)
        drow = row[cd_slot]
        dsel = torch.nonzero(drow >= 0).squeeze(1)
        tgt = cd[dsel]
        out_m[tgt] = bm[drow[dsel], cd_pos[dsel]]
        out_i[tgt] = bi[drow[dsel], cd_pos[dsel]]
        out_0[tgt] = b0[drow[dsel], cd_pos[dsel]]
    return out_m, out_i, out_0


def _summarize(precision: Tensor, recall: Tensor, thr: Tensor, labels: Sequence[str]) -> dict[str, Tensor]:
    """pycocotools ``_summarizeKps``: AP/AR over thresholds, at .5 and .75, and for medium/large areas."""
    dev = precision.device

    def pick(iou=None, area="all", ap=True):
        a = [i for i, lbl in enumerate(labels) if lbl == area]
        s = precision if ap else recall
        if iou is not None:
            s = s[thr == iou]
        s = s[..., a] if a else s[..., :0]
        return _mean_valid(s)

    out = {
        "AP": pick(),
        "AP50": pick(0.5),
        "AP75": pick(0.75),
        "APm": pick(area="medium"),
        "APl": pick(area="large"),
        "AR": pick(ap=False),
        "AR50": pick(0.5, ap=False),
        "AR75": pick(0.75, ap=False),
        "ARm": pick(area="medium", ap=False),
        "ARl": pick(area="large", ap=False),
    }
    return {k: v.to(torch.float64).to(dev) for k, v in out.items()}


class KeypointAP(PoseMetric):
    """COCO keypoint AP/AR (OKS) exactly as pycocotools ``COCOeval(iouType='keypoints')``.

    ``update(preds, target)`` takes one dict per image (torchmetrics convention):
    ``preds[i] = {"image_id": 0-d int64, "keypoints": (D, K, 3), "scores": (D,)}`` in results-file order
    (optional ``"area"`` (D,) replaces the keypoint-extent area), ``target[i] = {"image_id", "keypoints"
    (G, K, 3), "area" (G,), "bbox" (G, 4) xywh, "iscrowd" (G,), "num_keypoints" (G,), "ann_id" (G,)}``.
    The images scored are those in ``target``. ``max_dets`` is the per-image cut (pycocotools' summary only
    reports 20). States are ``cat`` lists keyed by image id; ``compute``
    sorts by image id and drops repeated images (DistributedSampler padding), so batch size, order and
    process count cannot change a result.

    Two people 100 px apart; detections: each person a few pixels off (OKS between the thresholds) and a
    stray pose scored between them, so precision and recall change with the OKS threshold:

    >>> import torch
    >>> m = KeypointAP()
    >>> kp = torch.tensor([[[10.0 + 3 * k, 20.0 + 2 * k, 2.0] for k in range(17)]], dtype=torch.float64)
    >>> two = torch.cat([kp, kp + torch.tensor([100.0, 0.0, 0.0])])
    >>> gt = {"image_id": torch.tensor(1), "keypoints": two, "area": torch.tensor([1500.0, 1500.0]),
    ...       "bbox": torch.tensor([[10.0, 20.0, 48.0, 32.0], [110.0, 20.0, 48.0, 32.0]]),
    ...       "iscrowd": torch.tensor([False, False]), "num_keypoints": torch.tensor([17, 17]),
    ...       "ann_id": torch.tensor([7, 8])}
    >>> dets = torch.cat([two[:1] + torch.tensor([2.0, 1.0, 0.0]), two[1:] + torch.tensor([4.0, -3.0, 0.0]),
    ...                   kp + torch.tensor([50.0, 60.0, 0.0])])
    >>> m.update([{"image_id": torch.tensor(1), "keypoints": dets, "scores": torch.tensor([0.9, 0.6, 0.8])}], [gt])
    >>> # pycocotools 2.0.11 on the same GT and results: AP 0.3865, AP50 0.835, AP75 0.505, AR 0.4, APl -1
    >>> {k: round(float(v), 4) for k, v in m.compute().items() if k in ("AP", "AP50", "AP75", "AR", "APl")}
    {'AP': 0.3865, 'AP50': 0.835, 'AP75': 0.505, 'APl': -1.0, 'AR': 0.4}
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False
    bootstrap_unit = "image"
    headline = ("AP", "AR")

    def __init__(
        self,
        sigmas: Sequence[float] | Tensor | None = None,
        max_dets: int = 20,
        oks_thresholds: Sequence[float] | Tensor | None = None,
        area_ranges: Sequence[tuple[str, float, float]] = COCO_AREA_RANGES,
        rec_thresholds: Sequence[float] | Tensor | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.sigmas = COCO_SIGMAS.clone() if sigmas is None else torch.as_tensor(sigmas, dtype=torch.float64)
        self.num_keypoints = int(self.sigmas.numel())
        self.max_dets = int(max_dets)
        self.oks_thresholds = oks_thresholds
        self.area_ranges = tuple((str(a), float(b), float(c)) for a, b, c in area_ranges)
        self.rec_thresholds = rec_thresholds
        for name in ("img_ids", "gt_img", "gt_j", "gt_kpts", "gt_area", "gt_bbox", "gt_crowd", "gt_nkp", "gt_id",
                     "dt_img", "dt_j", "dt_kpts", "dt_scores", "dt_area"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, preds: list[dict[str, Tensor]], target: list[dict[str, Tensor]]) -> None:
        if len(preds) != len(target):
            raise ValueError(f"KeypointAP.update: {len(preds)} predictions for {len(target)} targets")
        if not target:
            return
        dev = self.device
        K = self.num_keypoints
        ids = torch.stack([torch.as_tensor(t["image_id"]).reshape(()) for t in target]).to(dev, torch.long)
        pids = torch.stack([torch.as_tensor(p["image_id"]).reshape(()) for p in preds]).to(dev, torch.long)
        if not torch.equal(ids, pids):
            raise ValueError("KeypointAP.update: preds[i] and target[i] must be the same image")
        self.img_ids.append(ids)

        g_n = torch.tensor([t["keypoints"].shape[0] for t in target], dtype=torch.long, device=dev)
        self.gt_img.append(torch.repeat_interleave(ids, g_n))
        self.gt_j.append(_local_index(g_n))
        self.gt_kpts.append(_cat([t["keypoints"] for t in target], (0, K, 3), dev).reshape(-1, K, 3))
        self.gt_area.append(_cat([t["area"] for t in target], (0,), dev))
        self.gt_bbox.append(_cat([t["bbox"] for t in target], (0, 4), dev).reshape(-1, 4))
        self.gt_crowd.append(_cat([t["iscrowd"] for t in target], (0,), dev, torch.long))
        self.gt_nkp.append(_cat([t["num_keypoints"] for t in target], (0,), dev, torch.long))
        self.gt_id.append(_cat([t["ann_id"] for t in target], (0,), dev, torch.long))

        d_n = torch.tensor([p["keypoints"].shape[0] for p in preds], dtype=torch.long, device=dev)
        self.dt_img.append(torch.repeat_interleave(ids, d_n))
        self.dt_j.append(_local_index(d_n))
        kps = _cat([p["keypoints"] for p in preds], (0, K, 3), dev).reshape(-1, K, 3)
        self.dt_kpts.append(kps)
        self.dt_scores.append(_cat([p["scores"] for p in preds], (0,), dev))
        if any("area" in p for p in preds):
            area = _cat([p["area"].reshape(-1) if "area" in p else _kp_extent(p["keypoints"].reshape(-1, K, 3))
                         for p in preds], (0,), dev)
        else:
            area = _kp_extent(kps)
        self.dt_area.append(area)

    def _flat(self) -> dict[str, Tensor]:
        """The deduplicated states sorted by image id: keyword arguments of :func:`keypoint_ap_stats` plus
        ``image_ids`` (every scored image once, ascending)."""
        dev, K = self.device, self.num_keypoints
        if len(self.img_ids) == 0:
            e = torch.zeros(0, dtype=torch.long, device=dev)
            z = torch.zeros(0, dtype=torch.float64, device=dev)
            kp = torch.zeros(0, K, 3, dtype=torch.float64, device=dev)
            box = torch.zeros(0, 4, dtype=torch.float64, device=dev)
            return {"dt_image": e, "dt_keypoints": kp, "dt_scores": z, "dt_area": z, "gt_image": e,
                    "gt_keypoints": kp, "gt_area": z, "gt_bbox": box, "gt_iscrowd": e, "gt_num_keypoints": e,
                    "gt_ids": e, "image_ids": e}
        g = _dedupe(dim_zero_cat(self.gt_img), dim_zero_cat(self.gt_j))
        d = _dedupe(dim_zero_cat(self.dt_img), dim_zero_cat(self.dt_j))
        gt = {k: _rows(_cat_state(getattr(self, s)), g) for k, s in _GT_STATES.items()}
        dt = {k: _rows(_cat_state(getattr(self, s)), d) for k, s in _DT_STATES.items()}
        return {**dt, **gt, "image_ids": dim_zero_cat(self.img_ids)[self._image_rows()]}

    def _image_rows(self) -> Tensor:
        """The rows of the ``img_ids`` state that keep one copy of each scored image, by ascending id."""
        img = dim_zero_cat(self.img_ids)
        return _dedupe(img, torch.zeros_like(img))

    def _evaluate(self) -> KeypointAPResult:
        """pycocotools' evaluate + accumulate + summarize of the deduplicated states (precision T x R x A for
        PR curves, recall, stats, the per-detection flags of the bootstrap)."""
        with one_cpu_thread(self.device):
            flat = self._flat()
            ids = flat.pop("image_ids")
            res = keypoint_ap_stats(**flat, sigmas=self.sigmas, max_dets=self.max_dets,
                                    oks_thresholds=self.oks_thresholds, area_ranges=self.area_ranges,
                                    rec_thresholds=self.rec_thresholds)
        res.image_ids = ids.cpu()
        return res

    def values(self, result: KeypointAPResult) -> dict[str, Tensor]:
        return result.stats

    def compute_precision(self) -> Tensor:
        """Precision (T, R, A) at the OKS thresholds x recall thresholds x area ranges (for PR curves)."""
        return self.evaluate().precision

    def bootstrap(self, result: KeypointAPResult) -> BootstrapStats:
        """Bootstrap over images (metrics/bootstrap.py): AP ('all' areas), see :func:`image_ap_bootstrap`."""
        return image_ap_bootstrap(result, result.image_ids)

    def plots(self, result: KeypointAPResult) -> list[dict]:
        """The precision-recall curves of the 'all' area range at OKS .50, .75 and their mean over .50:.95."""
        labels = list(result.area_labels)
        if "all" not in labels:
            return []
        prec = result.precision[:, :, labels.index("all")].cpu()  # (T, R)
        thr = result.oks_thresholds.cpu().tolist()
        series = {}
        for want in (0.5, 0.75):
            hits = [i for i, t in enumerate(thr) if abs(t - want) < 1e-9]
            if hits:
                series[f"OKS {want:.2f}"] = prec[hits[0]].tolist()
        series["mean OKS .50:.95"] = prec.mean(0).tolist()
        return [plot_dict("Precision-recall (all areas)", "line", "recall", "precision",
                          result.rec_thresholds.cpu().tolist(), series)]


def image_ap_bootstrap(res: KeypointAPResult, ids: Tensor) -> BootstrapStats:
    """Bootstrap over images of one evaluation's AP ('all' areas, mean over OKS thresholds).

    ``res`` is the evaluation whose rules the replicates must follow (COCO here, CrowdPose's keypoints_crowd
    rules in metrics/crowdpose_ap.py): matching is per image, so each detection's TP/FP flags are fixed; a
    replicate weights every detection and regular GT by its image's draw count and redoes pycocotools'
    accumulation (cumulative TP/FP, monotone precision, 101 recall points). Equal to re-evaluating the
    resampled images except for the order of equal-score detections of repeated images. ``ids`` are the
    scored image ids (ascending); a replicate with no regular GT gives NaN.
    """
    a = res.area_labels.index("all")
    det_slot = torch.searchsorted(ids, res.det_image.cpu())
    tp = res.det_tp[:, :, a].cpu().t()  # (T, D) bool
    fp = res.det_fp[:, :, a].cpu().t()
    gt_slot = torch.searchsorted(ids, res.gt_image.cpu())
    gt_reg = res.gt_regular[:, a].cpu().to(torch.float64).numpy()
    rthr64 = res.rec_thresholds.cpu().to(torch.float64).numpy()
    eps = _EPS

    slots = (det_slot.numpy(), gt_slot.numpy())
    # 0: ignored, 1: TP, 2: FP per (threshold, detection) for the draw-count kernel
    code = (tp.to(torch.int8) + 2 * fp.to(torch.int8)).contiguous().numpy()

    def statistic(w: Tensor) -> Tensor:
        wn = w.cpu().to(torch.float64).numpy()
        counts = _as_counts(wn)
        if counts is not None:  # draw counts: exact integer sums, the same floats in a fraction of the time
            ap = _count_weighted_ap(counts, slots[0], code, slots[1], gt_reg, rthr64, eps, _COUNT_CHUNK)
        else:  # float weights: the float flags only here (the usual draw counts never need them: memory)
            flags = (tp.to(torch.float64).contiguous().numpy(), fp.to(torch.float64).contiguous().numpy())
            ap = _weighted_ap(np.ascontiguousarray(wn), *slots, *flags, gt_reg, rthr64, eps)
        return torch.from_numpy(ap)[:, None]

    def counted(wt: np.ndarray) -> Tensor:  # draw counts, (units, B)
        return torch.from_numpy(_count_weighted_ap(wt, slots[0], code, slots[1], gt_reg, rthr64, eps,
                                                   _COUNT_CHUNK))[:, None]

    return BootstrapStats(ids, ("AP",), statistic, "image", count_statistic=counted)


@numba.njit(cache=True, parallel=True)
def _weighted_ap(w, det_slot, gt_slot, tp, fp, gt_reg, rthr, eps):  # pragma: no cover - compiled
    """AP of each bootstrap replicate (row of ``w``: draw count per image slot): pycocotools' accumulation with
    every detection and regular GT weighted by its image's count (cumulative TP/FP in score order, recall and
    precision, q[r] = max precision over the points with recall >= rthr[r], mean over OKS thresholds and
    recall points); NaN when the replicate holds no regular GT. O(T (D + R)) per replicate, no temporaries."""
    B = w.shape[0]
    T, D = tp.shape
    R = rthr.shape[0]
    out = np.empty(B)
    for b in numba.prange(B):
        npig = 0.0
        for g in range(gt_slot.shape[0]):
            npig += w[b, gt_slot[g]] * gt_reg[g]
        if npig <= 0:
            out[b] = np.nan
            continue
        rc = np.empty(D)
        pr = np.empty(D)
        total = 0.0
        for t in range(T):
            tp_sum = 0.0
            fp_sum = 0.0
            for d in range(D):
                wd = w[b, det_slot[d]]
                tp_sum += wd * tp[t, d]
                fp_sum += wd * fp[t, d]
                rc[d] = tp_sum / npig
                pr[d] = tp_sum / (fp_sum + tp_sum + eps)
            for d in range(D - 2, -1, -1):  # monotone precision envelope
                pr[d] = max(pr[d], pr[d + 1])
            d = 0
            for r in range(R):  # first point with recall >= rthr[r] (recall is non-decreasing)
                while d < D and rc[d] < rthr[r]:
                    d += 1
                if d < D:
                    total += pr[d]
        out[b] = total / (T * R)
    return out


_COUNT_CHUNK = 256  # replicates per task of _count_weighted_ap: wide enough to vectorise, small enough for cache


def _as_counts(w: np.ndarray) -> np.ndarray | None:
    """``w`` transposed to ``(units, B)`` int16 when every weight is a whole number in [0, 32767] (bootstrap
    draw counts always are), else None."""
    if w.size == 0 or w.min() < 0 or w.max() > np.iinfo(np.int16).max or not np.array_equal(w, np.floor(w)):
        return None
    return np.ascontiguousarray(w.T.astype(np.int16))


@numba.njit(cache=True)
def _recall_count(r, npig):  # pragma: no cover - compiled
    """The smallest whole TP count m whose recall ``m / npig`` (a float division, as pycocotools') is not below
    ``r``: recall is non-decreasing in m, so 'recall reaches r' becomes the integer test ``tp >= m``."""
    if not npig > 0:
        return 0.0
    m = math.ceil(r * npig)
    while m > 0 and not (m - 1) / npig < r:
        m -= 1
    while m / npig < r:
        m += 1
    return float(m)


@numba.njit(cache=True, parallel=True, error_model="numpy")
def _count_weighted_ap(wt, det_slot, code, gt_slot, gt_reg, rthr, eps, chunk):  # pragma: no cover - compiled
    """:func:`_weighted_ap` for whole-number weights ``wt`` (units x B), bit for bit, replicates innermost.

    Why it is the same number: with whole-number weights every cumulative TP/FP count is an integer, exact in
    float64 whatever the order of the additions, so the recall and precision of each point are the same floats.
    Only points right after a drawn TP can hold the maximum precision at or beyond a recall threshold
    (precision falls at each FP and recall moves only at TPs; the first point at or beyond a threshold > 0 is
    a TP, and a leading FP point has precision 0), so the interpolated precision q[r] is the maximum of the
    precisions of the TP points whose recall reaches rthr[r], and a point that reaches nothing adds nothing
    (0.0), as before. Per replicate the q[r] are added in the same (threshold, recall) order, so the sum is the
    same float.

    No division per point: recall reaching a threshold is ``tp >= need`` with the integer table of
    :func:`_recall_count`, and the best point of a recall bin is kept as its TP count n and its float
    denominator d + eps (= d for d >= 2, exactly; 1 + 2^-52 for d = 1), compared with a new point by
    cross-multiplication, exact for counts. Correctly rounded division is monotone, so the largest ratio gives
    the largest float precision n / (d + eps); the one pair of equal ratios with different floats, 1/1 (precision
    1 - 2^-52) against m/m, m >= 2 (1.0), comes out right because the kept 1/1 carries 1 + 2^-52. The division
    happens once per recall bin, when the replicate's recall leaves it. Each detection's counts are read once for
    all thresholds, and a detection that is an FP at every threshold (most FPs) is added once, to a sum the
    thresholds share.
    """
    B = wt.shape[1]
    T, D = code.shape
    R = rthr.shape[0]
    out = np.empty(B)
    code_dt = np.ascontiguousarray(code.T)  # (D, T): a detection's flags for every threshold side by side
    active = np.zeros(D, np.bool_)
    all_fp = np.ones(D, np.bool_)  # an FP at every threshold (most FPs): its counts go to one shared sum
    for d in range(D):
        for t in range(T):
            if code_dt[d, t] != 0:
                active[d] = True
            if code_dt[d, t] != 2:
                all_fp[d] = False
    n_chunks = (B + chunk - 1) // chunk
    for c in numba.prange(n_chunks):
        b0 = c * chunk
        nb = min(B, b0 + chunk) - b0
        npig = np.zeros(nb)
        for g in range(gt_slot.shape[0]):
            row = wt[gt_slot[g], b0:b0 + nb]  # a slice first: the loops below then vectorise (7x)
            for k in range(nb):
                npig[k] += row[k] * gt_reg[g]
        need = np.empty((nb, R + 1))  # need[k, p]: TP count at which replicate k's recall reaches rthr[p]
        for k in range(nb):
            for p in range(R):
                need[k, p] = _recall_count(rthr[p], npig[k])
            need[k, R] = np.inf
        # per threshold t and replicate k: TP and FP counts, the recall bin (ptr) and the count that leaves it
        # (nxt), the best point of the bin (n = tp, -1: none; d + eps with d = tp + fp) and the best precision of each bin
        tp = np.zeros((T, nb), np.int32)
        fp = np.zeros((T, nb), np.int32)  # FP counts of the detections that are FP at some thresholds only
        fpa = np.zeros(nb, np.int32)  # FP counts of the detections that are FP at every threshold
        ptr = np.zeros((T, nb), np.int64)
        nxt = np.empty((T, nb))
        bn = np.full((T, nb), -1.0)
        bd = np.ones((T, nb))  # d + eps of the kept point
        best = np.full((T, nb, R), -1.0)  # -1: no TP point reaches this recall bin (yet)
        for t in range(T):
            for k in range(nb):
                nxt[t, k] = need[k, 0]
        nw = (nb + 7) // 8
        flags = np.zeros(nw * 8, np.uint8)  # which replicates' recall reached the next threshold at this point
        words = flags.view(np.uint64)  # eight flags per word: most points move no replicate
        for d in range(D):  # each detection's draw counts are read once for all thresholds
            if not active[d]:
                continue
            row = wt[det_slot[d], b0:b0 + nb]
            if all_fp[d]:
                for k in range(nb):
                    fpa[k] += row[k]
                continue
            for t in range(T):
                cd = code_dt[d, t]
                if cd == 0:
                    continue
                if cd == 2:
                    f = fp[t]
                    for k in range(nb):
                        f[k] += row[k]
                    continue
                tpt, fpt, nxtt, bnt, bdt = tp[t], fp[t], nxt[t], bn[t], bd[t]
                for k in range(nb):  # branch-free (vectorises); an undrawn TP repeats the previous point: harmless
                    tpt[k] += row[k]
                    n = float(tpt[k])
                    den = n + float(fpt[k] + fpa[k])
                    stay = n < nxtt[k]
                    better = stay & (n * bdt[k] > bnt[k] * den)
                    bnt[k] = n if better else bnt[k]
                    bdt[k] = (den + eps) if better else bdt[k]
                    flags[k] = n >= nxtt[k]
                for w in range(nw):  # rare: recall reaches the next threshold(s); the bin left gets its best
                    if words[w] == 0:
                        continue
                    for k in range(w * 8, min(nb, w * 8 + 8)):
                        if not flags[k]:
                            continue
                        n = float(tpt[k])
                        p = ptr[t, k]
                        if p > 0 and bnt[k] >= 0.0:
                            best[t, k, p - 1] = max(best[t, k, p - 1], bnt[k] / bdt[k])
                        p += 1
                        while p < R and not n < need[k, p]:
                            p += 1
                        ptr[t, k] = p
                        nxtt[k] = need[k, p]
                        bnt[k] = n
                        bdt[k] = (n + float(fpt[k] + fpa[k])) + eps if n > 0.0 else 1.0  # n = 0: precision 0 (d = 0: 0 / eps)
        total = np.zeros(nb)
        for t in range(T):
            for k in range(nb):
                p = ptr[t, k]
                if p > 0 and bn[t, k] >= 0.0:
                    best[t, k, p - 1] = max(best[t, k, p - 1], bn[t, k] / bd[t, k])
                for r in range(R - 2, -1, -1):  # q[r] = max over bins >= r; add in recall order
                    best[t, k, r] = max(best[t, k, r], best[t, k, r + 1])
                for r in range(R):
                    if best[t, k, r] >= 0.0:
                        total[k] += best[t, k, r]
        for k in range(nb):
            out[b0 + k] = total[k] / (T * R) if npig[k] > 0 else np.nan
    return out


_ROW_BLOCK_ELEMS = 1 << 19  # (row, detection) cells per block of _interpolated_precision: ~4 MB per float64 temporary


def _interpolated_precision(tps: Tensor, fps: Tensor, npig: Tensor, rthr: Tensor) -> tuple[Tensor, Tensor]:
    """pycocotools' accumulate for rows of TP/FP flags in score order (``(rows, D)``, D > 0): the precision at
    each recall threshold ``(rows, R)`` (max precision at recall >= r, 0 past the largest recall) and the final
    recall ``(rows,)``. Rows are independent, so they are done a block at a time: the same floats as one pass,
    with temporaries of ``_ROW_BLOCK_ELEMS`` cells instead of several ``(rows, D)`` float64 arrays at once."""
    rows, D = tps.shape
    R = rthr.numel()
    f64 = torch.float64
    q = torch.empty(rows, R, dtype=f64, device=tps.device)
    last = torch.empty(rows, dtype=f64, device=tps.device)
    step = max(1, _ROW_BLOCK_ELEMS // D)
    for r0 in range(0, rows, step):
        sl = slice(r0, min(rows, r0 + step))
        tp_sum = torch.cumsum(tps[sl], 1, dtype=f64)
        fp_sum = torch.cumsum(fps[sl], 1, dtype=f64)
        rc = tp_sum / npig[sl, None]
        pr = tp_sum / (fp_sum + tp_sum + _EPS)
        del tp_sum, fp_sum
        pr = pr.flip(1).cummax(1).values.flip(1)  # precision made monotone from the right
        inds = torch.searchsorted(rc, rthr.expand(rc.shape[0], R).contiguous(), side="left")  # (block, R)
        qb = torch.gather(pr, 1, inds.clamp_max(D - 1))
        q[sl] = torch.where(inds < D, qb, torch.zeros((), dtype=f64, device=tps.device))  # past the largest: 0
        last[sl] = rc[:, -1]
    return q, last


def _local_index(counts: Tensor) -> Tensor:
    """0..n-1 inside each group of ``counts`` (position of a row inside its image)."""
    total = int(counts.sum())
    starts = torch.cumsum(counts, 0) - counts
    return torch.arange(total, device=counts.device) - torch.repeat_interleave(starts, counts)


def _adjacent_view(xs: Sequence[Tensor]) -> Tensor | None:
    """The concatenation of ``xs`` as a view, when they are back-to-back contiguous pieces of one storage
    (per-image views into a results file's flat arrays, in file order: the usual case); else ``None``.
    Saves a copy of every detection's keypoints per concatenation (memory, issue 15)."""
    parts = [x for x in xs if isinstance(x, Tensor) and x.numel()]
    if not parts or len(parts) != sum(1 for x in xs if not isinstance(x, Tensor) or x.numel()):
        return None
    first = parts[0]
    tail, ptr = first.shape[1:], first.untyped_storage().data_ptr()
    end = first.storage_offset()
    for x in parts:
        if (x.ndim == 0 or x.shape[1:] != tail or x.dtype != first.dtype or x.device != first.device
                or not x.is_contiguous() or x.untyped_storage().data_ptr() != ptr or x.storage_offset() != end):
            return None
        end += x.numel()
    rows = sum(int(x.shape[0]) for x in parts)
    return first.as_strided((rows, *tail), torch.empty((rows, *tail), device="meta").stride(),
                            first.storage_offset())


def _cat_state(x: Tensor | list[Tensor]) -> Tensor:
    """``dim_zero_cat`` of a list state, without a copy when the pieces are adjacent views."""
    if isinstance(x, Tensor):
        return x
    v = _adjacent_view(x)
    return v if v is not None else dim_zero_cat(x)


def _cat(xs: list[Tensor], empty_shape: tuple[int, ...], dev, dtype=torch.float64) -> Tensor:
    if not xs:
        return torch.zeros(empty_shape, dtype=dtype, device=dev)
    v = _adjacent_view(xs)
    if v is not None and v.dtype == dtype and v.device == torch.device(dev) and v.shape[1:] == empty_shape[1:]:
        return v
    try:  # one cat, one conversion (per-item conversions cost more than the data for many small images)
        return torch.cat(xs).to(dev, dtype)
    except (TypeError, RuntimeError):  # mixed devices, shapes like (0,) for "nothing", or non-tensors
        return torch.cat([torch.as_tensor(x).to(dev, dtype).reshape((-1,) + tuple(empty_shape[1:])) for x in xs])


def _kp_extent(kps: Tensor) -> Tensor:
    """Area of the box around all keypoints (pycocotools ``loadRes`` for keypoint results)."""
    if kps.shape[0] == 0 or kps.shape[1] == 0:
        return torch.zeros(kps.shape[0], dtype=torch.float64, device=kps.device)
    x, y = kps[..., 0].to(torch.float64), kps[..., 1].to(torch.float64)
    return (x.amax(-1) - x.amin(-1)) * (y.amax(-1) - y.amin(-1))


_DT_STATES = {"dt_image": "dt_img", "dt_keypoints": "dt_kpts", "dt_scores": "dt_scores", "dt_area": "dt_area"}
_GT_STATES = {"gt_image": "gt_img", "gt_keypoints": "gt_kpts", "gt_area": "gt_area", "gt_bbox": "gt_bbox",
              "gt_iscrowd": "gt_crowd", "gt_num_keypoints": "gt_nkp", "gt_ids": "gt_id"}


def _rows(x: Tensor, idx: Tensor) -> Tensor:
    """``x[idx]``, or ``x`` itself when ``idx`` keeps every row in order (one process, no padding: the usual
    case, where the copy would only add a second detections array to the peak memory)."""
    n = x.shape[0]
    if idx.numel() == n and bool((idx == torch.arange(n, device=idx.device)).all()):
        return x
    return x[idx]


def _dedupe(img: Tensor, j: Tensor) -> Tensor:
    """Indices of one row per (image id, position) pair, sorted by image then position.

    Repeated images (sampler padding) carry identical copies, so which copy is kept does not matter.
    """
    if img.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=img.device)
    _, inv = torch.unique(img, return_inverse=True)
    key = inv * (int(j.max()) + 1) + j
    key, perm = torch.sort(key)
    first = torch.ones(key.numel(), dtype=torch.bool, device=img.device)
    first[1:] = key[1:] != key[:-1]
    return perm[first]
