"""SimCC (methods/human2d/simcc.py) against the official code.

Golden data (tests/data/human2d_topdown/, made by /tmp/ref/gen_golden.py, see PROVENANCE.md):
- ``official_keys.json["simcc-hrnet-w32-original"]``: state-dict names/shapes of leeyegy/SimCC's
  ``PoseHighResolutionNet`` built from ``experiments/coco/hrnet/simdr/nmt_w32_256x192_adam_lr1e-3.yaml``;
- ``simcc_golden.npz``: that network's x/y outputs with the weights of ``seeded_value`` (tests/methods/
  test_vitpose.py) on ``torch.randn(1, 3, 256, 192, generator=manual_seed(2))``, and mmpose 1.x
  ``get_simcc_maximum`` (open-mmlab/mmpose @ 759b39c1) on random vectors, with and without softmax.
The mmpose 1.x ResNet-50 checkpoint layout is written out below from mmpose's module names (ResNet
``conv1/bn1/layerN.i.{conv,bn}{1,2,3}/downsample.{0,1}``, ``SimCCHead.deconv_head`` = ``HeatmapHead``).
Comparisons with the recorded float32 outputs follow tests/recorded.py: our network runs in float64.
"""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from bench.errors import InputError
from bench.registry import METHODS
from methods.human2d import simcc as sc
from methods.human2d.topdown import CropBoxes, check_and_load
from tests.recorded import assert_matches_recorded

DATA = Path(__file__).resolve().parent.parent / "data" / "human2d_topdown"
KEYS = json.loads((DATA / "official_keys.json").read_text())
NPZ = np.load(DATA / "simcc_golden.npz")


def seeded_value(key: str, shape) -> torch.Tensor:
    """Deterministic weights per key (the rule gen_golden.py used; same as in test_vitpose.py)."""
    g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    if key.endswith("num_batches_tracked"):
        return torch.tensor(0, dtype=torch.int64)
    if key.endswith("running_var"):
        return 0.5 + torch.rand(shape, generator=g)
    if len(shape) >= 2:
        return torch.randn(shape, generator=g) / int(np.prod(shape[1:])) ** 0.5
    if key.endswith("weight"):
        return 1.0 + 0.1 * torch.randn(shape, generator=g)
    return 0.1 * torch.randn(shape, generator=g)


def mmpose1_res50_keys() -> dict[str, tuple[int, ...]]:
    """Names and shapes of mmpose 1.x ``simcc_res50_8xb64-210e_coco-256x192`` (ResNet-50 + SimCCHead)."""
    k: dict[str, tuple[int, ...]] = {}

    def bn(prefix, c):
        k.update({f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
                  f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()})

    k["backbone.conv1.weight"] = (64, 3, 7, 7)
    bn("backbone.bn1", 64)
    cin = 64
    for li, (planes, blocks) in enumerate([(64, 3), (128, 4), (256, 6), (512, 3)], start=1):
        for b in range(blocks):
            p = f"backbone.layer{li}.{b}"
            k[f"{p}.conv1.weight"] = (planes, cin, 1, 1)
            bn(f"{p}.bn1", planes)
            k[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            bn(f"{p}.bn2", planes)
            k[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
            bn(f"{p}.bn3", planes * 4)
            if b == 0:
                k[f"{p}.downsample.0.weight"] = (planes * 4, cin, 1, 1)
                bn(f"{p}.downsample.1", planes * 4)
            cin = planes * 4
    c = 2048
    for i in (0, 3, 6):
        k[f"head.deconv_head.deconv_layers.{i}.weight"] = (c, 256, 4, 4)
        bn(f"head.deconv_head.deconv_layers.{i + 1}", 256)
        c = 256
    k["head.deconv_head.final_layer.weight"] = (17, 256, 1, 1)
    k["head.deconv_head.final_layer.bias"] = (17,)
    k.update({"head.mlp_head_x.weight": (384, 3072), "head.mlp_head_x.bias": (384,),
              "head.mlp_head_y.weight": (512, 3072), "head.mlp_head_y.bias": (512,)})
    return k


def save(tmp_path, sd, name="ckpt.pth") -> Path:
    p = tmp_path / name
    torch.save({"state_dict": sd}, p)
    return p


@pytest.mark.slow
def test_simcc_repo_hrnet_w32_loads_and_matches_official_outputs(tmp_path):
    sd = {k: seeded_value(k, tuple(s)) for k, s in KEYS["simcc-hrnet-w32-original"].items()}
    m = sc.SimCC("hrnet-w32")                  # (file reading is covered by the res50 test below)
    check_and_load(m.net, sc.checkpoint_filter_fn(sd, m.net), "ckpt.pth")
    x = torch.randn(1, 3, 256, 192, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        px, py = m.net.double()(x.double())
    # 128 ulps, not 64: this deep seeded HRNet turns torch.randn's one-ulp differences between its SIMD and
    # scalar paths (weights and input) into 56.5 ulps of the output (tests/recorded.py)
    assert_matches_recorded(px, NPZ["hrnet_x"], what="SimCC HRNet-W32 x vectors", ulps=128)
    assert_matches_recorded(py, NPZ["hrnet_y"], what="SimCC HRNet-W32 y vectors", ulps=128)
    # the same weights in mmpose 1.x names (backbone.*, head.*) give the same network
    conv = sc.checkpoint_filter_fn({("head." if k.startswith(("final_layer", "mlp_head")) else "backbone.") + k: v
                                    for k, v in sd.items()})
    assert conv.keys() == m.net.state_dict().keys()


def test_mmpose1_res50_layout_loads_and_runs(tmp_path):
    sd = {k: (torch.ones(s) if k.endswith("running_var") else torch.zeros(s)) if s else torch.tensor(0)
          for k, s in mmpose1_res50_keys().items()}
    m = sc.SimCC.from_official_checkpoint(save(tmp_path, sd), backbone="res50")
    with torch.no_grad():
        px, py = m.net(torch.zeros(1, 3, 256, 192))
    assert px.shape == (1, 17, 384) and py.shape == (1, 17, 512)
    bad = dict(sd)
    bad["head.mlp_head_x.weight"] = torch.zeros(384, 3000)
    with pytest.raises(InputError, match="mlp_head_x.weight"):
        sc.SimCC.from_official_checkpoint(save(tmp_path, bad), backbone="res50")
    bad = dict(sd)
    bad.pop("backbone.layer3.5.bn2.running_mean")
    with pytest.raises(InputError, match="missing"):
        sc.SimCC.from_official_checkpoint(save(tmp_path, bad), backbone="res50")


def test_simcc_maximum_matches_mmpose_get_simcc_maximum():
    vx, vy = torch.from_numpy(NPZ["vx"]), torch.from_numpy(NPZ["vy"])
    locs, vals = sc.simcc_maximum(vx, vy)
    np.testing.assert_array_equal(locs.numpy(), NPZ["locs"])
    np.testing.assert_array_equal(vals.numpy(), NPZ["vals"])
    assert (NPZ["locs"][0, 0] == -1).all()                       # confidence <= 0 -> -1
    assert NPZ["locs"][1, 2, 0] == 10                            # ties: the first bin
    locs, vals = sc.simcc_maximum(vx.double(), vy.double(), softmax=True)     # exact ties stay ties in float64
    np.testing.assert_array_equal(locs.numpy(), NPZ["locs_softmax"])
    assert_matches_recorded(vals, NPZ["vals_softmax"], what="get_simcc_maximum softmax confidences")


def test_decoding_known_maxima_to_image():
    """Peaks at bins (100, 301) -> crop pixel (50, 150.5) -> image with centre (500, 400), scale (96, 128):
    x = 50/192*96 + 500 - 48, y = 150.5/256*128 + 400 - 64."""
    vx = torch.zeros(1, 17, 384)
    vy = torch.zeros(1, 17, 512)
    vx[..., 100] = 3.0
    vy[..., 301] = 2.0
    locs, vals = sc.simcc_maximum(vx, vy)
    assert torch.all(vals == 2.0)
    kp = sc.simcc_to_image(locs, CropBoxes(torch.tensor([[500.0, 400.0]]), torch.tensor([[96.0, 128.0]])))
    assert torch.allclose(kp[0, 0], torch.tensor([50 / 192 * 96 + 452, 150.5 / 256 * 128 + 336]))


def test_flip_vectors_official_semantics():
    x = torch.arange(2 * 17 * 6, dtype=torch.float32).reshape(2, 17, 6)
    y = -x
    fx, fy = sc.flip_vectors(x, y, [0, 2, 1] + list(range(3, 17)))
    assert torch.equal(fx[:, 1], x[:, 2].flip(-1)) and torch.equal(fy[:, 2], y[:, 1])
    sx, _ = sc.flip_vectors(x, y, list(range(17)), shift_x=True)
    r = x.flip(-1)
    assert torch.equal(sx[..., :-1], r[..., 1:]) and torch.equal(sx[..., -1], r[..., -1])


def test_registered_and_configs():
    assert METHODS["simcc-res50"] is sc.build and METHODS["simcc-hrnet-w32"] is sc.build
    with pytest.raises(InputError, match="weights=FILE"):
        sc.build(OmegaConf.create({"name": "simcc-res50"}), None, None)
    root = Path(sc.__file__).resolve().parents[2] / "bench" / "conf" / "method"
    for name, udp, dec in (("simcc-res50", False, "mmpose"), ("simcc-hrnet-w32", False, "original")):
        conf = OmegaConf.load(root / f"{name}.yaml")
        assert conf.name == name and conf.decode == dec and conf.pipeline.udp is udp
