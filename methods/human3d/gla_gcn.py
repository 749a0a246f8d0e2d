"""GLA-GCN (Yu et al., ICCV 2023): global-local adaptive graph convolutions lifting 2D keypoints to 3D.

Architecture (bruceyo/GLA-GCN ``common/s_agcn.py`` ``S_AGCN`` with ``common/agcn.py``, the model that
``run_s-agcn.py`` evaluates): BatchNorm over the 17*2 input channels (``data_bn``), then 2s-AGCN units on
``(N, C, T, V=17)``: ``expand_gcn`` (2 -> C) and per filter width w two units, the first with stride 1 and the
second with temporal stride w and no residual; each pair is added to its input sampled at ``w//2::w``. With
widths 3,3,3,3,3 a 243-frame window shrinks to one frame; the per-joint features are averaged over time and
``fc`` (a 1x1 Conv1d C -> 3 shared by the joints) gives the 3D joint. The official H36M models use C = 96.

A unit (``TCN_GCN_unit``) is ``relu(tcn1(gcn1(x)) + residual(x))``. ``unit_gcn``: adjacency = fixed spatial
graph ``A`` (identity, inward, outward; columns normalised) + learned ``PA``; per subset ``i`` an attention
``softmax_{dim -2}(conv_a(x)^T conv_b(x) / (C_inter T))`` is added to ``A[i] + PA[i]``, features are
aggregated with it and mixed by ``conv_d``; the sum over subsets goes through ``bn``, plus ``down(x)``, ReLU.
``unit_tcn``: Conv2d (9, 1), zero padding 4, temporal stride, BatchNorm.

Test time (``run_s-agcn.py -tta`` with ``Evaluate_Generator``, chunk length = stride = 1): every frame is the
centre of its own receptive-field window over the sequence edge-replicated by ``pad = (rf - 1) / 2`` frames,
so each frame is predicted (and scored) exactly once; flip test as in :mod:`methods.human3d.lifting`.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.errors import InputError
from bench.registry import register_method
from methods.human3d.lifting import LiftingMethod, load_into, load_official_state_dict, require_inputs
from methods.human3d.videopose3d import edge_pad

NUM_JOINTS = 17
#: H36M bones (child, parent), 1-based as in the official ``Graph('h36m')``.
H36M_INWARD_1BASED = ((2, 1), (3, 2), (4, 3), (5, 1), (6, 5), (7, 6), (8, 1), (9, 8), (10, 9), (11, 10), (12, 9),
                      (13, 12), (14, 13), (15, 9), (16, 15), (17, 16))


def spatial_graph(num_nodes: int = NUM_JOINTS, inward_1based: Sequence[tuple[int, int]] = H36M_INWARD_1BASED) -> Tensor:
    """``(3, V, V)``: identity, inward and outward adjacency, each column divided by its sum (2s-AGCN)."""
    def adjacency(edges) -> np.ndarray:
        a = np.zeros((num_nodes, num_nodes))
        for i, j in edges:
            a[j, i] = 1
        col = a.sum(0)
        return a / np.where(col > 0, col, 1)

    inward = [(i - 1, j - 1) for i, j in inward_1based]
    outward = [(j, i) for i, j in inward]
    return torch.from_numpy(np.stack((np.eye(num_nodes), adjacency(inward), adjacency(outward))).astype(np.float32))


class UnitTCN(nn.Module):
    """Temporal conv ``(k, 1)`` with zero padding ``(k - 1) / 2`` and a temporal stride, then BatchNorm."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 9, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, (kernel_size, 1), padding=((kernel_size - 1) // 2, 0),
                              stride=(stride, 1))
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x))


class UnitGCN(nn.Module):
    """Adaptive graph convolution of 2s-AGCN over ``(N, C, T, V)``."""

    def __init__(self, in_channels: int, out_channels: int, a: Tensor, coff_embedding: int = 4):
        super().__init__()
        inter = out_channels // coff_embedding
        self.inter_c = inter if inter >= 1 else 3
        subsets = a.shape[0]
        self.register_buffer("A", a.clone(), persistent=False)
        self.PA = nn.Parameter(torch.full_like(a, 1e-6))
        self.conv_a = nn.ModuleList(nn.Conv2d(in_channels, self.inter_c, 1) for _ in range(subsets))
        self.conv_b = nn.ModuleList(nn.Conv2d(in_channels, self.inter_c, 1) for _ in range(subsets))
        self.conv_d = nn.ModuleList(nn.Conv2d(in_channels, out_channels, 1) for _ in range(subsets))
        self.down = None if in_channels == out_channels else \
            nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels))
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        n, c, t, v = x.shape
        adj = self.A + self.PA
        flat = x.reshape(n, c * t, v)
        y = None
        for i in range(adj.shape[0]):
            a1 = self.conv_a[i](x).permute(0, 3, 1, 2).reshape(n, v, self.inter_c * t)
            a2 = self.conv_b[i](x).reshape(n, self.inter_c * t, v)
            att = torch.softmax(a1 @ a2 / a1.shape[-1], dim=-2) + adj[i]
            z = self.conv_d[i]((flat @ att).reshape(n, c, t, v))
            y = z if y is None else y + z
        y = self.bn(y) + (x if self.down is None else self.down(x))
        return F.relu(y)


class TCNGCNUnit(nn.Module):
    """``relu(tcn1(gcn1(x)) + residual(x))``; residual: none, identity, or a strided 1x1 ``UnitTCN``."""

    def __init__(self, in_channels: int, out_channels: int, a: Tensor, stride: int = 1, residual: bool = True):
        super().__init__()
        self.gcn1 = UnitGCN(in_channels, out_channels, a)
        self.tcn1 = UnitTCN(out_channels, out_channels, stride=stride)
        self.residual_mode = "none" if not residual else \
            ("identity" if in_channels == out_channels and stride == 1 else "conv")
        if self.residual_mode == "conv":
            self.residual = UnitTCN(in_channels, out_channels, kernel_size=1, stride=stride)

    def forward(self, x: Tensor) -> Tensor:
        y = self.tcn1(self.gcn1(x))
        if self.residual_mode == "identity":
            y = y + x
        elif self.residual_mode == "conv":
            y = y + self.residual(x)
        return F.relu(y)


class SAGCN(nn.Module):
    """GLA-GCN's ``S_AGCN``: one receptive-field window ``(N, rf, 17, 2)`` -> its centre frame ``(N, 1, 17, 3)``."""

    def __init__(self, num_joints: int = NUM_JOINTS, filter_widths: Sequence[int] = (3, 3, 3, 3, 3),
                 channels: int = 96, dropout: float = 0.1):
        super().__init__()
        if any(w % 2 == 0 for w in filter_widths):
            raise ValueError(f"only odd filter widths are supported, got {list(filter_widths)}")
        self.num_joints = num_joints
        self.filter_widths = tuple(int(w) for w in filter_widths)
        a = spatial_graph(num_joints)
        self.data_bn = nn.BatchNorm1d(num_joints * 2)
        self.expand_gcn = TCNGCNUnit(2, channels, a)
        layers = []
        for w in self.filter_widths:
            layers += [TCNGCNUnit(channels, channels, a), TCNGCNUnit(channels, channels, a, stride=w, residual=False)]
        self.layers_tcngcn = nn.ModuleList(layers)
        self.fc = nn.Conv1d(channels, 3, 1)
        self.drop = nn.Dropout(dropout)

    def receptive_field(self) -> int:
        """``1 + 2 * sum(pads)``: pads ``w0 // 2`` then ``(w_i - 1) * w0 * ... * w_{i-1} / 2`` as the official
        ``TemporalModelBase`` counts them (widths 3,3,3,3,3 -> 243, 3,3,3 -> 27)."""
        pads, dilation = [self.filter_widths[0] // 2], self.filter_widths[0]
        for w in self.filter_widths[1:]:
            pads.append((w - 1) * dilation // 2)
            dilation *= w
        return 1 + 2 * sum(pads)

    def forward(self, x: Tensor) -> Tensor:
        n, t, v, _ = x.shape
        if t != self.receptive_field():
            raise ValueError(f"S_AGCN takes windows of {self.receptive_field()} frames, got {t}")
        x = self.data_bn(x.reshape(n, t, v * 2).transpose(1, 2))          # (N, V*2, T), channel j*2+c
        x = x.reshape(n, v, 2, t).permute(0, 2, 3, 1)                       # (N, 2, T, V)
        x = self.expand_gcn(x)
        for i, w in enumerate(self.filter_widths):
            res = x[:, :, w // 2:: w]
            x = self.drop(self.layers_tcngcn[2 * i](x))
            x = res + self.drop(self.layers_tcngcn[2 * i + 1](x))
        out = self.fc(x.mean(dim=2))                                        # (N, 3, V): fc shared by the joints
        return out.transpose(1, 2).reshape(n, 1, v, 3)


def checkpoint_filter_fn(state_dict: dict[str, Tensor], model: SAGCN | None = None) -> dict[str, Tensor]:
    """Official ``model_pos`` -> this module. The names match (``A`` is not in the official state dict: it
    is a plain attribute there and a non-persistent buffer here); BatchNorm ``num_batches_tracked`` is added
    when missing."""
    out = dict(state_dict)
    for k in list(out):
        if k.endswith(".running_mean"):
            out.setdefault(k[: -len("running_mean")] + "num_batches_tracked", torch.tensor(0, dtype=torch.long))
    return out


def window_bounds(num_frames: int, chunk_length: int = 1) -> np.ndarray:
    """``(n_chunks, 2)`` output-frame bounds ``[start, end)`` of ``Evaluate_Generator``'s chunks: ``ceil(T / L)``
    chunks of length L, the whole grid centred on the sequence (``offset = (n L - T) // 2``). With the official
    chunk length 1 they are the T frames, each once."""
    n = (num_frames + chunk_length - 1) // chunk_length
    offset = (n * chunk_length - num_frames) // 2
    bounds = np.arange(n + 1) * chunk_length - offset
    return np.stack((bounds[:-1], bounds[1:]), axis=1)


class GLAGCN(LiftingMethod):
    """GLA-GCN at test time: one receptive-field window per frame (edge padding), flip test."""

    def __init__(self, filter_widths: Sequence[int] = (3, 3, 3, 3, 3), channels: int = 96,
                 window_batch: int = 512, **kwargs):
        super().__init__(SAGCN(filter_widths=filter_widths, channels=channels), **kwargs)
        self.window_batch = int(window_batch)

    def lift(self, x: Tensor) -> Tensor:
        """``(B, T, J, 2) -> (B, T, J, 3)``: window of frame t = padded frames ``[t, t + rf)`` (chunk length 1)."""
        b, t, j, c = x.shape
        rf = self.net.receptive_field()
        bounds = window_bounds(t, 1)
        pad = (rf - 1) // 2
        padded = edge_pad(x, pad)                                           # frame f of x is padded[f + pad]
        starts = torch.as_tensor(bounds[:, 0], device=x.device)            # output frame -> window start in padded
        idx = starts[:, None] + torch.arange(rf, device=x.device)          # (T, rf)
        out = []
        for s in range(0, t, max(1, self.window_batch // b)):
            win = padded[:, idx[s: s + max(1, self.window_batch // b)]]   # (B, n, rf, J, 2)
            n = win.shape[1]
            out.append(self.net(win.reshape(b * n, rf, j, c)).reshape(b, n, j, 3))
        return torch.cat(out, dim=1)

    @classmethod
    def from_official_checkpoint(cls, path: Path, **cfg) -> GLAGCN:
        model = cls(**cfg)
        load_into(model.net, checkpoint_filter_fn(load_official_state_dict(path), model.net), path)
        return model.eval()


def method_options(cfg) -> dict:
    if bool(cfg.get("causal", False)):
        raise InputError(None, None, "causal", "only the symmetric (causal: false) GLA-GCN is implemented")
    return {"filter_widths": [int(w) for w in cfg.get("filter_widths", [3, 3, 3, 3, 3])],
            "channels": int(cfg.get("channels", 96)), "window_batch": int(cfg.get("window_batch", 512)),
            "flip_test": bool(cfg.get("flip_test", True)), "zero_root": bool(cfg.get("zero_root", False))}


@register_method("gla-gcn")
def build(cfg, dataset, weights: Path | None) -> GLAGCN:
    """``method=gla-gcn dataset=h36m weights=FILE``: an official checkpoint on the 2D detections
    ``dataset.keypoints_2d`` (the config's ``inputs`` name the official ones)."""
    if weights is None:
        raise InputError(None, None, "weights", "gla-gcn runs a network: pass weights=FILE (an official GLA-GCN "
                         "checkpoint, e.g. 96_cpn_ft_h36m_dbb_243_supervised.bin), or predictions=FILE")
    require_inputs(dataset, cfg)
    model = GLAGCN.from_official_checkpoint(Path(weights), **method_options(cfg))
    return model
