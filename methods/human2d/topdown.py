"""The top-down pipeline shared by the 2D human methods: person box -> crop -> network -> keypoints in the image.

Each step follows the official code, because each one moves AP as much as the network does:

- box -> centre/scale: mmpose 0.x ``TopDownCocoDataset._xywh2cs`` (ViTPose, SimCC's original repo) and
  mmpose 1.x ``GetBBoxCenterScale`` + ``TopdownAffine._fix_aspect_ratio``: centre ``(x + w/2, y + h/2)``, the
  box widened or heightened to the input aspect ratio ``w/h`` (192/256), then padded by 1.25. Both are kept in
  float32 like the official numpy code (centre and scale are float32 arrays there).
- affine crop: ``cv2.warpAffine(INTER_LINEAR, BORDER_CONSTANT 0)`` of the warp matrix, re-implemented with
  ``grid_sample`` (``align_corners=True``: pixel centres at integer coordinates, as OpenCV; zeros outside).
  UDP (ViTPose): ``get_warp_matrix`` maps ``c - s/2 -> 0`` and ``c + s/2 -> W_in - 1`` (scale ``(W_in - 1)/s``);
  classic (mmpose 1.x ``get_warp_matrix``, SimCC): the similarity with ``c -> W_in/2`` and scale ``W_in/s``.
  OpenCV interpolates in fixed point (1/32 pixel, 10-bit weights); we interpolate in float32 and round to
  uint8 like OpenCV's output, so single pixels can differ by one grey level.
- UDP heatmap decoding (mmpose 0.x ``keypoints_from_heatmaps(use_udp=True, post_process='default',
  target_type='GaussianHeatmap')`` = ``_get_max_preds`` + ``post_dark_udp(kernel=11)`` + ``transform_preds``):
  argmax, then one Newton step on the log of the Gaussian-blurred heatmap (DARK), then back to the image.
- flip test: the crop mirrored, its heatmaps flipped back with the COCO flip pairs and averaged; ViTPose uses
  no heatmap shift (``shift_heatmap=False`` with UDP).
- instance score and OKS-NMS: mmpose ``TopDownCocoDataset.evaluate``: score = box score x mean of the keypoint
  scores above ``vis_thr`` (0.2) (``score_mode='bbox_keypoint'``), then greedy OKS-NMS at 0.9 with the
  crop area as the area. Post-processing, not the metric: optional, named in each method's config.

Everything is batched over all person crops of a batch of images and runs on the tensors' device.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch import Tensor

from bench.errors import InputError
from bench.types import Prediction
from methods.checkpoint import read_checkpoint, tensor_dict
from metrics.skeletons import COCO_SIGMAS

#: COCO left/right keypoint pairs (eyes, ears, shoulders, elbows, wrists, hips, knees, ankles).
COCO_FLIP_PAIRS: tuple[tuple[int, int], ...] = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def flip_index(num_keypoints: int = 17, pairs: Sequence[tuple[int, int]] = COCO_FLIP_PAIRS) -> list[int]:
    """The permutation that swaps left and right keypoints (``flip_indices`` of mmpose 1.x)."""
    idx = list(range(num_keypoints))
    for a, b in pairs:
        idx[a], idx[b] = b, a
    return idx


# ----------------------------------------------------------------------------------------------------------
# boxes -> centre / scale -> warp matrices


@dataclass(frozen=True)
class CropBoxes:
    """Per-person crop geometry: ``center`` (P, 2) and ``scale`` (P, 2) in pixels, float32 like the
    official numpy code (mmpose 0.x stores ``scale / 200``; ``scale`` here is that times 200, in float32)."""

    center: Tensor
    scale: Tensor

    @property
    def area(self) -> Tensor:
        """``np.prod(s * 200, 1)`` of mmpose 0.x ``decode``: the area OKS-NMS uses, float32."""
        return self.scale[:, 0] * self.scale[:, 1]


def boxes_to_center_scale(boxes_xywh: Tensor, input_size: tuple[int, int], padding: float = 1.25,
                          convention: str = "mmpose0") -> CropBoxes:
    """Person boxes ``(P, 4)`` xywh -> crop centre and scale with the input aspect ratio and padding.

    ``mmpose0`` (ViTPose, SimCC repo): ``_xywh2cs`` in float64, then float32 ``[w/200, h/200] * padding``.
    ``mmpose1``: ``bbox_xyxy2cs`` (padding first) then ``_fix_aspect_ratio``, in float32.
    """
    w_in, h_in = input_size
    aspect = w_in / h_in
    b = boxes_xywh.to(torch.float64).reshape(-1, 4)
    x, y, w, h = b.unbind(-1)
    if convention == "mmpose0":
        center = torch.stack([x + w * 0.5, y + h * 0.5], -1).to(torch.float32)
        wide = w > aspect * h
        tall = w < aspect * h
        w2 = torch.where(tall, h * aspect, w)
        h2 = torch.where(wide, w * 1.0 / aspect, h)
        s200 = torch.stack([w2 / 200.0, h2 / 200.0], -1).to(torch.float32)
        s200 = (s200.to(torch.float64) * padding).to(torch.float32)      # float32 * python float, rounded once
        scale = (s200.to(torch.float64) * 200.0).to(torch.float32)       # transform_preds: scale * 200.0
        return CropBoxes(center, scale)
    if convention == "mmpose1":
        b32 = b.to(torch.float32)
        x1, y1 = b32[:, 0], b32[:, 1]
        x2, y2 = x1 + b32[:, 2], y1 + b32[:, 3]
        center = torch.stack([(x2 + x1) * 0.5, (y2 + y1) * 0.5], -1)
        sw, sh = (x2 - x1) * padding, (y2 - y1) * padding
        wide = sw > sh * aspect
        scale = torch.stack([torch.where(wide, sw, sh * aspect), torch.where(wide, sw / aspect, sh)], -1)
        return CropBoxes(center, scale)
    raise ValueError(f"unknown box convention {convention!r}")


def warp_matrices(crops: CropBoxes, input_size: tuple[int, int], udp: bool) -> Tensor:
    """(P, 2, 3) float64 affine matrices image -> crop, as the official ``get_warp_matrix`` builds them.

    UDP: ``x' = (W_in - 1)/s_w * (x - c_x + s_w/2)`` (mmpose 0.x stores the matrix as float32: so do we).
    Classic: ``x' = W_in/s_w * (x - c_x) + W_in/2``, same factor for y (the 3-point similarity of mmpose 1.x).
    """
    w_in, h_in = input_size
    c = crops.center.to(torch.float64)
    s = crops.scale.to(torch.float64)
    P = c.shape[0]
    m = torch.zeros(P, 2, 3, dtype=torch.float64, device=c.device)
    if udp:
        sx = (w_in - 1.0) / s[:, 0]
        sy = (h_in - 1.0) / s[:, 1]
        m[:, 0, 0] = sx
        m[:, 0, 2] = sx * (-0.5 * (2.0 * c[:, 0]) + 0.5 * s[:, 0])
        m[:, 1, 1] = sy
        m[:, 1, 2] = sy * (-0.5 * (2.0 * c[:, 1]) + 0.5 * s[:, 1])
        return m.to(torch.float32).to(torch.float64)
    k = w_in / s[:, 0]
    m[:, 0, 0] = k
    m[:, 1, 1] = k
    m[:, 0, 2] = w_in * 0.5 - k * c[:, 0]
    m[:, 1, 2] = h_in * 0.5 - k * c[:, 1]
    return m


def affine_crop(image: Tensor, matrices: Tensor, input_size: tuple[int, int], round_uint8: bool = True) -> Tensor:
    """Warp one image ``(C, H, W)`` into ``P`` crops ``(P, C, h_in, w_in)`` float32 (``cv2.warpAffine``).

    Every crop pixel ``(u, v)`` samples the image bilinearly at ``M^-1 (u, v)`` (pixel centres on the integer
    grid, zeros outside), all crops in one ``grid_sample`` call. ``round_uint8`` rounds to 0..255 integers like
    OpenCV's uint8 output.
    """
    w_in, h_in = input_size
    C, H, W = image.shape
    P = matrices.shape[0]
    if P == 0:
        return image.new_zeros((0, C, h_in, w_in), dtype=torch.float32)
    dev = image.device
    # crop pixel -> image pixel (M^-1), wrapped between grid_sample's normalised coordinates (align_corners=True:
    # -1 and 1 are the centres of the first and last pixels): theta = D_img M^-1 D_crop^-1, all in float64
    M = torch.zeros(P, 3, 3, dtype=torch.float64)
    M[:, :2] = matrices.to(device="cpu", dtype=torch.float64)
    M[:, 2, 2] = 1.0
    d_img = torch.tensor([[2.0 / max(W - 1, 1), 0, -1], [0, 2.0 / max(H - 1, 1), -1], [0, 0, 1]], dtype=torch.float64)
    d_crop_inv = torch.tensor([[(w_in - 1) / 2.0, 0, (w_in - 1) / 2.0], [0, (h_in - 1) / 2.0, (h_in - 1) / 2.0],
                               [0, 0, 1]], dtype=torch.float64)
    theta = (d_img @ torch.linalg.inv(M) @ d_crop_inv)[:, :2].to(device=dev, dtype=torch.float32)
    grid = F.affine_grid(theta, [P, C, h_in, w_in], align_corners=True).reshape(1, P * h_in, w_in, 2)
    out = F.grid_sample(image[None].to(torch.float32), grid, mode="bilinear", padding_mode="zeros",
                        align_corners=True)                                    # (1, C, P*h, w), one call
    out = out.reshape(C, P, h_in, w_in).transpose(0, 1)
    if round_uint8:
        out = out.round().clamp_(0, 255)
    return out.contiguous()


def normalize(crops: Tensor, mode: str = "totensor") -> Tensor:
    """ImageNet normalisation of 0..255 crops, the official way round.

    ``totensor`` (mmpose 0.x ``ToTensor`` + ``NormalizeTensor``): ``(x / 255 - mean) / std``;
    ``preprocessor`` (mmpose 1.x ``PoseDataPreprocessor``): ``(x - 255 mean) / (255 std)``.
    """
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=crops.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=crops.device).view(1, 3, 1, 1)
    if mode == "totensor":
        return (crops / 255.0 - mean) / std
    if mode == "preprocessor":
        mean255 = torch.tensor([123.675, 116.28, 103.53], dtype=torch.float32, device=crops.device).view(1, 3, 1, 1)
        std255 = torch.tensor([58.395, 57.12, 57.375], dtype=torch.float32, device=crops.device).view(1, 3, 1, 1)
        return (crops - mean255) / std255
    raise ValueError(f"unknown normalisation {mode!r}")


def load_image(path: str | Path) -> Tensor:
    """RGB uint8 ``(3, H, W)``; EXIF orientation applied, as ``cv2.imread`` (mmcv's default) does."""
    try:
        with Image.open(path) as im:
            if im.getexif().get(0x0112, 1) != 1:      # EXIF orientation: only when there is one
                im = ImageOps.exif_transpose(im)
            im = im.convert("RGB")
            arr = np.asarray(im, dtype=np.uint8).copy()
    except (OSError, ValueError) as e:
        raise InputError(path, None, "image_path", f"cannot read the image: {e}") from None
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


# ----------------------------------------------------------------------------------------------------------
# heatmaps -> keypoints


def flip_back_heatmaps(heatmaps: Tensor, flip_idx: Sequence[int], shift: bool = False) -> Tensor:
    """mmpose ``flip_back``: heatmaps of a mirrored crop -> heatmaps of the crop (swap pairs, mirror x).

    ``shift`` (``shift_heatmap=True`` of non-UDP configs) moves them one pixel right, as mmpose does.
    """
    out = heatmaps[:, list(flip_idx)].flip(-1)
    if shift:
        out = out.clone()
        out[..., 1:] = out[..., :-1].clone()
    return out


def _gaussian_kernel(kernel: int, dtype=torch.float32, device=None) -> Tensor:
    """``cv2.getGaussianKernel(kernel, 0)``: sigma = 0.3 ((k - 1)/2 - 1) + 0.8, computed in float64."""
    sigma = 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8
    x = torch.arange(kernel, dtype=torch.float64) - (kernel - 1) * 0.5
    g = torch.exp(-0.5 * x * x / (sigma * sigma))
    return (g / g.sum()).to(dtype=dtype, device=device)


def gaussian_blur(heatmaps: Tensor, kernel: int = 11) -> Tensor:
    """``cv2.GaussianBlur(h, (k, k), 0)`` on every map: separable, border ``BORDER_REFLECT_101``."""
    N, K, H, W = heatmaps.shape
    g = _gaussian_kernel(kernel, heatmaps.dtype, heatmaps.device)
    r = kernel // 2
    x = heatmaps.reshape(N * K, 1, H, W)
    # reflect-101 padding needs pad < size; maps smaller than the kernel fall back to replicate-of-reflect
    x = F.pad(x, (r, r, 0, 0), mode="reflect") if W > r else F.pad(x, (r, r, 0, 0), mode="replicate")
    x = F.conv2d(x, g.view(1, 1, 1, kernel))
    x = F.pad(x, (0, 0, r, r), mode="reflect") if H > r else F.pad(x, (0, 0, r, r), mode="replicate")
    x = F.conv2d(x, g.view(1, 1, kernel, 1))
    return x.reshape(N, K, H, W)


def heatmap_argmax(heatmaps: Tensor) -> tuple[Tensor, Tensor]:
    """mmpose ``_get_max_preds``: integer (x, y) of the maximum (first one on ties) and its value;
    ``(-1, -1)`` where the maximum is not positive. Returns float32 (N, K, 2) and (N, K)."""
    N, K, H, W = heatmaps.shape
    flat = heatmaps.reshape(N, K, H * W)
    idx = flat.argmax(dim=-1)                 # first maximum on ties, like numpy
    vals = flat.gather(-1, idx[..., None])[..., 0]
    xy = torch.stack([idx % W, torch.div(idx, W, rounding_mode="floor")], -1).to(torch.float32)
    xy = torch.where((vals > 0)[..., None], xy, torch.full_like(xy, -1.0))
    return xy, vals


def refine_dark_udp(coords: Tensor, heatmaps: Tensor, kernel: int = 11) -> Tensor:
    """mmpose 0.x ``post_dark_udp``: one Newton step on ``log(clip(blur(h), 1e-3, 50))`` at the argmax.

    With ``L`` the log-heatmap, the offset is ``-(Hess L + eps I)^-1 grad L`` from central differences on the
    edge-padded map (``eps`` = float32 machine epsilon; the inverse is taken in float64 as numpy promotes it).
    Like the official code, the neighbours are read from the batch's flattened padded maps with numpy's
    negative-index wrap-around, so the ``(-1, -1)`` of a non-positive maximum reads what numpy reads.
    """
    N, K, H, W = heatmaps.shape
    hm = gaussian_blur(heatmaps.to(torch.float32), kernel).clamp(0.001, 50).log()
    pad = F.pad(hm.reshape(N * K, 1, H, W), (1, 1, 1, 1), mode="replicate").reshape(-1)
    total = pad.numel()
    cx = coords[..., 0].to(torch.int64)      # astype(int) truncates toward zero: coords are integers or -1
    cy = coords[..., 1].to(torch.int64)
    base = (W + 2) * (H + 2) * torch.arange(N * K, device=coords.device).reshape(N, K)
    index = cx + 1 + (cy + 1) * (W + 2) + base

    def at(off: int) -> Tensor:
        return pad[torch.remainder(index + off, total)]

    i_ = at(0)
    ix1, ix1_ = at(1), at(-1)
    iy1, iy1_ = at(W + 2), at(-2 - W)
    ix1y1, ix1_y1_ = at(W + 3), at(-W - 3)
    dx = 0.5 * (ix1 - ix1_)
    dy = 0.5 * (iy1 - iy1_)
    dxx = ix1 - 2 * i_ + ix1_
    dyy = iy1 - 2 * i_ + iy1_
    dxy = 0.5 * (ix1y1 - ix1 - iy1 + i_ + i_ - ix1_ - iy1_ + ix1_y1_)
    eps = float(np.finfo(np.float32).eps)
    a = dxx.to(torch.float64) + eps
    b = dxy.to(torch.float64)
    d = dyy.to(torch.float64) + eps
    det = a * d - b * b
    gx, gy = dx.to(torch.float64), dy.to(torch.float64)
    ox = (d * gx - b * gy) / det
    oy = (-b * gx + a * gy) / det
    out = coords.to(torch.float64) - torch.stack([ox, oy], -1)
    return out.to(torch.float32)


def heatmap_to_image(coords: Tensor, crops: CropBoxes, heatmap_size: tuple[int, int], udp: bool = True) -> Tensor:
    """mmpose 0.x ``transform_preds``: heatmap coordinates -> image, in float32 as the official code.

    UDP: ``x = hx * s_w / (W_h - 1) + c_x - s_w / 2``; classic: ``s_w / W_h`` instead.
    """
    Wh, Hh = heatmap_size
    s = crops.scale.to(coords.device, torch.float32)
    c = crops.center.to(coords.device, torch.float32)
    if udp:
        sx, sy = s[:, 0] / (Wh - 1.0), s[:, 1] / (Hh - 1.0)
    else:
        sx, sy = s[:, 0] / Wh, s[:, 1] / Hh
    x = coords[..., 0] * sx[:, None] + c[:, 0:1] - s[:, 0:1] * 0.5
    y = coords[..., 1] * sy[:, None] + c[:, 1:2] - s[:, 1:2] * 0.5
    return torch.stack([x, y], -1)


def decode_udp_heatmaps(heatmaps: Tensor, crops: CropBoxes, kernel: int = 11) -> tuple[Tensor, Tensor]:
    """ViTPose's decoding (``use_udp=True``, ``target_type='GaussianHeatmap'``, ``post_process='default'``,
    ``modulate_kernel=11``): argmax + DARK-UDP refinement + UDP back-transform.
    Returns keypoints (P, K, 2) float32 in image pixels and scores (P, K) float32 (the raw heatmap maxima)."""
    N, K, H, W = heatmaps.shape
    if N == 0:
        return heatmaps.new_zeros((0, K, 2), dtype=torch.float32), heatmaps.new_zeros((0, K), dtype=torch.float32)
    hm = heatmaps.to(torch.float32)
    coords, vals = heatmap_argmax(hm)
    coords = refine_dark_udp(coords, hm, kernel)
    return heatmap_to_image(coords, crops, (W, H), udp=True), vals


# ----------------------------------------------------------------------------------------------------------
# instances: rescoring and OKS-NMS


def rescore(keypoint_scores: Tensor, box_scores: Tensor, vis_thr: float = 0.2) -> Tensor:
    """mmpose ``score_mode='bbox_keypoint'``: box score x mean of the keypoint scores above ``vis_thr``
    (0 when none is above). Summed joint by joint in float32, as the official Python loop does."""
    s = keypoint_scores.to(torch.float32)
    acc = torch.zeros(s.shape[0], dtype=torch.float32, device=s.device)
    n = torch.zeros(s.shape[0], dtype=torch.int64, device=s.device)
    for j in range(s.shape[1]):
        keep = s[:, j] > vis_thr
        acc = torch.where(keep, acc + s[:, j], acc)
        n = n + keep.to(torch.int64)
    mean = torch.where(n > 0, acc / n.clamp(min=1).to(torch.float32), acc)
    return mean * box_scores.to(device=s.device, dtype=torch.float32)


def oks_overlaps(kpts: Tensor, areas: Tensor, sigmas: Tensor = COCO_SIGMAS) -> Tensor:
    """mmpose ``oks_iou`` between every pair: ``mean_k exp(-d^2 / (2 (2 sigma_k)^2 ((a_i + a_j)/2 + eps)))``
    over all keypoints (``vis_thr=None``), float64 like numpy, stored as float32 as ``ious`` is."""
    xy = kpts[..., :2].to(torch.float64)
    vars_ = (sigmas.to(xy.device, torch.float64) * 2) ** 2
    d2 = ((xy[:, None] - xy[None]) ** 2).sum(-1)                      # (D, D, K)
    a = areas.to(xy.device, torch.float64)
    denom = (a[:, None] + a[None]) / 2 + float(np.spacing(1))
    e = d2 / vars_ / denom[..., None] / 2
    return torch.exp(-e).mean(-1).to(torch.float32)


def oks_nms(kpts: Tensor, scores: Tensor, areas: Tensor, thr: float = 0.9, sigmas: Tensor = COCO_SIGMAS) -> Tensor:
    """mmpose ``oks_nms``: greedy by descending score, dropping detections whose OKS with a kept one is
    above ``thr``. Ties: ``argsort()[::-1]`` of numpy (stable for <= 16 detections) = later index first.
    Returns the kept indices in keep order (descending score)."""
    D = scores.shape[0]
    if D == 0:
        return torch.zeros(0, dtype=torch.int64, device=scores.device)
    order = torch.argsort(scores.to(torch.float64), stable=True).flip(0).tolist()
    ovr = oks_overlaps(kpts, areas, sigmas).cpu()
    keep: list[int] = []
    while order:
        i = order[0]
        keep.append(i)
        order = [j for j in order[1:] if float(ovr[i, j]) <= thr]
    return torch.tensor(keep, dtype=torch.int64, device=scores.device)


def person_boxes(inputs: dict) -> tuple[Tensor, Tensor]:
    """The person boxes (P, 4) xywh and their scores (P,) of a Sample's inputs (scores default to 1)."""
    boxes = torch.as_tensor(inputs.get("person_boxes", torch.zeros(0, 4)), dtype=torch.float64).reshape(-1, 4)
    scores = inputs.get("person_scores", inputs.get("box_scores"))
    scores = (torch.ones(boxes.shape[0], dtype=torch.float64) if scores is None
              else torch.as_tensor(scores, dtype=torch.float64).reshape(-1))
    if scores.shape[0] != boxes.shape[0]:
        raise InputError(inputs.get("image_path"), None, "person_scores",
                         f"{scores.shape[0]} scores for {boxes.shape[0]} boxes")
    return boxes, scores


# ----------------------------------------------------------------------------------------------------------
# checkpoints


def load_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The tensors of an official checkpoint (methods/checkpoint.py: ``weights_only``, nothing runs).

    Accepts a bare state dict or a ``{"state_dict": ...}`` / ``{"model": ...}`` wrapper; strips ``module.``.
    """
    ckpt = read_checkpoint(path)
    sd = ckpt
    if isinstance(ckpt, dict):
        for key in ("state_dict", "model", "module"):
            if isinstance(ckpt.get(key), dict):
                sd = ckpt[key]
                break
    if not isinstance(sd, dict) or not sd:
        raise InputError(path, None, "state_dict", "expected a state dict of tensors (or {'state_dict': ...})")
    return tensor_dict(path, sd)


def check_and_load(model: torch.nn.Module, converted: dict[str, Tensor], path: str | Path | None) -> None:
    """Load a converted state dict strictly: a missing or unknown key or a shape mismatch is an InputError."""
    own = model.state_dict()
    missing = [k for k in own if k not in converted]
    unknown = [k for k in converted if k not in own]
    if unknown:
        raise InputError(path, f"key {unknown[0]!r}", "state_dict",
                         f"unknown key ({len(unknown)} unknown in all) for this architecture")
    if missing:
        raise InputError(path, f"key {missing[0]!r}", "state_dict",
                         f"missing from the checkpoint ({len(missing)} missing in all)")
    for k, v in converted.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise InputError(path, f"key {k!r}", "state_dict",
                             f"shape {tuple(v.shape)} does not fit the model's {tuple(own[k].shape)}")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in converted.items()}, strict=True)


# ----------------------------------------------------------------------------------------------------------
# the shared LightningModule logic


@dataclass
class TopDownConfig:
    """Options of the top-down pipeline (each method's YAML sets them; defaults are ViTPose's)."""

    input_size: tuple[int, int] = (192, 256)    # crop (w, h)
    padding: float = 1.25
    box_convention: str = "mmpose0"             # mmpose0 | mmpose1 (see boxes_to_center_scale)
    udp: bool = True                            # UDP warp (ViTPose) or the classic similarity (SimCC)
    normalization: str = "totensor"             # totensor | preprocessor
    flip_test: bool = True
    vis_thr: float = 0.2                        # score_mode bbox_keypoint threshold
    oks_nms_thr: float | None = 0.9             # None: no OKS-NMS (raw per-box predictions)
    max_crops: int = 256                        # crops per forward (memory bound; results do not depend on it)


def prepare_crops(batch, cfg: TopDownConfig, device) -> tuple[Tensor, CropBoxes, list[int], Tensor]:
    """All person crops of a batch of Samples: normalised input (P, 3, h, w), their geometry, the number of
    crops of each sample, and the box scores (P,)."""
    crops, centers, scales, counts, box_scores = [], [], [], [], []
    for s in batch:
        boxes, scores = person_boxes(s.inputs)
        counts.append(boxes.shape[0])
        box_scores.append(scores)
        if boxes.shape[0] == 0:
            continue
        cb = boxes_to_center_scale(boxes, cfg.input_size, cfg.padding, cfg.box_convention)
        img = load_image(s.inputs["image_path"]).to(device)
        crops.append(affine_crop(img, warp_matrices(cb, cfg.input_size, cfg.udp), cfg.input_size))
        centers.append(cb.center)
        scales.append(cb.scale)
    w, h = cfg.input_size
    x = torch.cat(crops) if crops else torch.zeros(0, 3, h, w, device=device)
    geo = CropBoxes(torch.cat(centers) if centers else torch.zeros(0, 2),
                    torch.cat(scales) if scales else torch.zeros(0, 2))
    return normalize(x, cfg.normalization), geo, counts, torch.cat(box_scores) if box_scores else torch.zeros(0)


def instances(sample_id: int, kpts: Tensor, kpt_scores: Tensor, box_scores: Tensor, areas: Tensor,
              cfg: TopDownConfig) -> Prediction:
    """One image's prediction: rescoring, optional OKS-NMS (kept in descending score, as mmpose writes)."""
    scores = rescore(kpt_scores, box_scores, cfg.vis_thr)
    kp = torch.cat([kpts.to(torch.float32), kpt_scores.to(torch.float32)[..., None]], -1)
    if cfg.oks_nms_thr is not None:
        keep = oks_nms(kp, scores, areas.to(kp.device), cfg.oks_nms_thr)
        kp, scores = kp[keep], scores[keep]
    K = kp.shape[1] if kp.ndim == 3 else 17
    return Prediction(sample_id, {
        "image_id": torch.tensor(sample_id, dtype=torch.int64),
        "keypoints": kp.reshape(-1, K, 3).to(torch.float64).cpu(),
        "scores": scores.to(torch.float64).cpu(),
    })


def batch_instances(batch: list, counts: list[int], kpts: Tensor, kpt_scores: Tensor, box_scores: Tensor,
                    areas: Tensor, cfg: TopDownConfig) -> list[Prediction]:
    """Split a batch's crops (``counts[i]`` of them for image i, in order) back into one prediction per image."""
    out, start = [], 0
    for sample, n in zip(batch, counts):
        sl = slice(start, start + n)
        out.append(instances(sample.sample_id, kpts[sl], kpt_scores[sl], box_scores[sl], areas[sl], cfg))
        start += n
    return out
