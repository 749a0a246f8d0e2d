"""VideoPose3D (Pavllo et al., CVPR 2019): dilated temporal convolutions lifting 2D keypoint sequences to 3D.

Architecture (facebookresearch/VideoPose3D ``common/model.py`` ``TemporalModel``, symmetric, not dense):
``expand_conv`` (Conv1d 17*2 -> C, width w0, no bias) + ``expand_bn`` + ReLU, then per further width w_i a
block ``layers_conv[2i]`` (Conv1d C -> C, width w_i, dilation w0*...*w_{i-1}, no bias) + ``layers_bn[2i]`` +
ReLU, ``layers_conv[2i+1]`` (1x1) + ``layers_bn[2i+1]`` + ReLU, added to the input cropped by the block's
padding; ``shrink`` (1x1 Conv1d C -> 17*3, bias). Widths 3,3,3,3,3 give a 243-frame receptive field
(``pad = (rf - 1) / 2 = 121``); the official models use C = 1024.

Test time (``run.py`` ``evaluate`` with ``UnchunkedGenerator``): the whole sequence at once, edge-replicated
by ``pad`` frames on each side (valid convolutions then give exactly T outputs), flip test as in
:mod:`methods.human3d.lifting`. The official checkpoints (``pretrained_h36m_cpn.bin``, ...) store this
layout under ``model_pos``; files from PyTorch < 0.4.1 lack BatchNorm's ``num_batches_tracked``, which
:func:`checkpoint_filter_fn` adds (it is not used in eval mode).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.errors import InputError
from bench.registry import register_method
from methods.human3d.lifting import LiftingMethod, load_into, load_official_state_dict, require_inputs

NUM_JOINTS = 17


class TemporalModel(nn.Module):
    """VideoPose3D's symmetric dilated temporal ConvNet; ``(B, T + 2 pad, J, 2) -> (B, T, J, 3)``."""

    def __init__(self, num_joints_in: int = NUM_JOINTS, in_features: int = 2, num_joints_out: int = NUM_JOINTS,
                 filter_widths: Sequence[int] = (3, 3, 3, 3, 3), channels: int = 1024, dropout: float = 0.25):
        super().__init__()
        if any(w % 2 == 0 for w in filter_widths):
            raise ValueError(f"only odd filter widths are supported, got {list(filter_widths)}")
        self.num_joints_out = num_joints_out
        self.filter_widths = tuple(int(w) for w in filter_widths)
        self.expand_conv = nn.Conv1d(num_joints_in * in_features, channels, self.filter_widths[0], bias=False)
        self.expand_bn = nn.BatchNorm1d(channels, momentum=0.1)
        self.pads = [self.filter_widths[0] // 2]
        self.dilations = []
        convs, bns = [], []
        dilation = self.filter_widths[0]
        for w in self.filter_widths[1:]:
            self.pads.append((w - 1) * dilation // 2)
            self.dilations.append(dilation)
            convs += [nn.Conv1d(channels, channels, w, dilation=dilation, bias=False),
                      nn.Conv1d(channels, channels, 1, bias=False)]
            bns += [nn.BatchNorm1d(channels, momentum=0.1), nn.BatchNorm1d(channels, momentum=0.1)]
            dilation *= w
        self.layers_conv = nn.ModuleList(convs)
        self.layers_bn = nn.ModuleList(bns)
        self.shrink = nn.Conv1d(channels, num_joints_out * 3, 1)
        self.drop = nn.Dropout(dropout)

    def receptive_field(self) -> int:
        return 1 + 2 * sum(self.pads)

    def forward(self, x: Tensor) -> Tensor:
        b, t = x.shape[:2]
        x = x.reshape(b, t, -1).transpose(1, 2)
        x = self.drop(F.relu(self.expand_bn(self.expand_conv(x))))
        for i, pad in enumerate(self.pads[1:]):
            res = x[:, :, pad: x.shape[2] - pad]
            x = self.drop(F.relu(self.layers_bn[2 * i](self.layers_conv[2 * i](x))))
            x = res + self.drop(F.relu(self.layers_bn[2 * i + 1](self.layers_conv[2 * i + 1](x))))
        x = self.shrink(x)
        return x.transpose(1, 2).reshape(b, -1, self.num_joints_out, 3)


def checkpoint_filter_fn(state_dict: dict[str, Tensor], model: TemporalModel | None = None) -> dict[str, Tensor]:
    """Official ``model_pos`` -> this module: same key names; adds BatchNorm ``num_batches_tracked`` when the
    file predates it (PyTorch < 0.4.1)."""
    out = dict(state_dict)
    for k in list(out):
        if k.endswith(".running_mean"):
            out.setdefault(k[: -len("running_mean")] + "num_batches_tracked", torch.tensor(0, dtype=torch.long))
    return out


def edge_pad(x: Tensor, pad: int) -> Tensor:
    """Replicate the first and last frames ``pad`` times: ``(B, T, J, C) -> (B, T + 2 pad, J, C)`` (np.pad 'edge')."""
    if pad == 0:
        return x
    return torch.cat((x[:, :1].expand(-1, pad, -1, -1), x, x[:, -1:].expand(-1, pad, -1, -1)), dim=1)


class VideoPose3D(LiftingMethod):
    """VideoPose3D at test time: whole sequences, edge padding of the receptive field, flip test."""

    def __init__(self, filter_widths: Sequence[int] = (3, 3, 3, 3, 3), channels: int = 1024, **kwargs):
        super().__init__(TemporalModel(filter_widths=filter_widths, channels=channels), **kwargs)

    def lift(self, x: Tensor) -> Tensor:
        pad = (self.net.receptive_field() - 1) // 2
        return self.net(edge_pad(x, pad))

    @classmethod
    def from_official_checkpoint(cls, path: Path, **cfg) -> VideoPose3D:
        model = cls(**cfg)
        load_into(model.net, checkpoint_filter_fn(load_official_state_dict(path), model.net), path)
        return model.eval()


def method_options(cfg) -> dict:
    if bool(cfg.get("causal", False)) or bool(cfg.get("dense", False)):
        raise InputError(None, None, "causal", "only the symmetric, dilated (causal: false, dense: false) model "
                                               "of the official H36M evaluation is implemented")
    return {"filter_widths": [int(w) for w in cfg.get("filter_widths", [3, 3, 3, 3, 3])],
            "channels": int(cfg.get("channels", 1024)), "flip_test": bool(cfg.get("flip_test", True)),
            "zero_root": bool(cfg.get("zero_root", False))}


@register_method("videopose3d")
def build(cfg, dataset, weights: Path | None) -> VideoPose3D:
    """``method=videopose3d dataset=h36m weights=FILE``: an official checkpoint on the 2D detections
    ``dataset.keypoints_2d`` (the config's ``inputs`` name the official ones)."""
    if weights is None:
        raise InputError(None, None, "weights", "videopose3d runs a network: pass weights=FILE (an official "
                         "VideoPose3D checkpoint, e.g. pretrained_h36m_cpn.bin), or predictions=FILE")
    require_inputs(dataset, cfg)
    model = VideoPose3D.from_official_checkpoint(Path(weights), **method_options(cfg))
    return model
