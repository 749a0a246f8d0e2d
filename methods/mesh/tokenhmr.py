"""TokenHMR (Dwivedi et al., CVPR 2024): HMR2.0's ViT-H with a head that classifies discrete pose tokens.

Network (saidwivedi/TokenHMR ``tokenhmr/lib/models/{backbones/vit.py, heads/token_head.py,
heads/token_classifier.py, components/pose_transformer.py}``, ``tokenization/models/vanilla_pose_vqvae.py``;
config ``configs_hydra/experiment/tokenhmr_release.yaml``):

- backbone: ViTPose's ViT-H on a 256x192 crop (1280 dims, 32 blocks, 16 heads, patch embedding padding 2,
  class-token slot of the position embedding folded, final LayerNorm); the official forward takes the 256x256
  square crop and keeps columns 32:-32;
- a transformer decoder (1024 dims, 6 layers, 8 heads x 64, MLP 1024, pre-LayerNorm eps 1e-5, no q/k/v bias)
  whose single query is ``Linear(1 -> 1024)`` of a zero token plus a learned position, attending to the
  192 backbone tokens (self-attention, cross-attention, MLP per layer);
- readouts from that query: global orientation (6D), betas (10), weak-perspective camera (s, tx, ty) and the
  two hand joints (2 x 6D), each added to the SMPL mean parameters (``init_*`` buffers);
- the token classifier (an MLP-Mixer, after PCT): ``Linear(1024 -> 160 x 64)`` + LayerNorm + ReLU, 4 mixer
  blocks (token MLP 160->64->160, channel MLP 64->256->64), ``Linear(64 -> 2048)`` logits per token;
- the pose tokenizer's VQ-VAE decoder: ``softmax(logits) @ codebook`` (2048 x 256; the expectation over the
  codes, not an argmax, as the official ``dequantize_logits``), then a 1D conv stack that resamples the 160
  token features to 125, 90, 55 and 21 positions (nearest) and ends in 6D rotations of the 21 SMPL-H body
  joints;
- 6D -> rotation matrix by Gram-Schmidt with the vectors as ROWS (TokenHMR's ``rot6d_to_rotmat``, which
  changed HMR2.0's column convention to match the tokenizer's pytorch3d-style training);
- camera: ``t = (tx, ty, 2 f / (256 s + 1e-9))`` with f = 5000 for the 256-pixel crop.

Official weights come in two files: the Lightning checkpoint (``state_dict``: ``backbone.*``, ``smpl_head.*``,
plus SMPL buffers ``smpl.*`` and ``initialized`` that we drop: SMPL comes from the user's ``smpl_dir``) and
the tokenizer checkpoint ``tokenizer.pth`` (``net``: ``encoder.*``, ``decoder.*``, ``quantizer.codebook``).
The tokenizer is NOT in the Lightning checkpoint: ``TokenClassfier`` keeps it in a plain ``Proxy`` object,
outside the module tree, and loads it from ``MODEL.TOKENIZER_CHECKPOINT_PATH`` at construction.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.errors import InputError
from bench.registry import register_method
from bench.types import Prediction, Sample
from methods.base import PoseMethod
from methods.checkpoint import read_checkpoint, tensor_dict
from methods.human2d.topdown import check_and_load
from methods.human2d.vitpose import ARCHS as VIT_ARCHS
from methods.human2d.vitpose import ViTArch, vit_backbone

NUM_BODY_JOINTS = 23          # SMPL joints besides the root
NUM_TOKENIZER_JOINTS = 21     # SMPL-H body joints the tokenizer decodes (no hands)
IMAGE_SIZE = 256              # the square crop; the ViT sees its central 256x192
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class TokenHMRArch:
    """Sizes of the network (defaults: the released model, ``tokenhmr_release.yaml`` + ``tokenizer.pth``)."""

    vit: ViTArch = VIT_ARCHS["h"]
    dim: int = 1024               # decoder width (hard-coded in the official head)
    depth: int = 6
    heads: int = 8
    dim_head: int = 64
    mlp_dim: int = 1024
    token_num: int = 160          # TOKEN_NUM = 20 * 2**TOKEN_SIZE_MUL / 2**DOWN_T of the tokenizer
    token_classes: int = 2048     # TOKEN_CLASS_NUM = NB_CODE
    code_dim: int = 256           # TOKEN_CODE_DIM = CODE_DIM
    width: int = 512              # tokenizer decoder WIDTH
    res_depth: int = 2            # DEPTH
    down_t: int = 1               # DOWN_T
    token_size_div: int = 4       # TOKEN_SIZE_DIV
    dilation_rate: int = 3        # DILATION_RATE
    mixer_hidden: int = 64        # token classifier sizes (constants in the official code)
    mixer_token_inter: int = 64
    mixer_channel_inter: int = 256
    mixer_blocks: int = 4


# ----------------------------------------------------------------------------------------------------------
# geometry


def rot6d_to_rotmat(x: Tensor) -> Tensor:
    """(..., 6) -> (..., 3, 3): Gram-Schmidt on ``a1 = x[:3]``, ``a2 = x[3:]``; the orthonormal vectors are the
    ROWS of the matrix (TokenHMR's convention, the tokenizer's pytorch3d one)."""
    a1, a2 = x[..., :3], x[..., 3:6]
    b1 = F.normalize(a1, dim=-1)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack((b1, b2, b3), dim=-2)


def weak_perspective_to_translation(cam: Tensor, focal_length: float = 5000.0, image_size: int = IMAGE_SIZE) -> Tensor:
    """(s, tx, ty) of the crop -> camera translation ``(tx, ty, 2 f / (image_size s + 1e-9))`` (forward_step)."""
    return torch.stack([cam[:, 1], cam[:, 2], 2 * focal_length / (image_size * cam[:, 0] + 1e-9)], dim=-1)


def cam_crop_to_full(cam: Tensor, box_center: Tensor, box_size: Tensor, img_size: Tensor,
                     focal_length: Tensor) -> Tensor:
    """Crop camera -> translation in the full image's camera (official ``cam_crop_to_full``, used with
    ``focal_length = 5000 / 256 * max(img_w, img_h)``); ``img_size`` is (w, h)."""
    bs = box_size * cam[:, 0] + 1e-9
    tz = 2 * focal_length / bs
    tx = 2 * (box_center[:, 0] - img_size[:, 0] / 2.0) / bs + cam[:, 1]
    ty = 2 * (box_center[:, 1] - img_size[:, 1] / 2.0) / bs + cam[:, 2]
    return torch.stack([tx, ty, tz], dim=-1)


# ----------------------------------------------------------------------------------------------------------
# transformer decoder (one query attending to the backbone tokens)


class Attention(nn.Module):
    """Multi-head attention with bias-free q/k/v projections and a biased output projection."""

    def __init__(self, dim: int, heads: int, dim_head: int, context_dim: int | None = None, cross: bool = False):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.cross = heads, cross
        if cross:
            self.q = nn.Linear(dim, inner, bias=False)
            self.kv = nn.Linear(context_dim or dim, 2 * inner, bias=False)
        else:
            self.qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.proj = nn.Linear(inner, dim)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        if self.cross:
            q = self.q(x)
            k, v = self.kv(context).chunk(2, dim=-1)
        else:
            q, k, v = self.qkv(x).chunk(3, dim=-1)
        B = x.shape[0]
        q, k, v = (t.reshape(B, t.shape[1], self.heads, -1).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)            # softmax(q k^T / sqrt(d)) v
        return self.proj(out.transpose(1, 2).reshape(B, x.shape[1], -1))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class DecoderLayer(nn.Module):
    """Pre-norm self-attention, cross-attention to the image tokens, MLP; each residual."""

    def __init__(self, dim: int, heads: int, dim_head: int, mlp_dim: int, context_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.self_attn = Attention(dim, heads, dim_head)
        self.norm2 = nn.LayerNorm(dim)
        self.cross_attn = Attention(dim, heads, dim_head, context_dim, cross=True)
        self.norm3 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_dim)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        x = x + self.self_attn(self.norm1(x))
        x = x + self.cross_attn(self.norm2(x), context)
        return x + self.mlp(self.norm3(x))


class QueryDecoder(nn.Module):
    """The official ``TransformerDecoder`` with one zero input token (``TRANSFORMER_INPUT: zero``)."""

    def __init__(self, a: TokenHMRArch):
        super().__init__()
        self.token_embed = nn.Linear(1, a.dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, 1, a.dim))
        self.layers = nn.ModuleList(DecoderLayer(a.dim, a.heads, a.dim_head, a.mlp_dim, a.vit.embed_dim)
                                    for _ in range(a.depth))

    def forward(self, context: Tensor) -> Tensor:
        token = context.new_zeros(context.shape[0], 1, 1)
        x = self.token_embed(token) + self.pos_embed
        for layer in self.layers:
            x = layer(x, context)
        return x[:, 0]


# ----------------------------------------------------------------------------------------------------------
# token classifier and the tokenizer's decoder


class FCBlock(nn.Module):
    """Linear, LayerNorm, ReLU."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.fc = nn.Linear(dim, out_dim)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.norm(self.fc(x)))


class MixerBlock(nn.Module):
    """MLP-Mixer block as PCT writes it: ``y = tokenMLP(LN1(x))``, ``z = channelMLP(LN2(x + y))``, out x + y + z."""

    def __init__(self, hidden: int, channel_inter: int, tokens: int, token_inter: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden)
        self.token_mlp = Mlp(tokens, token_inter)
        self.norm2 = nn.LayerNorm(hidden)
        self.channel_mlp = Mlp(hidden, channel_inter)

    def forward(self, x: Tensor) -> Tensor:
        y = self.token_mlp(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        z = self.channel_mlp(self.norm2(x + y))
        return x + y + z


class TokenClassifier(nn.Module):
    """Decoder feature (B, dim) -> token logits (B, token_num, token_classes)."""

    def __init__(self, a: TokenHMRArch):
        super().__init__()
        self.token_num = a.token_num
        self.proj = FCBlock(a.dim, a.token_num * a.mixer_hidden)
        self.mixers = nn.ModuleList(MixerBlock(a.mixer_hidden, a.mixer_channel_inter, a.token_num, a.mixer_token_inter)
                                    for _ in range(a.mixer_blocks))
        self.out = FCBlock(a.mixer_hidden, a.mixer_hidden)
        self.logits = nn.Linear(a.mixer_hidden, a.token_classes)

    def forward(self, x: Tensor) -> Tensor:
        f = self.proj(x).reshape(x.shape[0], self.token_num, -1)
        for m in self.mixers:
            f = m(f)
        return self.logits(self.out(f))


class ResBlock1d(nn.Module):
    """Pre-activation residual block: ``x + conv1x1(relu(conv3_dilated(relu(x))))``."""

    def __init__(self, width: int, dilation: int):
        super().__init__()
        self.conv1 = nn.Conv1d(width, width, 3, 1, dilation, dilation)
        self.conv2 = nn.Conv1d(width, width, 1, 1, 0)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class ResStack1d(nn.Module):
    """``depth`` residual blocks with dilations rate**d, largest first (``reverse_dilation``)."""

    def __init__(self, width: int, depth: int, rate: int):
        super().__init__()
        self.model = nn.Sequential(*[ResBlock1d(width, rate ** d) for d in range(depth)][::-1])

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


def decoder_lengths(token_num: int, token_size_div: int) -> list[int]:
    """Sequence lengths the decoder resamples to, coarse to fine: ``linspace(21, T, div, endpoint=False)``
    truncated to int, reversed (T=160, div=4: 125, 90, 55, 21)."""
    return [int(n) for n in np.linspace(NUM_TOKENIZER_JOINTS, token_num, token_size_div, endpoint=False,
                                        dtype=int)[::-1]]


class PoseTokenDecoder(nn.Module):
    """The tokenizer's VQ-VAE decoder: token probabilities (B, T, K) -> 6D body rotations (B, 21, 6).

    ``decoder`` keeps the official ``nn.Sequential`` indices (conv, ReLU, [nearest resample, conv, ReLU] per
    length, [residual stack, conv] per DOWN_T, conv to 6) so tokenizer checkpoints map one to one.
    """

    def __init__(self, a: TokenHMRArch):
        super().__init__()
        self.register_buffer("codebook", torch.zeros(a.token_classes, a.code_dim))
        layers: list[nn.Module] = [nn.Conv1d(a.code_dim, a.width, 3, 1, 1), nn.ReLU()]
        for n in decoder_lengths(a.token_num, a.token_size_div):
            layers += [nn.Upsample(size=n, mode="nearest"), nn.Conv1d(a.width, a.width, 3, 1, 1), nn.ReLU()]
        for _ in range(a.down_t):
            layers.append(nn.Sequential(ResStack1d(a.width, a.res_depth, a.dilation_rate),
                                        nn.Conv1d(a.width, a.width, 3, 1, 1)))
        layers.append(nn.Conv1d(a.width, 6, 3, 1, 1))
        self.decoder = nn.Sequential(*layers)

    def features(self, probs: Tensor) -> Tensor:
        """Expected code vector of each token: ``probs @ codebook`` (B, T, code_dim); a one-hot row picks a code."""
        return probs @ self.codebook

    def forward(self, probs: Tensor) -> Tensor:
        return self.decoder(self.features(probs).transpose(1, 2)).transpose(1, 2)


# ----------------------------------------------------------------------------------------------------------
# the network


@dataclass
class SMPLOutput:
    """Per crop: SMPL rotations (rows-orthonormal matrices), shape, crop camera, token probabilities."""

    global_orient: Tensor     # (B, 3, 3)
    body_pose: Tensor         # (B, 23, 3, 3)
    betas: Tensor             # (B, 10)
    cam: Tensor               # (B, 3) weak perspective (s, tx, ty) of the 256-pixel crop
    cam_t: Tensor             # (B, 3) translation for f = 5000 on the crop
    token_probs: Tensor       # (B, token_num, token_classes)


class SMPLTokenHead(nn.Module):
    """Backbone feature map (B, C, 16, 12) -> SMPL parameters (one pass: ``IEF_ITERS`` = 1)."""

    def __init__(self, a: TokenHMRArch):
        super().__init__()
        self.decoder = QueryDecoder(a)
        self.dec_global_orient = nn.Linear(a.dim, 6)
        self.dec_betas = nn.Linear(a.dim, 10)
        self.dec_cam = nn.Linear(a.dim, 3)
        self.dec_hands = nn.Linear(a.dim, 12)
        self.classifier = TokenClassifier(a)
        self.tokenizer = PoseTokenDecoder(a)
        self.register_buffer("init_pose", torch.zeros(1, 6 * (NUM_BODY_JOINTS + 1)))   # SMPL mean, 6D
        self.register_buffer("init_betas", torch.zeros(1, 10))
        self.register_buffer("init_cam", torch.zeros(1, 3))

    def forward(self, feats: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """-> rotations (B, 24, 3, 3), betas (B, 10), cam (B, 3), token probabilities."""
        B = feats.shape[0]
        q = self.decoder(feats.flatten(2).transpose(1, 2))
        probs = self.classifier(q).softmax(-1)
        body6d = self.tokenizer(probs).reshape(B, -1)
        pose6d = torch.cat([self.dec_global_orient(q), body6d, self.dec_hands(q)], -1) + self.init_pose
        rot = rot6d_to_rotmat(pose6d.reshape(B, NUM_BODY_JOINTS + 1, 6))
        return rot, self.dec_betas(q) + self.init_betas, self.dec_cam(q) + self.init_cam, probs


class TokenHMRNet(nn.Module):
    """Normalised crop (B, 3, 256, 256) (or its central (B, 3, 256, 192)) -> :class:`SMPLOutput`."""

    def __init__(self, arch: TokenHMRArch | None = None, focal_length: float = 5000.0):
        super().__init__()
        self.arch = arch or TokenHMRArch()
        self.focal_length = focal_length
        self.backbone = vit_backbone(self.arch.vit)
        self.head = SMPLTokenHead(self.arch)

    def features(self, x: Tensor) -> Tensor:
        if x.shape[-1] == IMAGE_SIZE:
            x = x[..., 32:-32]                                   # the official ViT forward's central crop
        if tuple(x.shape[-2:]) != (256, 192):
            raise ValueError(f"expected crops of 256x256 or 256x192, got {tuple(x.shape[-2:])}")
        t = self.backbone.forward_features(x)                    # (B, 192, C), final norm applied
        hp, wp = self.backbone.patch_embed.grid_size
        return t.transpose(1, 2).reshape(x.shape[0], -1, hp, wp)

    def forward(self, x: Tensor) -> SMPLOutput:
        rot, betas, cam, probs = self.head(self.features(x))
        return SMPLOutput(rot[:, 0], rot[:, 1:], betas, cam,
                          weak_perspective_to_translation(cam, self.focal_length), probs)


# ----------------------------------------------------------------------------------------------------------
# official checkpoints

#: Lightning-checkpoint keys that are not the network: SMPL buffers (from smpl_dir instead), the ActNorm flag,
#: a discriminator of adversarial training runs.
DROPPED_PREFIXES = ("smpl.", "initialized", "discriminator.")

_HEAD_RULES = [
    (r"^transformer\.to_token_embedding\.", "decoder.token_embed."),
    (r"^transformer\.pos_embedding$", "decoder.pos_embed"),
    (r"^transformer\.transformer\.layers\.(\d+)\.0\.norm\.", r"decoder.layers.\1.norm1."),
    (r"^transformer\.transformer\.layers\.(\d+)\.0\.fn\.to_qkv\.", r"decoder.layers.\1.self_attn.qkv."),
    (r"^transformer\.transformer\.layers\.(\d+)\.0\.fn\.to_out\.0\.", r"decoder.layers.\1.self_attn.proj."),
    (r"^transformer\.transformer\.layers\.(\d+)\.1\.norm\.", r"decoder.layers.\1.norm2."),
    (r"^transformer\.transformer\.layers\.(\d+)\.1\.fn\.to_q\.", r"decoder.layers.\1.cross_attn.q."),
    (r"^transformer\.transformer\.layers\.(\d+)\.1\.fn\.to_kv\.", r"decoder.layers.\1.cross_attn.kv."),
    (r"^transformer\.transformer\.layers\.(\d+)\.1\.fn\.to_out\.0\.", r"decoder.layers.\1.cross_attn.proj."),
    (r"^transformer\.transformer\.layers\.(\d+)\.2\.norm\.", r"decoder.layers.\1.norm3."),
    (r"^transformer\.transformer\.layers\.(\d+)\.2\.fn\.net\.0\.", r"decoder.layers.\1.mlp.fc1."),
    (r"^transformer\.transformer\.layers\.(\d+)\.2\.fn\.net\.3\.", r"decoder.layers.\1.mlp.fc2."),
    (r"^decpose_grot\.", "dec_global_orient."),
    (r"^decshape\.", "dec_betas."),
    (r"^deccam\.", "dec_cam."),
    (r"^decpose_hands\.", "dec_hands."),
    (r"^decpose\.mixer_trans\.ff\.0\.", "classifier.proj.fc."),
    (r"^decpose\.mixer_trans\.ff\.1\.", "classifier.proj.norm."),
    (r"^decpose\.mixer_head\.(\d+)\.layernorm1\.", r"classifier.mixers.\1.norm1."),
    (r"^decpose\.mixer_head\.(\d+)\.layernorm2\.", r"classifier.mixers.\1.norm2."),
    (r"^decpose\.mixer_head\.(\d+)\.MLP_token\.ff\.0\.", r"classifier.mixers.\1.token_mlp.fc1."),
    (r"^decpose\.mixer_head\.(\d+)\.MLP_token\.ff\.3\.", r"classifier.mixers.\1.token_mlp.fc2."),
    (r"^decpose\.mixer_head\.(\d+)\.MLP_channel\.ff\.0\.", r"classifier.mixers.\1.channel_mlp.fc1."),
    (r"^decpose\.mixer_head\.(\d+)\.MLP_channel\.ff\.3\.", r"classifier.mixers.\1.channel_mlp.fc2."),
    (r"^decpose\.mixer_norm_layer\.ff\.0\.", "classifier.out.fc."),
    (r"^decpose\.mixer_norm_layer\.ff\.1\.", "classifier.out.norm."),
    (r"^decpose\.class_pred_layer\.", "classifier.logits."),
    (r"^init_body_pose$", "init_pose"),
]


def _rename_head(k: str) -> str:
    for pat, rep in _HEAD_RULES:
        new, n = re.subn(pat, rep, k)
        if n:
            return new
    return k


def checkpoint_filter_fn(state_dict: dict[str, Tensor], tokenizer: dict[str, Tensor] | None = None,
                         model: TokenHMRNet | None = None) -> dict[str, Tensor]:
    """Official TokenHMR state dict (+ the tokenizer's ``net``) -> this module's keys.

    Backbone: ``last_norm`` -> ``norm``; the (1, 1+N, C) position embedding folded to
    ``pos[:, 1:] + pos[:, :1]`` (the official forward adds both). Head: ``smpl_head.*`` renamed (see
    ``_HEAD_RULES``). Tokenizer: ``decoder.decoder.*`` -> ``head.tokenizer.decoder.*``, ``quantizer.codebook`` ->
    ``head.tokenizer.codebook``; its encoder (training only) is dropped. ``smpl.*``/``initialized`` are dropped.
    A key that fits none of this is passed through unchanged, so the strict load names it.
    """
    n_tokens = None if model is None else model.backbone.pos_embed.shape[1]
    out: dict[str, Tensor] = {}
    for k, v in state_dict.items():
        if k.startswith(DROPPED_PREFIXES):
            continue
        if k.startswith("backbone."):
            if k == "backbone.pos_embed" and v.ndim == 3 and (n_tokens is None or v.shape[1] == n_tokens + 1):
                v = v[:, 1:] + v[:, :1]
            k = k.replace("backbone.last_norm.", "backbone.norm.", 1)
        elif k.startswith("smpl_head."):
            k = "head." + _rename_head(k[len("smpl_head."):])
        out[k] = v
    for k, v in (tokenizer or {}).items():
        if k.startswith("encoder."):
            continue
        if k.startswith("decoder.decoder."):
            out["head.tokenizer." + k[len("decoder."):]] = v
        elif k == "quantizer.codebook":
            out["head.tokenizer.codebook"] = v
        else:
            out["tokenizer." + k] = v                            # unknown: reported by the strict load
    return out


def load_checkpoint(path: str | Path, what: str = "weights") -> dict:
    """An official file read without running anything from it (methods/checkpoint.py); Lightning's
    ``hyper_parameters`` and the tokenizer's ``hparams`` name classes that get inert stand-ins."""
    ckpt = read_checkpoint(path, what)
    if not isinstance(ckpt, dict):
        raise InputError(path, None, what, f"expected a dict, found {type(ckpt).__name__}")
    return ckpt


def _tensors(path: Path, d, wrapper: str, what: str) -> dict[str, Tensor]:
    sd = d.get(wrapper, d) if isinstance(d.get(wrapper), dict) else d
    if not sd:
        raise InputError(path, None, what, f"expected a state dict of tensors (or {{'{wrapper}': ...}})")
    return tensor_dict(path, sd, wrapper)


def load_official(net: TokenHMRNet, weights: str | Path, tokenizer: str | Path | None = None) -> None:
    """Load the Lightning checkpoint ``weights`` and the tokenizer checkpoint (default: ``tokenizer.pth``
    beside ``weights``, the official ``data/checkpoints`` layout) into ``net``, strictly."""
    weights = Path(weights)
    sd = _tensors(weights, load_checkpoint(weights), "state_dict", "weights")
    if not any(k.startswith("smpl_head.") for k in sd):
        raise InputError(weights, f"key {next(iter(sd))!r}", "state_dict",
                         "not a TokenHMR checkpoint (expected backbone.* and smpl_head.* keys)")
    tok_path = Path(tokenizer) if tokenizer is not None else weights.with_name("tokenizer.pth")
    if not tok_path.is_file():
        raise InputError(tok_path, None, "tokenizer", "the pose tokenizer checkpoint is missing (TokenHMR's "
                         "data/checkpoints/tokenizer.pth; pass method.tokenizer=FILE)")
    tok = _tensors(tok_path, load_checkpoint(tok_path, "tokenizer"), "net", "tokenizer")
    check_and_load(net, checkpoint_filter_fn(sd, tok, net), weights)


# ----------------------------------------------------------------------------------------------------------
# the method


def normalize_crops(crops: Tensor) -> Tensor:
    """RGB 0..255 crops -> ``(x - 255 mean) / (255 std)`` (HMR2.0's ``ViTDetDataset``)."""
    mean = 255.0 * torch.tensor(IMAGE_MEAN, dtype=torch.float32, device=crops.device).view(1, 3, 1, 1)
    std = 255.0 * torch.tensor(IMAGE_STD, dtype=torch.float32, device=crops.device).view(1, 3, 1, 1)
    return (crops.float() - mean) / std


def smpl_forward(smpl, out: SMPLOutput):
    """smplx SMPL output (``vertices`` (B, 6890, 3), ``joints``) of the predicted rotations and betas, at the
    origin (``pose2rot=False``, zero translation), in the model's dtype."""
    B, dtype = out.betas.shape[0], smpl.v_template.dtype
    # (B, 1, 3, 3) and (B, 23, 3, 3): smplx concatenates them into the (B, 24, 3, 3) that lbs expects
    return smpl(global_orient=out.global_orient.reshape(B, 1, 3, 3).to(dtype),
                body_pose=out.body_pose.reshape(B, NUM_BODY_JOINTS, 3, 3).to(dtype),
                betas=out.betas.to(dtype), transl=out.betas.new_zeros(B, 3, dtype=dtype), pose2rot=False)


class TokenHMR(PoseMethod):
    """TokenHMR as a LightningModule. ``predict_step`` takes Samples whose ``inputs["crop"]`` is the official
    RGB 0..255 square crop (3, 256, 256) (or its central 256x192) and returns per sample
    ``{"vertices" (6890, 3) metres, camera frame, "joints" (24, 3), "global_orient" (3, 3), "body_pose"
    (23, 3, 3), "betas" (10,), "cam_t" (3,)}``. The camera translation is the crop camera's, or the full
    image's when ``inputs`` has ``box_center`` (2,), ``box_size`` and ``img_size`` (w, h)
    (``cam_crop_to_full``). Vertices need ``smpl_dir`` (neutral SMPL)."""

    family: ClassVar[str] = "mesh"

    def __init__(self, arch: TokenHMRArch | None = None, smpl_dir: str | Path | None = None,
                 focal_length: float = 5000.0, max_crops: int = 64):
        super().__init__()
        self.net = TokenHMRNet(arch, focal_length)
        self.smpl_dir = smpl_dir
        self.max_crops = max_crops
        self._smpl: list = []                 # a list: the SMPL model stays out of the state dict
        self.eval()

    @property
    def smpl(self):
        """The neutral SMPL model (loaded on first use; not part of the state dict)."""
        if not self._smpl:
            if self.smpl_dir is None:
                raise InputError(None, None, "smpl_dir", "TokenHMR needs the SMPL model for vertices: pass smpl_dir=DIR "
                                 "(holding smpl/SMPL_NEUTRAL.pkl)")
            from bench.formats.smpl import load_smpl
            self._smpl.append(load_smpl(self.smpl_dir, "neutral"))
        return self._smpl[0].to(self.device)

    @torch.inference_mode()
    def predict_step(self, batch: list[Sample], batch_idx: int = 0) -> list[Prediction]:
        if not batch:
            return []
        crops = torch.stack([torch.as_tensor(s.inputs["crop"]) for s in batch]).to(self.device)
        outs = [self.net(normalize_crops(c).to(self.dtype)) for c in crops.split(self.max_crops)]
        out = SMPLOutput(*(torch.cat([getattr(o, f) for o in outs]) for f in
                           ("global_orient", "body_pose", "betas", "cam", "cam_t", "token_probs")))
        transl = out.cam_t.double()
        full = [i for i, s in enumerate(batch) if {"box_center", "box_size", "img_size"} <= set(s.inputs)]
        if full:
            cam = out.cam[full].double()
            bc = torch.stack([torch.as_tensor(batch[i].inputs["box_center"], dtype=torch.float64) for i in full])
            bs = torch.stack([torch.as_tensor(batch[i].inputs["box_size"], dtype=torch.float64) for i in full])
            isz = torch.stack([torch.as_tensor(batch[i].inputs["img_size"], dtype=torch.float64) for i in full])
            f = self.net.focal_length / IMAGE_SIZE * isz.max(dim=1).values
            transl[full] = cam_crop_to_full(cam, bc.to(cam.device), bs.to(cam.device), isz.to(cam.device),
                                            f.to(cam.device))
        res = smpl_forward(self.smpl, out)
        verts = res.vertices.double() + transl[:, None]
        joints = res.joints[:, :NUM_BODY_JOINTS + 1].double() + transl[:, None]
        return [Prediction(s.sample_id, {
            "vertices": verts[i].cpu(), "joints": joints[i].cpu(),
            "global_orient": out.global_orient[i].double().cpu(), "body_pose": out.body_pose[i].double().cpu(),
            "betas": out.betas[i].double().cpu(), "cam_t": transl[i].cpu(),
        }) for i, s in enumerate(batch)]

    @classmethod
    def from_official_checkpoint(cls, path: Path, tokenizer: str | Path | None = None,
                                 arch: TokenHMRArch | None = None, **cfg) -> TokenHMR:
        """Build TokenHMR and load the official Lightning checkpoint plus the tokenizer checkpoint."""
        model = cls(arch=arch, **cfg)
        load_official(model.net, path, tokenizer)
        return model.eval()


@register_method("tokenhmr")
def build(cfg, dataset, weights: Path | None) -> TokenHMR:
    """``method=tokenhmr weights=tokenhmr_model_latest.ckpt [method.tokenizer=tokenizer.pth] [smpl_dir=DIR]``."""
    if weights is None:
        raise InputError(None, None, "weights", "tokenhmr runs a network: pass weights=FILE (the official Lightning "
                         "checkpoint, with tokenizer.pth beside it or method.tokenizer=FILE), or predictions=FILE")
    smpl_dir = cfg.get("smpl_dir", None) or getattr(dataset, "smpl_dir", None)
    return TokenHMR.from_official_checkpoint(
        Path(weights), tokenizer=cfg.get("tokenizer", None), smpl_dir=smpl_dir,
        focal_length=float(cfg.get("focal_length", 5000.0)), max_crops=int(cfg.get("max_crops", 64)),
    )
