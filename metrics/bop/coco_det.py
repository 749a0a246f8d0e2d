"""BOPCocoAP: BOP 2022 2D detection (``bbox``) and instance segmentation (``segm``) AP/AR as a torchmetrics Metric.

Reproduces bop_toolkit @ cea62d6 ``scripts/eval_bop22_coco.py``, which runs the toolkit's pinned pycocotools fork
(MartinSmeyer/cocoapi @ 6237ed6) on all target images of a dataset merged into one COCO set:

    IoU(d, g) = |d & g| / |d | g|   (boxes [x, y, w, h] in float64 as pycocotools' bbIou; masks: integer pixel
                                     counts of the RLEs, divided once; a crowd GT divides by |d| instead)

- per (image, category): detections sorted by score (stable: ties keep results-file order), the first 100 kept;
  each is greedily matched, for every IoU threshold ``.50:.05:.95`` and area range, to the free GT of its
  category with the highest IoU >= threshold (``min(t, 1 - 1e-10)``), regular GTs before ignored ones, ties to
  the later GT; a crowd GT takes any number of detections;
- a GT is ignored when its own ``ignore`` flag is set (the fork keeps it: calc_gt_coco sets it for
  visib_fract < 0.1; stock pycocotools overwrites it with ``iscrowd``) or its ``area`` is out of the range; a
  detection matched to an ignored GT, or unmatched with its ``area`` out of the range, is neither TP nor FP;
- per category, area range and maxDets (1, 10, 100): the detections of all images, in image order then rank,
  stably sorted by score; precision made monotone from the right and sampled at the 101 recall thresholds; a
  category without regular GT is left out (-1). Stats as ``COCOeval.summarize``: AP AP50 AP75 AP_small
  AP_medium AP_large (maxDets 100), AR1 AR10 AR100, AR_small AR_medium AR_large; area ranges small [0, 32^2],
  medium [32^2, 96^2], large [96^2, 1e10], both ends inclusive;
- with no detection on any target image the toolkit's evaluation fails and it reports -1 for every key; so do we;
- ``average_time_per_image``: the mean over the images of the results file (target or not) of their time, -1
  when any record has no time or a negative one.

The matching and the PR accumulation are metrics/keypoint_ap.py's (one category there: here one group per
(category, image)); the bootstrap resamples images and re-weights each category's accumulation (AP).

>>> import torch
>>> m = BOPCocoAP("bbox")
>>> target = {"sample_id": torch.tensor(1), "coco_order": torch.tensor(0), "gt_category_id": torch.tensor([3]),
...           "gt_bbox": torch.tensor([[10., 10., 40., 40.]], dtype=torch.float64),
...           "gt_area": torch.tensor([1500.], dtype=torch.float64), "gt_iscrowd": torch.tensor([0]),
...           "gt_ignore": torch.tensor([0]), "gt_ann_id": torch.tensor([1])}
>>> preds = {"category_id": torch.tensor([3, 3]), "score": torch.tensor([0.9, 0.5], dtype=torch.float64),
...          "bbox": torch.tensor([[60., 60., 20., 20.], [10., 10., 40., 40.]], dtype=torch.float64),
...          "time": torch.tensor(0.25, dtype=torch.float64)}
>>> m.update([preds], [target])
>>> {k: round(float(v), 4) for k, v in m.compute().items() if k in ("AP", "AR1", "AR100", "average_time_per_image")}
{'AP': 0.5, 'AR1': 0.0, 'AR100': 1.0, 'average_time_per_image': 0.25}
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np
import torch
from torch import Tensor
from torchmetrics.utilities import dim_zero_cat

from metrics.bootstrap import BootstrapStats
from metrics.common import one_cpu_thread
from metrics.keypoint_ap import (
    _COUNT_CHUNK,
    _EPS,
    _as_counts,
    _count_weighted_ap,
    _dedupe,
    _greedy_match,
    _mean_valid,
    _segment_start,
    _weighted_ap,
    coco_oks_thresholds,
    coco_recall_thresholds,
)
from metrics.protocol import PoseMetric, plot_dict

STAT_KEYS = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
             "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large")
TIME_KEY = "average_time_per_image"
# (label, lo, hi): pycocotools' bbox/segm area ranges; both ends inclusive
AREA_RANGES: tuple[tuple[str, float, float], ...] = (
    ("all", 0.0, 1e5**2), ("small", 0.0, 32.0**2), ("medium", 32.0**2, 96.0**2), ("large", 96.0**2, 1e5**2),
)
MAX_DETS = (1, 10, 100)
IOU_TYPES = ("bbox", "segm")


# ---------------------------------------------------------------- IoU kernels


def bbox_iou(d: np.ndarray, g: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """pycocotools ``bbIou`` of xywh boxes (float64): (n, 4), (m, 4), (m,) -> (n, m).

    >>> bbox_iou(np.array([[0., 0., 10., 10.]]), np.array([[5., 0., 10., 10.], [0., 0., 20., 20.]]),
    ...          np.array([0, 1])).tolist()
    [[0.3333333333333333, 1.0]]
    """
    d = np.asarray(d, dtype=np.float64).reshape(-1, 4)[:, None, :]
    g = np.asarray(g, dtype=np.float64).reshape(-1, 4)[None, :, :]
    w = np.minimum(d[..., 2] + d[..., 0], g[..., 2] + g[..., 0]) - np.maximum(d[..., 0], g[..., 0])
    h = np.minimum(d[..., 3] + d[..., 1], g[..., 3] + g[..., 1]) - np.maximum(d[..., 1], g[..., 1])
    da, ga = d[..., 2] * d[..., 3], g[..., 2] * g[..., 3]
    i = w * h
    u = np.where(np.asarray(crowd, dtype=bool)[None, :], da, da + ga - i)
    ok = (w > 0) & (h > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ok, i / np.where(ok, u, 1.0), 0.0)


def rle_area(counts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Foreground pixels of uncompressed RLEs (flat ``counts``, ``lengths`` per mask): the odd runs' sum."""
    counts = np.asarray(counts, dtype=np.int64)
    starts = np.cumsum(lengths) - lengths
    idx = np.arange(counts.size) - np.repeat(starts, lengths)
    return np.bincount(np.repeat(np.arange(len(lengths)), lengths), weights=counts * (idx % 2), minlength=len(lengths))


def _foreground_runs(counts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat RLEs -> (starts, ends, first) of their non-empty foreground runs; mask i's runs are
    ``first[i]:first[i + 1]``."""
    counts = np.asarray(counts, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    owner = np.repeat(np.arange(lengths.size), lengths)
    idx = np.arange(counts.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    ends = np.cumsum(counts)
    ends = ends - np.repeat(np.concatenate([[0], ends])[np.cumsum(lengths) - lengths], lengths)
    fg = (idx % 2 == 1) & (counts > 0)
    first = np.searchsorted(owner[fg], np.arange(lengths.size + 1))
    return ends[fg] - counts[fg], ends[fg], first


@numba.njit(cache=True)
def _run_intersections(sa, ea, fa, sb, eb, fb, pd, pg):  # pragma: no cover - compiled
    """Pixels in both masks for each pair (two pointers over the sorted foreground runs, as rleIou)."""
    out = np.zeros(pd.shape[0], np.int64)
    for p in range(pd.shape[0]):
        i, i1 = fa[pd[p]], fa[pd[p] + 1]
        j, j1 = fb[pg[p]], fb[pg[p] + 1]
        tot = 0
        while i < i1 and j < j1:
            lo = max(sa[i], sb[j])
            hi = min(ea[i], eb[j])
            if hi > lo:
                tot += hi - lo
            if ea[i] <= eb[j]:
                i += 1
            else:
                j += 1
        out[p] = tot
    return out


def rle_iou(d_counts: np.ndarray, d_len: np.ndarray, g_counts: np.ndarray, g_len: np.ndarray,
            crowd: np.ndarray) -> np.ndarray:
    """pycocotools ``rleIou`` of uncompressed column-major RLEs (flat counts, runs per mask) -> (n, m) float64.

    >>> rle_iou(np.array([2, 3, 1]), np.array([3]), np.array([0, 4, 2, 0, 3]), np.array([2, 3]),
    ...         np.array([0, 0])).tolist()
    [[0.4, 0.0]]
    """
    d_len, g_len = np.asarray(d_len, np.int64), np.asarray(g_len, np.int64)
    n, m = d_len.size, g_len.size
    pd, pg = np.repeat(np.arange(n), m), np.tile(np.arange(m), n)
    inter = _run_intersections(*_foreground_runs(d_counts, d_len), *_foreground_runs(g_counts, g_len), pd, pg)
    inter = inter.reshape(n, m).astype(np.float64)
    da, ga = rle_area(d_counts, d_len)[:, None], rle_area(g_counts, g_len)[None, :]
    u = np.where(np.asarray(crowd, dtype=bool)[None, :], da, da + ga - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(inter > 0, inter / np.where(inter > 0, u, 1.0), 0.0)


# ---------------------------------------------------------------- evaluation


@dataclass
class CocoDetResult:
    """COCOeval.accumulate/summarize of all categories: ``precision`` (T, R, K, A, M), ``recall`` (T, K, A, M)
    (-1: no regular GT), ``stats`` keyed by :data:`STAT_KEYS`; per category, for the bootstrap, the kept
    detections' image ranks and TP/FP flags (T, D_k) in accumulation order (area 'all', 100 per image) and
    the image ranks of its regular GTs."""

    precision: Tensor
    recall: Tensor
    stats: dict[str, Tensor]
    iou_thresholds: Tensor
    rec_thresholds: Tensor
    categories: Tensor
    boot: list[tuple[Tensor, Tensor, Tensor, Tensor]]


def coco_det_stats(dt_img: Tensor, dt_cat: Tensor, dt_score: Tensor, dt_area: Tensor, gt_img: Tensor,
                   gt_cat: Tensor, gt_area: Tensor, gt_crowd: Tensor, gt_ignore: Tensor, gt_id0: Tensor,
                   pair_dt: Tensor, pair_gt: Tensor, pair_iou: Tensor, max_dets: Sequence[int] = MAX_DETS,
                   area_ranges: Sequence[tuple[str, float, float]] = AREA_RANGES) -> CocoDetResult:
    """pycocotools evaluate + accumulate + summarize (bbox/segm) of flat detections and GTs of many images.

    ``dt_img`` / ``gt_img``: each one's image rank (the COCO image-id order), detections in results-file order
    inside an image, GTs in annotation order. ``pair_*``: (detection index, GT index, IoU) of same-image,
    same-category pairs (pairs with IoU < 0.5 may be left out). Categories are those with a GT.
    """
    f64 = torch.float64
    thr = coco_oks_thresholds()  # np.linspace(.5, .95, 10), the same values as pycocotools' iouThrs
    rthr = coco_recall_thresholds()
    T, R, A, M = thr.numel(), rthr.numel(), len(area_ranges), len(max_dets)
    lo = torch.tensor([a[1] for a in area_ranges], dtype=f64)
    hi = torch.tensor([a[2] for a in area_ranges], dtype=f64)
    labels = tuple(a[0] for a in area_ranges)
    cats = torch.unique(gt_cat)
    K = cats.numel()
    n_img = int(max(int(dt_img.max()) if dt_img.numel() else 0, int(gt_img.max()) if gt_img.numel() else 0)) + 1

    # detections of GT categories; per (category, image) by score (stable), cut at max_dets[-1]
    known = torch.isin(dt_cat, cats)
    d_idx = torch.nonzero(known).squeeze(1)
    d_key = torch.searchsorted(cats, dt_cat[d_idx]) * n_img + dt_img[d_idx]
    o1 = torch.sort(-dt_score[d_idx].to(f64), stable=True).indices
    o2 = torch.sort(d_key[o1], stable=True).indices
    order = o1[o2]
    key_sorted = d_key[order]
    rank = torch.arange(order.numel()) - _segment_start(key_sorted)
    keep = rank < max_dets[-1]
    order, rank, d_key = order[keep], rank[keep], key_sorted[keep]
    d_src = d_idx[order]  # original index of each kept detection
    d_score, d_area = dt_score[d_src].to(f64), dt_area[d_src].to(f64)
    d_k = torch.div(d_key, n_img, rounding_mode="floor")
    Dk = d_src.numel()

    # GTs per (category, image), annotation order kept
    g_key = torch.searchsorted(cats, gt_cat) * n_img + gt_img if K else gt_img
    go = torch.sort(g_key, stable=True).indices
    g_key = g_key[go]
    g_area = gt_area[go].to(f64)
    g_ign_a = (gt_ignore[go] != 0)[:, None] | (g_area[:, None] < lo) | (g_area[:, None] > hi)  # (G, A)
    g_k = torch.div(g_key, n_img, rounding_mode="floor")

    matched = torch.zeros(Dk, T, A, dtype=torch.bool)
    m_ign, m_id0 = torch.zeros_like(matched), torch.zeros_like(matched)
    thr_m = thr.clamp_max(1 - 1e-10)
    if Dk and pair_iou.numel():
        d_new = torch.full((dt_cat.numel(),), -1, dtype=torch.long)
        d_new[d_src] = torch.arange(Dk)
        g_new = torch.empty(go.numel(), dtype=torch.long)
        g_new[go] = torch.arange(go.numel())
        pdt, pgt = d_new[pair_dt], g_new[pair_gt]
        sel = (pdt >= 0) & (pair_iou.to(f64) >= thr_m.min())
        if bool(sel.any()):
            pdt, pgt, piou = pdt[sel], pgt[sel], pair_iou[sel].to(f64)
            ps = torch.sort(pdt * go.numel() + pgt).indices
            matched, m_ign, m_id0 = _greedy_match(pdt[ps], pgt[ps], piou[ps], d_key, g_key, gt_crowd[go] != 0,
                                                  g_ign_a, gt_id0[go] != 0, thr_m)

    d_out = (d_area[:, None] < lo) | (d_area[:, None] > hi)  # (D, A)
    unm = ~matched | m_id0  # pycocotools: dtm == 0
    d_ig = (matched & m_ign) | (unm & d_out[:, None, :])
    tps, fps = ~unm & ~d_ig, unm & ~d_ig

    precision = -torch.ones(T, R, K, A, M, dtype=f64)
    recall = -torch.ones(T, K, A, M, dtype=f64)
    boot = []
    for k in range(K):
        npig = (~g_ign_a[g_k == k]).sum(0)  # (A,)
        mine = torch.nonzero(d_k == k).squeeze(1)  # in (image, rank) order
        for mi, md in enumerate(max_dets):
            sub = mine[rank[mine] < md]
            sub = sub[torch.sort(-d_score[sub], stable=True).indices]
            n = sub.numel()
            tp = tps[sub].reshape(n, T * A).t()
            fp = fps[sub].reshape(n, T * A).t()
            tp_sum = torch.cumsum(tp, 1, dtype=f64)
            fp_sum = torch.cumsum(fp, 1, dtype=f64)
            rc = tp_sum / npig.to(f64).repeat(T)[:, None]
            pr = tp_sum / (fp_sum + tp_sum + _EPS)
            q = torch.zeros(T * A, R, dtype=f64)
            rec = torch.zeros(T * A, dtype=f64)
            if n:
                pr = pr.flip(1).cummax(1).values.flip(1)
                inds = torch.searchsorted(rc.contiguous(), rthr.expand(T * A, R).contiguous(), side="left")
                q = torch.where(inds < n, torch.gather(pr, 1, inds.clamp_max(n - 1)), 0.0)
                rec = rc[:, -1]
            valid = npig > 0
            precision[:, :, k, valid, mi] = q.reshape(T, A, R).permute(0, 2, 1)[:, :, valid]
            recall[:, k, valid, mi] = rec.reshape(T, A)[:, valid]
            if md == max_dets[-1]:
                gk = torch.nonzero(g_k == k).squeeze(1)
                reg = gk[~g_ign_a[gk, 0]]
                boot.append((dt_img[d_src[sub]], tps[sub, :, 0].t().contiguous(), fps[sub, :, 0].t().contiguous(),
                             gt_img[go[reg]]))
    stats = _summarize(precision, recall, thr, labels, max_dets)
    return CocoDetResult(precision, recall, stats, thr, rthr, cats, boot)


def _summarize(precision: Tensor, recall: Tensor, thr: Tensor, labels: Sequence[str],
               max_dets: Sequence[int]) -> dict[str, Tensor]:
    """pycocotools ``_summarizeDets``: means over the entries > -1 of the selected slices."""

    def pick(ap: bool, iou: float | None = None, area: str = "all", md: int = 100) -> Tensor:
        s = precision if ap else recall
        if iou is not None:
            s = s[thr == iou]
        a = [i for i, lbl in enumerate(labels) if lbl == area]
        m = [i for i, v in enumerate(max_dets) if v == md]
        s = s[..., a, :][..., m] if a and m else s[..., :0, :0]
        return _mean_valid(s.contiguous())

    return {"AP": pick(True), "AP50": pick(True, 0.5), "AP75": pick(True, 0.75),
            "AP_small": pick(True, area="small"), "AP_medium": pick(True, area="medium"),
            "AP_large": pick(True, area="large"), "AR1": pick(False, md=1), "AR10": pick(False, md=10),
            "AR100": pick(False), "AR_small": pick(False, area="small"), "AR_medium": pick(False, area="medium"),
            "AR_large": pick(False, area="large")}


# ---------------------------------------------------------------- the metric


def _pairs(iou: np.ndarray, d_cat: np.ndarray, g_cat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Same-category (detection, GT, IoU) triples with IoU >= 0.5 (the lowest threshold: the others never match)."""
    d, g = np.nonzero((d_cat[:, None] == g_cat[None, :]) & (iou >= 0.5))
    return d, g, iou[d, g]


class BOPCocoAP(PoseMetric):
    """eval_bop22_coco.py's 12 COCO stats and ``average_time_per_image`` (see the module docstring).

    ``update(preds, target)`` takes one dict per image. ``preds``: ``category_id`` (N,), ``score`` (N,),
    ``bbox`` (N, 4) xywh (bbox; in segm used for ``area`` only), ``rle_counts`` / ``rle_len`` (segm: flat
    uncompressed column-major run lengths, runs per mask), ``area`` (N,) optional (default: box area for bbox,
    mask area for segm), ``time`` (0-d: -1 unknown, NaN: the image is not in the results file). ``target``:
    ``sample_id``, ``coco_order`` (the image's rank in the merged COCO image ids), ``gt_category_id``,
    ``gt_bbox``, ``gt_area``, ``gt_iscrowd``, ``gt_ignore``, ``gt_ann_id`` and, for segm, ``gt_rle_counts`` /
    ``gt_rle_len``. ``extra_image_times``: the times of the results file's images that are not scored.
    """

    bootstrap_unit = "image"
    headline = ("AP", "AR100")
    full_state_update = False

    _INT = ("img_ids", "img_order", "dt_img", "dt_j", "dt_cat", "gt_img", "gt_j", "gt_cat", "gt_crowd", "gt_ign",
            "gt_id", "pr_img", "pr_dj", "pr_gj")
    _FLOAT = ("img_time", "dt_score", "dt_area", "gt_area", "pr_iou")

    def __init__(self, iou_type: str = "bbox", extra_image_times: Sequence[float] = ()):
        super().__init__()
        if iou_type not in IOU_TYPES:
            raise ValueError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
        self.iou_type = iou_type
        self.extra_image_times = [float(t) for t in extra_image_times]
        for name in self._INT + self._FLOAT:
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, preds: list[dict[str, Tensor]], target: list[dict[str, Tensor]]) -> None:
        for p, t in zip(preds, target, strict=True):
            sid = int(t["sample_id"])
            d_cat = p["category_id"].reshape(-1).cpu().numpy().astype(np.int64)
            g_cat = t["gt_category_id"].reshape(-1).cpu().numpy().astype(np.int64)
            n, m = d_cat.size, g_cat.size
            crowd = t["gt_iscrowd"].reshape(-1).cpu().numpy() != 0
            if self.iou_type == "bbox":
                box = p["bbox"].reshape(-1, 4).cpu().numpy().astype(np.float64)
                iou = bbox_iou(box, t["gt_bbox"].reshape(-1, 4).cpu().numpy(), crowd)
                area = p["area"].reshape(-1) if "area" in p else torch.from_numpy(box[:, 2] * box[:, 3])
            else:
                dc, dl = p["rle_counts"].cpu().numpy(), p["rle_len"].cpu().numpy()
                iou = rle_iou(dc, dl, t["gt_rle_counts"].cpu().numpy(), t["gt_rle_len"].cpu().numpy(), crowd)
                area = p["area"].reshape(-1) if "area" in p else torch.from_numpy(rle_area(dc, dl))
            di, gi, v = _pairs(iou.reshape(n, m), d_cat, g_cat)
            time = p.get("time", torch.tensor(float("nan")))
            self._add(img_ids=[sid], img_order=[int(t["coco_order"])], img_time=[float(time)],
                      dt_img=[sid] * n, dt_j=range(n), dt_cat=d_cat, dt_score=p["score"].reshape(-1), dt_area=area,
                      gt_img=[sid] * m, gt_j=range(m), gt_cat=g_cat, gt_crowd=crowd,
                      gt_ign=t["gt_ignore"].reshape(-1), gt_id=t["gt_ann_id"].reshape(-1), gt_area=t["gt_area"],
                      pr_img=[sid] * di.size, pr_dj=di, pr_gj=gi, pr_iou=v)

    def _add(self, **values) -> None:
        for name, v in values.items():
            dtype = torch.int64 if name in self._INT else torch.float64
            getattr(self, name).append(torch.as_tensor(np.asarray(v) if not isinstance(v, Tensor) else v.cpu(),
                                                       dtype=dtype).reshape(-1).to(self.device))

    def _state(self, name: str) -> Tensor:
        s = getattr(self, name)
        dtype = torch.int64 if name in self._INT else torch.float64
        return (dim_zero_cat(s) if len(s) else torch.zeros(0, dtype=dtype)).cpu()

    def _evaluate(self) -> dict:
        with one_cpu_thread(torch.device("cpu")):
            return self._evaluate_cpu()

    def _evaluate_cpu(self) -> dict:
        st = {name: self._state(name) for name in self._INT + self._FLOAT}
        rows = _dedupe(st["img_ids"], torch.zeros_like(st["img_ids"]))
        img_ids, img_order, img_time = st["img_ids"][rows], st["img_order"][rows], st["img_time"][rows]
        by_order = torch.sort(img_order, stable=True).indices
        rank_of = torch.empty_like(by_order)
        rank_of[by_order] = torch.arange(by_order.numel())

        def ranked(img: Tensor, j: Tensor) -> tuple[Tensor, Tensor]:
            keep = _dedupe(img, j)
            r = rank_of[torch.searchsorted(img_ids, img[keep])]
            o = torch.sort(r * (int(j.max()) + 1 if j.numel() else 1) + j[keep]).indices
            return keep[o], r[o]

        d, d_rank = ranked(st["dt_img"], st["dt_j"])
        g, g_rank = ranked(st["gt_img"], st["gt_j"])
        out: dict = {"image_ids": img_ids}
        known = [float(x) for x in img_time[~torch.isnan(img_time)].tolist()] + self.extra_image_times
        if d.numel() == 0:  # the toolkit's COCO evaluation fails on an empty results list: -1 everywhere
            out["metrics"] = {k: torch.tensor(-1.0, dtype=torch.float64) for k in (*STAT_KEYS, TIME_KEY)}
            out["result"] = None
            return out
        p_keep = _dedupe(st["pr_img"], st["pr_dj"] * (int(st["pr_gj"].max()) + 1) + st["pr_gj"]) \
            if st["pr_img"].numel() else torch.zeros(0, dtype=torch.long)
        jd = int(st["dt_j"].max()) + 1
        jg = int(st["gt_j"].max()) + 1 if st["gt_j"].numel() else 1
        d_keys = st["dt_img"][d] * jd + st["dt_j"][d]
        g_keys = st["gt_img"][g] * jg + st["gt_j"][g]
        d_ord, g_ord = torch.sort(d_keys), torch.sort(g_keys)
        pi, pdj, pgj = st["pr_img"][p_keep], st["pr_dj"][p_keep], st["pr_gj"][p_keep]
        pair_dt = d_ord.indices[torch.searchsorted(d_ord.values, pi * jd + pdj)]
        pair_gt = g_ord.indices[torch.searchsorted(g_ord.values, pi * jg + pgj)]
        res = coco_det_stats(d_rank, st["dt_cat"][d], st["dt_score"][d], st["dt_area"][d], g_rank, st["gt_cat"][g],
                             st["gt_area"][g], st["gt_crowd"][g], st["gt_ign"][g], st["gt_id"][g] == 0, pair_dt,
                             pair_gt, st["pr_iou"][p_keep])
        avg = -1.0 if not known or any(t < 0 for t in known) else float(np.mean(known))
        out["metrics"] = {**res.stats, TIME_KEY: torch.tensor(avg, dtype=torch.float64)}
        out["result"] = res
        out["rank_to_id"] = img_ids[by_order]
        return out

    def values(self, result: dict) -> dict[str, Tensor]:
        return {k: v.to(torch.float64) for k, v in result["metrics"].items()}

    def bootstrap(self, result: dict) -> BootstrapStats:
        """Bootstrap over the scored images of AP (area 'all', 100 per image): per category, pycocotools'
        accumulation with each detection and regular GT weighted by its image's draw count; categories with
        no regular GT in a replicate are left out of its mean (as pycocotools leaves out -1)."""
        ids = result["image_ids"]
        res: CocoDetResult | None = result["result"]
        parts = []
        if res is not None:
            to_id = result["rank_to_id"]
            for d_img, tp, fp, g_img in res.boot:
                parts.append((torch.searchsorted(ids, to_id[d_img]).numpy(), torch.searchsorted(ids, to_id[g_img]).numpy(),
                              np.ascontiguousarray(tp.to(torch.float64).numpy()),
                              np.ascontiguousarray(fp.to(torch.float64).numpy()),
                              np.ascontiguousarray((tp.to(torch.float64) + 2.0 * fp.to(torch.float64)).numpy()
                                                   .astype(np.int8))))
        rthr = coco_recall_thresholds().numpy()

        def statistic(w: Tensor) -> Tensor:
            wn = w.cpu().to(torch.float64).numpy()
            if not parts:
                return torch.full((wn.shape[0], 1), float("nan"), dtype=torch.float64)
            counts = _as_counts(wn)
            per_cat = []
            for det_slot, gt_slot, tp, fp, code in parts:
                ones = np.ones(gt_slot.size)
                if counts is not None:
                    ap = _count_weighted_ap(counts, det_slot, code, gt_slot, ones, rthr, _EPS, _COUNT_CHUNK)
                else:
                    ap = _weighted_ap(np.ascontiguousarray(wn), det_slot, gt_slot, tp, fp, ones, rthr, _EPS)
                per_cat.append(torch.from_numpy(ap))
            return torch.stack(per_cat, 1).nanmean(1)[:, None]

        def counted(wt: np.ndarray) -> Tensor:  # draw counts, (units, B)
            if not parts:
                return torch.full((wt.shape[1], 1), float("nan"), dtype=torch.float64)
            per_cat = [torch.from_numpy(_count_weighted_ap(wt, det_slot, code, gt_slot, np.ones(gt_slot.size), rthr,
                                                           _EPS, _COUNT_CHUNK)) for det_slot, gt_slot, _, _, code in parts]
            return torch.stack(per_cat, 1).nanmean(1)[:, None]

        return BootstrapStats(ids, ("AP",), statistic, self.bootstrap_unit, count_statistic=counted)

    def plots(self, result: dict) -> list[dict]:
        """Precision-recall (area 'all', 100 per image, mean over categories) at IoU .50, .75 and .50:.95."""
        res: CocoDetResult | None = result["result"]
        if res is None:
            return []
        p = res.precision[:, :, :, 0, -1]  # (T, R, K)
        valid = (p > -1).all(1).all(0)
        if not bool(valid.any()):
            return []
        p = p[:, :, valid].mean(2)
        thr = res.iou_thresholds.tolist()
        series = {f"IoU {w:.2f}": p[thr.index(w)].tolist() for w in (0.5, 0.75) if w in thr}
        series["mean IoU .50:.95"] = p.mean(0).tolist()
        return [plot_dict("Precision-recall (all areas)", "line", "recall", "precision",
                          res.rec_thresholds.tolist(), series)]
