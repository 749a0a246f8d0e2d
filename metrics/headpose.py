"""Head pose errors (AFLW2000-3D, BIWI): MAE of yaw, pitch and roll, their mean, MAEV and GE, in degrees.

Reference: thohemp/6DRepNet @ 464b2ba ``sixdrepnet/test.py`` with ``sixdrepnet/utils.py`` (the evaluation that
6DRepNet and the methods comparing with it run); facts, not code, carried over. Per image, in float32 as there::

    R_gt   = Rz(roll) Ry(yaw) Rx(pitch)          (utils.get_R, float64, then float32)
    (p, y, r)_pred = euler(R_pred)               x = atan2(R21, R22), y = atan2(-R20, sy), z = atan2(R10, R00),
                                                 sy = sqrt(R00^2 + R10^2); if sy < 1e-6: x = atan2(-R12, R11), z = 0
    gt_deg = float32(radians) * 180 / pi,  pred_deg = euler * 180 / pi
    e_a    = min(|g - p|, |p + 360 - g|, |p - 360 - g|, |p + 180 - g|, |p - 180 - g|)    (lenient: +-180 kept)
    v_k    = acos(clamp(<row k of R_gt, row k of R_pred>, -1, 1)) * 180 / pi             (k = 0, 1, 2)

``MAE_<a> = mean_n e_a``, ``MAE = (sum yaw + sum pitch + sum roll) / 3N``, ``MAEV = (sum v_0 + v_1 + v_2) / 3N``.
test.py indexes ``R[:, k]`` of a ``(B, 3, 3)`` batch: the rows of each matrix, not its columns.

GE, the geodesic error (6DRepNet's test.py has none): pcr-upm/opal23_headpose @ 78c0c45 ``test/evaluator.py``
``Evaluator.compute_ge`` (Cobo et al., Pattern Recognition 2024; the GE its AFLW2000 / BIWI scripts print), in
float64 on the float64 GT ``get_R`` matrix (before test.py's float32 copy) and the prediction as given::

    g = arccos(clip((trace(R_gt R_pred^T) - 1) / 2, -1, 1)) * 180 / pi,     GE = mean_n g

Opal builds its matrices as ``Rx Ry Rz`` (scipy ``'XYZ'``), get_R as ``Rz Ry Rx``: ``Rx(p) Ry(y) Rz(r) =
get_R(-p, -y, -r)^T``, and ``trace(A B^T) = sum_ij A_ij B_ij`` is the same for ``A^T, B^T``, so GE does not
depend on which of the two frames both matrices are in. It is not clipped to rotations: a non-orthonormal
prediction enters as given, as there.

Exactness: the per-image errors are the reference's float32 bits. They are computed on the CPU with the same
torch ops on the same shapes, over the images in id order in chunks of 64 (test.py's default ``--batch_size``):
torch's float32 ``atan2`` takes a SIMD path for whole vectors of a contiguous operand and libm for the rest, so
an image's yaw depends on its place in the batch (at most one float32 ulp). test.py accumulates the errors in a
float32 running sum whose value depends on its file order (``os.walk``) and batch size; the means here are the
float64 means of the per-image float32 errors (exact to ~1e-16, the same for any order, batch or process count).

>>> R = rotation_from_euler(torch.tensor([0.1]), torch.tensor([-0.2]), torch.tensor([0.3])).float()
>>> e = sample_errors(R, R, torch.tensor([[-0.2, 0.1, 0.3]]))
>>> e.dtype, [round(float(v), 4) for v in e[0]]  # a perfect prediction: float32 acos of a dot product just below 1
(torch.float32, [0.0, 0.0, 0.0, 0.0, 0.0, 0.0198])
>>> m = HeadPoseError()
>>> m.update([{"id": torch.tensor(0), "R": R[0]}], [{"id": torch.tensor(0), "R": R[0], "angles": torch.tensor([-0.1, 0.1, 0.3])}])
>>> round(float(m.compute()["MAE_yaw"]), 4)  # the GT yaw is 0.1 rad off the predicted -0.2 rad
5.7296
>>> R_gt, R_turned = (rotation_from_euler(torch.tensor([0.1]), torch.tensor([-0.2]), torch.tensor([r])) for r in (0.3, 0.8))
>>> round(float(geodesic_error(R_gt, R_turned)[0]), 10)  # R_gt R_turned^T = Rz(-0.5): 0.5 rad
28.6478897565
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from metrics.bootstrap import BootstrapStats
from metrics.common import as_id, cat_state, is_empty_state, unique_sorted
from metrics.protocol import PoseMetric, plot_dict

HEADPOSE_KEYS = ("MAE_yaw", "MAE_pitch", "MAE_roll", "MAE", "MAEV", "GE")
REFERENCE_BATCH = 64  # test.py's --batch_size default: the float32 ops run on chunks of this many images
ERROR_COLUMNS = ("yaw", "pitch", "roll", "v1", "v2", "v3")
CURVE_THRESHOLDS = tuple(float(t) for t in range(31))  # degrees, for the cumulative-error plot


def rotation_from_euler(pitch: Tensor, yaw: Tensor, roll: Tensor) -> Tensor:
    """``Rz(roll) @ Ry(yaw) @ Rx(pitch)`` (radians, right-handed; 6DRepNet's ``get_R``): ``(N,) -> (N, 3, 3)`` float64."""
    x, y, z = (torch.as_tensor(a, dtype=torch.float64) for a in (pitch, yaw, roll))
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    cx, sx, cy, sy, cz, sz = torch.cos(x), torch.sin(x), torch.cos(y), torch.sin(y), torch.cos(z), torch.sin(z)
    rx = torch.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], -1).reshape(-1, 3, 3)
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).reshape(-1, 3, 3)
    rz = torch.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], -1).reshape(-1, 3, 3)
    return rz @ (ry @ rx)


def euler_from_rotation(R: Tensor) -> Tensor:
    """``(B, 3, 3) -> (B, 3)`` [x = pitch, y = yaw, z = roll] radians in R's dtype, with the singular branch
    (``sy < 1e-6``: x from the second row, z = 0); the op sequence of 6DRepNet's
    ``compute_euler_angles_from_rotation_matrices`` (so float32 gives its float32 bits)."""
    sy = torch.sqrt(R[:, 0, 0] * R[:, 0, 0] + R[:, 1, 0] * R[:, 1, 0])
    singular = (sy < 1e-6).to(R.dtype)
    x = torch.atan2(R[:, 2, 1], R[:, 2, 2])
    y = torch.atan2(-R[:, 2, 0], sy)
    z = torch.atan2(R[:, 1, 0], R[:, 0, 0])
    xs = torch.atan2(-R[:, 1, 2], R[:, 1, 1])
    ys = torch.atan2(-R[:, 2, 0], sy)
    zs = R[:, 1, 0] * 0
    out = torch.zeros(R.shape[0], 3, dtype=R.dtype, device=R.device)
    out[:, 0] = x * (1 - singular) + xs * singular
    out[:, 1] = y * (1 - singular) + ys * singular
    out[:, 2] = z * (1 - singular) + zs * singular
    return out


def wrapped_error(pred_deg: Tensor, gt_deg: Tensor) -> Tensor:
    """``min(|g - p|, |p + 360 - g|, |p - 360 - g|, |p + 180 - g|, |p - 180 - g|)`` per element (degrees)."""
    p, g = pred_deg, gt_deg
    return torch.min(torch.stack((torch.abs(g - p), torch.abs(p + 360 - g), torch.abs(p - 360 - g),
                                  torch.abs(p + 180 - g), torch.abs(p - 180 - g))), 0)[0]


def _batch_errors(R_pred: Tensor, R_gt: Tensor, labels: Tensor) -> Tensor:
    """One reference batch: ``(B, 6)`` [yaw, pitch, roll, v1, v2, v3] errors in degrees, float32."""
    gt_deg = [labels[:, i].float() * 180 / math.pi for i in range(3)]  # yaw, pitch, roll
    euler = euler_from_rotation(R_pred) * 180 / math.pi
    p_pred, y_pred, r_pred = euler[:, 0], euler[:, 1], euler[:, 2]
    v = [torch.acos(torch.clamp(torch.sum(R_gt[:, k] * R_pred[:, k], 1), -1, 1)) * 180 / math.pi for k in range(3)]
    return torch.stack([wrapped_error(y_pred, gt_deg[0]), wrapped_error(p_pred, gt_deg[1]),
                        wrapped_error(r_pred, gt_deg[2]), *v], 1)


def sample_errors(R_pred: Tensor, R_gt: Tensor, labels: Tensor, batch: int = REFERENCE_BATCH) -> Tensor:
    """Per-image errors ``(N, 6)`` [yaw, pitch, roll, v1, v2, v3] (degrees, float32) of float32 ``R_pred``,
    ``R_gt`` ``(N, 3, 3)`` and GT ``labels`` ``(N, 3)`` = [yaw, pitch, roll] radians, as 6DRepNet's test.py
    computes them for its batches of ``batch`` images (computed on the CPU, in the given order)."""
    R_pred, R_gt, labels = (t.detach().cpu().to(torch.float32).contiguous() for t in (R_pred, R_gt, labels))
    if R_pred.shape[0] == 0:
        return torch.zeros(0, 6, dtype=torch.float32)
    return torch.cat([_batch_errors(R_pred[s:s + batch], R_gt[s:s + batch], labels[s:s + batch])
                      for s in range(0, R_pred.shape[0], batch)])


def geodesic_error(R_gt: Tensor, R_pred: Tensor) -> Tensor:
    """``(N,)`` float64 degrees: ``arccos(clip((trace(R_gt R_pred^T) - 1) / 2, -1, 1))`` per image, computed in
    float64 as opal23_headpose's ``compute_ge`` (diagonal of the product, then its trace)."""
    a, b = (torch.as_tensor(t).detach().cpu().to(torch.float64) for t in (R_gt, R_pred))
    diag = (a * b).sum(2)  # (R_gt R_pred^T)_kk = <row k of R_gt, row k of R_pred>
    cos = (diag[:, 0] + diag[:, 1] + diag[:, 2] - 1) / 2
    return torch.rad2deg(torch.acos(torch.clamp(cos, -1, 1)))


def summary(errors: Tensor, geodesic: Tensor) -> dict[str, Tensor]:
    """The six keys (float64 degrees) from per-image errors ``(N, 6)`` and GE ``(N,)``; NaN without images."""
    e = errors.to(torch.float64)
    n = e.shape[0]
    s = e.sum(0)
    out = {f"MAE_{a}": s[i] / n for i, a in enumerate(("yaw", "pitch", "roll"))}
    out["MAE"] = (s[0] + s[1] + s[2]) / (n * 3)
    out["MAEV"] = (s[3] + s[4] + s[5]) / (n * 3)
    out["GE"] = geodesic.to(torch.float64).sum() / n
    return {k: out[k] for k in HEADPOSE_KEYS}


class ImageErrors(NamedTuple):
    """The evaluated states of :class:`HeadPoseError`: image ids (ascending), their ``(N, 6)`` float32
    errors [yaw, pitch, roll, v1, v2, v3] and ``(N,)`` float64 geodesic errors, in degrees."""

    ids: Tensor
    errors: Tensor
    geodesic: Tensor


class HeadPoseError(PoseMetric):
    """MAE of yaw / pitch / roll, their mean and MAEV (degrees; 6DRepNet's test.py) and GE (opal23_headpose's
    evaluator), keyed by image id.

    ``update(preds, target)``: ``preds[i] = {"id": 0-d, "R": (3, 3) predicted rotation}``, ``target[i] = {"id",
    "R": (3, 3) GT rotation (get_R, float64), "angles": (3,) GT [yaw, pitch, roll] radians}``. Rotations are
    kept in float64 (GE's precision; the test.py path takes their float32 copies, as the reference holds them),
    angles in float32.
    """

    full_state_update = False
    higher_is_better = False
    is_differentiable = False
    bootstrap_unit = "image"
    headline = ("MAE", "MAEV", "GE")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for name in ("ids", "R_pred", "R_gt", "angles"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, preds: list[dict[str, Tensor]], target: list[dict[str, Tensor]]) -> None:
        if not target:
            return
        dev, f32, f64 = self.device, torch.float32, torch.float64
        ids = torch.cat([as_id(t["id"], dev) for t in target])
        if not torch.equal(ids, torch.cat([as_id(p["id"], dev) for p in preds])):
            raise ValueError("HeadPoseError.update: preds[i] and target[i] must be the same image")
        self.ids.append(ids)
        self.R_pred.append(torch.stack([torch.as_tensor(p["R"]) for p in preds]).to(dev, f64))
        self.R_gt.append(torch.stack([torch.as_tensor(t["R"]) for t in target]).to(dev, f64))
        self.angles.append(torch.stack([torch.as_tensor(t["angles"]) for t in target]).to(dev, f32))

    def _evaluate(self) -> ImageErrors:
        """One copy of each image (sampler padding repeats them), in id order, then the reference's errors."""
        if is_empty_state(self.ids):
            return ImageErrors(torch.zeros(0, dtype=torch.long), torch.zeros(0, 6, dtype=torch.float32),
                               torch.zeros(0, dtype=torch.float64))
        ids = cat_state(self.ids)
        keep = unique_sorted(ids)
        R_pred, R_gt = cat_state(self.R_pred)[keep], cat_state(self.R_gt)[keep]
        errors = sample_errors(R_pred, R_gt, cat_state(self.angles)[keep])
        return ImageErrors(ids[keep].cpu(), errors, geodesic_error(R_gt, R_pred))

    def values(self, result: ImageErrors) -> dict[str, Tensor]:
        return summary(result.errors, result.geodesic)

    def bootstrap(self, result: ImageErrors) -> BootstrapStats:
        """Bootstrap over images: MAE and MAEV are means of per-image means of three errors, GE of one."""
        e = result.errors.to(torch.float64)
        per = torch.stack([e[:, 0] + e[:, 1] + e[:, 2], e[:, 3] + e[:, 4] + e[:, 5]], 1)
        ge = result.geodesic.to(torch.float64)[:, None]

        def statistic(w: Tensor) -> Tensor:
            n = w.sum(1, keepdim=True)
            return torch.cat([(w @ per) / (3 * n), (w @ ge) / n], 1)

        return BootstrapStats(result.ids, ("MAE", "MAEV", "GE"), statistic, self.bootstrap_unit)

    def plots(self, result: ImageErrors) -> list[dict]:
        """MAE per angle (bar) and the share of images whose mean angle error is within t degrees (line)."""
        v = self.values(result)
        bars = list(HEADPOSE_KEYS)
        per = result.errors.to(torch.float64)[:, :3].mean(1)
        n = max(per.numel(), 1)
        share = [float((per <= t).sum()) / n for t in CURVE_THRESHOLDS]
        return [plot_dict("Mean absolute error", "bar", "key", "degrees", bars, {"error": [float(v[k]) for k in bars]}),
                plot_dict("Images within an angle error", "line", "mean angle error (deg)", "share of images",
                          list(CURVE_THRESHOLDS), {"share": share})]
