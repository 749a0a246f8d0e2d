"""Pose Anything (Hirschorn & Avidan, "Pose Anything: A Graph-Based Approach for Category-Agnostic Pose
Estimation"): GraphCape on timm's SwinV2, with the official test pipeline, for MP-100 episodes.

Network (orhir/PoseAnything @ 7f1253f8: ``models/models/detectors/pam.py``, ``keypoint_heads/head.py``,
``utils/encoder_decoder.py``, ``utils/positional_encoding.py``; configs ``configs/1shots/graph_split*.py``
= SwinV2-T, ``configs/1shot-swin/graph_split*.py`` = SwinV2-S; the 5-shot configs build the same model; the
``base_split*`` configs are the same without the graph):

- backbone: SwinV2 (embed 96, heads 3/6/12/24, window 16, 256x256 input, depths 2/2/6/2 or 2/2/18/2), final
  LayerNorm, the (B, 768, 8, 8) map upsampled x2 bilinearly (``align_corners=False``) -> (B, 768, 16, 16);
- support keypoint tokens: each support's feature map resized to the 64x64 target heatmaps (bilinear), pooled
  with the normalised Gaussian target of each keypoint (``t / (sum t + 1e-8)``), averaged over shots, zeroed for
  keypoints not valid in every support, projected to d = 256 (``query_proj``);
- encoder: 3 post-norm layers of joint self-attention over [16x16 image tokens; K keypoint tokens]; the sine
  position embedding (zero for keypoint tokens) is added to the input of every layer (value included);
- proposal generator: dot-product similarity ``<W_q f_img, (1 + tanh(MLP(W_s f_kp))) W_s f_kp>`` -> per-keypoint
  map; the softmax restricted to the 3x3 neighbourhood of the arg-max gives the initial point (a soft-argmax);
- decoder: 3 layers of keypoint self-attention, cross-attention with position embeddings *concatenated* (2d
  wide, value d), and a GCN feed-forward (``graph_decoder='pre'``): ``Conv1d(d, 2 x 768)`` split into a self
  kernel (identity over valid keypoints) and a neighbour kernel (the row-normalised symmetric skeleton adjacency);
  each layer refines the points in logit space, ``p <- sigmoid(logit(p) + MLP(f))``;
- output: ``sigmoid(kpt_branch[-1](norm(f_L)) + logit(p_{L-1}))`` in [0, 1] of the 256x256 crop.

Pipeline (``TestPoseDataset`` + ``TopDownAffineFewShot`` + ``TopDownGenerateTargetFewShot(sigma=1)`` + ``decode``):
each support and the query is cropped from its GT box (mmpose 0.x ``_xywh2cs``: aspect 1, padding 1.25; the
classic similarity warp; ImageNet normalisation), support keypoints become 64x64 MSRA Gaussians (sigma 1, integer
centres, weight 0 outside), keypoints are padded to ``max_kpt_num`` = 100 tokens like the official data loader,
and the output goes back to the image with ``transform_preds`` (non-UDP), stored as float32 like ``all_preds``.
The official test runs one query per batch (``samples_per_gpu=1``; its ``decode`` loop back-transforms only the
last index of the previous loop, right only at batch size 1); here every query is decoded, so any batch size
gives the same keypoints. Queries of one episode share its supports, which go through the backbone once.
"""
from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from timm.models.swin_transformer_v2 import SwinTransformerV2
from torch import Tensor, nn

from bench.errors import InputError
from bench.registry import register_method
from bench.types import Prediction, Sample
from methods.base import PoseMethod
from methods.human2d.topdown import (
    affine_crop,
    boxes_to_center_scale,
    check_and_load,
    load_image,
    load_state_dict,
    normalize,
    warp_matrices,
)


@dataclass(frozen=True)
class GraphCapeConfig:
    """The official model config (``encoder_config`` + ``keypoint_head``); defaults: SwinV2-T."""

    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: int = 16
    img_size: int = 256
    d_model: int = 256
    nhead: int = 8
    num_encoder_layers: int = 3
    num_decoder_layers: int = 3
    dim_feedforward: int = 768
    similarity_proj_dim: int = 256
    dynamic_proj_dim: int = 128
    graph_decoder: str | None = "pre"     # None | pre | post | both (anything else): which FFN layers are GCNs
    heatmap_size: int = 64                # support target heatmaps (data_cfg.heatmap_size)
    sigma: float = 1.0                    # TopDownGenerateTargetFewShot(sigma=1)

    @property
    def num_features(self) -> int:
        return self.embed_dim * 2 ** (len(self.depths) - 1)


#: The official configs: backbone SwinV2-T (configs/1shots|5shots) or SwinV2-S (configs/1shot-swin|5shot-swin);
#: ``graph_split*`` = GraphCape (GCN decoder), ``base_split*`` = the same transformer without the graph.
ARCHS: dict[str, GraphCapeConfig] = {
    "swinv2-tiny": GraphCapeConfig(),
    "swinv2-small": GraphCapeConfig(depths=(2, 2, 18, 2)),
    "swinv2-tiny-base": GraphCapeConfig(graph_decoder=None),
    "swinv2-small-base": GraphCapeConfig(depths=(2, 2, 18, 2), graph_decoder=None),
}


def inverse_sigmoid(x: Tensor, eps: float = 1e-3) -> Tensor:
    """The official clamped logit: ``log(max(x, eps) / max(1 - x, eps))`` on ``x`` clipped to [0, 1]."""
    x = x.clamp(0, 1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


# ----------------------------------------------------------------------------------------------------------
# position embeddings (DETR sine embedding; no parameters)


def _sine_dim_t(num_feats: int, temperature: float, device) -> Tensor:
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=device)
    return temperature ** (2 * (dim_t // 2) / num_feats)


def _interleave_sin_cos(p: Tensor) -> Tensor:
    """``stack(sin(p[..., 0::2]), cos(p[..., 1::2]))`` flattened: sin/cos pairs side by side."""
    return torch.stack((p[..., 0::2].sin(), p[..., 1::2].cos()), dim=-1).flatten(-2)


def sine_embedding_grid(h: int, w: int, num_feats: int, device, temperature: float = 10000.0,
                        scale: float = 2 * math.pi, eps: float = 1e-6) -> Tensor:
    """Normalised sine embedding of an unmasked ``h x w`` map -> (2 num_feats, h, w) (y half first)."""
    y = torch.arange(1, h + 1, dtype=torch.float32, device=device)[:, None].expand(h, w)
    x = torch.arange(1, w + 1, dtype=torch.float32, device=device)[None, :].expand(h, w)
    y = y / (y[-1:, :] + eps) * scale
    x = x / (x[:, -1:] + eps) * scale
    dim_t = _sine_dim_t(num_feats, temperature, device)
    pos_y = _interleave_sin_cos(y[..., None] / dim_t)
    pos_x = _interleave_sin_cos(x[..., None] / dim_t)
    return torch.cat((pos_y, pos_x), dim=-1).permute(2, 0, 1)


def sine_embedding_points(coord: Tensor, num_feats: int, temperature: float = 10000.0,
                          scale: float = 2 * math.pi) -> Tensor:
    """``forward_coordinates``: normalised points (B, K, 2) in [0, 1] -> (B, K, 2 num_feats), y half first."""
    dim_t = _sine_dim_t(num_feats, temperature, coord.device)
    pos_x = _interleave_sin_cos((coord[..., 0] * scale)[..., None] / dim_t)
    pos_y = _interleave_sin_cos((coord[..., 1] * scale)[..., None] / dim_t)
    return torch.cat((pos_y, pos_x), dim=-1)


# ----------------------------------------------------------------------------------------------------------
# skeleton graph


def skeleton_adjacency(num_pts: int, skeletons: Sequence[Sequence[Sequence[int]]], ignore: Tensor) -> Tensor:
    """The official ``adj_from_skeleton``: (B, 2, K, K) GCN kernels per sample.

    Kernel 0 is the identity over valid keypoints; kernel 1 the symmetric skeleton adjacency (an edge in either
    direction links both ways; edges are 0-based indices as in the MP-100 JSON) restricted to valid keypoints
    and row-normalised (rows without a valid neighbour are 0). ``ignore`` (B, K) is True for padded keypoints
    and keypoints not visible in every support.
    """
    B = len(skeletons)
    adj = torch.zeros(B, num_pts, num_pts, device=ignore.device)
    for b, edges in enumerate(skeletons):
        e = torch.as_tensor([list(map(int, ed)) for ed in edges], dtype=torch.long).reshape(-1, 2)
        if e.numel() and (int(e.min()) < 0 or int(e.max()) >= num_pts):
            raise InputError(None, f"sample {b}", "skeleton", f"edge index out of range 0..{num_pts - 1}")
        adj[b, e[:, 0].to(adj.device), e[:, 1].to(adj.device)] = 1.0
    adj = torch.maximum(adj, adj.transpose(1, 2))
    keep = ~ignore
    adj = adj * keep[:, :, None] * keep[:, None, :]
    adj = torch.nan_to_num(adj / adj.sum(dim=-1, keepdim=True))
    return torch.stack((torch.diag_embed(keep.to(adj.dtype)), adj), dim=1)


class GCNLayer(nn.Module):
    """Graph convolution with ``kernel_size`` adjacency kernels: one 1x1 Conv1d to ``k x out`` channels, then
    ``sum_k W_k x A_k``, ReLU. Sequence-first (K, B, C) in and out, as the decoder uses it."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 2):
        super().__init__()
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(in_features, out_features * kernel_size, kernel_size=1)

    def forward(self, x: Tensor, adj: Tensor) -> Tensor:
        x = self.conv(x.permute(1, 2, 0))                                  # (B, k*C, K)
        b, kc, v = x.shape
        x = x.view(b, self.kernel_size, kc // self.kernel_size, v)
        x = torch.einsum("bkcv,bkvw->bcw", x, adj)
        return F.relu(x).permute(2, 0, 1)


# ----------------------------------------------------------------------------------------------------------
# transformer


class EncoderLayer(nn.Module):
    """Post-norm self-attention layer; the position embedding is added to the layer input itself (so it also
    enters the value and the residual), as in the official code."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=0.0)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, x: Tensor, key_padding_mask: Tensor, pos: Tensor) -> Tensor:
        x = x + pos
        x = self.norm1(x + self.self_attn(x, x, x, key_padding_mask=key_padding_mask)[0])
        return self.norm2(x + self.linear2(F.relu(self.linear1(x))))


class Encoder(nn.Module):
    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(d_model, nhead, dim_feedforward) for _ in range(num_layers))

    def forward(self, src: Tensor, kpts: Tensor, src_pad: Tensor, kpt_pad: Tensor, pos: Tensor) -> tuple[Tensor, Tensor]:
        """src (hw, B, d) image tokens, kpts (K, B, d) -> refined (image tokens, keypoint tokens)."""
        n = src.shape[0]
        x = torch.cat((src, kpts))
        mask = torch.cat((src_pad, kpt_pad), dim=1)
        for layer in self.layers:
            x = layer(x, mask, pos)
        return x[:n], x[n:]


class MLP(nn.Module):
    """``layers.{i}`` Linear layers with GELU between them (the decoder's ``ref_point_head``)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.gelu(x)
        return x


class TokenDecodeMLP(nn.Module):
    """Keypoint offset branch: ``mlp`` = 3 x (Linear, GELU) then Linear -> 2 (keys ``mlp.{0,2,4,6}``)."""

    def __init__(self, dim: int, num_layers: int = 3, out: int = 2):
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(num_layers):
            layers += [nn.Linear(dim, dim), nn.GELU()]
        self.mlp = nn.Sequential(*layers, nn.Linear(dim, out))

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(x)


class ProposalGenerator(nn.Module):
    """Initial keypoint locations from the image/keypoint similarity map (a local soft-argmax)."""

    def __init__(self, hidden_dim: int, proj_dim: int, dynamic_proj_dim: int):
        super().__init__()
        self.support_proj = nn.Linear(hidden_dim, proj_dim)
        self.query_proj = nn.Linear(hidden_dim, proj_dim)
        self.dynamic_proj = nn.Sequential(nn.Linear(hidden_dim, dynamic_proj_dim), nn.ReLU(),
                                          nn.Linear(dynamic_proj_dim, hidden_dim))

    def forward(self, img: Tensor, kpts: Tensor, h: int, w: int) -> tuple[Tensor, Tensor]:
        """img (hw, B, d), kpts (K, B, d) -> (proposals (B, K, 2) in [0, 1] as (x, y), similarity (B, K, h, w))."""
        fq = self.query_proj(img.transpose(0, 1))                          # (B, hw, p)
        fs = self.support_proj(kpts.transpose(0, 1))                       # (B, K, p)
        fs = (torch.tanh(self.dynamic_proj(fs)) + 1) * fs
        B, K = fs.shape[:2]
        sim = torch.bmm(fq, fs.transpose(1, 2)).transpose(1, 2).reshape(B, K, h, w)
        gy, gx = torch.meshgrid(torch.linspace(0.5, h - 0.5, h, dtype=torch.float32, device=img.device),
                                torch.linspace(0.5, w - 0.5, w, dtype=torch.float32, device=img.device),
                                indexing="ij")
        grid = torch.stack((gx, gy), dim=-1).reshape(1, 1, h * w, 2)
        prob = sim.flatten(2).softmax(dim=-1)                              # (B, K, hw)
        # the 3x3 neighbourhood of the arg-max; the official code views the one-hot map as (w, h) before the
        # pooling (the same as (h, w) for square maps), so do we
        peak = F.one_hot(sim.reshape(B, K, -1).argmax(-1), h * w).reshape(B, K, w, h).to(sim.dtype)
        local = F.max_pool2d(peak, kernel_size=3, stride=1, padding=1).reshape(B, K, h * w)
        p = prob * local
        p = p / (p.sum(dim=-1, keepdim=True) + 1e-10)
        side = torch.tensor([w, h], device=img.device)
        return (p[..., None] * grid).sum(dim=2) / side, sim


class GraphDecoderLayer(nn.Module):
    """Keypoint self-attention, concatenated-position cross-attention, GCN feed-forward; post-norm."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, graph_decoder: str | None):
        super().__init__()
        self.graph_decoder = graph_decoder
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=0.0)
        self.multihead_attn = nn.MultiheadAttention(d_model * 2, nhead, dropout=0.0, vdim=d_model)
        self.choker = nn.Linear(2 * d_model, d_model)
        gcn_in = graph_decoder is not None and graph_decoder != "post"
        gcn_out = graph_decoder is not None and graph_decoder != "pre"
        self.ffn1 = GCNLayer(d_model, dim_feedforward) if gcn_in else nn.Linear(d_model, dim_feedforward)
        self.ffn2 = GCNLayer(dim_feedforward, d_model) if gcn_out else nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)

    def _ffn(self, layer: nn.Module, x: Tensor, adj: Tensor | None) -> Tensor:
        return layer(x, adj) if isinstance(layer, GCNLayer) else layer(x)

    def forward(self, kpts: Tensor, img: Tensor, kpt_pad: Tensor, img_pad: Tensor, img_pos: Tensor,
                kpt_pos: Tensor, adj: Tensor | None) -> Tensor:
        q = kpts + kpt_pos
        kpts = self.norm1(kpts + self.self_attn(q, q, kpts, key_padding_mask=kpt_pad)[0])
        cq = torch.cat((kpts, kpt_pos), dim=-1)
        ck = torch.cat((img, img_pos), dim=-1)
        t = self.multihead_attn(cq, ck, img, key_padding_mask=img_pad)[0]
        kpts = self.norm2(kpts + self.choker(t))
        t = self._ffn(self.ffn2, F.relu(self._ffn(self.ffn1, kpts, adj)), adj)
        return self.norm3(kpts + t)


class GraphDecoder(nn.Module):
    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, num_layers: int, graph_decoder: str | None):
        super().__init__()
        self.layers = nn.ModuleList(GraphDecoderLayer(d_model, nhead, dim_feedforward, graph_decoder)
                                    for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        self.ref_point_head = MLP(d_model, d_model, d_model, num_layers=2)


class EncoderDecoder(nn.Module):
    """The official ``EncoderDecoder`` transformer (keys ``encoder``, ``decoder``, ``proposal_generator``)."""

    def __init__(self, cfg: GraphCapeConfig):
        super().__init__()
        d = cfg.d_model
        self.encoder = Encoder(d, cfg.nhead, cfg.dim_feedforward, cfg.num_encoder_layers)
        self.decoder = GraphDecoder(d, cfg.nhead, cfg.dim_feedforward, cfg.num_decoder_layers, cfg.graph_decoder)
        self.proposal_generator = ProposalGenerator(d, cfg.similarity_proj_dim, cfg.dynamic_proj_dim)


class PoseHead(nn.Module):
    """Support keypoint tokens + query feature map -> keypoints (B, K, 2) in [0, 1] (official ``PoseHead``)."""

    def __init__(self, cfg: GraphCapeConfig):
        super().__init__()
        d = cfg.d_model
        self.embed_dims = d
        self.graph = cfg.graph_decoder is not None
        self.input_proj = nn.Conv2d(cfg.num_features, d, kernel_size=1)
        self.query_proj = nn.Linear(cfg.num_features, d)
        self.kpt_branch = nn.ModuleList(TokenDecodeMLP(d) for _ in range(cfg.num_decoder_layers))
        self.transformer = EncoderDecoder(cfg)

    def support_tokens(self, feat_s: Tensor, target_s: Tensor, mask_s: Tensor) -> Tensor:
        """feat_s (B, S, C, h, w), target_s (B, S, K, H, W), mask_s (B, K) -> projected tokens (B, K, d)."""
        B, S = feat_s.shape[:2]
        H, W = target_s.shape[-2:]
        f = F.interpolate(feat_s.flatten(0, 1), size=(H, W), mode="bilinear", align_corners=False)
        t = target_s.flatten(0, 1)
        t = t / (t.sum(dim=-1).sum(dim=-1)[:, :, None, None] + 1e-8)
        tok = t.flatten(2) @ f.flatten(2).transpose(1, 2)                   # (B*S, K, C)
        tok = tok.unflatten(0, (B, S)).mean(dim=1) * mask_s[..., None]
        return self.query_proj(tok)

    def forward(self, feat_q: Tensor, feat_s: Tensor, target_s: Tensor, mask_s: Tensor,
                skeletons: Sequence[Sequence[Sequence[int]]]) -> Tensor:
        x = self.input_proj(feat_q)
        B, d, h, w = x.shape
        kpt_pad = ~mask_s.to(torch.bool)                                   # True: no usable support keypoint
        kpts = self.support_tokens(feat_s, target_s, mask_s).transpose(0, 1)   # (K, B, d)
        K = kpts.shape[0]
        tr = self.transformer
        img_pos = sine_embedding_grid(h, w, d // 2, x.device).flatten(1).T[:, None].expand(h * w, B, d)
        pos = torch.cat((img_pos, img_pos.new_zeros(K, B, d)))             # keypoint tokens: no position
        img_pad = torch.zeros(B, h * w, dtype=torch.bool, device=x.device)
        img, kpts = tr.encoder(x.flatten(2).permute(2, 0, 1), kpts, img_pad, kpt_pad, pos)
        points, _ = tr.proposal_generator(img, kpts, h, w)
        # the decoder's self-attention unmasks keypoint 0 of a sample with no usable keypoint (no NaNs)
        dec_pad = kpt_pad.clone()
        dec_pad[~(~kpt_pad).any(dim=1), 0] = False
        adj = skeleton_adjacency(K, skeletons, dec_pad).to(kpts.dtype) if self.graph else None  # any dtype (.double())
        dec = tr.decoder
        prev = points
        for i, layer in enumerate(dec.layers):
            kpt_pos = dec.ref_point_head(sine_embedding_points(points, d // 2).transpose(0, 1))
            kpts = layer(kpts, img, dec_pad, img_pad, img_pos, kpt_pos, adj)
            prev = points
            # the next reference points come from the un-normalised features; the output uses the normalised ones
            points = torch.sigmoid(inverse_sigmoid(points) + self.kpt_branch[i](kpts.transpose(0, 1))).detach()
        out = self.kpt_branch[-1](dec.norm(kpts).transpose(0, 1))
        return torch.sigmoid(out + inverse_sigmoid(prev))


class GraphCape(nn.Module):
    """Query image (B, 3, 256, 256) + S supports (B, S, 3, 256, 256) with target heatmaps (B, S, K, 64, 64),
    validity (B, K) and a skeleton per sample -> query keypoints (B, K, 2) in [0, 1] of the crop."""

    def __init__(self, cfg: GraphCapeConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or GraphCapeConfig()
        self.backbone = SwinTransformerV2(
            img_size=cfg.img_size, embed_dim=cfg.embed_dim, depths=cfg.depths, num_heads=cfg.num_heads,
            window_size=cfg.window_size, num_classes=0, global_pool="", drop_path_rate=0.0,
        )
        self.keypoint_head = PoseHead(cfg)

    def features(self, x: Tensor) -> Tensor:
        """Final-stage map (B, C, h/32, w/32) after the last norm, upsampled x2 bilinearly (``upsample='bilinear'``)."""
        f = self.backbone.forward_features(x).permute(0, 3, 1, 2)          # NHWC -> NCHW, norm applied
        return F.interpolate(f, scale_factor=2, mode="bilinear", align_corners=False)

    def forward(self, img_q: Tensor, img_s: Tensor, target_s: Tensor, weight_s: Tensor,
                skeletons: Sequence[Sequence[Sequence[int]]]) -> Tensor:
        B, S = img_s.shape[:2]
        feat_s = self.features(img_s.flatten(0, 1)).unflatten(0, (B, S))
        return self.from_features(self.features(img_q), feat_s, target_s, weight_s, skeletons)

    def from_features(self, feat_q: Tensor, feat_s: Tensor, target_s: Tensor, weight_s: Tensor,
                      skeletons: Sequence[Sequence[Sequence[int]]]) -> Tensor:
        """The head on backbone features (B, C, h, w) and (B, S, C, h, w) (supports shared by queries run once)."""
        mask_s = weight_s.to(feat_q.dtype).prod(dim=1)                       # valid in every support
        return self.keypoint_head(feat_q, feat_s, target_s.to(feat_q.dtype), mask_s, skeletons)


# ----------------------------------------------------------------------------------------------------------
# official checkpoints

#: Official backbone buffers that are constants of the architecture (timm rebuilds them, non-persistent).
_BUFFERS = ("relative_position_index", "relative_coords_table", "attn_mask")


def checkpoint_filter_fn(state_dict: dict[str, Tensor], model: GraphCape | None = None) -> dict[str, Tensor]:
    """Official ``PoseAnythingModel`` state dict -> this module's keys.

    The head keeps its names (``keypoint_head.*``). The backbone (Microsoft's SwinV2 code) -> timm's SwinV2:
    the patch merging at the end of stage i becomes the downsample at the start of stage i + 1
    (``layers.{i}.downsample`` -> ``layers.{i+1}.downsample``), the constant buffers (relative position index,
    log-spaced coordinate table, shifted-window masks) are dropped (timm computes the same ones), and so is the
    ImageNet classifier ``backbone.head`` that the official model builds but never uses.
    """
    out: dict[str, Tensor] = {}
    for k, v in state_dict.items():
        k = k.removeprefix("module.")
        if k.startswith("backbone."):
            if k.rsplit(".", 1)[-1] in _BUFFERS or k.startswith("backbone.head."):
                continue
            k = re.sub(r"^backbone\.layers\.(\d+)\.downsample\.",
                       lambda m: f"backbone.layers.{int(m.group(1)) + 1}.downsample.", k)
        out[k] = v
    return out


def infer_arch(state_dict: dict[str, Tensor]) -> GraphCapeConfig:
    """The config of an official checkpoint: stage depths and widths counted from its keys."""
    depths = []
    for i in range(8):
        blocks = {int(m.group(1)) for k in state_dict
                  if (m := re.match(rf"^backbone\.layers\.{i}\.blocks\.(\d+)\.", k))}
        if not blocks:
            break
        depths.append(max(blocks) + 1)
    pe = state_dict.get("backbone.patch_embed.proj.weight")
    if not depths or pe is None:
        raise ValueError("no backbone.layers.* / backbone.patch_embed.* keys")
    heads = tuple(int(state_dict[f"backbone.layers.{i}.blocks.0.attn.logit_scale"].shape[0])
                  for i in range(len(depths)))
    d = int(state_dict["keypoint_head.input_proj.weight"].shape[0])
    ff = int(state_dict["keypoint_head.transformer.encoder.layers.0.linear1.weight"].shape[0])
    n_enc = len({k.split(".")[4] for k in state_dict if k.startswith("keypoint_head.transformer.encoder.layers.")})
    n_dec = len({k.split(".")[4] for k in state_dict if k.startswith("keypoint_head.transformer.decoder.layers.")})
    sim = int(state_dict["keypoint_head.transformer.proposal_generator.support_proj.weight"].shape[0])
    dyn = int(state_dict["keypoint_head.transformer.proposal_generator.dynamic_proj.0.weight"].shape[0])
    # GCN feed-forward layers have a ``conv``: graph configs use ``pre``, the base configs plain Linear layers
    gcn1 = "keypoint_head.transformer.decoder.layers.0.ffn1.conv.weight" in state_dict
    gcn2 = "keypoint_head.transformer.decoder.layers.0.ffn2.conv.weight" in state_dict
    graph = {(True, False): "pre", (False, True): "post", (True, True): "both", (False, False): None}[(gcn1, gcn2)]
    return replace(GraphCapeConfig(), embed_dim=int(pe.shape[0]), depths=tuple(depths), num_heads=heads,
                   d_model=d, dim_feedforward=ff, num_encoder_layers=n_enc, num_decoder_layers=n_dec,
                   similarity_proj_dim=sim, dynamic_proj_dim=dyn, graph_decoder=graph)


# ----------------------------------------------------------------------------------------------------------
# the official test pipeline


def msra_heatmaps(kpts: Tensor, valid: Tensor, image_size: int = 256, heatmap_size: int = 64,
                  sigma: float = 1.0) -> tuple[Tensor, Tensor]:
    """``TopDownGenerateTargetFewShot`` (MSRA, unbiased_encoding False): crop keypoints (..., K, 2) ->
    Gaussian targets (..., K, H, W) float32 and weights (..., K) float32.

    The centre is ``int(x / stride + 0.5)`` (truncation toward zero, as Python's ``int``), the Gaussian is cut at
    3 sigma (a (6 sigma + 1)^2 patch); the weight is 0 for invisible keypoints and patches wholly outside.
    """
    stride = image_size / heatmap_size
    tmp = sigma * 3
    mu = torch.trunc(kpts.to(torch.float64) / stride + 0.5)                # (..., K, 2)
    ul = torch.trunc(mu - tmp)
    br = torch.trunc(mu + tmp + 1)
    inside = (ul < heatmap_size).all(-1) & (br >= 0).all(-1)
    weight = (valid & inside).to(torch.float32)
    r = torch.arange(heatmap_size, dtype=torch.float64, device=kpts.device)
    dx = r - mu[..., 0:1]                                                  # (..., K, W)
    dy = r - mu[..., 1:2]                                                  # (..., K, H)
    in_x = (dx.abs() <= tmp)
    in_y = (dy.abs() <= tmp)
    g = torch.exp(-(dx[..., None, :] ** 2 + dy[..., :, None] ** 2).to(torch.float32) / (2 * sigma ** 2))
    g = g * (in_y[..., :, None] & in_x[..., None, :]) * (weight > 0.5)[..., None, None]
    return g, weight


def crop_to_image(xy: Tensor, center: Tensor, scale: Tensor, size: int = 256) -> Tensor:
    """``PoseHead.decode``: mmpose 0.x ``transform_preds`` (non-UDP), ``x * (s / size) + c - s / 2`` with ``s`` the
    float32 box size (``scale * 200``), in float64 as numpy promotes it, then stored as float32 (``all_preds``),
    which is what the official results file holds. Returned as float64 holding those float32 values."""
    s = scale.to(torch.float32)
    k = (s / size).to(torch.float64)
    half = (s * 0.5).to(torch.float64)
    out = xy.to(torch.float64) * k[:, None] + center.to(torch.float64)[:, None] - half[:, None]
    return out.to(torch.float32).to(torch.float64)


@dataclass
class Support:
    """The support side of an episode, prepared once and shared by its queries."""

    key: tuple
    images: Tensor       # (S, 3, 256, 256) normalised crops
    targets: Tensor      # (S, K, 64, 64)
    weights: Tensor      # (S, K)
    skeleton: list[list[int]]

    @property
    def num_keypoints(self) -> int:
        return int(self.targets.shape[1])


@dataclass
class Episode:
    """One batch item: a query crop and its prepared supports."""

    query: Tensor        # (3, 256, 256) normalised
    support: Support
    center: Tensor       # (2,) float32 of the query crop
    scale: Tensor        # (2,) float32 (pixels)


class PoseAnything(PoseMethod):
    """Pose Anything on MP-100 episodes: ``predict_step`` maps each Sample (one query + its episode's supports)
    to ``Prediction(sample_id, {"keypoints": (K, 2) float64 image pixels})``."""

    family: ClassVar[str] = "cape"

    def __init__(self, cfg: GraphCapeConfig | None = None, max_kpt_num: int | None = 100):
        super().__init__()
        self.net = GraphCape(cfg)
        self.max_kpt_num = max_kpt_num
        self._images: dict[Path, Tensor] = {}
        self._support: Support | None = None          # the last episode's supports (queries come in order)
        self.eval()

    # --- preparation -------------------------------------------------------------------------------------
    def _image(self, path: Path) -> Tensor:
        if path not in self._images:
            if len(self._images) > 64:
                self._images.clear()
            self._images[path] = load_image(path)
        return self._images[path]

    def crops(self, images: Sequence[Tensor], boxes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """GT boxes (P, 4) xywh of ``images`` -> 0..255 crops (P, 3, s, s), warp matrices, centres, scales.

        ``_xywh2cs`` (aspect 1, padding 1.25, float32) and the classic warp of ``get_affine_transform``
        (centre -> crop centre, ``s / scale`` pixels per pixel), bilinear with zeros outside, like ``cv2.warpAffine``.
        """
        size = self.net.cfg.img_size
        cs = boxes_to_center_scale(boxes.to(torch.float64).reshape(-1, 4), (size, size), 1.25, "mmpose0")
        mats = warp_matrices(cs, (size, size), udp=False)
        crops = torch.cat([affine_crop(im, m[None], (size, size)) for im, m in zip(images, mats)])
        return crops, mats, cs.center, cs.scale

    def prepare(self, s: Sample) -> Episode:
        """A Sample of ``mp100`` -> the official test inputs of its query and (cached per episode) supports."""
        inp = s.inputs
        try:
            q_img = self._image(Path(inp["query_image"]))
            q_box = torch.as_tensor(inp["query_bbox"], dtype=torch.float64).reshape(1, 4)
            key = (tuple(str(p) for p in inp["support_images"]),
                   tuple(torch.as_tensor(inp["support_bboxes"], dtype=torch.float64).flatten().tolist()),
                   tuple(torch.as_tensor(inp["support_keypoints"]).flatten().tolist()),
                   tuple(torch.as_tensor(inp["support_visible"]).flatten().tolist()),
                   tuple(tuple(e) for e in inp.get("skeleton", [])))
            if self._support is None or self._support.key != key:
                self._support = self.prepare_support(key, inp)
        except KeyError as e:
            raise InputError(None, f"sample {s.sample_id}", str(e.args[0]), "missing from the episode inputs") from None
        q_crop, _, c, sc = self.crops([q_img], q_box)
        return Episode(normalize(q_crop, "totensor")[0], self._support, c[0], sc[0])

    def prepare_support(self, key: tuple, inp: dict[str, Any]) -> Support:
        cfg = self.net.cfg
        images = [self._image(Path(p)) for p in inp["support_images"]]
        boxes = torch.as_tensor(inp["support_bboxes"], dtype=torch.float64).reshape(-1, 4)
        kpts = torch.as_tensor(inp["support_keypoints"], dtype=torch.float32)
        vis = torch.as_tensor(inp["support_visible"], dtype=torch.bool)
        crops, mats, _, _ = self.crops(images, boxes)
        # support keypoints into their crops (affine_transform of the visible ones; invisible ones get weight 0)
        xy1 = torch.cat([kpts.to(torch.float64), torch.ones_like(kpts[..., :1], dtype=torch.float64)], -1)
        crop_xy = (xy1 @ mats.transpose(1, 2)).to(torch.float32)
        targets, weights = msra_heatmaps(crop_xy, vis, cfg.img_size, cfg.heatmap_size, cfg.sigma)
        return Support(key, normalize(crops, "totensor"), targets, weights,
                       [list(map(int, e)) for e in inp.get("skeleton", [])])

    # --- inference ---------------------------------------------------------------------------------------
    @torch.inference_mode()
    def predict_episodes(self, eps: Sequence[Episode]) -> list[Tensor]:
        """Batched forward of prepared episodes (same number of shots) -> keypoints (K_i, 2) float64 pixels.

        Keypoints are padded to ``max_kpt_num`` tokens (or the batch's largest category) and masked; supports
        shared by several queries of the batch go through the backbone once."""
        if not eps:
            return []
        K = max(max(e.support.num_keypoints for e in eps), self.max_kpt_num or 0)
        dev, dt = self.device, self.dtype

        def pad(t: Tensor) -> Tensor:
            return torch.cat([t, t.new_zeros((t.shape[0], K - t.shape[1], *t.shape[2:]))], dim=1)

        uniq: dict[int, int] = {}
        for e in eps:
            uniq.setdefault(id(e.support), len(uniq))
        sups = {id(e.support): e.support for e in eps}
        sup_imgs = torch.stack([sups[k].images for k in uniq]).to(dev, dt)            # (U, S, 3, H, W)
        U, S = sup_imgs.shape[:2]
        feat_u = self.net.features(sup_imgs.flatten(0, 1)).unflatten(0, (U, S))
        feat_s = feat_u[torch.tensor([uniq[id(e.support)] for e in eps], device=dev)]
        feat_q = self.net.features(torch.stack([e.query for e in eps]).to(dev, dt))
        tgt = torch.stack([pad(e.support.targets) for e in eps]).to(dev, dt)
        wts = torch.stack([pad(e.support.weights) for e in eps]).to(dev, dt)
        out = self.net.from_features(feat_q, feat_s, tgt, wts, [e.support.skeleton for e in eps]).float()
        size = self.net.cfg.img_size
        res = []
        for e, o in zip(eps, out.cpu()):
            xy = o[: e.support.num_keypoints].to(torch.float64) * size      # decode: output * [W, H]
            res.append(crop_to_image(xy[None], e.center[None], e.scale[None], size)[0])
        return res

    def predict_step(self, batch: list[Sample], batch_idx: int = 0) -> list[Prediction]:
        eps = [self.prepare(s) for s in batch]
        by_shots: dict[int, list[int]] = {}
        for i, e in enumerate(eps):
            by_shots.setdefault(e.support.images.shape[0], []).append(i)
        out: list[Tensor | None] = [None] * len(batch)
        for idx in by_shots.values():
            for i, kp in zip(idx, self.predict_episodes([eps[i] for i in idx])):
                out[i] = kp
        return [Prediction(s.sample_id, {"keypoints": kp}) for s, kp in zip(batch, out)]

    @classmethod
    def from_official_checkpoint(cls, path: Path, arch: str = "auto", max_kpt_num: int | None = 100,
                                 **cfg: Any) -> PoseAnything:
        """Build the model of an official checkpoint (``arch`` ``auto``: read from its keys) and load it strictly."""
        sd = load_state_dict(path)
        if not any(k.startswith("keypoint_head.transformer.") for k in sd):
            raise InputError(path, f"key {next(iter(sd))!r}", "state_dict",
                             "not a Pose Anything checkpoint (expected backbone.* and keypoint_head.transformer.* keys)")
        if arch == "auto":
            try:
                conf = infer_arch(sd)
            except (KeyError, ValueError) as e:
                raise InputError(path, None, "state_dict", f"cannot read the architecture from its keys ({e})") from None
        elif arch in ARCHS:
            conf = ARCHS[arch]
        else:
            raise InputError(None, None, "method.arch", f"unknown arch {arch!r}; auto or one of {sorted(ARCHS)}")
        model = cls(replace(conf, **cfg) if cfg else conf, max_kpt_num=max_kpt_num)
        check_and_load(model.net, checkpoint_filter_fn(sd, model.net), path)
        return model.eval()


@register_method("pose-anything")
def build(cfg, dataset, weights: Path | None) -> PoseAnything:
    """``method=pose-anything weights=FILE``: GraphCape from an official Pose Anything checkpoint."""
    if weights is None:
        raise InputError(None, None, "weights", "pose-anything runs a network: pass weights=FILE (an official Pose "
                         "Anything checkpoint), or predictions=FILE to score a results file")
    if getattr(dataset, "family", "cape") != "cape":
        raise InputError(None, None, "dataset", f"pose-anything needs a CAPE dataset (mp100), got {dataset.name!r}")
    mk = cfg.get("max_kpt_num", 100)
    return PoseAnything.from_official_checkpoint(Path(weights), arch=str(cfg.get("arch", "auto")),
                                                 max_kpt_num=None if mk is None else int(mk))
