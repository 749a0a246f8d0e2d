"""GDRNPP: official checkpoint layout, forward pass, and pose decoding against hand-computed cases.

The official key layout is re-derived here, independently of methods/object6d/gdrnpp.py, from the official
config (shanice-l/gdrnpp_bop2022 ``configs/gdrn/ycbv/convnext_a6_AugCosyAAEGray_BG05_mlL1_DMask_amodalClipBox_
classAware_ycbv.py`` over ``configs/_base_/gdrn_base.py``) and the module code it instantiates:

- backbone ``timm/convnext_base``, ``features_only=True, out_indices=(3,)`` (timm ``FeatureListNet``: the
  ``stem`` and ``stages`` Sequentials flattened to ``stem_0``, ``stem_1``, ``stages_0`` ... ``stages_3``;
  convnext_base depths (3, 3, 27, 3), dims (128, 256, 512, 1024));
- ``TopDownDoubleMaskXyzRegionHead(in_dim=1024)`` with the base config's up_types (deconv, bilinear,
  bilinear), feat_dim 256, 2 ``ConvModule`` per block, GN(32), out_layer_shared, class-aware masks/XYZ/regions
  (NUM_CLASSES 21, mask_out_dim 2, xyz_out_dim 3, region_out_dim 64+1). The official ``ConvModule`` sets
  ``self.norm = get_norm(...)`` and then ``add_module("gn", ...)``, so each GroupNorm appears under both names;
- ``ConvPnPNet(nIn = 3 xyz + 2 coord + 64 regions, featdim 128, 3 stride-2 convs, flatten 8x8, fc1 1024,
  fc2 256, fc_r 6 (allo_rot6d), fc_t 3)``.

tests/data/gdrnpp_golden/golden.json holds numbers from the official code itself (commit b80383b, run outside this
repo with stubs for mmcv/detectron2/numba that provide only init helpers and registries; details in its
PROVENANCE.md): the state-dict layout of the YCB-V model, and ``GDRN_DoubleMask.forward(do_loss=False)`` of a
small variant (convnext_atto, feat_dim 32, 3 classes) with ``small_checkpoint()``'s weights (which the official
model loaded with ``strict=True``) on ``golden_inputs()``. That comparison follows tests/recorded.py: our network
runs in float64.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from bench.errors import InputError
from bench.predictions.bop_detections import read_detections
from bench.types import Sample
from methods.object6d import gdrnpp as G
from methods.object6d import pose_decoding as P
from tests.recorded import assert_matches_recorded

GOLDEN = json.loads((Path(__file__).resolve().parents[1] / "data" / "gdrnpp_golden" / "golden.json").read_text())
CONVNEXT_BASE = ((3, 3, 27, 3), (128, 256, 512, 1024))
CONVNEXT_ATTO = ((2, 2, 6, 2), (40, 80, 160, 320))


def official_layout(num_classes: int, depths, dims, feat_dim: int = 256, num_regions: int = 64,
                    pnp_featdim: int = 128, out_res: int = 64, conv_mlp: bool = False) -> dict[str, tuple[int, ...]]:
    """Key -> shape of an official GDRN_double_mask checkpoint (see the module docstring). ``conv_mlp``: timm's
    smallest ConvNeXts (atto, used in the fast tests) have 1x1-conv MLPs; convnext_base has Linear ones."""
    k1 = (1, 1) if conv_mlp else ()
    s: dict[str, tuple[int, ...]] = {}
    s["backbone.stem_0.weight"], s["backbone.stem_0.bias"] = (dims[0], 3, 4, 4), (dims[0],)
    s["backbone.stem_1.weight"], s["backbone.stem_1.bias"] = (dims[0],), (dims[0],)
    for i, (depth, c) in enumerate(zip(depths, dims)):
        p = f"backbone.stages_{i}"
        if i > 0:
            s[f"{p}.downsample.0.weight"] = s[f"{p}.downsample.0.bias"] = (dims[i - 1],)
            s[f"{p}.downsample.1.weight"], s[f"{p}.downsample.1.bias"] = (c, dims[i - 1], 2, 2), (c,)
        for b in range(depth):
            q = f"{p}.blocks.{b}"
            s[f"{q}.gamma"] = (c,)
            s[f"{q}.conv_dw.weight"], s[f"{q}.conv_dw.bias"] = (c, 1, 7, 7), (c,)
            s[f"{q}.norm.weight"] = s[f"{q}.norm.bias"] = (c,)
            s[f"{q}.mlp.fc1.weight"], s[f"{q}.mlp.fc1.bias"] = (4 * c, c, *k1), (4 * c,)
            s[f"{q}.mlp.fc2.weight"], s[f"{q}.mlp.fc2.bias"] = (c, 4 * c, *k1), (c,)
    h = "geo_head_net"
    s[f"{h}.features.0.weight"] = (dims[-1], feat_dim, 3, 3)        # ConvTranspose2d: (in, out, k, k), no bias
    s[f"{h}.features.1.weight"] = s[f"{h}.features.1.bias"] = (feat_dim,)
    for n in (3, 4, 6, 7, 9, 10):                                   # ConvModule: conv (no bias) + GN as norm/gn
        s[f"{h}.features.{n}.conv.weight"] = (feat_dim, feat_dim, 3, 3)
        for alias in ("norm", "gn"):
            s[f"{h}.features.{n}.{alias}.weight"] = s[f"{h}.features.{n}.{alias}.bias"] = (feat_dim,)
    out_dim = num_classes * 2 + num_classes * 3 + num_classes * (num_regions + 1)
    s[f"{h}.out_layer.weight"], s[f"{h}.out_layer.bias"] = (out_dim, feat_dim, 1, 1), (out_dim,)
    q = "pnp_net"
    s[f"{q}.features.0.weight"] = (pnp_featdim, 3 + 2 + num_regions, 3, 3)
    s[f"{q}.features.3.weight"] = s[f"{q}.features.6.weight"] = (pnp_featdim, pnp_featdim, 3, 3)
    for n in (1, 4, 7):
        s[f"{q}.features.{n}.weight"] = s[f"{q}.features.{n}.bias"] = (pnp_featdim,)
    side = out_res // 8
    s[f"{q}.fc1.weight"], s[f"{q}.fc1.bias"] = (1024, pnp_featdim * side * side), (1024,)
    s[f"{q}.fc2.weight"], s[f"{q}.fc2.bias"] = (256, 1024), (256,)
    s[f"{q}.fc_r.weight"], s[f"{q}.fc_r.bias"] = (6, 256), (6,)
    s[f"{q}.fc_t.weight"], s[f"{q}.fc_t.bias"] = (3, 256), (3,)
    return s


SMALL = {"num_classes": 3, "backbone": "convnext_atto", "in_dim": 320, "feat_dim": 32}


def small_checkpoint(path, seed: int = 0, wrap: bool = True, num_classes: int = 3) -> dict[str, torch.Tensor]:
    """An official-layout state dict of a small variant (convnext_atto, feat_dim 32, 3 classes unless told), random
    values of a sane scale (unit GroupNorm/LayerNorm weights), saved as detectron2 does: ``{"model": sd}``."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shape in official_layout(num_classes, *CONVNEXT_ATTO, feat_dim=32, conv_mlp=True).items():
        if len(shape) == 1 and k.endswith(("weight", "gamma")):
            sd[k] = torch.ones(shape) if not k.endswith("gamma") else torch.full(shape, 0.1)
        else:
            fan_in = max(1, math.prod(shape[1:]))
            sd[k] = torch.randn(shape, generator=g) / math.sqrt(fan_in)
    for n in (3, 4, 6, 7, 9, 10):  # the two names of one official GroupNorm hold the same tensor
        for t in ("weight", "bias"):
            sd[f"geo_head_net.features.{n}.norm.{t}"] = sd[f"geo_head_net.features.{n}.gn.{t}"]
    torch.save({"model": sd, "iteration": 1000} if wrap else sd, path)
    return sd


@pytest.fixture(scope="module")
def small_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("gdrnpp") / "model_final_wo_optim.pth"
    return path, small_checkpoint(path)


EXTENTS3 = torch.tensor([[0.1, 0.12, 0.08], [0.05, 0.2, 0.1], [0.15, 0.15, 0.15]])


def golden_inputs() -> dict[str, torch.Tensor]:
    """Two ROIs as the official test loop batches them (float32), seeded: the golden file was made from these."""
    g = torch.Generator().manual_seed(11)
    whs = torch.tensor([[80.0, 60.0], [40.0, 120.0]])
    K = torch.tensor([[1066.778, 0.0, 312.9869], [0.0, 1067.487, 241.3109], [0.0, 0.0, 1.0]])
    return {
        "x": torch.rand(2, 3, 256, 256, generator=g),
        "roi_coord_2d": torch.rand(2, 2, 64, 64, generator=g),
        "roi_classes": torch.tensor([2, 0]),
        "roi_extents": EXTENTS3[[2, 0]].clone(),
        "roi_cams": K.expand(2, 3, 3).clone(),
        "roi_centers": torch.tensor([[320.5, 240.25], [100.0, 380.0]]),
        "roi_whs": whs,
        "resize_ratios": 64 / (whs.max(dim=1).values * 1.5),
    }


# ------------------------------------------------------------------------------------------ checkpoint layout


def test_layout_function_is_the_official_layout():
    """The layout derived above from the config equals the official model's own state dict (golden)."""
    assert {k: tuple(v) for k, v in GOLDEN["ycbv_layout"].items()} == official_layout(21, *CONVNEXT_BASE)


def test_official_layout_loads_with_zero_missing_or_unexpected_keys():
    """The full official model (convnext_base, 21 YCB-V classes): every official key maps onto the module with
    its exact shape, and a strict load leaves nothing missing or unexpected (meta tensors: no memory)."""
    layout = {k: tuple(v) for k, v in GOLDEN["ycbv_layout"].items()}          # the official model's own keys
    sd = {k: torch.empty(shape, device="meta") for k, shape in layout.items()}
    with torch.device("meta"):
        net = G.GDRNPPNet(G.GDRNPPConfig())
    converted = G.match_state_dict({"model": sd}, net, "official.pth")
    result = net.load_state_dict(converted, strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys
    model_keys = set(net.state_dict())
    # every official key is consumed: the ConvModule 'norm' aliases fold onto 'gn', the rest map 1:1
    assert {k.replace(".norm.", ".gn.") if k.startswith("geo_head_net.features.") else k for k in layout} == model_keys
    assert sum(math.prod(s) for k, s in layout.items() if k.startswith("backbone.")) == 87_564_416  # convnext_base
    assert tuple(net.state_dict()["geo_head_net.out_layer.weight"].shape) == (21 * 70, 256, 1, 1)


def test_layout_errors_name_the_key(small_ckpt):
    path, sd = small_ckpt
    with torch.device("meta"):
        net = G.GDRNPPNet(G.GDRNPPConfig(**SMALL))
    missing = {k: v for k, v in sd.items() if k != "pnp_net.fc_t.bias"}
    with pytest.raises(InputError, match=r"key 'pnp_net.fc_t.bias'.*missing"):
        G.match_state_dict(missing, net, path)
    with pytest.raises(InputError, match=r"key 'pnp_net.extra.weight'.*unexpected"):
        G.match_state_dict({**sd, "pnp_net.extra.weight": torch.zeros(1)}, net, path)
    wrong = dict(sd)
    wrong["geo_head_net.out_layer.weight"] = torch.zeros(5 * 70, 32, 1, 1)
    with pytest.raises(InputError, match=r"out_layer.weight.*field 'shape'.*expected \(210, 32, 1, 1\)"):
        G.match_state_dict(wrong, net, path)
    # DDP's 'module.' prefix and a lone 'norm' name (no 'gn') are accepted
    alone = {("module." + k): v for k, v in sd.items() if ".gn." not in k}
    assert set(G.match_state_dict(alone, net, path)) == set(net.state_dict())
    # a ConvNeXt saved without timm's features_only wrapper names its stages 'stages.N', not 'stages_N'
    plain = {k.replace("backbone.stages_", "backbone.stages.").replace("backbone.stem_", "backbone.stem."): v
             for k, v in sd.items()}
    assert "backbone.stages.2.blocks.0.gamma" in plain
    assert set(G.match_state_dict(plain, net, path)) == set(net.state_dict())


def test_checkpoint_file_errors(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="not a loadable PyTorch checkpoint"):
        G.GDRNPP.from_official_checkpoint(bad, extents=EXTENTS3, **SMALL)
    lst = tmp_path / "list.pth"
    torch.save([1, 2], lst)
    with pytest.raises(InputError, match="expected a state dict"):
        G.GDRNPP.from_official_checkpoint(lst, extents=EXTENTS3, **SMALL)


def test_from_official_checkpoint_and_forward(small_ckpt):
    """Weights land where the official keys say, and a 256x256 crop yields a pose."""
    path, sd = small_ckpt
    m = G.GDRNPP.from_official_checkpoint(path, obj_ids=[1, 5, 6], extents=EXTENTS3, **SMALL)
    own = m.net.state_dict()
    for k in ("backbone.stages_2.blocks.5.mlp.fc1.weight", "geo_head_net.features.9.conv.weight",
              "pnp_net.fc_r.weight"):
        assert torch.equal(own[k], sd[k])
    assert torch.equal(own["geo_head_net.features.9.gn.weight"], sd["geo_head_net.features.9.norm.weight"])
    assert not any(p.is_meta for p in m.parameters())
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 256, 256, generator=g)
    coord = P.coord_2d_map(480, 640)[None, :, :64, :64].expand(2, -1, -1, -1)
    with torch.no_grad():
        out = m.net(x, torch.tensor([0, 2]), coord, EXTENTS3[[0, 2]])
    assert out["rot6d"].shape == (2, 6) and out["site"].shape == (2, 3)
    assert out["mask"].shape == (2, 1, 64, 64) and out["region"].shape == (2, 65, 64, 64)
    R = P.rot6d_to_matrix(out["rot6d"].double())
    assert torch.allclose(R @ R.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(2, 3, 3), atol=1e-12)
    assert torch.allclose(torch.linalg.det(R), torch.ones(2, dtype=torch.float64))
    assert torch.isfinite(out["site"]).all()


def test_forward_and_decoding_match_the_official_model(small_ckpt):
    """Network + rot6d + SITE + allocentric->egocentric against the official ``GDRN_DoubleMask`` (golden): same
    weights, same float32 inputs, ours in float64. The official decoding runs in float32 (R via numpy float64,
    cast to float32)."""
    path, _ = small_ckpt
    m = G.GDRNPP.from_official_checkpoint(path, obj_ids=[1, 5, 6], extents=EXTENTS3, **SMALL).double()
    inp = golden_inputs()
    with torch.no_grad():
        out = m.net(inp["x"].double(), inp["roi_classes"], inp["roi_coord_2d"].double(), inp["roi_extents"].double())
    site = out["site"].double()
    t = P.site_translation(site[:, :2], site[:, 2], inp["roi_centers"].double(), inp["roi_whs"].double(),
                           inp["resize_ratios"].double(), inp["roi_cams"].double())
    R = P.allocentric_to_egocentric(P.rot6d_to_matrix(out["rot6d"].double()), t)
    assert_matches_recorded(t, GOLDEN["small_forward"]["trans"], what="GDRNPP translation")
    assert_matches_recorded(R, GOLDEN["small_forward"]["rot"], what="GDRNPP rotation")


# ------------------------------------------------------------------------------------------ decoding


def test_rot6d_hand_computed():
    d6 = torch.tensor([[2.0, 0, 0, 1, 3, 0], [0, 0, 5, 1, 0, 0]], dtype=torch.float64)
    R = P.rot6d_to_matrix(d6)
    assert torch.equal(R[0], torch.eye(3, dtype=torch.float64))
    # x = (0,0,1); z = x cross (1,0,0) = (0,1,0); y = z cross x = (1,0,0); columns (x, y, z)
    assert torch.equal(R[1], torch.tensor([[0.0, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=torch.float64))


def test_allocentric_straight_ahead_is_egocentric():
    Ra = P.rot6d_to_matrix(torch.tensor([[0.3, -1.2, 0.5, 0.7, 0.1, -0.4]], dtype=torch.float64))
    assert torch.equal(P.allocentric_to_egocentric(Ra, torch.tensor([[0.0, 0.0, 0.7]], dtype=torch.float64)), Ra)


def test_allocentric_off_axis_hand_computed():
    c = s = math.sqrt(0.5)
    Rz90 = torch.tensor([[[0.0, -1, 0], [1, 0, 0], [0, 0, 1]]], dtype=torch.float64)
    # object 45 deg to the right: the ray (1,0,1)/sqrt2 is the optical axis rotated +45 deg about y
    ego = P.allocentric_to_egocentric(Rz90, torch.tensor([[0.5, 0.0, 0.5]], dtype=torch.float64))
    expect = torch.tensor([[0.0, -c, s], [1, 0, 0], [0, s, c]], dtype=torch.float64)  # Ry(45) @ Rz(90)
    assert torch.allclose(ego[0], expect, atol=1e-15, rtol=0)
    # object 45 deg up (y points down): the axis is +x, Rc = Rx(45)
    ego = P.allocentric_to_egocentric(torch.eye(3, dtype=torch.float64)[None],
                                      torch.tensor([[0.0, -2.0, 2.0]], dtype=torch.float64))
    expect = torch.tensor([[1.0, 0, 0], [0, c, -s], [0, s, c]], dtype=torch.float64)
    assert torch.allclose(ego[0], expect, atol=1e-15, rtol=0)


def test_allocentric_correction_points_the_optical_axis_at_the_object():
    g = torch.Generator().manual_seed(3)
    t = torch.randn(50, 3, generator=g, dtype=torch.float64)
    t[:, 2] = t[:, 2].abs() + 0.2
    Rc = P.allocentric_to_egocentric(torch.eye(3, dtype=torch.float64).expand(50, 3, 3), t)
    assert torch.allclose(Rc[:, :, 2], t / t.norm(dim=-1, keepdim=True), atol=1e-14)
    assert torch.allclose(Rc @ Rc.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(50, 3, 3), atol=1e-14)
    assert torch.allclose(Rc[:, 2, :2], -Rc[:, :2, 2], atol=1e-14)  # the axis lies in the image plane (z = 0)


def test_site_translation_hand_computed():
    K = torch.tensor([[[600.0, 0, 320], [0, 600, 240], [0, 0, 1]]], dtype=torch.float64)
    # box centre (400, 300), size 80x60 -> crop scale 120, resize ratio 64/120; the network says the centre is a
    # quarter box right and half a box up, and z_rel 1.5: c = (420, 270), t_z = 1.5 * 64/120 = 0.8 m
    t = P.site_translation(torch.tensor([[0.25, -0.5]], dtype=torch.float64), torch.tensor([1.5], dtype=torch.float64),
                           torch.tensor([[400.0, 300.0]], dtype=torch.float64),
                           torch.tensor([[80.0, 60.0]], dtype=torch.float64),
                           torch.tensor([64 / 120], dtype=torch.float64), K)
    assert torch.allclose(t, torch.tensor([[0.8 * 100 / 600, 0.8 * 30 / 600, 0.8]], dtype=torch.float64),
                          atol=1e-15, rtol=0)


def test_dzi_boxes_hand_computed():
    boxes = P.xywh_to_xyxy(torch.tensor([[370.0, 270, 60, 40], [0, 0, 500, 400], [10, 20, 0.5, 0.25]]))
    assert boxes[2].tolist() == [10.0, 20.0, 10.5, 20.25]
    roi = P.dzi_boxes(boxes, 480, 640)
    assert roi.center.tolist() == [[400.0, 290.0], [250.0, 200.0], [10.25, 20.125]]
    assert roi.scale.tolist() == [90.0, 640.0, 1.5]          # max(w, h) * 1.5, clipped to max(H, W)
    assert roi.wh.tolist() == [[60.0, 40.0], [500.0, 400.0], [1.0, 1.0]]
    assert torch.allclose(roi.resize_ratio, torch.tensor([64 / 90, 0.1, 64 / 1.5], dtype=torch.float64).float().double(),
                          rtol=0, atol=0)


def test_crop_resize_on_the_opencv4_grid():
    """A crop at unit scale shifted by -0.3 px. OpenCV 4's warpAffine (the official crop) truncates source
    positions to 1/32 px after adding 1/64: 0.7 -> 22/32, so the bright pixel spreads 22/32 and 10/32
    (true bilinear would give 0.7 / 0.3); uint8 rounds (sum w p + 2^14) >> 15 with 15-bit weights."""
    row = torch.tensor([[[0.0, 1.0, 0.0, 0.0]]])
    out = P.crop_resize(row, torch.tensor([[1.7, 0.0]], dtype=torch.float64), torch.tensor([4.0], dtype=torch.float64), 4)
    expect = torch.zeros(1, 1, 4, 4)
    expect[0, 0, 2, 1], expect[0, 0, 2, 2] = 22 / 32, 10 / 32          # row y = 0; other rows fall outside
    assert torch.equal(out, expect)
    out8 = P.crop_resize((row * 255).to(torch.uint8), torch.tensor([[1.7, 0.0]], dtype=torch.float64),
                         torch.tensor([4.0], dtype=torch.float64), 4)
    assert out8.dtype == torch.uint8
    assert out8[0, 0, 2].tolist() == [0, (255 * 22 * 1024 + 16384) >> 15, (255 * 10 * 1024 + 16384) >> 15, 0]
    assert out8[0, 0, 2].tolist() == [0, 175, 80, 0]


def test_crop_resize_zoom_maps_the_crop_onto_the_box():
    """A 2x zoom-out of a horizontal ramp (value = x): crop pixel u samples x = c + (u - S/2) * s/S."""
    W, H = 64, 8
    ramp = torch.arange(W, dtype=torch.float32).expand(1, H, W).clone()
    out = P.crop_resize(ramp, torch.tensor([[32.0, 4.0]], dtype=torch.float64), torch.tensor([16.0], dtype=torch.float64), 8)
    assert out[0, 0, 4].tolist() == [24.0, 26.0, 28.0, 30.0, 32.0, 34.0, 36.0, 38.0]
    coords = P.crop_resize(P.coord_2d_map(H, W), torch.tensor([[32.0, 4.0]], dtype=torch.float64),
                           torch.tensor([16.0], dtype=torch.float64), 8)
    assert torch.allclose(coords[0, 0, 4], torch.tensor([24.0, 26, 28, 30, 32, 34, 36, 38]) / W)
    # rows y = 4 + (v - 4) * 2 = -4, -2, 0, 2, 4, 6, 8, 10: outside the 8-row image -> 0 (constant border)
    assert coords[0, 1, :, 0].tolist() == [0.0, 0.0, 0.0, 2 / 8, 4 / 8, 6 / 8, 0.0, 0.0]


def test_resize_shortest_edge():
    assert P.resize_shortest_edge_size(480, 640, 480, 640) == (480, 640)
    assert P.resize_shortest_edge_size(540, 720, 480, 640) == (480, 640)      # T-LESS primesense
    assert P.resize_shortest_edge_size(960, 1280, 480, 640) == (480, 640)     # ITODD


# ------------------------------------------------------------------------------------------ detections


def test_read_detections_both_layouts(tmp_path):
    gd = tmp_path / "yolox.json"
    gd.write_text(json.dumps({"48/1": [{"obj_id": 2, "bbox_est": [10, 20, 30, 40], "score": 0.9, "time": 0.1},
                                       {"obj_id": 2, "bbox_est": [11, 21, 30, 40], "score": 0.95}]}))
    dets = read_detections(gd)
    assert list(dets) == [(48, 1)]
    assert [d.score for d in dets[(48, 1)]] == [0.9, 0.95] and dets[(48, 1)][1].time == 0.0
    bop = tmp_path / "bop.json"
    bop.write_text(json.dumps([{"scene_id": 48, "image_id": 1, "category_id": 5, "bbox": [1, 2, 3, 4],
                                "score": 0.5, "time": 0.2, "segmentation": {}}]))
    d = read_detections(bop)[(48, 1)][0]
    assert (d.obj_id, d.bbox_xywh, d.score, d.time) == (5, (1.0, 2.0, 3.0, 4.0), 0.5, 0.2)
    sel = G.select_detections(dets[(48, 1)] + [G.Detection(7, (0, 0, 1, 1), 0.99, 0)], [1, 2, 3], 1, 0.0)
    assert [(x.obj_id, x.score) for x in sel] == [(2, 0.95)]          # top-1 per object, unknown objects dropped


@pytest.mark.parametrize("content, match", [
    ({"48-1": []}, r"key '48-1'.*'scene_id/im_id'"),
    ({"48/1": [{"obj_id": 2, "score": 1}]}, r"key '48/1' index 0, field 'bbox_est': missing"),
    ({"48/1": [{"obj_id": 2, "bbox_est": [1, 2, -3, 4]}]}, r"field 'bbox_est': negative"),
    ({"48/1": [{"obj_id": "a", "bbox_est": [1, 2, 3, 4]}]}, r"field 'obj_id'"),
    ([{"scene_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]}], r"index 0, field 'image_id'"),
    (7, "expected a JSON object"),
])
def test_read_detections_errors(tmp_path, content, match):
    p = tmp_path / "d.json"
    p.write_text(json.dumps(content))
    with pytest.raises(InputError, match=match):
        read_detections(p)


# ------------------------------------------------------------------------------------------ the method


def test_build_needs_weights_and_detections():
    from bench.registry import METHODS

    assert METHODS["gdrnpp"] is G.build
    with pytest.raises(InputError) as e:
        G.build({"name": "gdrnpp"}, None, None)
    assert e.value.line() == ("field 'weights': gdrnpp needs weights=FILE (an official GDRNPP checkpoint) or "
                              "predictions=FILE (a BOP19 CSV)")
    with pytest.raises(InputError, match="dataset.detections"):   # the detections are a dataset option
        G.build({"name": "gdrnpp"}, SimpleNamespace(name="ycbv", detections_path=None), "w.pth")


def test_predict_step_end_to_end(small_ckpt, tmp_path):
    """Detections -> crops -> network -> poses: the top detection per object, in class order, R a rotation, and
    t consistent with SITE (t projects onto the predicted centre, t_z = z_rel * 64 / scale)."""
    path, _ = small_ckpt
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "000001.png")
    dets = {(48, 1): [G.Detection(6, (100.0, 120.0, 80.0, 60.0), 0.7, 0.05),
                      G.Detection(1, (300.5, 200.25, 50.0, 90.0), 0.9, 0.05),
                      G.Detection(1, (10.0, 10.0, 20.0, 20.0), 0.2, 0.05),
                      G.Detection(9, (10.0, 10.0, 20.0, 20.0), 0.99, 0.05)]}
    m = G.GDRNPP.from_official_checkpoint(path, obj_ids=[1, 5, 6], extents=EXTENTS3, **SMALL)
    K = torch.tensor([[572.4, 0, 325.3], [0, 573.6, 242.0], [0, 0, 1]], dtype=torch.float64)
    samples = [Sample(48 * 1_000_000 + 1, {}, {"rgb_path": str(tmp_path / "000001.png"), "K": K,
                                               "detections": dets[(48, 1)]}),
               Sample(48 * 1_000_000 + 2, {}, {"K": K, "detections": []})]
    preds = m.predict_step(samples)
    assert [p.sample_id for p in preds] == [48_000_001, 48_000_002]
    out = preds[0].output
    assert out["obj_id"].tolist() == [1, 6] and out["score"].tolist() == [0.9, 0.7]
    assert out["R"].dtype == torch.float64 and out["t"].dtype == torch.float64 and out["t"].shape == (2, 3)
    R = out["R"]
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(2, 3, 3), atol=1e-12)
    assert torch.allclose(torch.linalg.det(R), torch.ones(2, dtype=torch.float64))
    assert torch.isfinite(out["t"]).all() and float(out["time"]) >= 0.05
    assert preds[1].output["obj_id"].numel() == 0          # no detections: no estimates (and no image needed)
    # SITE consistency, against the network's raw outputs on the same crops
    sel = [dets[(48, 1)][1], dets[(48, 1)][0]]
    roi = P.dzi_boxes(P.xywh_to_xyxy(torch.tensor([d.bbox_xywh for d in sel], dtype=torch.float64)), 480, 640)
    bgr = torch.from_numpy(img[:, :, ::-1].transpose(2, 0, 1).copy())
    x = (P.crop_resize(bgr, roi.center, roi.scale, 256).double() / 255).float()
    c2d = P.crop_resize(P.coord_2d_map(480, 640), roi.center, roi.scale, 64)
    with torch.no_grad():
        raw = m.net(x, torch.tensor([0, 2]), c2d, EXTENTS3[[0, 2]])
    site = raw["site"].double()
    t_m = out["t"] / 1000
    assert torch.allclose(t_m[:, 2], site[:, 2] * roi.resize_ratio, rtol=1e-12, atol=0)
    K32 = K.float().double()
    uv = (t_m[:, :2] / t_m[:, 2:]) * torch.stack([K32[0, 0], K32[1, 1]]) + torch.stack([K32[0, 2], K32[1, 2]])
    assert torch.allclose(uv, site[:, :2] * roi.wh + roi.center, rtol=0, atol=1e-9)
    Ra = P.rot6d_to_matrix(raw["rot6d"].double())
    assert torch.allclose(out["R"], P.allocentric_to_egocentric(Ra, t_m), atol=1e-12)


def test_predict_step_without_image_is_one_clear_error(small_ckpt):
    path, _ = small_ckpt
    dets = [G.Detection(1, (10.0, 10.0, 20.0, 20.0), 0.5, 0.0)]
    m = G.GDRNPP.from_official_checkpoint(path, obj_ids=[1, 5, 6], extents=EXTENTS3, **SMALL)
    with pytest.raises(InputError, match=r"scene 1 image 3, field 'rgb_path'"):
        m.predict_step([Sample(1_000_003, {}, {"K": torch.eye(3), "detections": dets})])
    with pytest.raises(InputError, match=r"scene 1 image 3, field 'dataset.detections'"):
        m.predict_step([Sample(1_000_003, {}, {"K": torch.eye(3)})])   # a dataset without the option


def _write_ply(path, vertices):
    from plyfile import PlyData, PlyElement

    v = np.array([tuple(p) for p in vertices], dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    f = np.array([([0, 1, 2],)], dtype=[("vertex_indices", "i4", (3,))])
    PlyData([PlyElement.describe(v, "vertex"), PlyElement.describe(f, "face")]).write(str(path))


def test_build_uses_the_official_class_order_and_model_extents(small_ckpt, tmp_path):
    """TUD-L: classes (1, 2, 3) as ref/tudl.py; extents = vertex bounding box of <root>/models/*.ply in metres."""
    path, _ = small_ckpt
    (tmp_path / "models").mkdir()
    boxes = {1: [(-50, -20, -10), (50, 20, 10), (0, 0, 0)], 2: [(0, 0, 0), (30, 60, 90), (1, 1, 1)],
             3: [(-5, -5, -5), (5, 5, 5), (0, 5, 0)]}
    for o, verts in boxes.items():
        _write_ply(tmp_path / "models" / f"obj_{o:06d}.ply", verts)
    dets = tmp_path / "dets.json"
    ds = SimpleNamespace(name="tudl", root=tmp_path, params=None, detections_path=dets)
    cfg = {"name": "gdrnpp", **{k: v for k, v in SMALL.items() if k != "num_classes"}}
    m = G.build(cfg, ds, path)
    assert m.obj_ids == [1, 2, 3] and m.cfg.min_size_test == 480 and m.cfg.max_size_test == 640
    assert m.cfg.det_topk_per_obj == 1 and m.cfg.det_score_thr == 0.0
    assert torch.allclose(m.extents, torch.tensor([[0.1, 0.04, 0.02], [0.03, 0.06, 0.09], [0.01, 0.01, 0.01]]))
    # HB's official checkpoints have the 16 test objects of ref/hb_bop19.py: a 3-class checkpoint is refused
    (tmp_path / "m16").mkdir()
    for o in (1, 3, 4, 8, 9, 10, 12, 15, 17, 18, 19, 22, 23, 29, 32, 33):
        _write_ply(tmp_path / "m16" / f"obj_{o:06d}.ply", boxes[3])
    ds_icbin = SimpleNamespace(name="icbin", root=tmp_path, params=None, detections_path=dets)
    m = G.build({**cfg, "num_classes": 3, "obj_ids": [1, 2, 3]}, ds_icbin, path)   # one option overrides the table
    assert m.cfg.det_topk_per_obj == 100 and m.obj_ids == [1, 2, 3]                 # config: DET_TOPK_PER_OBJ=100
    ds_hb = SimpleNamespace(name="hb", root=tmp_path, params=None, detections_path=dets)
    with pytest.raises(InputError, match=r"out_layer.weight', field 'shape': expected \(1120, 32, 1, 1\)"):
        G.build({**cfg, "models_dir": str(tmp_path / "m16")}, ds_hb, path)


def test_estimate_resizes_like_resize_shortest_edge(small_ckpt):
    """A 720x540 (T-LESS primesense) image is processed as the official test-time ResizeShortestEdge(480, 640)
    does: PIL-bilinear image resize to 640x480 with K's first two rows and the boxes scaled by 8/9."""
    path, _ = small_ckpt
    m = G.GDRNPP.from_official_checkpoint(path, obj_ids=[1, 2, 3], extents=EXTENTS3, **SMALL)
    rng = np.random.default_rng(5)
    big = rng.integers(0, 256, (3, 540, 720), dtype=np.uint8)
    K = torch.tensor([[1075.65, 0, 360.0], [0, 1073.90, 270.0], [0, 0, 1]], dtype=torch.float64)
    dets = [G.Detection(2, (180.0, 135.0, 90.0, 117.0), 1.0, 0.0)]
    out = m.estimate(torch.from_numpy(big), K, dets)
    small = np.asarray(Image.fromarray(big.transpose(1, 2, 0)).resize((640, 480), Image.BILINEAR)).transpose(2, 0, 1)
    s = 640 / 720
    Ks = K.clone()
    Ks[:2] *= s
    ref = m.estimate(torch.from_numpy(small.copy()), Ks, [G.Detection(2, (160.0, 120.0, 80.0, 104.0), 1.0, 0.0)])
    assert torch.allclose(out["t"], ref["t"], rtol=1e-6, atol=0) and torch.allclose(out["R"], ref["R"], atol=1e-6)
