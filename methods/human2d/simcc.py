"""SimCC (SimDR; Li et al., ECCV 2022): keypoints as two 1D classifications, on a timm ResNet-50 or HRNet-W32.

Network: backbone -> (ResNet-50 only: 3 x (ConvTranspose 4x4 s2 -> 256, BN, ReLU)) -> 1x1 conv to 17 maps of
64x48 -> flattened (3072) -> ``mlp_head_x`` Linear(3072, 192 x 2) and ``mlp_head_y`` Linear(3072, 256 x 2):
one logit per half pixel (split ratio 2.0) of the 192x256 crop.

- ``simcc-res50`` follows mmpose 1.x ``configs/body_2d_keypoint/simcc/coco/simcc_res50_8xb64-210e_coco-256x192.py``
  (``SimCCHead`` with its default deconvolutions, ``SimCCLabel`` decoding): boxes by ``bbox_xyxy2cs`` +
  ``_fix_aspect_ratio`` (padding 1.25), classic affine crop (no UDP), ``PoseDataPreprocessor`` normalisation,
  flip test = mirrored crop with its x-vectors reversed and left/right swapped (``flip_vectors``, no shift),
  decoding = ``get_simcc_maximum``: argmax of each vector, confidence = the smaller of the two maxima (raw
  logits, no softmax), location -1 where the confidence is <= 0, divided by the split ratio.
- ``simcc-hrnet-w32``: mmpose has no HRNet-W32 SimCC config; the official one is leeyegy/SimCC
  ``experiments/coco/hrnet/simdr/nmt_w32_256x192_adam_lr1e-3.yaml`` (final 1x1 conv on the stride-4 branch,
  no deconvolutions, ``HEAD_INPUT: 3072``). Its test code (``lib/core/function.py``) differs from mmpose:
  mmpose-0.x-style boxes, ``ToTensor``/``Normalize``, the flipped x-vectors shifted one bin left
  (``SHIFT_HEATMAP: true``) and a softmax before the maximum, so confidences are probabilities. This is the
  default for ``simcc-hrnet-w32`` (``decode: original``); ``decode: mmpose`` gives mmpose's decoding.

Checkpoints: mmpose 1.x (``backbone.*``, ``head.deconv_head.deconv_layers.*``, ``head.deconv_head.final_layer.*``
or ``head.final_layer.*``, ``head.mlp_head_{x,y}.*``) and the SimCC repo (top-level backbone keys,
``final_layer``, ``mlp_head_{x,y}``, ``deconv_layers``). mmpose's ResNet and HRNet use the same parameter
names as timm's (``conv1``, ``bn1``, ``layer1.0.downsample.0`` ...; ``transition1``, ``stage2.0.branches``,
``fuse_layers``), so backbone keys map one to one; pose HRNet keeps only the highest-resolution output of the
last module, so timm's extra fuse layers of that module are removed.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

import timm
import torch
from torch import Tensor, nn

from bench.errors import InputError
from bench.registry import register_method
from bench.types import Prediction, Sample
from methods.base import PoseMethod
from methods.human2d.topdown import (
    CropBoxes,
    TopDownConfig,
    batch_instances,
    check_and_load,
    flip_index,
    load_state_dict,
    prepare_crops,
)
from methods.human2d.vitpose import pipeline_from_cfg

NUM_KEYPOINTS = 17
INPUT_SIZE = (192, 256)      # (w, h)
SPLIT_RATIO = 2.0

#: Each backbone's official pipeline.
PIPELINES = {
    "res50": (TopDownConfig(box_convention="mmpose1", udp=False, normalization="preprocessor"), "mmpose"),
    "hrnet-w32": (TopDownConfig(box_convention="mmpose0", udp=False, normalization="totensor"), "original"),
}


class HRNetW32(nn.Module):
    """timm's HRNet-W32 as the pose HRNet: stem + 4 stages, output = the stride-4 branch (32 channels)."""

    def __init__(self):
        super().__init__()
        m = timm.create_model("hrnet_w32", pretrained=False)
        last = m.stage4[-1]
        last.fuse_layers = nn.ModuleList([last.fuse_layers[0]])    # multi_scale_output=False, as pose HRNet
        last.multi_scale_output = False
        for name in ("incre_modules", "downsamp_modules", "final_layer", "classifier", "global_pool", "head_drop"):
            if hasattr(m, name):
                delattr(m, name)
        self.net = m

    def forward(self, x: Tensor) -> Tensor:
        m = self.net
        x = m.act1(m.bn1(m.conv1(x)))
        x = m.act2(m.bn2(m.conv2(x)))
        return m.stages(x)[0]


class ResNet50(nn.Module):
    """timm's ResNet-50 trunk (stride 32, 2048 channels)."""

    def __init__(self):
        super().__init__()
        self.net = timm.create_model("resnet50", pretrained=False, num_classes=0, global_pool="")
        del self.net.fc

    def forward(self, x: Tensor) -> Tensor:
        return self.net.forward_features(x)


class SimCCHead(nn.Module):
    """Optional deconvolutions, 1x1 conv to K maps, flatten, two linear classifiers (x and y bins)."""

    def __init__(self, in_channels: int, feat_hw: tuple[int, int], num_deconv: int):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for _ in range(num_deconv):
            layers += [nn.ConvTranspose2d(c, 256, 4, stride=2, padding=1, output_padding=0, bias=False),
                       nn.BatchNorm2d(256), nn.ReLU(inplace=True)]
            c = 256
        self.deconv_layers = nn.Sequential(*layers) if layers else None
        self.final_layer = nn.Conv2d(c, NUM_KEYPOINTS, 1)
        flat = feat_hw[0] * feat_hw[1] * 4 ** num_deconv
        self.mlp_head_x = nn.Linear(flat, int(INPUT_SIZE[0] * SPLIT_RATIO))
        self.mlp_head_y = nn.Linear(flat, int(INPUT_SIZE[1] * SPLIT_RATIO))

    def forward(self, f: Tensor) -> tuple[Tensor, Tensor]:
        if self.deconv_layers is not None:
            f = self.deconv_layers(f)
        x = self.final_layer(f).flatten(2)
        return self.mlp_head_x(x), self.mlp_head_y(x)


class SimCCNet(nn.Module):
    """Crop (B, 3, 256, 192) -> x logits (B, 17, 384), y logits (B, 17, 512)."""

    def __init__(self, backbone: str = "res50"):
        super().__init__()
        if backbone == "res50":
            self.backbone: nn.Module = ResNet50()
            self.head = SimCCHead(2048, (INPUT_SIZE[1] // 32, INPUT_SIZE[0] // 32), num_deconv=3)
        elif backbone == "hrnet-w32":
            self.backbone = HRNetW32()
            self.head = SimCCHead(32, (INPUT_SIZE[1] // 4, INPUT_SIZE[0] // 4), num_deconv=0)
        else:
            raise ValueError(f"unknown SimCC backbone {backbone!r}; res50 or hrnet-w32")

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.head(self.backbone(x))


# ----------------------------------------------------------------------------------------------------------
# decoding


def flip_vectors(x: Tensor, y: Tensor, flip_idx: list[int], shift_x: bool = False) -> tuple[Tensor, Tensor]:
    """SimCC outputs of a mirrored crop -> of the crop: swap left/right, reverse the x bins (mmpose
    ``flip_vectors``); ``shift_x``: the SimCC repo's ``output_x_flipped[:, :, 0:-1] = output_x_flipped[:, :, 1:]``."""
    x = x[:, flip_idx].flip(-1)
    y = y[:, flip_idx]
    if shift_x:
        x = torch.cat([x[..., 1:], x[..., -1:]], -1)
    return x, y


def simcc_maximum(simcc_x: Tensor, simcc_y: Tensor, softmax: bool = False) -> tuple[Tensor, Tensor]:
    """mmpose ``get_simcc_maximum``: bin of each maximum (first on ties) and confidence
    ``min(max_x, max_y)``; locations -1 where the confidence is <= 0. ``softmax`` applies it first (SimCC repo).
    Returns (P, K, 2) float32 bins and (P, K) confidences."""
    if softmax:
        simcc_x, simcc_y = simcc_x.softmax(-1), simcc_y.softmax(-1)
    ix, iy = simcc_x.argmax(-1), simcc_y.argmax(-1)
    vx = simcc_x.gather(-1, ix[..., None])[..., 0]
    vy = simcc_y.gather(-1, iy[..., None])[..., 0]
    vals = torch.where(vx > vy, vy, vx)
    locs = torch.stack([ix, iy], -1).to(torch.float32)
    locs = torch.where((vals <= 0)[..., None], torch.full_like(locs, -1.0), locs)
    return locs, vals


def simcc_to_image(locs: Tensor, crops: CropBoxes, split_ratio: float = SPLIT_RATIO) -> Tensor:
    """Bins -> crop pixels (``/ split_ratio``) -> image: ``k / input_size * scale + center - scale / 2``
    (mmpose 1.x ``add_pred_to_datasample``; the SimCC repo's ``transform_preds`` is the same map)."""
    kp = locs / split_ratio
    size = torch.tensor(INPUT_SIZE, dtype=torch.float32, device=kp.device)
    s = crops.scale.to(kp.device, torch.float32)[:, None]
    c = crops.center.to(kp.device, torch.float32)[:, None]
    return kp / size * s + c - 0.5 * s


# ----------------------------------------------------------------------------------------------------------
# checkpoints

_HEAD_KEYS = ("final_layer.", "mlp_head_x.", "mlp_head_y.", "deconv_layers.")


def checkpoint_filter_fn(state_dict: dict[str, Tensor], model: SimCCNet | None = None) -> dict[str, Tensor]:
    """Official SimCC state dict -> this module's keys (``backbone.net.*`` = timm, ``head.*``).

    mmpose 1.x: ``backbone.X`` -> ``backbone.net.X``; ``head.deconv_head.{deconv_layers,final_layer}`` ->
    ``head.{...}``. SimCC repo (no prefix): head keys -> ``head.*``, everything else -> ``backbone.net.*``.
    """
    out: dict[str, Tensor] = {}
    mmpose = any(k.startswith(("backbone.", "head.")) for k in state_dict)
    for k, v in state_dict.items():
        if mmpose:
            k = re.sub(r"^backbone\.", "backbone.net.", k)
            k = re.sub(r"^head\.deconv_head\.", "head.", k)
        else:
            k = "head." + k if k.startswith(_HEAD_KEYS) else "backbone.net." + k
        out[k] = v
    return out


# ----------------------------------------------------------------------------------------------------------
# the method


class SimCC(PoseMethod):
    """SimCC as a LightningModule (same Samples and Predictions as :class:`methods.human2d.vitpose.ViTPose`)."""

    family: ClassVar[str] = "human2d"

    def __init__(self, backbone: str = "res50", pipeline: TopDownConfig | None = None, decode: str | None = None):
        super().__init__()
        if backbone not in PIPELINES:
            raise ValueError(f"unknown SimCC backbone {backbone!r}; one of {sorted(PIPELINES)}")
        self.net = SimCCNet(backbone)
        default_pipe, default_decode = PIPELINES[backbone]
        self.pipeline = pipeline or default_pipe
        self.decode = decode or default_decode
        if self.decode not in ("mmpose", "original"):
            raise ValueError(f"unknown SimCC decoding {self.decode!r}; mmpose or original")
        self.flip_idx = flip_index(NUM_KEYPOINTS)
        self.eval()

    def vectors(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x/y logits of normalised crops with the flip test (original and mirrored crops in one forward)."""
        if x.shape[0] == 0:
            return (x.new_zeros((0, NUM_KEYPOINTS, int(INPUT_SIZE[0] * SPLIT_RATIO))),
                    x.new_zeros((0, NUM_KEYPOINTS, int(INPUT_SIZE[1] * SPLIT_RATIO))))
        xs, ys = [], []
        step = max(1, self.pipeline.max_crops // (2 if self.pipeline.flip_test else 1))
        for xb in x.split(step):
            if not self.pipeline.flip_test:
                px, py = self.net(xb)
            else:
                px2, py2 = self.net(torch.cat([xb, xb.flip(-1)]))
                (px, fx), (py, fy) = px2.chunk(2), py2.chunk(2)
                fx, fy = flip_vectors(fx, fy, self.flip_idx, shift_x=self.decode == "original")
                px, py = (px + fx) * 0.5, (py + fy) * 0.5
            xs.append(px)
            ys.append(py)
        return torch.cat(xs), torch.cat(ys)

    @torch.inference_mode()
    def predict_step(self, batch: list[Sample], batch_idx: int = 0) -> list[Prediction]:
        x, geo, counts, box_scores = prepare_crops(batch, self.pipeline, self.device)
        vx, vy = self.vectors(x.to(self.dtype))
        locs, vals = simcc_maximum(vx.float(), vy.float(), softmax=self.decode == "original")
        kpts = simcc_to_image(locs, geo)
        return batch_instances(batch, counts, kpts, vals, box_scores, geo.area, self.pipeline)

    @classmethod
    def from_official_checkpoint(cls, path: Path, backbone: str = "res50", **cfg) -> SimCC:
        """Build SimCC on ``backbone`` and load an official checkpoint (mmpose 1.x or SimCC repo layout)."""
        sd = load_state_dict(path)
        model = cls(backbone=backbone, **cfg)
        check_and_load(model.net, checkpoint_filter_fn(sd, model.net), path)
        return model.eval()


@register_method("simcc-res50", "simcc-hrnet-w32")
def build(cfg, dataset, weights: Path | None) -> SimCC:
    """``method=simcc-res50|simcc-hrnet-w32 weights=FILE``."""
    name = str(cfg.get("name", "simcc-res50"))
    backbone = str(cfg.get("backbone", name[len("simcc-"):]))
    if weights is None:
        raise InputError(None, None, "weights", f"{name} runs a network: pass weights=FILE (an official SimCC "
                         "checkpoint, mmpose 1.x or SimCC repo layout), or predictions=FILE to score a results file")
    if backbone not in PIPELINES:
        raise InputError(None, None, "method.backbone", f"unknown SimCC backbone {backbone!r}; one of {sorted(PIPELINES)}")
    pipe = pipeline_from_cfg(cfg, PIPELINES[backbone][0])
    decode = cfg.get("decode", None)
    return SimCC.from_official_checkpoint(Path(weights), backbone=backbone, pipeline=pipe,
                                          decode=None if decode is None else str(decode))
