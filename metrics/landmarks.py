"""Face and hand landmarks: NME (faces), PCK / AUC / EPE (hands), as mmpose 1.x's evaluators compute them.

Reference: open-mmlab/mmpose @ 759b39c (1.x, main) ``mmpose/evaluation/metrics/keypoint_2d_metrics.py``
(``NME``, ``PCKAccuracy``, ``AUC``, ``EPE``) over ``mmpose/evaluation/functional/keypoint_eval.py``; facts, not
code, carried over. Inputs are mmpose's: float32 keypoints (GT and prediction) and float32 normalisers.
Per instance ``n`` and keypoint ``k`` labelled in the GT (``v > 0``), with ``s_n`` the instance's normaliser::

    d_nk  = float32( || (p_nk - g_nk) / s_n ||_2 )     (-1 where not labelled, or for every k when s_n == 0;
                                                         s_n < 0 becomes 1e6)
    NME   = float32_sum(d) / count(d)                   the float32 sum in numpy's pairwise order over the
                                                         keypoint-major list (mmpose transposes to (K, N) first);
                                                         the quotient in float64 (numpy 1.x; numpy 2 rounds it
                                                         to float32, < 6e-8 relative)
    PCK   = mean_k ( #{n: d_nk < float32(t)} / #{n: labelled} )   over keypoints labelled at least once
    AUC   = sum_{i<20} (1/20) * PCK(t = i/20) with s_n = 30 px   (the difference in float32, divided in float64)
    EPE   = NME with s_n = 1

Normalisers (set by the dataset reader): faces the distance between two GT keypoints (300W 36/45, WFLW 60/72,
COFW 8/9; float32), AFLW the larger side of the box ``center +- 100 * scale`` (float32); hands the larger side
of the COCO box clipped to the image, for PCK at ``t = 0.2``.

Faces also report the failure rate and the area under the cumulative error distribution (CED) up to 0.1, as
PIPNet (jhb86253817/PIPNet @ b9eab58 ``lib/functions.py`` ``compute_fr_and_auc(nmes, thres=0.1, step=0.0001)``)
computes them from per-image NMEs: ``x = arange(0, 0.1 + 1e-4, 1e-4)`` (1001 points), ``CED(x) = share of faces
with NME <= x``, ``FR@0.1 = 1 - CED(0.1)``, ``AUC@0.1 = simpson(CED, x) / 0.1``. A face's NME here is the mean of
its ``d_nk`` (float64); faces without a labelled keypoint have none and are left out, as from the NME.

>>> import torch
>>> gt = torch.tensor([[[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]])
>>> pred = gt + torch.tensor([[[3.0, 4.0], [0.0, 1.0], [0.0, 0.0]]])
>>> d = landmark_distances(pred, gt, torch.tensor([[True, True, False]]), torch.tensor([10.0]))
>>> d
tensor([[ 0.5000,  0.1000, -1.0000]])
>>> float(pooled_mean(d))
0.30000001192092896
>>> pck_per_keypoint(d, 0.2).tolist()
[0.0, 1.0, -1.0]
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from scipy.integrate import simpson
from torch import Tensor

from metrics.bootstrap import BootstrapStats
from metrics.common import cat_state, is_empty_state, unique_sorted
from metrics.keypoint_ap import np_sum
from metrics.protocol import PoseMetric, plot_dict

FACE_KEYS = ("NME", "FR@0.1", "AUC@0.1")
HAND_KEYS = ("PCK", "AUC", "EPE")
PCK_THR = 0.2
AUC_NORM_PX = 30.0
AUC_NUM_THRS = 20
CED_THR = 0.1
CED_STEP = 0.0001


def landmark_distances(pred: Tensor, gt: Tensor, mask: Tensor, norm: Tensor) -> Tensor:
    """``(N, K)`` float32 normalised distances, -1 where not scored (mmpose's ``_calc_distances``).

    ``pred``, ``gt``: ``(N, K, 2)`` float32; ``mask``: ``(N, K)`` bool; ``norm``: ``(N,)`` per instance, in the
    dtype the reference divides in (float32 for NME, PCK and EPE; float64 for AUC's integer 30). The difference
    is taken in float32, divided, squared and summed in ``norm``'s dtype, square-rooted correctly rounded, and
    rounded to float32.
    """
    mask = mask.to(torch.bool) & (norm != 0)[:, None]
    norm = torch.where(norm <= 0, torch.full_like(norm, 1e6), norm)
    d = (pred.to(torch.float32) - gt.to(torch.float32)).to(norm.dtype) / norm[:, None, None]
    # the square root of the float32 sum taken in float64 and rounded: numpy's correctly rounded float32 sqrt
    # (torch's float32 CPU kernel can be one ulp off)
    dist = torch.sqrt((d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1]).to(torch.float64)).to(torch.float32)
    return torch.where(mask, dist, torch.full_like(dist, -1.0))


def pooled_mean(distances: Tensor) -> Tensor:
    """mmpose's ``keypoint_nme`` / ``keypoint_epe`` reduction: float32 sum of the valid distances in numpy's
    pairwise order over the keypoint-major list, divided by their count in float64 (0-d float64)."""
    flat = distances.T.reshape(-1)
    valid = flat[flat != -1]
    if valid.numel() == 0:
        return torch.zeros((), dtype=torch.float64)
    return np_sum(valid.to(torch.float32)).to(torch.float64) / valid.numel()


def pck_per_keypoint(distances: Tensor, thr: float) -> Tensor:
    """``(K,)`` float64 share of labelled instances with ``d < float32(thr)`` per keypoint, -1 where none is."""
    valid = distances != -1
    hits = ((distances < torch.tensor(thr, dtype=torch.float32)) & valid).sum(0)
    n = valid.sum(0)
    return torch.where(n > 0, hits.to(torch.float64) / n.clamp(min=1), torch.full(n.shape, -1.0, dtype=torch.float64))


def mean_valid_pck(acc: Tensor) -> Tensor:
    """``keypoint_pck_accuracy``'s average: numpy's mean of the per-keypoint values >= 0 (0.0 when none)."""
    valid = acc[acc >= 0]
    if valid.numel() == 0:
        return torch.zeros((), dtype=torch.float64)
    return np_sum(valid) / valid.numel()


def auc_thresholds(num_thrs: int = AUC_NUM_THRS) -> list[float]:
    """``[1.0 * i / num_thrs for i in range(num_thrs)]``, the thresholds of mmpose's ``keypoint_auc``."""
    return [1.0 * i / num_thrs for i in range(num_thrs)]


def keypoint_auc(distances: Tensor, num_thrs: int = AUC_NUM_THRS) -> tuple[Tensor, list[float]]:
    """mmpose's ``keypoint_auc`` from ``distances`` already divided by the pixel normaliser: the AUC (0-d
    float64, accumulated in threshold order) and the PCK at each threshold."""
    pcks = [float(mean_valid_pck(pck_per_keypoint(distances, t))) for t in auc_thresholds(num_thrs)]
    auc = 0.0
    for p in pcks:
        auc += 1.0 / num_thrs * p
    return torch.tensor(auc, dtype=torch.float64), pcks


def per_instance_nme(distances: Tensor) -> Tensor:
    """``(N,)`` float64 mean of each instance's valid distances (NaN for an instance with none)."""
    valid = distances != -1
    s = torch.where(valid, distances.to(torch.float64), torch.zeros((), dtype=torch.float64)).sum(1)
    n = valid.sum(1)
    return torch.where(n > 0, s / n.clamp(min=1), torch.full_like(s, math.nan))


def ced_grid(thr: float = CED_THR, step: float = CED_STEP) -> Tensor:
    """``np.arange(0, thr + step, step)`` (values ``i * step``), the x of PIPNet's CED."""
    n = math.ceil((thr + step) / step)
    return torch.arange(n, dtype=torch.float64) * step


def fr_and_auc(nmes: Tensor, thr: float = CED_THR, step: float = CED_STEP) -> tuple[float, float, Tensor, Tensor]:
    """PIPNet's ``compute_fr_and_auc``: failure rate, AUC, and the CED ``(x, y)``; NaN without faces."""
    xs = ced_grid(thr, step)
    if nmes.numel() == 0:
        return math.nan, math.nan, xs, torch.full_like(xs, math.nan)
    ys = (nmes.to(torch.float64)[None, :] <= xs[:, None]).sum(1).to(torch.float64) / float(nmes.numel())
    fr = 1.0 - float(ys[-1])
    auc = float(simpson(ys.numpy(), x=xs.numpy())) / thr
    return fr, auc, xs, ys


def _dedup(ids_state, *states) -> tuple[Tensor, ...]:
    """Sample ids ascending, sampler padding repeats dropped, with the matching rows of each state."""
    ids = cat_state(ids_state)
    keep = unique_sorted(ids)
    return (ids[keep], *(cat_state(s)[keep] for s in states))


class FaceResult(NamedTuple):
    """The evaluated states of :class:`FaceNME`, one row per sample id (ascending)."""

    ids: Tensor
    distances: Tensor  # (N, K) float32, normalised, -1 where not scored


def _stack_batch(preds: list[dict[str, Tensor]], targets: list[dict[str, Tensor]], dev: torch.device):
    """A batch as tensors: sample ids, float32 predicted and GT keypoints (as mmpose's inputs), the visibility
    mask and the float32 normalisers."""
    if len(preds) != len(targets):
        raise ValueError(f"{len(preds)} predictions for {len(targets)} targets")
    pred = torch.stack([p["keypoints"] for p in preds]).to(dev, torch.float32)
    gt = torch.stack([t["keypoints"] for t in targets]).to(dev, torch.float32)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction keypoints {tuple(pred.shape)}, ground truth {tuple(gt.shape)}")
    mask = torch.stack([t["visible"] for t in targets]).to(dev, torch.bool)
    norm = torch.stack([torch.as_tensor(t["norm"]).reshape(()) for t in targets]).to(dev, torch.float32)
    ids = torch.stack([torch.as_tensor(t["sample_id"]).reshape(()) for t in targets]).to(dev, torch.long)
    return ids, pred, gt, mask, norm


class FaceNME(PoseMetric):
    """Face landmark NME (mmpose ``NME``), plus PIPNet's failure rate and AUC at 0.1 (see the module docstring).

    ``update(preds, targets)``: ``preds[i]["keypoints"]`` ``(K, 2)``; ``targets[i]`` holds ``sample_id`` (0-d; the
    instance's position in mmpose's data list, which fixes the float32 summation order), ``keypoints`` ``(K, 2)``
    float32, ``visible`` ``(K,)`` bool and ``norm`` (0-d float32). The bootstrap resamples instances: top-down
    scoring treats each annotated face on its own (own box, own normaliser), as MPII's people.
    """

    full_state_update = False
    higher_is_better = False
    is_differentiable = False
    bootstrap_unit = "instance"
    headline = ("NME",)

    def __init__(self, fr_thr: float = CED_THR, **kwargs):
        super().__init__(**kwargs)
        self.fr_thr = float(fr_thr)
        self.add_state("sample_id", default=[], dist_reduce_fx="cat")
        self.add_state("distances", default=[], dist_reduce_fx="cat")

    @property
    def keys(self) -> tuple[str, ...]:
        t = f"{self.fr_thr:g}"
        return ("NME", f"FR@{t}", f"AUC@{t}")

    def update(self, preds: list[dict[str, Tensor]], targets: list[dict[str, Tensor]]) -> None:
        if not targets and not preds:
            return
        ids, pred, gt, mask, norm = _stack_batch(preds, targets, self.device)
        self.sample_id.append(ids)
        self.distances.append(landmark_distances(pred, gt, mask, norm))

    def _evaluate(self) -> FaceResult:
        if is_empty_state(self.sample_id):
            return FaceResult(torch.zeros(0, dtype=torch.long), torch.zeros(0, 0, dtype=torch.float32))
        ids, dist = _dedup(self.sample_id, self.distances)
        return FaceResult(ids.cpu(), dist.cpu())

    def values(self, result: FaceResult) -> dict[str, Tensor]:
        nmes = per_instance_nme(result.distances)
        fr, auc, _, _ = fr_and_auc(nmes[~torch.isnan(nmes)], self.fr_thr)
        vals = (pooled_mean(result.distances), torch.tensor(fr, dtype=torch.float64), torch.tensor(auc, dtype=torch.float64))
        return dict(zip(self.keys, vals))

    def bootstrap(self, result: FaceResult) -> BootstrapStats:
        """Bootstrap over instances: the pooled NME, sum of distances over count, re-weighted per instance.

        The replicate sums in float64; it is scaled by (reported float32-summed NME) / (float64 NME of all
        instances), a factor within 1e-6 of 1, so the replicate drawing every instance once is the reported value.
        """
        d = result.distances
        valid = d != -1
        s = torch.where(valid, d.to(torch.float64), torch.zeros((), dtype=torch.float64)).sum(1)
        n = valid.sum(1).to(torch.float64)
        full = float(s.sum() / n.sum()) if float(n.sum()) > 0 else 0.0
        scale = float(pooled_mean(d)) / full if full != 0 else 1.0

        def statistic(w: Tensor) -> Tensor:
            return ((w @ s) / (w @ n) * scale)[:, None]

        return BootstrapStats(result.ids, ("NME",), statistic, self.bootstrap_unit)

    def plots(self, result: FaceResult) -> list[dict]:
        """The cumulative error distribution up to the failure threshold (every 10th point of PIPNet's grid)."""
        nmes = per_instance_nme(result.distances)
        _, _, xs, ys = fr_and_auc(nmes[~torch.isnan(nmes)], self.fr_thr)
        return [plot_dict(f"CED up to NME {self.fr_thr:g}", "line", "NME (x normaliser)", "fraction of faces",
                          xs[::10].tolist(), {"CED": ys[::10].tolist()})]


class HandResult(NamedTuple):
    """The evaluated states of :class:`HandPCK`, one row per sample id (ascending)."""

    ids: Tensor
    pck: Tensor  # (N, K) float32 distances / box size
    auc: Tensor  # (N, K) float32 distances / 30 px
    epe: Tensor  # (N, K) float32 distances in px


class HandPCK(PoseMetric):
    """Hand keypoints: PCK at 0.2 of the box (mmpose ``PCKAccuracy(thr=0.2)``), ``AUC`` (30 px, 20 thresholds) and
    ``EPE`` (px), as mmpose's OneHand10K and RHD configs evaluate them (see the module docstring).

    ``update`` takes what :class:`FaceNME` takes, ``norm`` being the clipped box's larger side. The bootstrap
    resamples instances (one annotated hand each, scored on its own).
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False
    bootstrap_unit = "instance"
    headline = ("PCK", "AUC", "EPE")

    def __init__(self, thr: float = PCK_THR, auc_norm: float = AUC_NORM_PX, num_thrs: int = AUC_NUM_THRS, **kwargs):
        super().__init__(**kwargs)
        self.thr, self.auc_norm, self.num_thrs = float(thr), float(auc_norm), int(num_thrs)
        for name in ("sample_id", "pck", "auc", "epe"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, preds: list[dict[str, Tensor]], targets: list[dict[str, Tensor]]) -> None:
        if not targets and not preds:
            return
        ids, pred, gt, mask, norm = _stack_batch(preds, targets, self.device)
        dev, n = self.device, len(targets)
        self.sample_id.append(ids)
        self.pck.append(landmark_distances(pred, gt, mask, norm))
        # mmpose divides by an integer array here, so numpy promotes the float32 difference to float64
        self.auc.append(landmark_distances(pred, gt, mask, torch.full((n,), self.auc_norm, dtype=torch.float64, device=dev)))
        self.epe.append(landmark_distances(pred, gt, mask, torch.ones(n, dtype=torch.float32, device=dev)))

    def _evaluate(self) -> HandResult:
        if is_empty_state(self.sample_id):
            z = torch.zeros(0, 0, dtype=torch.float32)
            return HandResult(torch.zeros(0, dtype=torch.long), z, z, z)
        ids, pck, auc, epe = _dedup(self.sample_id, self.pck, self.auc, self.epe)
        return HandResult(ids.cpu(), pck.cpu(), auc.cpu(), epe.cpu())

    def values(self, result: HandResult) -> dict[str, Tensor]:
        return {"PCK": mean_valid_pck(pck_per_keypoint(result.pck, self.thr)),
                "AUC": keypoint_auc(result.auc, self.num_thrs)[0],
                "EPE": pooled_mean(result.epe)}

    def bootstrap(self, result: HandResult) -> BootstrapStats:
        """Bootstrap over instances: PCK from re-weighted per-keypoint hit and labelled counts."""
        valid = result.pck != -1
        hits = ((result.pck < torch.tensor(self.thr, dtype=torch.float32)) & valid).to(torch.float64)
        labelled = valid.to(torch.float64)

        def statistic(w: Tensor) -> Tensor:
            h, n = w @ hits, w @ labelled  # (B, K)
            ok = n > 0
            acc = torch.where(ok, h / n.clamp(min=1e-300), torch.zeros_like(h))
            cnt = ok.sum(1)
            return torch.where(cnt > 0, acc.sum(1) / cnt.clamp(min=1), torch.zeros_like(acc[:, 0]))[:, None]

        return BootstrapStats(result.ids, ("PCK",), statistic, self.bootstrap_unit)

    def plots(self, result: HandResult) -> list[dict]:
        """PCK against the pixel threshold, the curve whose mean is the AUC."""
        _, pcks = keypoint_auc(result.auc, self.num_thrs)
        px = [t * self.auc_norm for t in auc_thresholds(self.num_thrs)]
        return [plot_dict(f"PCK against threshold (AUC up to {self.auc_norm:g} px)", "line", "threshold (px)",
                          "PCK", px, {"PCK": pcks})]
