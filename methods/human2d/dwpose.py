"""DWPose (Yang et al., ICCV 2023 workshops): RTMPose whole-body models distilled on COCO-WholeBody + UBody.

Network (RTMPose, mmpose 1.1.0 as IDEA-Research/DWPose bundles it, backbone from mmdet 3.x):

- CSPNeXt P5 (``deepen_factor`` d, ``widen_factor`` w, ``expand_ratio`` 0.5, channel attention, BN eps 1e-5 as
  the configs' ``SyncBN``, SiLU): a stem of three 3x3 conv-BN-SiLU (``64w/2``, ``64w/2``, ``64w``), then four
  stages ``stride-2 conv -> [SPP, last stage] -> CSPLayer``; a CSPLayer is ``main_conv`` / ``short_conv``
  (1x1 to half the channels), ``round(n d)`` CSPNeXt blocks on the main branch (3x3 conv, then a depthwise
  5x5 + pointwise conv, residual), concatenation, channel attention (``x * hardsigmoid(fc(avgpool(x)))``) and
  ``final_conv``. The stage-4 output (stride 32) feeds the head.
- RTMCCHead: ``final_layer`` (7x7 conv to K maps), flatten, ``mlp`` = ScaleNorm + Linear to 256, one GAU
  (``gau``: ScaleNorm, ``uv`` Linear to ``2e + s`` with SiLU, ``q, k = base * gamma + beta``,
  ``kernel = relu(q k^T / sqrt(s))^2``, ``o(u * kernel v)``, plus ``res_scale * x``), then ``cls_x`` / ``cls_y``
  to ``input_size * 2`` bins (SimCC, split ratio 2.0).

- ``dwpose-l``: ``configs/wholebody_2d_keypoint/rtmpose/ubody/rtmpose-l_8xb32-270e_coco-ubody-wholebody-384x288.py``
  (DWPose README: dw-ll_ucoco_384), d = w = 1.0, input 288x384.
- ``dwpose-m``: ``.../rtmpose-m_8xb64-270e_coco-ubody-wholebody-256x192.py`` (dw-mm_ucoco), d 0.67, w 0.75,
  input 192x256.

Test pipeline (both configs): ``GetBBoxCenterScale`` (padding 1.25) + ``TopdownAffine`` (classic warp, no
UDP), ``PoseDataPreprocessor`` normalisation, ``test_cfg=dict(flip_test=True)``: the mirrored crop's vectors go
through ``flip_vectors`` (left/right swapped with COCO-WholeBody's ``flip_indices``, x bins reversed, no shift)
and are averaged with the crop's; ``SimCCLabel.decode`` (``use_dark=False``) = ``get_simcc_maximum`` on the
logits (:func:`methods.human2d.simcc.simcc_maximum`) / 2.0, then ``k / input_size * scale + center - scale/2``.
``CocoWholeBodyMetric`` (CocoMetric defaults) rescores ``bbox_score x`` the mean of the 133 keypoint scores above
0.2 and runs OKS-NMS at 0.9 with the 133 whole-body sigmas and the crop area; its results file carries only
``score``, so every part ranks by it, and the detection area is the extent of the 17 body keypoints.

On ``dataset=coco`` the first 17 keypoints (the COCO body) are reported, rescored and NMS-ed with the COCO
sigmas as the other COCO methods (our choice: DWPose has no official COCO-17 test).

Checkpoints: the official ``state_dict`` (``backbone.*``, ``head.*``: mmcv ``ConvModule`` names ``conv`` /
``bn``, ``DepthwiseSeparableConvModule`` ``depthwise_conv`` / ``pointwise_conv``) loads as it is: this module
uses the same names, so there is no rename; ``module.`` is stripped by the loader.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor, nn

from bench.errors import InputError
from bench.registry import register_method
from bench.types import Prediction, Sample
from methods.base import PoseMethod
from methods.human2d.simcc import flip_vectors, simcc_maximum
from methods.human2d.topdown import (
    COCO_FLIP_PAIRS,
    CropBoxes,
    TopDownConfig,
    check_and_load,
    flip_index,
    load_state_dict,
    oks_nms,
    prepare_crops,
    rescore,
)
from methods.human2d.vitpose import pipeline_from_cfg
from metrics.skeletons import COCO_SIGMAS
from metrics.wholebody_ap import WHOLEBODY_SIGMAS

NUM_KEYPOINTS = 133
NUM_BODY = 17

#: COCO-WholeBody left/right pairs (mmpose ``configs/_base_/datasets/coco_wholebody.py`` ``swap``): body, feet,
#: face contour, eyebrows, nose wings, eyes, outer and inner lips, hands.
WHOLEBODY_FLIP_PAIRS: tuple[tuple[int, int], ...] = (
    COCO_FLIP_PAIRS
    + tuple((17 + i, 20 + i) for i in range(3))
    + tuple((23 + i, 39 - i) for i in range(8))
    + tuple((40 + i, 49 - i) for i in range(5))
    + ((54, 58), (55, 57))
    + ((59, 68), (60, 67), (61, 66), (62, 65), (63, 70), (64, 69))
    + ((71, 77), (72, 76), (73, 75), (78, 82), (79, 81), (83, 87), (84, 86), (88, 90))
    + tuple((91 + i, 112 + i) for i in range(21))
)


@dataclass(frozen=True)
class DWPoseArch:
    """One RTMPose configuration: CSPNeXt factors, crop size (w, h) and the RTMCCHead's GAU sizes."""

    deepen_factor: float = 1.0
    widen_factor: float = 1.0
    input_size: tuple[int, int] = (288, 384)
    num_keypoints: int = NUM_KEYPOINTS
    hidden_dims: int = 256
    s: int = 128
    expansion_factor: int = 2
    final_layer_kernel_size: int = 7
    simcc_split_ratio: float = 2.0
    expand_ratio: float = 0.5


ARCHS = {
    "l": DWPoseArch(1.0, 1.0, (288, 384)),
    "m": DWPoseArch(0.67, 0.75, (192, 256)),
}

#: ``TopdownAffine`` of mmpose 1.x (classic warp), ``PoseDataPreprocessor``.
PIPELINE = TopDownConfig(input_size=(288, 384), box_convention="mmpose1", udp=False, normalization="preprocessor")


# ----------------------------------------------------------------------------------------------------------
# CSPNeXt


class ConvBN(nn.Module):
    """mmcv ``ConvModule`` with BN and SiLU: ``conv`` (no bias) -> ``bn`` -> SiLU."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-5)
        self.act = nn.SiLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


class DepthwiseSeparable(nn.Module):
    """mmcv ``DepthwiseSeparableConvModule``: depthwise k x k conv-BN-SiLU, pointwise 1x1 conv-BN-SiLU."""

    def __init__(self, cin: int, cout: int, k: int):
        super().__init__()
        self.depthwise_conv = ConvBN(cin, cin, k, groups=cin)
        self.pointwise_conv = ConvBN(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise_conv(self.depthwise_conv(x))


class CSPNeXtBlock(nn.Module):
    """3x3 conv, depthwise-separable 5x5, plus the input when ``add_identity``."""

    def __init__(self, c: int, add_identity: bool):
        super().__init__()
        self.conv1 = ConvBN(c, c, 3)
        self.conv2 = DepthwiseSeparable(c, c, 5)
        self.add_identity = add_identity

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(self.conv1(x))
        return out + x if self.add_identity else out


class ChannelAttention(nn.Module):
    """``x * hardsigmoid(fc(mean over H, W))`` with a 1x1 conv ``fc``."""

    def __init__(self, c: int):
        super().__init__()
        self.fc = nn.Conv2d(c, c, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x * nn.functional.hardsigmoid(self.fc(x.mean((2, 3), keepdim=True)))


class CSPLayer(nn.Module):
    """Cross-stage partial layer with CSPNeXt blocks and channel attention."""

    def __init__(self, cin: int, cout: int, num_blocks: int, add_identity: bool, expand_ratio: float):
        super().__init__()
        mid = int(cout * expand_ratio)
        self.main_conv = ConvBN(cin, mid, 1)
        self.short_conv = ConvBN(cin, mid, 1)
        self.final_conv = ConvBN(2 * mid, cout, 1)
        self.blocks = nn.Sequential(*[CSPNeXtBlock(mid, add_identity) for _ in range(num_blocks)])
        self.attention = ChannelAttention(2 * mid)

    def forward(self, x: Tensor) -> Tensor:
        y = torch.cat([self.blocks(self.main_conv(x)), self.short_conv(x)], 1)
        return self.final_conv(self.attention(y))


class SPPBottleneck(nn.Module):
    """1x1 conv to half, max-pools 5/9/13 (stride 1) concatenated with it, 1x1 conv."""

    def __init__(self, cin: int, cout: int, kernels: tuple[int, ...] = (5, 9, 13)):
        super().__init__()
        mid = cin // 2
        self.conv1 = ConvBN(cin, mid, 1)
        self.poolings = nn.ModuleList([nn.MaxPool2d(k, 1, k // 2) for k in kernels])
        self.conv2 = ConvBN(mid * (len(kernels) + 1), cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        return self.conv2(torch.cat([x] + [p(x) for p in self.poolings], 1))


#: CSPNeXt P5 stages: in, out, blocks, add_identity, SPP.
P5 = ((64, 128, 3, True, False), (128, 256, 6, True, False), (256, 512, 6, True, False), (512, 1024, 3, False, True))


class CSPNeXt(nn.Module):
    """CSPNeXt P5 trunk; returns the stage-4 map (stride 32, ``int(1024 w)`` channels)."""

    def __init__(self, deepen_factor: float, widen_factor: float, expand_ratio: float = 0.5):
        super().__init__()
        c0 = int(P5[0][0] * widen_factor // 2)
        c1 = int(P5[0][0] * widen_factor)
        self.stem = nn.Sequential(ConvBN(3, c0, 3, 2), ConvBN(c0, c0, 3), ConvBN(c0, c1, 3))
        for i, (cin, cout, n, identity, spp) in enumerate(P5, start=1):
            cin, cout = int(cin * widen_factor), int(cout * widen_factor)
            layers: list[nn.Module] = [ConvBN(cin, cout, 3, 2)]
            if spp:
                layers.append(SPPBottleneck(cout, cout))
            layers.append(CSPLayer(cout, cout, max(round(n * deepen_factor), 1), identity, expand_ratio))
            self.add_module(f"stage{i}", nn.Sequential(*layers))
        self.out_channels = int(P5[-1][1] * widen_factor)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for i in range(1, 5):
            x = getattr(self, f"stage{i}")(x)
        return x


# ----------------------------------------------------------------------------------------------------------
# RTMCCHead


class ScaleNorm(nn.Module):
    """``x / clamp(||x|| / sqrt(dim), eps) * g`` over the last dimension."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.scale = dim ** -0.5
        self.eps = eps
        self.g = nn.Parameter(torch.ones(1))

    def forward(self, x: Tensor) -> Tensor:
        norm = torch.linalg.vector_norm(x, dim=2, keepdim=True) * self.scale
        return x / norm.clamp(min=self.eps) * self.g


class Scale(nn.Module):
    """Element-wise learned scale."""

    def __init__(self, dim: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


class GAU(nn.Module):
    """Gated attention unit over the K keypoint tokens (self-attention, no relative bias, no RoPE)."""

    def __init__(self, dims: int, s: int, expansion_factor: int):
        super().__init__()
        self.e = int(dims * expansion_factor)
        self.s = s
        self.o = nn.Linear(self.e, dims, bias=False)
        self.uv = nn.Linear(dims, 2 * self.e + s, bias=False)
        self.gamma = nn.Parameter(torch.ones(2, s))
        self.beta = nn.Parameter(torch.zeros(2, s))
        self.ln = ScaleNorm(dims)
        self.res_scale = Scale(dims)
        self.sqrt_s = math.sqrt(s)

    def forward(self, x: Tensor) -> Tensor:
        uv = nn.functional.silu(self.uv(self.ln(x)))
        u, v, base = torch.split(uv, [self.e, self.e, self.s], dim=2)
        base = base.unsqueeze(2) * self.gamma + self.beta
        q, k = base.unbind(2)
        kernel = torch.relu(torch.bmm(q, k.transpose(1, 2)) / self.sqrt_s).square()
        return self.res_scale(x) + self.o(u * torch.bmm(kernel, v))


class RTMCCHead(nn.Module):
    """Feature map (B, C, h, w) -> x logits (B, K, W_in * 2), y logits (B, K, H_in * 2)."""

    def __init__(self, in_channels: int, arch: DWPoseArch):
        super().__init__()
        w_in, h_in = arch.input_size
        flat = math.ceil(w_in / 32) * math.ceil(h_in / 32)      # five stride-2 3x3 convs (padding 1) round up
        k = arch.final_layer_kernel_size
        self.final_layer = nn.Conv2d(in_channels, arch.num_keypoints, k, 1, k // 2)
        self.mlp = nn.Sequential(ScaleNorm(flat), nn.Linear(flat, arch.hidden_dims, bias=False))
        self.gau = GAU(arch.hidden_dims, arch.s, arch.expansion_factor)
        self.cls_x = nn.Linear(arch.hidden_dims, int(w_in * arch.simcc_split_ratio), bias=False)
        self.cls_y = nn.Linear(arch.hidden_dims, int(h_in * arch.simcc_split_ratio), bias=False)

    def forward(self, f: Tensor) -> tuple[Tensor, Tensor]:
        x = self.gau(self.mlp(self.final_layer(f).flatten(2)))
        return self.cls_x(x), self.cls_y(x)


class DWPoseNet(nn.Module):
    """Normalised crops (B, 3, H_in, W_in) -> SimCC x and y logits; parameter names = the official ones."""

    def __init__(self, arch: DWPoseArch):
        super().__init__()
        self.arch = arch
        self.backbone = CSPNeXt(arch.deepen_factor, arch.widen_factor, arch.expand_ratio)
        self.head = RTMCCHead(self.backbone.out_channels, arch)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.head(self.backbone(x))


# ----------------------------------------------------------------------------------------------------------
# decoding and instances


def simcc_to_image(locs: Tensor, crops: CropBoxes, input_size: tuple[int, int], split_ratio: float = 2.0) -> Tensor:
    """Bins -> crop pixels (``/ split_ratio``, ``SimCCLabel.decode``) -> image (``add_pred_to_datasample``:
    ``k / input_size * scale + center - scale / 2``), float32 as the official numpy code."""
    kp = locs / split_ratio
    size = torch.tensor(input_size, dtype=torch.float32, device=kp.device)
    s = crops.scale.to(kp.device, torch.float32)[:, None]
    c = crops.center.to(kp.device, torch.float32)[:, None]
    return kp / size * s + c - 0.5 * s


def body_extent(kpts: Tensor) -> Tensor:
    """xtcocotools ``loadRes`` area of a whole-body result without ``bbox``: the box around the 17 body
    keypoints (the ``keypoints`` field), in float64."""
    if kpts.shape[0] == 0:
        return torch.zeros(0, dtype=torch.float64)
    x, y = kpts[:, :NUM_BODY, 0].to(torch.float64), kpts[:, :NUM_BODY, 1].to(torch.float64)
    return (x.amax(-1) - x.amin(-1)) * (y.amax(-1) - y.amin(-1))


def image_instances(sample_id: int, kpts: Tensor, kpt_scores: Tensor, box_scores: Tensor, areas: Tensor,
                    cfg: TopDownConfig, wholebody: bool) -> Prediction:
    """One image's people: ``bbox_keypoint`` rescoring over the reported keypoints, OKS-NMS with their sigmas
    (kept in descending score, as mmpose writes them); whole body adds ``part_scores`` and ``area``."""
    K = NUM_KEYPOINTS if wholebody else NUM_BODY
    kpts, kpt_scores = kpts[:, :K], kpt_scores[:, :K]
    scores = rescore(kpt_scores, box_scores, cfg.vis_thr)
    kp = torch.cat([kpts.to(torch.float32), kpt_scores.to(torch.float32)[..., None]], -1)
    if cfg.oks_nms_thr is not None:
        keep = oks_nms(kp, scores, areas.to(kp.device), cfg.oks_nms_thr,
                       sigmas=WHOLEBODY_SIGMAS if wholebody else COCO_SIGMAS)
        kp, scores = kp[keep], scores[keep]
    kp = kp.reshape(-1, K, 3).to(torch.float64).cpu()
    scores = scores.to(torch.float64).cpu()
    out = {"image_id": torch.tensor(sample_id, dtype=torch.int64), "keypoints": kp, "scores": scores}
    if wholebody:
        out["part_scores"] = scores[:, None].expand(-1, 6).contiguous()
        out["area"] = body_extent(kp)
    return Prediction(sample_id, out)


# ----------------------------------------------------------------------------------------------------------
# the method


class DWPose(PoseMethod):
    """DWPose as a LightningModule: person boxes -> 133 COCO-WholeBody keypoints (or the 17 body ones)."""

    family: ClassVar[str] = "human2d"

    def __init__(self, arch: DWPoseArch | str = "l", pipeline: TopDownConfig | None = None, wholebody: bool = True):
        super().__init__()
        self.arch = ARCHS[arch] if isinstance(arch, str) else arch
        self.net = DWPoseNet(self.arch)
        self.pipeline = pipeline or replace(PIPELINE, input_size=self.arch.input_size)
        if tuple(self.pipeline.input_size) != tuple(self.arch.input_size):
            raise ValueError(f"pipeline input_size {self.pipeline.input_size} != the model's {self.arch.input_size}")
        self.wholebody = wholebody
        self.flip_idx = flip_index(self.arch.num_keypoints, WHOLEBODY_FLIP_PAIRS)
        self.eval()

    def vectors(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x/y logits of normalised crops; flip test: ``(f(x) + flip_vectors(f(mirrored x))) * 0.5``."""
        w, h = self.arch.input_size
        r = self.arch.simcc_split_ratio
        if x.shape[0] == 0:
            K = self.arch.num_keypoints
            return x.new_zeros((0, K, int(w * r))), x.new_zeros((0, K, int(h * r)))
        xs, ys = [], []
        step = max(1, self.pipeline.max_crops // (2 if self.pipeline.flip_test else 1))
        for xb in x.split(step):
            if not self.pipeline.flip_test:
                px, py = self.net(xb)
            else:
                px2, py2 = self.net(torch.cat([xb, xb.flip(-1)]))
                (px, fx), (py, fy) = px2.chunk(2), py2.chunk(2)
                fx, fy = flip_vectors(fx, fy, self.flip_idx)
                px, py = (px + fx) * 0.5, (py + fy) * 0.5
            xs.append(px)
            ys.append(py)
        return torch.cat(xs), torch.cat(ys)

    @torch.inference_mode()
    def predict_step(self, batch: list[Sample], batch_idx: int = 0) -> list[Prediction]:
        x, geo, counts, box_scores = prepare_crops(batch, self.pipeline, self.device)
        vx, vy = self.vectors(x.to(self.dtype))
        locs, vals = simcc_maximum(vx.float(), vy.float())
        kpts = simcc_to_image(locs, geo, self.arch.input_size, self.arch.simcc_split_ratio)
        out, start = [], 0
        for sample, n in zip(batch, counts):
            sl = slice(start, start + n)
            out.append(image_instances(sample.sample_id, kpts[sl], vals[sl], box_scores[sl], geo.area[sl],
                                       self.pipeline, self.wholebody))
            start += n
        return out

    @classmethod
    def from_official_checkpoint(cls, path: Path, arch: DWPoseArch | str = "l", **cfg) -> DWPose:
        """Build DWPose and load an official mmpose checkpoint (``state_dict`` with ``backbone.*``, ``head.*``)."""
        model = cls(arch=arch, **cfg)
        check_and_load(model.net, load_state_dict(path), path)
        return model.eval()


def output_for(dataset) -> bool:
    """True: the 133 whole-body keypoints (``coco_wholebody``); False: the 17 body ones (``coco``)."""
    family = getattr(dataset, "family", None)
    name = getattr(dataset, "name", None)
    if dataset is None or family == "wholebody2d":
        return True
    if name == "coco":
        return False
    raise InputError(None, None, "dataset", f"DWPose predicts COCO-WholeBody keypoints: dataset=coco_wholebody or "
                     f"dataset=coco (its first 17), not {name!r}")


@register_method("dwpose-l", "dwpose-m")
def build(cfg, dataset, weights: Path | None) -> DWPose:
    """``method=dwpose-l|dwpose-m weights=FILE`` (dw-ll_ucoco_384 / dw-mm_ucoco, mmpose checkpoint layout)."""
    name = str(cfg.get("name", "dwpose-l"))
    arch = str(cfg.get("arch", name[len("dwpose-"):]))
    if weights is None:
        raise InputError(None, None, "weights", f"{name} runs a network: pass weights=FILE (an official DWPose "
                         "checkpoint in mmpose layout), or predictions=FILE to score a results file")
    if arch not in ARCHS:
        raise InputError(None, None, "method.arch", f"unknown DWPose arch {arch!r}; one of {sorted(ARCHS)}")
    pipe = pipeline_from_cfg(cfg, replace(PIPELINE, input_size=ARCHS[arch].input_size))
    if tuple(pipe.input_size) != ARCHS[arch].input_size:
        raise InputError(None, None, "method.pipeline.input_size",
                         f"{list(pipe.input_size)} does not fit {name}'s {list(ARCHS[arch].input_size)}")
    return DWPose.from_official_checkpoint(Path(weights), arch=arch, pipeline=pipe, wholebody=output_for(dataset))
