"""ViTPose (Xu et al., NeurIPS 2022) S/B/L/H on timm's VisionTransformer, with the official top-down pipeline.

Network (ViTAE-Transformer/ViTPose ``configs/body/2d_kpt_sview_rgb_img/topdown_heatmap/coco/ViTPose_*_coco_256x192.py``
and ``mmpose/models/backbones/vit.py``):

- a plain ViT on a 256x192 crop: 16x16 patch embedding with padding 2 (``padding=4 + 2*(ratio//2 - 1)``,
  ratio 1) -> 16x12 tokens, no class token, learned position embedding, LayerNorm eps 1e-6, qkv bias, MLP
  ratio 4, a final LayerNorm (``last_norm``), tokens reshaped to a (C, 16, 12) map;
  S: 384 dims, 12 blocks, 12 heads (timm's vit_small has 6); B: 768/12/12; L: 1024/24/16; H: 1280/32/16
  (drop path 0.1/0.3/0.5/0.55, inactive at test time);
- classic decoder: 2 x (ConvTranspose 4x4 stride 2 -> 256, BN, ReLU), 1x1 conv to 17 heatmaps (64x48);
  simple decoder: ReLU, bilinear x4 (align_corners False), 3x3 conv to 17.

The original position embedding has a class-token slot, (1, 1 + 192, C), and the official forward adds
``pos_embed[:, 1:] + pos_embed[:, :1]`` to every token: the conversion folds the slot into the 192 patch
positions once (so the sum is rounded once instead of twice: differences of one float32 ulp).

Pipeline: see :mod:`methods.human2d.topdown` (box padding 1.25 + aspect fix, UDP affine crop, flip test
without heatmap shift, DARK-UDP decoding with an 11x11 blur, box x keypoint rescoring, OKS-NMS 0.9).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from bench.errors import InputError
from bench.registry import register_method
from bench.types import Prediction, Sample
from methods.base import PoseMethod
from methods.human2d.topdown import (
    TopDownConfig,
    batch_instances,
    check_and_load,
    decode_udp_heatmaps,
    flip_back_heatmaps,
    flip_index,
    load_state_dict,
    prepare_crops,
)


@dataclass(frozen=True)
class ViTArch:
    embed_dim: int
    depth: int
    num_heads: int
    drop_path_rate: float
    mlp_ratio: float = 4.0


#: The official configs' backbones (ViTPose_{small,base,large,huge}_coco_256x192.py).
ARCHS: dict[str, ViTArch] = {
    "s": ViTArch(384, 12, 12, 0.1),
    "b": ViTArch(768, 12, 12, 0.3),
    "l": ViTArch(1024, 24, 16, 0.5),
    "h": ViTArch(1280, 32, 16, 0.55),
}
IMG_SIZE = (256, 192)     # (h, w) of the crop
NUM_KEYPOINTS = 17


def vit_backbone(arch: ViTArch) -> VisionTransformer:
    """timm's ViT with ViTPose's patch embedding (padding 2), no class token, final norm, no pooling/head."""
    vit = VisionTransformer(
        img_size=IMG_SIZE, patch_size=16, in_chans=3, num_classes=0, global_pool="", class_token=False,
        embed_dim=arch.embed_dim, depth=arch.depth, num_heads=arch.num_heads, mlp_ratio=arch.mlp_ratio,
        qkv_bias=True, drop_path_rate=arch.drop_path_rate,
    )
    vit.patch_embed.proj = nn.Conv2d(3, arch.embed_dim, kernel_size=16, stride=16, padding=2)
    return vit


class ClassicDecoder(nn.Module):
    """mmpose ``TopdownHeatmapSimpleHead`` with two 4x4 deconvolutions (keys ``deconv_layers.{0,1,3,4}``)."""

    def __init__(self, in_channels: int, out_channels: int = NUM_KEYPOINTS, filters: int = 256):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for _ in range(2):
            layers += [nn.ConvTranspose2d(c, filters, 4, stride=2, padding=1, output_padding=0, bias=False),
                       nn.BatchNorm2d(filters), nn.ReLU(inplace=True)]
            c = filters
        self.deconv_layers = nn.Sequential(*layers)
        self.final_layer = nn.Conv2d(filters, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.final_layer(self.deconv_layers(x))


class SimpleDecoder(nn.Module):
    """ViTPose's simple decoder: ReLU, bilinear x4 (``align_corners=False``), 3x3 conv."""

    def __init__(self, in_channels: int, out_channels: int = NUM_KEYPOINTS):
        super().__init__()
        self.final_layer = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(F.relu(x), scale_factor=4, mode="bilinear", align_corners=False)
        return self.final_layer(x)


class ViTPoseNet(nn.Module):
    """Crop (B, 3, 256, 192) -> heatmaps (B, 17, 64, 48)."""

    def __init__(self, arch: str = "b", decoder: str = "classic"):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown ViTPose arch {arch!r}; one of {sorted(ARCHS)}")
        a = ARCHS[arch]
        self.arch, self.decoder = arch, decoder
        self.backbone = vit_backbone(a)
        if decoder == "classic":
            self.head: nn.Module = ClassicDecoder(a.embed_dim)
        elif decoder == "simple":
            self.head = SimpleDecoder(a.embed_dim)
        else:
            raise ValueError(f"unknown decoder {decoder!r}; classic or simple")

    def features(self, x: Tensor) -> Tensor:
        B = x.shape[0]
        t = self.backbone.forward_features(x)                    # (B, 192, C), final norm applied
        hp, wp = self.backbone.patch_embed.grid_size
        return t.transpose(1, 2).reshape(B, -1, hp, wp)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


# ----------------------------------------------------------------------------------------------------------
# official checkpoints

_MMPOSE1_BLOCK = [
    (r"^backbone\.layers\.(\d+)\.ln1\.", r"backbone.blocks.\1.norm1."),
    (r"^backbone\.layers\.(\d+)\.ln2\.", r"backbone.blocks.\1.norm2."),
    (r"^backbone\.layers\.(\d+)\.attn\.qkv\.", r"backbone.blocks.\1.attn.qkv."),
    (r"^backbone\.layers\.(\d+)\.attn\.proj\.", r"backbone.blocks.\1.attn.proj."),
    (r"^backbone\.layers\.(\d+)\.ffn\.layers\.0\.0\.", r"backbone.blocks.\1.mlp.fc1."),
    (r"^backbone\.layers\.(\d+)\.ffn\.layers\.1\.", r"backbone.blocks.\1.mlp.fc2."),
    (r"^backbone\.patch_embed\.projection\.", "backbone.patch_embed.proj."),
    (r"^backbone\.ln1\.", "backbone.norm."),
]


def checkpoint_layout(state_dict: dict[str, Tensor]) -> str:
    """``vitpose`` (the original repo: ``backbone.blocks``, ``keypoint_head``) or ``mmpose1``
    (mmpretrain ViT: ``backbone.layers.{i}.ln1``, ``head``)."""
    if any(k.startswith(("keypoint_head.", "backbone.blocks.", "backbone.last_norm.")) for k in state_dict):
        return "vitpose"
    if any(k.startswith(("head.", "backbone.layers.", "backbone.ln1.")) for k in state_dict):
        return "mmpose1"
    return "unknown"


def checkpoint_decoder(state_dict: dict[str, Tensor]) -> str:
    """``classic`` when the checkpoint has deconvolution layers, else ``simple``."""
    return "classic" if any(".deconv_layers." in k for k in state_dict) else "simple"


def checkpoint_filter_fn(state_dict: dict[str, Tensor], model: ViTPoseNet | None = None) -> dict[str, Tensor]:
    """Official ViTPose state dict (either layout) -> this module's keys (timm's ViT under ``backbone``).

    Original repo: ``backbone.last_norm`` -> ``backbone.norm``, ``keypoint_head.*`` -> ``head.*``, position
    embedding (1, 1+N, C) folded: ``pos[:, 1:] + pos[:, :1]`` (the official forward adds both).
    mmpose 1.x: mmpretrain names (``layers.{i}.ln1``, ``ffn.layers.0.0`` ...) -> timm names; its position
    embedding is (1, N, C); a (1, 1+N, C) one loses its class slot, as mmpretrain's ``_prepare_pos_embed`` does.
    """
    layout = checkpoint_layout(state_dict)
    n_tokens = None if model is None else model.backbone.pos_embed.shape[1]
    out: dict[str, Tensor] = {}
    for k, v in state_dict.items():
        if layout == "vitpose":
            if k == "backbone.pos_embed" and v.ndim == 3 and (n_tokens is None or v.shape[1] == n_tokens + 1):
                v = v[:, 1:] + v[:, :1]
            k = k.replace("backbone.last_norm.", "backbone.norm.", 1)
            k = re.sub(r"^keypoint_head\.", "head.", k)
        elif layout == "mmpose1":
            if k == "backbone.pos_embed" and v.ndim == 3 and n_tokens is not None and v.shape[1] == n_tokens + 1:
                v = v[:, 1:]
            for pat, rep in _MMPOSE1_BLOCK:
                k, n = re.subn(pat, rep, k)
                if n:
                    break
            k = re.sub(r"^head\.deconv_head\.", "head.", k)
        out[k] = v
    return out


# ----------------------------------------------------------------------------------------------------------
# the method


class ViTPose(PoseMethod):
    """ViTPose as a LightningModule: ``predict_step`` maps COCO Samples (image + person boxes) to one
    Prediction per image ``{"image_id", "keypoints" (D, 17, 3), "scores" (D,)}``."""

    family: ClassVar[str] = "human2d"

    def __init__(self, arch: str = "b", decoder: str = "classic", pipeline: TopDownConfig | None = None,
                 modulate_kernel: int = 11):
        super().__init__()
        self.net = ViTPoseNet(arch, decoder)
        self.pipeline = pipeline or TopDownConfig()
        self.modulate_kernel = modulate_kernel
        self.flip_idx = flip_index(NUM_KEYPOINTS)
        self.eval()

    def heatmaps(self, x: Tensor) -> Tensor:
        """Network heatmaps of normalised crops, with the flip test: ``(f(x) + flip_back(f(flip x))) / 2``;
        original and mirrored crops go through one forward."""
        if x.shape[0] == 0:
            return x.new_zeros((0, NUM_KEYPOINTS, IMG_SIZE[0] // 4, IMG_SIZE[1] // 4))
        outs = []
        step = max(1, self.pipeline.max_crops // (2 if self.pipeline.flip_test else 1))
        for xb in x.split(step):
            if not self.pipeline.flip_test:
                outs.append(self.net(xb))
                continue
            hm = self.net(torch.cat([xb, xb.flip(-1)]))
            a, b = hm.chunk(2)
            outs.append((a + flip_back_heatmaps(b, self.flip_idx, shift=False)) * 0.5)
        return torch.cat(outs)

    @torch.inference_mode()
    def predict_step(self, batch: list[Sample], batch_idx: int = 0) -> list[Prediction]:
        x, geo, counts, box_scores = prepare_crops(batch, self.pipeline, self.device)
        hm = self.heatmaps(x.to(self.dtype))
        kpts, vals = decode_udp_heatmaps(hm.float(), geo, self.modulate_kernel)
        return batch_instances(batch, counts, kpts, vals, box_scores, geo.area, self.pipeline)

    @classmethod
    def from_official_checkpoint(cls, path: Path, arch: str = "b", decoder: str = "auto", **cfg) -> ViTPose:
        """Build ViTPose-``arch`` and load an official checkpoint (original repo or mmpose 1.x layout).

        ``decoder="auto"`` takes the classic decoder when the checkpoint has deconvolution layers.
        Unknown or missing keys and shape mismatches raise :class:`~bench.errors.InputError`.
        """
        sd = load_state_dict(path)
        if checkpoint_layout(sd) == "unknown":
            raise InputError(path, f"key {next(iter(sd))!r}", "state_dict",
                             "not a ViTPose checkpoint (expected backbone.blocks.*/keypoint_head.* or "
                             "backbone.layers.*/head.* keys)")
        if decoder == "auto":
            decoder = checkpoint_decoder(sd)
        model = cls(arch=arch, decoder=decoder, **cfg)
        check_and_load(model.net, checkpoint_filter_fn(sd, model.net), path)
        return model.eval()


def pipeline_from_cfg(cfg, base: TopDownConfig | None = None) -> TopDownConfig:
    """The ``pipeline`` node of a method YAML over ``base`` (default: ViTPose's) (unknown keys are an error)."""
    node = dict(cfg.get("pipeline", {}) or {}) if cfg is not None else {}
    names = {f.name for f in fields(TopDownConfig)}
    for k in node:
        if k not in names:
            raise InputError(None, None, f"method.pipeline.{k}", f"unknown option; known: {', '.join(sorted(names))}")
    if "input_size" in node:
        node["input_size"] = tuple(node["input_size"])
    return replace(base or TopDownConfig(), **node)


@register_method("vitpose-s", "vitpose-b", "vitpose-l", "vitpose-h")
def build(cfg, dataset, weights: Path | None) -> ViTPose:
    """``method=vitpose-{s,b,l,h} weights=FILE``: ViTPose from an official checkpoint."""
    name = str(cfg.get("name", "vitpose-b"))
    arch = str(cfg.get("arch", name.rsplit("-", 1)[-1]))
    if weights is None:
        raise InputError(None, None, "weights", f"{name} runs a network: pass weights=FILE (an official ViTPose "
                         "checkpoint, original repo or mmpose 1.x layout), or predictions=FILE to score a results file")
    return ViTPose.from_official_checkpoint(
        Path(weights), arch=arch, decoder=str(cfg.get("decoder", "auto")), pipeline=pipeline_from_cfg(cfg),
        modulate_kernel=int(cfg.get("modulate_kernel", 11)),
    )
