"""Category-level object pose (NOCS REAL275 / CAMERA25): 3D-IoU and degree-cm mAP over the six categories.

Reference: ziqin-h/GIVEPose @ 7dd5f65 ``evaluation/evaluate.py`` + ``evaluation/eval_utils_cass.py``
(``compute_degree_cm_mAP``, CASS's variant of NOCS's), the evaluation GIVEPose and its baselines report;
facts, not code, carried over. Per image and category (ids 1..6: bottle, bowl, camera, can, laptop, mug)::

    boxes  corners of the axis-aligned box of size ``scales`` (get_3d_bbox order) moved by the 4x4 ``RT``;
           3D IoU of their axis-aligned extents: min/max over the 8 corners per coordinate (``real_iou``,
           GIVEPose's default) or over the 3 coordinates per corner (``real_iou=False``, NOCS's slip);
           symmetric pairs (bottle, bowl, can; mug whose GT handle is invisible) take the max over the
           prediction rotated about y by 2 pi k / 20, k = 0..19; IoUs are stored as float32
    match  predictions in descending score order, each to the unmatched GT of highest IoU, for IoU
           thresholds 0.1 0.25 0.5 0.75: the scan stops at IoU < t and matches at IoU > t (IoU == t skips)
    pose   predictions matched at IoU 0.1 (``use_matches_for_pose``) against all GT of the category, by
           ascending (deg + cm); a pair matches at (d, s) unless deg > d or cm > s (a NaN angle matches);
           R_i = R / cbrt(det R); deg = arccos((tr(R1 R2^T) - 1) / 2), for symmetric GT the angle between
           the rotated y axes; cm = 100 |t1 - t2|
    AP     per category over all images, VOC all-point: precision made monotone from the right,
           sum of (r_i - r_{i-1}) p_i where recall changes (recall in float32, as the reference)
    mean   of the six category APs

Two passes (``evaluate.py``): metric (degrees 5 10 360, shifts 2 5 10 cm; keys ``IoU25 IoU50 IoU75 5deg2cm
5deg5cm 10deg2cm 10deg5cm 10deg10cm 10deg 10cm``) and scale-normalised, both RTs divided by cbrt(det R)
(shifts in % of the object scale; keys ``nIoU25 nIoU50 nIoU75 5deg20% 10deg20% 10deg50% n10deg 20% 50%``).
Per category: ``<key>/<category>``. GIVEPose prints no 2 cm thresholds; adding them changes no other entry
(every threshold pair is matched on its own). Ties: the reference sorts with numpy's default ``argsort``,
whose order among equal values depends on the CPU (AVX-512) and the numpy version; we fix the order its
portable path gives (equal scores: later prediction first; equal IoU: later GT first; equal deg + cm:
earlier GT first), which is the reference's wherever its sort is insertion sort (up to 16 values).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor
from torchmetrics.utilities import dim_zero_cat

from metrics.bootstrap import BootstrapStats
from metrics.protocol import PoseMetric, plot_dict

CATEGORIES = ("bottle", "bowl", "camera", "can", "laptop", "mug")  # class ids 1..6
SYMMETRIC = ("bottle", "bowl", "can")
IOU_THRESHOLDS = (0.1, 0.25, 0.5, 0.75)
IOU_POSE = 0.1
ANY = 100000.0  # the shift (and, as 360, the angle) threshold that accepts everything


@dataclass(frozen=True)
class Pass:
    """One evaluation pass: its thresholds and the keys it reports as ``key -> (kind, i, j)``."""

    normalised: bool
    degrees: tuple[float, ...]
    shifts: tuple[float, ...]
    keys: tuple[tuple[str, str, float, float], ...]  # (key, "iou"|"pose", threshold(s))


METRIC_PASS = Pass(False, (5.0, 10.0, 360.0), (2.0, 5.0, 10.0, ANY), (
    ("IoU25", "iou", 0.25, 0), ("IoU50", "iou", 0.5, 0), ("IoU75", "iou", 0.75, 0),
    ("5deg2cm", "pose", 5.0, 2.0), ("5deg5cm", "pose", 5.0, 5.0), ("10deg2cm", "pose", 10.0, 2.0),
    ("10deg5cm", "pose", 10.0, 5.0), ("10deg10cm", "pose", 10.0, 10.0), ("10deg", "pose", 10.0, ANY),
    ("10cm", "pose", 360.0, 10.0)))
NORMALISED_PASS = Pass(True, (5.0, 10.0, 360.0), (5.0, 10.0, 20.0, 50.0, ANY), (
    ("nIoU25", "iou", 0.25, 0), ("nIoU50", "iou", 0.5, 0), ("nIoU75", "iou", 0.75, 0),
    ("5deg20%", "pose", 5.0, 20.0), ("10deg20%", "pose", 10.0, 20.0), ("10deg50%", "pose", 10.0, 50.0),
    ("n10deg", "pose", 10.0, ANY), ("20%", "pose", 360.0, 20.0), ("50%", "pose", 360.0, 50.0)))
PASSES = (METRIC_PASS, NORMALISED_PASS)
MEAN_KEYS = tuple(k for p in PASSES for k, *_ in p.keys)
NOCS_KEYS = MEAN_KEYS + tuple(f"{k}/{c}" for c in CATEGORIES for k in MEAN_KEYS)

# the 8 corner signs of get_3d_bbox, in its order (the order matters for real_iou=False)
_CORNER_SIGNS = np.array([[1, 1, 1], [1, 1, -1], [-1, 1, 1], [-1, 1, -1],
                          [1, -1, 1], [1, -1, -1], [-1, -1, 1], [-1, -1, -1]], dtype=np.float64)
_N_ROT = 20


def _y_rotations() -> np.ndarray:
    """(20, 4, 4) rotations about y by 2 pi k / 20 (homogeneous)."""
    out = np.zeros((_N_ROT, 4, 4))
    for k in range(_N_ROT):
        a = 2 * math.pi * k / float(_N_ROT)
        c, s = np.cos(a), np.sin(a)
        out[k] = [[c, 0, s, 0], [0, 1, 0, 0], [-s, 0, c, 0], [0, 0, 0, 1]]
    return out


_ROT_Y = _y_rotations()


def box_points(RT: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """(..., 4, 4) RTs and (..., 3) box sizes -> (..., 3, 8) corners in the camera frame."""
    corners = np.swapaxes(scales[..., None, :] / 2 * _CORNER_SIGNS, -1, -2)  # (..., 3, 8)
    ones = np.ones(corners.shape[:-2] + (1, 8))
    moved = RT @ np.concatenate([corners, ones], axis=-2)
    return moved[..., :3, :] / moved[..., 3:, :]


def box_iou(a: np.ndarray, b: np.ndarray, real_iou: bool = True) -> np.ndarray:
    """3D IoU of the axis-aligned extents of corner sets ``a``, ``b`` (..., 3, 8) (float64).

    >>> RT = np.eye(4); s = np.array([1.0, 2.0, 1.0])
    >>> float(box_iou(box_points(RT, s), box_points(RT, s)))
    1.0
    >>> RT2 = np.eye(4); RT2[0, 3] = 0.5
    >>> float(box_iou(box_points(RT, s), box_points(RT2, s)))  # 1 / (2 + 2 - 1)
    0.3333333333333333
    """
    axis = -1 if real_iou else -2
    amax, amin, bmax, bmin = a.max(axis), a.min(axis), b.max(axis), b.min(axis)
    lo, hi = np.maximum(amin, bmin), np.minimum(amax, bmax)
    inter = np.where((hi - lo).min(-1) < 0, 0.0, np.prod(hi - lo, axis=-1))
    union = np.prod(amax - amin, axis=-1) + np.prod(bmax - bmin, axis=-1) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / union


def iou_matrix(pred_RT: np.ndarray, pred_scales: np.ndarray, gt_RT: np.ndarray, gt_scales: np.ndarray,
               symmetric: np.ndarray, real_iou: bool = True) -> np.ndarray:
    """(P, G) float32 IoUs; ``symmetric[j]``: GT j is symmetric about y (max over 20 rotations of the prediction)."""
    P, G = len(pred_RT), len(gt_RT)
    out = np.zeros((P, G), dtype=np.float32)
    if P == 0 or G == 0:
        return out
    gt_box = box_points(gt_RT, gt_scales)  # (G, 3, 8)
    pred_box = box_points(pred_RT, pred_scales)  # (P, 3, 8)
    out[:] = box_iou(pred_box[:, None], gt_box[None], real_iou)
    if symmetric.any():
        rot = box_points(pred_RT[:, None] @ _ROT_Y[None], pred_scales[:, None])  # (P, 20, 3, 8)
        iou = box_iou(rot[:, None], gt_box[None, :, None], real_iou)  # (P, G, 20)
        best = np.maximum(np.where(np.isnan(iou), -np.inf, iou).max(axis=-1), 0.0)  # a NaN IoU never wins
        out[:, symmetric] = best[:, symmetric]
    return out


def pose_errors(pred_RT: np.ndarray, gt_RT: np.ndarray, symmetric: np.ndarray) -> np.ndarray:
    """(P, G, 2) rotation error (degrees; NaN where arccos leaves [-1, 1]) and shift (100 x translation units)."""
    P, G = len(pred_RT), len(gt_RT)
    out = np.zeros((P, G, 2))
    if P == 0 or G == 0:
        return out
    R1 = pred_RT[:, :3, :3] / np.cbrt(np.linalg.det(pred_RT[:, :3, :3]))[:, None, None]
    R2 = gt_RT[:, :3, :3] / np.cbrt(np.linalg.det(gt_RT[:, :3, :3]))[:, None, None]
    with np.errstate(invalid="ignore"):
        for i in range(P):
            for j in range(G):
                if symmetric[j]:
                    y1, y2 = R1[i][:, 1], R2[j][:, 1]
                    theta = np.arccos(y1.dot(y2) / (np.linalg.norm(y1) * np.linalg.norm(y2)))
                else:
                    theta = np.arccos((np.trace(R1[i] @ R2[j].transpose()) - 1) / 2)
                out[i, j, 0] = theta * (180 / np.pi)
                out[i, j, 1] = np.linalg.norm(pred_RT[i, :3, 3] - gt_RT[j, :3, 3]) * 100
    return out


def descending(scores: np.ndarray) -> np.ndarray:
    """Indices by descending value; equal values: later index first (the reference's portable argsort[::-1])."""
    return np.argsort(scores, kind="stable")[::-1]


def match_iou(iou: np.ndarray, thresholds: tuple[float, ...]) -> np.ndarray:
    """(T, P) GT index matched to each prediction (rows of ``iou`` in score order), -1 if none."""
    P, G = iou.shape
    pred_match = -np.ones((len(thresholds), P), dtype=np.int64)
    for s, t in enumerate(thresholds):
        taken = np.zeros(G, dtype=bool)
        for i in range(P):
            for j in descending(iou[i]):
                if taken[j]:
                    continue
                v = float(iou[i, j])
                if v < t:
                    break
                if v > t:
                    taken[j] = True
                    pred_match[s, i] = j
                    break
    return pred_match


def match_pose(err: np.ndarray, degrees: tuple[float, ...], shifts: tuple[float, ...]) -> np.ndarray:
    """(D, S, P) GT index matched to each prediction (rows of ``err`` in score order) per (degree, shift)."""
    P, G = err.shape[:2]
    pred_match = -np.ones((len(degrees), len(shifts), P), dtype=np.int64)
    if P == 0 or G == 0:
        return pred_match
    order = [np.argsort(err[i, :, 0] + err[i, :, 1], kind="stable") for i in range(P)]
    for d, dt in enumerate(degrees):
        for s, st in enumerate(shifts):
            taken = np.zeros(G, dtype=bool)
            for i in range(P):
                for j in order[i]:
                    if taken[j] or err[i, j, 0] > dt or err[i, j, 1] > st:
                        continue
                    taken[j] = True
                    pred_match[d, s, i] = j
                    break
    return pred_match


def voc_ap(matched: np.ndarray, scores: np.ndarray, num_gt: int) -> float:
    """All-point AP of predictions (``matched`` bool, ``scores``) against ``num_gt`` GT, as the reference.

    >>> voc_ap(np.array([True, False, True]), np.array([0.9, 0.8, 0.7]), 2)  # 0.5 * 1 + 0.5 * 2/3
    0.8333333333333333
    """
    order = descending(scores)
    tp = np.cumsum(matched[order])
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = tp / (np.arange(len(order)) + 1)
        recall = tp.astype(np.float32) / num_gt
    precision = np.concatenate([[0], precision, [0]])
    recall = np.concatenate([[0], recall, [1]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.where(recall[:-1] != recall[1:])[0] + 1
    return float(np.sum((recall[idx] - recall[idx - 1]) * precision[idx]))


class Detections(NamedTuple):
    """One pass's per-category match records over all images (image order): for each category, the IoU
    matches (T, n) and scores (n,), the pose matches (D, S, m) and scores (m,), the image of each entry,
    and the GT count per image (N,)."""

    iou_match: list[np.ndarray]
    iou_score: list[np.ndarray]
    iou_image: list[np.ndarray]
    pose_match: list[np.ndarray]
    pose_score: list[np.ndarray]
    pose_image: list[np.ndarray]
    gt_count: np.ndarray  # (6, N)


@dataclass
class Image:
    """The GT and the predictions of one image (float64; RTs 4x4, scales (n, 3), class ids 1..6)."""

    gt_class: np.ndarray
    gt_RT: np.ndarray
    gt_scales: np.ndarray
    gt_handle: np.ndarray
    pred_class: np.ndarray
    pred_RT: np.ndarray
    pred_scales: np.ndarray
    pred_score: np.ndarray


def normalise(RT: np.ndarray) -> np.ndarray:
    """RTs divided (rotation and translation) by cbrt(det R): the scale-normalised pass."""
    if len(RT) == 0:
        return RT
    s = np.cbrt(np.linalg.det(RT[:, :3, :3]))
    out = RT.copy()
    out[:, :3, :] = RT[:, :3, :] / s[:, None, None]
    return out


def match_images(images: list[Image], p: Pass, iou_thresholds: tuple[float, ...] = IOU_THRESHOLDS,
                 real_iou: bool = True, use_matches_for_pose: bool = True) -> Detections:
    """Per image and category: IoU matching, then pose matching of the predictions matched at IoU 0.1."""
    C, N = len(CATEGORIES), len(images)
    im_, sc_, ix_ = ([[] for _ in range(C)] for _ in range(3))
    pm_, ps_, pi_ = ([[] for _ in range(C)] for _ in range(3))
    gt_count = np.zeros((C, N), dtype=np.int64)
    t_pose = iou_thresholds.index(IOU_POSE)
    for n, im in enumerate(images):
        gt_RT = normalise(im.gt_RT) if p.normalised else im.gt_RT
        pred_RT = normalise(im.pred_RT) if p.normalised else im.pred_RT
        for c in range(C):
            g = np.flatnonzero(im.gt_class == c + 1)
            q = np.flatnonzero(im.pred_class == c + 1)
            gt_count[c, n] = len(g)
            if len(q) == 0:
                continue
            q = q[descending(im.pred_score[q])]
            name = CATEGORIES[c]
            sym = np.full(len(g), name in SYMMETRIC) | ((name == "mug") & (im.gt_handle[g] == 0))
            iou = iou_matrix(pred_RT[q], im.pred_scales[q], gt_RT[g], im.gt_scales[g], sym, real_iou)
            m = match_iou(iou, iou_thresholds)
            im_[c].append(m)
            sc_[c].append(im.pred_score[q])
            ix_[c].append(np.full(len(q), n))
            keep = q[m[t_pose] > -1] if use_matches_for_pose else q
            err = pose_errors(pred_RT[keep], gt_RT[g], sym)
            pm_[c].append(match_pose(err, p.degrees, p.shifts))
            ps_[c].append(im.pred_score[keep])
            pi_[c].append(np.full(len(keep), n))
    T, D, S = len(iou_thresholds), len(p.degrees), len(p.shifts)

    def cat(parts: list, shape: tuple, dtype) -> np.ndarray:
        return np.concatenate(parts, axis=-1) if parts else np.zeros(shape + (0,), dtype=dtype)

    return Detections([cat(x, (T,), np.int64) for x in im_], [cat(x, (), np.float64) for x in sc_],
                      [cat(x, (), np.int64) for x in ix_], [cat(x, (D, S), np.int64) for x in pm_],
                      [cat(x, (), np.float64) for x in ps_], [cat(x, (), np.int64) for x in pi_], gt_count)


def category_aps(det: Detections, p: Pass, iou_thresholds: tuple[float, ...] = IOU_THRESHOLDS) -> dict[str, float]:
    """The pass's keys (mean over the six categories and ``<key>/<category>``) from its match records."""
    out: dict[str, float] = {}
    per: dict[str, list[float]] = {k: [] for k, *_ in p.keys}
    for c, name in enumerate(CATEGORIES):
        n_gt = int(det.gt_count[c].sum())
        for key, kind, a, b in p.keys:
            if kind == "iou":
                ap = voc_ap(det.iou_match[c][iou_thresholds.index(a)] > -1, det.iou_score[c], n_gt)
            else:
                d, s = p.degrees.index(a), p.shifts.index(b)
                ap = voc_ap(det.pose_match[c][d, s] > -1, det.pose_score[c], n_gt)
            out[f"{key}/{name}"] = ap
            per[key].append(ap)
    for key, vals in per.items():
        out[key] = float(np.mean(np.array(vals)))
    return out


def nocs_map(images: list[Image], real_iou: bool = True, use_matches_for_pose: bool = True) -> dict[str, float]:
    """Every key of both passes (:data:`NOCS_KEYS`) for a list of images."""
    out: dict[str, float] = {}
    for p in PASSES:
        out.update(category_aps(match_images(images, p, real_iou=real_iou,
                                             use_matches_for_pose=use_matches_for_pose), p))
    return {k: out[k] for k in NOCS_KEYS}


# ---------------------------------------------------------------------------------------------------- the metric
HEADLINE = ("IoU50", "5deg2cm", "5deg5cm", "10deg5cm")
CURVE_IOU = tuple(round(0.05 * k, 2) for k in range(1, 20))  # holds 0.1, the pose-matching threshold
CURVE_DEGREES = tuple(float(d) for d in range(0, 61, 2))
CURVE_SHIFTS = tuple(0.5 * k for k in range(31))


class Evaluated(NamedTuple):
    """The evaluated states of :class:`NocsMAP`: image ids (ascending), the images, one match record per pass."""

    ids: Tensor
    images: list[Image]
    passes: list[Detections]


def weighted_ap(matched: Tensor, image: Tensor, num_gt: Tensor, weights: Tensor) -> Tensor:
    """(B,) AP of one category with images weighted by ``weights`` (B, N); entries already in AP order.

    An image drawn k times counts its predictions and its GT k times; ``weights = ones`` is :func:`voc_ap`.
    """
    B = weights.shape[0]
    w = weights[:, image]  # (B, n)
    tp = torch.cumsum(w * matched.to(w.dtype), dim=1)
    cnt = torch.cumsum(w, dim=1)
    precision = torch.where(cnt > 0, tp / cnt.clamp_min(1e-300), torch.zeros((), dtype=w.dtype))
    gt = (weights @ num_gt.to(weights.dtype)).to(torch.float32)
    recall = (tp.to(torch.float32) / gt[:, None]).to(torch.float64)
    zero, one = torch.zeros(B, 1, dtype=w.dtype), torch.ones(B, 1, dtype=w.dtype)
    precision = torch.cat([zero, precision, zero], 1)
    recall = torch.cat([zero, recall, one], 1)
    envelope = torch.flip(torch.cummax(torch.flip(precision, [1]), 1).values, [1])
    step = recall[:, 1:] - recall[:, :-1]
    changed = recall[:, 1:] != recall[:, :-1]
    return torch.where(changed, step * envelope[:, 1:], torch.zeros((), dtype=w.dtype)).sum(1)


class NocsMAP(PoseMetric):
    """NOCS 3D-IoU and degree-cm mAP (GIVEPose's evaluation), keyed by image id.

    ``update(preds, target)``: ``target[i] = {"image_id": 0-d, "gt_class" (G,) 1..6, "gt_RT" (G, 4, 4),
    "gt_scales" (G, 3), "gt_handle" (G,)}``, ``preds[i] = {"image_id", "pred_class" (P,), "pred_RT" (P, 4, 4),
    "pred_scales" (P, 3), "pred_score" (P,)}`` (RTs carry the object scale: ``[s R | t]``, metres).

    >>> import torch
    >>> RT = torch.eye(4, dtype=torch.float64)[None]
    >>> gt = {"image_id": torch.tensor(0), "gt_class": torch.tensor([3]), "gt_RT": RT,
    ...       "gt_scales": torch.ones(1, 3, dtype=torch.float64), "gt_handle": torch.ones(1)}
    >>> pred = {"image_id": torch.tensor(0), "pred_class": torch.tensor([3]), "pred_RT": RT,
    ...         "pred_scales": torch.ones(1, 3, dtype=torch.float64), "pred_score": torch.tensor([0.9])}
    >>> m = NocsMAP(); m.update([pred], [gt]); v = m.compute()
    >>> float(v["IoU75/camera"]), float(v["5deg2cm/camera"]), float(v["IoU75"])  # 5 categories without GT score 0
    (1.0, 1.0, 0.16666666666666666)
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False
    bootstrap_unit = "image"
    headline = HEADLINE

    def __init__(self, real_iou: bool = True, use_matches_for_pose: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.real_iou = bool(real_iou)
        self.use_matches_for_pose = bool(use_matches_for_pose)
        for name in ("image_id", "num_gt", "num_pred", "gt_class", "gt_RT", "gt_scales", "gt_handle",
                     "pred_class", "pred_RT", "pred_scales", "pred_score"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, preds: list[dict[str, Tensor]], target: list[dict[str, Tensor]]) -> None:
        if not target:
            return
        dev, f64, i64 = self.device, torch.float64, torch.long
        for p, t in zip(preds, target, strict=True):
            if int(p["image_id"]) != int(t["image_id"]):
                raise ValueError("NocsMAP.update: preds[i] and target[i] must be the same image")
            self.image_id.append(torch.as_tensor(t["image_id"]).reshape(1).to(dev, i64))
            self.num_gt.append(torch.tensor([len(t["gt_class"])], device=dev, dtype=i64))
            self.num_pred.append(torch.tensor([len(p["pred_class"])], device=dev, dtype=i64))
            self.gt_class.append(t["gt_class"].reshape(-1).to(dev, i64))
            self.gt_RT.append(t["gt_RT"].reshape(-1, 4, 4).to(dev, f64))
            self.gt_scales.append(t["gt_scales"].reshape(-1, 3).to(dev, f64))
            self.gt_handle.append(t["gt_handle"].reshape(-1).to(dev, f64))
            self.pred_class.append(p["pred_class"].reshape(-1).to(dev, i64))
            self.pred_RT.append(p["pred_RT"].reshape(-1, 4, 4).to(dev, f64))
            self.pred_scales.append(p["pred_scales"].reshape(-1, 3).to(dev, f64))
            self.pred_score.append(p["pred_score"].reshape(-1).to(dev, f64))

    def _images(self) -> tuple[Tensor, list[Image]]:
        """One copy of each image (sampler padding repeats them), in id order, as numpy."""
        ids = dim_zero_cat(self.image_id).cpu()
        if ids.numel() == 0:
            return ids, []
        cat = {k: dim_zero_cat(getattr(self, k)).cpu().numpy() for k in (
            "num_gt", "num_pred", "gt_class", "gt_RT", "gt_scales", "gt_handle",
            "pred_class", "pred_RT", "pred_scales", "pred_score")}
        g0 = np.concatenate([[0], np.cumsum(cat["num_gt"])])
        p0 = np.concatenate([[0], np.cumsum(cat["num_pred"])])
        key, perm = torch.sort(ids, stable=True)
        first = torch.ones_like(key, dtype=torch.bool)
        first[1:] = key[1:] != key[:-1]
        images = []
        for k in perm[first].tolist():
            g, p = slice(g0[k], g0[k + 1]), slice(p0[k], p0[k + 1])
            images.append(Image(cat["gt_class"][g], cat["gt_RT"][g], cat["gt_scales"][g], cat["gt_handle"][g],
                                cat["pred_class"][p], cat["pred_RT"][p], cat["pred_scales"][p],
                                cat["pred_score"][p]))
        return key[first], images

    def _evaluate(self) -> Evaluated:
        ids, images = self._images()
        return Evaluated(ids, images, [match_images(images, p, real_iou=self.real_iou,
                                                    use_matches_for_pose=self.use_matches_for_pose)
                                       for p in PASSES])

    def values(self, result: Evaluated) -> dict[str, Tensor]:
        out: dict[str, float] = {}
        for p, det in zip(PASSES, result.passes, strict=True):
            out.update(category_aps(det, p))
        return {k: torch.tensor(out[k], dtype=torch.float64) for k in NOCS_KEYS}

    def bootstrap(self, result: Evaluated) -> BootstrapStats:
        """Bootstrap over images: each category's AP re-accumulated with per-image weights, then the mean."""
        det = result.passes[0]
        terms = []  # per headline key: per category (matched, image, num_gt) in AP order
        for key in HEADLINE:
            _, kind, a, b = next(k for k in METRIC_PASS.keys if k[0] == key)
            per_cat = []
            for c in range(len(CATEGORIES)):
                if kind == "iou":
                    m, s, im = det.iou_match[c][IOU_THRESHOLDS.index(a)], det.iou_score[c], det.iou_image[c]
                else:
                    d, sh = METRIC_PASS.degrees.index(a), METRIC_PASS.shifts.index(b)
                    m, s, im = det.pose_match[c][d, sh], det.pose_score[c], det.pose_image[c]
                order = descending(s)
                per_cat.append((torch.from_numpy((m[order] > -1).copy()), torch.from_numpy(im[order].copy()),
                                torch.from_numpy(det.gt_count[c].copy())))
            terms.append(per_cat)

        def statistic(w: Tensor) -> Tensor:
            cols = [torch.stack([weighted_ap(m, im, g, w) for m, im, g in per_cat], 1).mean(1) for per_cat in terms]
            return torch.stack(cols, 1)

        cost = max([1] + [len(m) for per_cat in terms for m, _, _ in per_cat]) * 8
        return BootstrapStats(result.ids, HEADLINE, statistic, self.bootstrap_unit, cost)

    def plots(self, result: Evaluated) -> list[dict]:
        """AP against the 3D-IoU, rotation and translation thresholds (metric pass), mean and per category."""
        iou_pass = Pass(False, (360.0,), (ANY,), tuple((f"iou{t}", "iou", t, 0) for t in CURVE_IOU))
        rot_pass = Pass(False, CURVE_DEGREES, (ANY,), tuple((f"d{d}", "pose", d, ANY) for d in CURVE_DEGREES))
        shift_pass = Pass(False, (360.0,), CURVE_SHIFTS, tuple((f"s{s}", "pose", 360.0, s) for s in CURVE_SHIFTS))
        out = []
        for title, xlabel, p, xs in (("AP against 3D IoU", "3D IoU threshold", iou_pass, CURVE_IOU),
                                     ("AP against rotation error", "degrees", rot_pass, CURVE_DEGREES),
                                     ("AP against translation error", "cm", shift_pass, CURVE_SHIFTS)):
            det = match_images(result.images, p, CURVE_IOU, self.real_iou, self.use_matches_for_pose)
            v = category_aps(det, p, CURVE_IOU)
            series = {"mean": [v[k] for k, *_ in p.keys]}
            series.update({c: [v[f"{k}/{c}"] for k, *_ in p.keys] for c in CATEGORIES})
            out.append(plot_dict(title, "line", xlabel, "AP", list(xs), series))
        return out
