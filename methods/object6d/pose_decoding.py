"""GDRNPP's test-time geometry: dynamic zoom-in crops, rot6d, SITE translation, allocentric -> egocentric.

Each function mirrors one step of the official inference (shanice-l/gdrnpp_bop2022,
``core/gdrn_modeling/datasets/data_loader.py::read_data_test``, ``core/utils/rot_reps.py``,
``core/gdrn_modeling/models/pose_from_pred_centroid_z.py``, ``core/utils/utils.py::allocentric_to_egocentric``),
re-derived here as batched, device-agnostic torch. Poses are decoded in float64 from the same (float32) inputs
the official code sees; the official code runs the same formulas in float32 and casts the result to float32.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

# OpenCV 4's warpAffine (the official pre-processing) maps coordinates in fixed point: 10 fractional bits,
# then bilinear weights on a 1/32 pixel grid; uint8 results are rounded from 15-bit integer weights.
_AB_SCALE = 1 << 10
_INTER_TAB = 32
_ROUND_DELTA = _AB_SCALE // _INTER_TAB // 2
_COEF_BITS = 15


# ------------------------------------------------------------------------------------------ rotations


def rot6d_to_matrix(d6: Tensor) -> Tensor:
    """(..., 6) -> (..., 3, 3): Gram-Schmidt of Zhou et al. (CVPR 2019) as GDRNPP's ``rot6d_to_mat_batch``.

    ``x = a / |a|``, ``z = (x x b) / |x x b|``, ``y = z x x``; the matrix has columns ``(x, y, z)``.
    """
    x = F.normalize(d6[..., 0:3], p=2, dim=-1)
    z = F.normalize(torch.linalg.cross(x, d6[..., 3:6], dim=-1), p=2, dim=-1)
    y = torch.linalg.cross(z, x, dim=-1)
    return torch.stack((x, y, z), dim=-1)


def axis_angle_to_matrix(axis: Tensor, angle: Tensor) -> Tensor:
    """Rodrigues' formula, as ``transforms3d.axangles.axangle2mat`` (the axis is normalised first).

    ``R = c I + s [n]_x + (1 - c) n n^T``; a zero axis yields the identity.
    """
    n = axis.norm(dim=-1, keepdim=True)
    unit = axis / torch.where(n > 0, n, torch.ones_like(n))
    x, y, z = unit.unbind(-1)
    c, s = torch.cos(angle), torch.sin(angle)
    C = 1 - c
    R = torch.stack([
        torch.stack([x * x * C + c, x * y * C - z * s, z * x * C + y * s], -1),
        torch.stack([x * y * C + z * s, y * y * C + c, y * z * C - x * s], -1),
        torch.stack([z * x * C - y * s, y * z * C + x * s, z * z * C + c], -1),
    ], -2)
    eye = torch.eye(3, dtype=R.dtype, device=R.device).expand_as(R)
    return torch.where((n[..., 0] > 0)[..., None, None], R, eye)


def allocentric_to_egocentric(R_allo: Tensor, t: Tensor) -> Tensor:
    """Egocentric rotation from an allocentric one: ``R_ego = R_c R_allo``.

    The network predicts the rotation as seen from a camera looking straight at the object (allocentric), which
    is what a translation-invariant crop can judge. ``R_c`` rotates the optical axis ``(0, 0, 1)`` onto the ray
    to the object centre: axis ``(0, 0, 1) x t/|t|``, angle ``acos(t_z/|t|)``; straight ahead (angle 0)
    ``R_ego = R_allo``, as the official ``if angle > 0`` branch.
    """
    ray = t / t.norm(dim=-1, keepdim=True)
    angle = torch.acos(ray[..., 2].clamp(-1.0, 1.0))
    axis = torch.stack([-ray[..., 1], ray[..., 0], torch.zeros_like(ray[..., 0])], dim=-1)
    Rc = axis_angle_to_matrix(axis, angle)
    Rc = torch.where((angle > 0)[..., None, None], Rc, torch.eye(3, dtype=Rc.dtype, device=Rc.device).expand_as(Rc))
    return Rc @ R_allo


# ------------------------------------------------------------------------------------------ translation


def site_translation(centroid: Tensor, z_rel: Tensor, roi_center: Tensor, roi_wh: Tensor, resize_ratio: Tensor,
                     K: Tensor) -> Tensor:
    """Scale-invariant translation (SITE) -> camera translation, in the unit of ``z_rel`` (metres for GDRNPP).

    The network regresses the projected centre as an offset relative to the box, ``(delta_x, delta_y)``, and the
    depth of the zoomed-in object, ``z_rel``. Undoing the zoom: ``c = delta * (w, h) + box centre``,
    ``t_z = z_rel * r`` with ``r = output_res / crop scale``, then back-projection through ``K``:
    ``t_x = t_z (c_x - p_x) / f_x``, ``t_y = t_z (c_y - p_y) / f_y``.

    Shapes: centroid (N, 2), z_rel (N,), roi_center (N, 2), roi_wh (N, 2), resize_ratio (N,), K (N, 3, 3).
    """
    c = centroid * roi_wh + roi_center
    z = z_rel * resize_ratio
    tx = z * (c[:, 0] - K[:, 0, 2]) / K[:, 0, 0]
    ty = z * (c[:, 1] - K[:, 1, 2]) / K[:, 1, 1]
    return torch.stack([tx, ty, z], dim=-1)


# ------------------------------------------------------------------------------------------ zoom-in crops


@dataclass
class RoiBoxes:
    """Dynamic zoom-in at test time (no jitter): a square crop around each detection box.

    ``center`` (N, 2) box centre, ``scale`` (N,) crop side in pixels, ``wh`` (N, 2) box size (at least 1),
    ``resize_ratio`` (N,) ``output_res / scale``; all float64 holding the float32-rounded official values.
    """

    center: Tensor
    scale: Tensor
    wh: Tensor
    resize_ratio: Tensor


def xywh_to_xyxy(bbox_xywh: Tensor) -> Tensor:
    """Detection boxes (N, 4) ``x, y, w, h`` -> corners, formed in float32 as detectron2's ``BoxMode.convert`` of a
    Python list does (it goes through a float32 tensor); returned as float64."""
    b = bbox_xywh.to(torch.float32)
    return torch.stack([b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]], dim=-1).to(torch.float64)


def dzi_boxes(bbox_xyxy: Tensor, im_h: int, im_w: int, pad_scale: float = 1.5, output_res: int = 64) -> RoiBoxes:
    """Box corners (N, 4) -> crops, as ``read_data_test``: ``scale = min(max(w, h) * DZI_PAD_SCALE, max(H, W))``,
    ``w, h`` at least 1 pixel."""
    x1, y1, x2, y2 = bbox_xyxy.to(torch.float64).unbind(-1)
    center = torch.stack([0.5 * (x1 + x2), 0.5 * (y1 + y2)], dim=-1).to(torch.float32).to(torch.float64)
    bw = (x2 - x1).clamp(min=1.0)
    bh = (y2 - y1).clamp(min=1.0)
    scale = (torch.maximum(bw, bh) * pad_scale).clamp(max=float(max(im_h, im_w)))
    wh = torch.stack([bw, bh], dim=-1).to(torch.float32).to(torch.float64)
    ratio = (output_res / scale).to(torch.float32).to(torch.float64)
    return RoiBoxes(center, scale, wh, ratio)


def _fixed_point_coords(center: Tensor, scale: Tensor, size: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Source pixel of every crop pixel as OpenCV 4's ``warpAffine`` computes it: integer part and 1/32 fraction.

    The inverse map is ``x = c_x + (u - size/2) * scale/size`` (the official ``get_affine_transform`` with no
    rotation). OpenCV rounds ``M0 u`` and ``M2`` to 1/1024 separately along a row, ``M4 v + M5`` at once along a
    column, adds half a 1/32 step and truncates to 1/32.
    """
    c32 = center.to(torch.float32).to(torch.float64)
    s32 = scale.to(torch.float32).to(torch.float64)
    k = s32 / size                                                     # (N,)
    u = torch.arange(size, dtype=torch.float64, device=center.device)
    m2x = c32[:, 0] - 0.5 * size * k
    m5y = c32[:, 1] - 0.5 * size * k
    X = torch.round(m2x * _AB_SCALE)[:, None] + _ROUND_DELTA + torch.round(k[:, None] * u * _AB_SCALE)
    Y = torch.round((k[:, None] * u + m5y[:, None]) * _AB_SCALE) + _ROUND_DELTA
    X = torch.div(X.to(torch.int64), _AB_SCALE // _INTER_TAB, rounding_mode="floor")
    Y = torch.div(Y.to(torch.int64), _AB_SCALE // _INTER_TAB, rounding_mode="floor")
    ix = torch.div(X, _INTER_TAB, rounding_mode="floor")
    iy = torch.div(Y, _INTER_TAB, rounding_mode="floor")
    return ix, X - ix * _INTER_TAB, iy, Y - iy * _INTER_TAB


def crop_resize(image: Tensor, center: Tensor, scale: Tensor, size: int) -> Tensor:
    """Square crops (N, C, size, size) of a (C, H, W) image: the official ``crop_resize_by_warp_affine``.

    Bilinear sampling on OpenCV 4's 1/32 pixel grid with a constant zero border. A uint8 image gives uint8
    crops rounded as OpenCV does (``(sum w_i p_i + 2^14) >> 15`` with integer weights ``w_i`` summing to
    ``2^15``); a floating image gives float crops of its dtype.
    """
    C, H, W = image.shape
    ix, fx, iy, fy = _fixed_point_coords(center, scale, size)          # (N, size) each
    N = ix.shape[0]
    xs = torch.stack([ix, ix + 1], dim=-1)                              # (N, size, 2) neighbours
    ys = torch.stack([iy, iy + 1], dim=-1)
    # 1D weights in 1/32, zero for neighbours outside the image (constant zero border)
    wx = torch.stack([_INTER_TAB - fx, fx], dim=-1).to(torch.float32) * ((xs >= 0) & (xs < W))
    wy = torch.stack([_INTER_TAB - fy, fy], dim=-1).to(torch.float32) * ((ys >= 0) & (ys < H))
    # (N, v, u, 2 rows, 2 cols): flat source index and weight in 2^-15
    flat = ys.clamp(0, H - 1)[:, :, None, :, None] * W + xs.clamp(0, W - 1)[:, None, :, None, :]
    w = wy[:, :, None, :, None] * (wx[:, None, :, None, :] * float((1 << _COEF_BITS) // _INTER_TAB ** 2))
    src = image.reshape(C, H * W)
    vals = src[:, flat.reshape(-1)].reshape(C, N, size, size, 2, 2)
    if image.dtype == torch.uint8:
        # integer arithmetic carried exactly in float32: w p <= 2^15 * 255 < 2^24, and the weights sum to 2^15
        acc = (vals.to(torch.float32) * w[None]).sum(dim=(-1, -2))
        out = torch.floor((acc + (1 << (_COEF_BITS - 1))) / (1 << _COEF_BITS)).clamp(0, 255).to(torch.uint8)
    else:
        acc = (vals.to(torch.float64) * (w[None].to(torch.float64) / (1 << _COEF_BITS))).sum(dim=(-1, -2))
        out = acc.to(image.dtype)
    return out.permute(1, 0, 2, 3).contiguous()


def coord_2d_map(height: int, width: int, device=None) -> Tensor:
    """(2, H, W) float32 normalised pixel coordinates ``(i / W, j / H)``, the official ``get_2d_coord_np``."""
    x = torch.arange(width, dtype=torch.float64, device=device) / width
    y = torch.arange(height, dtype=torch.float64, device=device) / height
    yy, xx = torch.meshgrid(y.to(torch.float32), x.to(torch.float32), indexing="ij")
    return torch.stack([xx, yy], dim=0)


def resize_shortest_edge_size(height: int, width: int, short: int, max_size: int) -> tuple[int, int]:
    """detectron2 ``ResizeShortestEdge`` at test time -> ``(new_h, new_w)``."""
    scale = short * 1.0 / min(height, width)
    newh, neww = (short, scale * width) if height < width else (scale * height, short)
    if max(newh, neww) > max_size:
        scale = max_size * 1.0 / max(newh, neww)
        newh, neww = newh * scale, neww * scale
    return int(newh + 0.5), int(neww + 0.5)
