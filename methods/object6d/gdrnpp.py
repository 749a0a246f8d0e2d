"""GDRNPP (Liu et al., BOP 2022 winner; shanice-l/gdrnpp_bop2022) as a LightningModule, with its official
checkpoints.

The network is ``GDRN_double_mask`` of the official configs
(``configs/gdrn/<dataset>/convnext_a6_AugCosyAAEGray_BG05_mlL1_DMask_amodalClipBox_classAware_<dataset>.py``):

- a timm ConvNeXt (``convnext_base``, ``features_only``, last stage: 1024 channels at stride 32) on a 256x256
  zoomed-in crop of each detection (BGR, /255);
- ``TopDownDoubleMaskXyzRegionHead``: deconv + 2 bilinear ups to 64x64, one shared 1x1 output conv giving,
  per class (class-aware), a visible and an amodal mask, the XYZ coordinate map and 64+1 region logits;
- ``ConvPnPNet`` (Patch-PnP): XYZ (de-normalised by the object extent) + 2D image coordinates + region
  softmax -> 3 stride-2 convs -> FC -> allocentric rot6d and SITE ``(delta_x, delta_y, z_rel)``;
- decoding (:mod:`methods.object6d.pose_decoding`): rot6d -> matrix, SITE -> translation with the crop's
  centre, size, zoom ratio and K, allocentric -> egocentric.

The official checkpoint key layout is the module layout here (``backbone.*`` of timm's ``FeatureListNet``
names, ``geo_head_net.*``, ``pnp_net.*``); :func:`checkpoint_filter_fn` only unwraps detectron2's
``{"model": ...}``, strips ``module.`` and folds the duplicate ``norm``/``gn`` names under which the official
``ConvModule`` registers each GroupNorm.

Test time follows ``read_data_test`` and the evaluator of the same configs: detections from a JSON file (top
``DET_TOPK_PER_OBJ`` per object above ``DET_THR``), detectron2's ResizeShortestEdge, a square crop of side
``1.5 max(w, h)`` (no jitter) resampled as OpenCV 4's ``warpAffine`` does (1/32 pixel grid), the network's pose
(``TEST.USE_PNP`` and ``USE_DEPTH_REFINE`` off, as in these configs), score = detection score, ``t`` in mm,
time = compute time + detection time. Poses are decoded in float64 (the official code: float32); against the
official model they agree to 3e-7 in R and 4e-8 m in t (tests/methods/test_gdrnpp.py, golden numbers).
"""
from __future__ import annotations

import pickle
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.errors import InputError
from bench.formats.ply import read_ply
from bench.registry import register_method
from bench.types import Detection, Prediction, Sample
from methods.base import PoseMethod
from methods.object6d.pose_decoding import (
    allocentric_to_egocentric,
    coord_2d_map,
    crop_resize,
    dzi_boxes,
    resize_shortest_edge_size,
    rot6d_to_matrix,
    site_translation,
    xywh_to_xyxy,
)

IM_ID_LIMIT = 1_000_000

# What the official configs and ``ref/*.py`` fix per dataset: the class order of the class-aware outputs
# (``objs``), the folder whose PLY models give the extents (``model_dir``), the test resize (MIN/MAX_SIZE_TEST).
OFFICIAL_OBJ_IDS: dict[str, tuple[int, ...]] = {
    "ycbv": tuple(range(1, 22)),
    "lmo": (1, 5, 6, 8, 9, 10, 11, 12),
    "tless": tuple(range(1, 31)),
    "tudl": (1, 2, 3),
    "icbin": (1, 2),
    "itodd": tuple(range(1, 29)),
    "hb": (1, 3, 4, 8, 9, 10, 12, 15, 17, 18, 19, 22, 23, 29, 32, 33),   # ref/hb_bop19.py: the 16 test objects
}
OFFICIAL_MODELS_DIR: dict[str, str] = {"tless": "models_cad"}          # others: "models"
# Test options that a dataset's official config changes from the YCB-V values (the GDRNPPConfig defaults).
OFFICIAL_OVERRIDES: dict[str, dict[str, Any]] = {
    "tless": {"det_topk_per_obj": 100},
    "icbin": {"det_topk_per_obj": 100},
    "hb": {"det_topk_per_obj": 100},
    "itodd": {"det_topk_per_obj": 100, "det_score_thr": 0.05, "min_size_test": 960, "max_size_test": 1280},
}


# ------------------------------------------------------------------------------------------ configuration


@dataclass(frozen=True)
class GDRNPPConfig:
    """The network's shape and the test-time options of the official config (defaults: the official values)."""

    num_classes: int = 21
    backbone: str = "convnext_base"          # MODEL.POSE_NET.BACKBONE.INIT_CFG.type = "timm/convnext_base"
    backbone_out_index: int = 3              # out_indices=(3,)
    in_dim: int = 1024                       # GEO_HEAD.INIT_CFG.in_dim
    feat_dim: int = 256                      # head: feat_dim, 2 convs per block, GN(32), GELU
    num_gn_groups: int = 32
    num_regions: int = 64                    # GEO_HEAD.NUM_REGIONS
    pnp_featdim: int = 128                   # ConvPnPNet defaults: 3 stride-2 convs, flatten 8x8
    input_res: int = 256
    output_res: int = 64
    dzi_pad_scale: float = 1.5               # INPUT.DZI_PAD_SCALE
    min_size_test: int = 480                 # INPUT.MIN_SIZE_TEST (ResizeShortestEdge)
    max_size_test: int = 640
    det_topk_per_obj: int = 1                # DATASETS.DET_TOPK_PER_OBJ
    det_score_thr: float = 0.0               # DATASETS.DET_THR
    roi_batch_size: int = 64


# ------------------------------------------------------------------------------------------ network


class ConvGNAct(nn.Module):
    """conv (no bias) -> GroupNorm -> GELU: the official ``ConvModule`` (its GroupNorm is saved as ``gn``)."""

    def __init__(self, c_in: int, c_out: int, groups: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False)
        self.gn = nn.GroupNorm(groups, c_out)
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.gn(self.conv(x)))


class GeoHead(nn.Module):
    """``TopDownDoubleMaskXyzRegionHead`` (up_types deconv, bilinear, bilinear; shared 1x1 output layer).

    Output channels, per class: 1 visible mask, 1 amodal mask, 3 XYZ, ``num_regions + 1`` region logits,
    laid out as ``[vis (C) | full (C) | x (C) | y (C) | z (C) | region (C x R+1)]``.
    """

    def __init__(self, cfg: GDRNPPConfig):
        super().__init__()
        f, g = cfg.feat_dim, cfg.num_gn_groups
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(cfg.in_dim, f, kernel_size=3, stride=2, padding=1, output_padding=1, bias=False),
            nn.GroupNorm(g, f), nn.GELU(), ConvGNAct(f, f, g), ConvGNAct(f, f, g),
        ]
        for _ in range(2):
            layers += [nn.UpsamplingBilinear2d(scale_factor=2), ConvGNAct(f, f, g), ConvGNAct(f, f, g)]
        self.features = nn.ModuleList(layers)
        self.num_classes = cfg.num_classes
        self.region_dim = cfg.num_regions + 1
        self.out_layer = nn.Conv2d(f, (2 + 3 + self.region_dim) * cfg.num_classes, kernel_size=1, bias=True)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """-> visible mask, amodal mask (B, C, H, W), xyz (B, 3, C, H, W), region (B, C*(R+1), H, W)."""
        for layer in self.features:
            x = layer(x)
        out = self.out_layer(x)
        C = self.num_classes
        b, _, h, w = out.shape
        return out[:, :C], out[:, C:2 * C], out[:, 2 * C:5 * C].reshape(b, 3, C, h, w), out[:, 5 * C:]


class PatchPnP(nn.Module):
    """``ConvPnPNet``: (XYZ, 2D coords, region attention) -> allocentric rot6d and SITE ``(dx, dy, z_rel)``."""

    def __init__(self, cfg: GDRNPPConfig):
        super().__init__()
        c_in = 3 + 2 + cfg.num_regions
        f, g = cfg.pnp_featdim, cfg.num_gn_groups
        layers: list[nn.Module] = []
        for i in range(3):
            layers += [nn.Conv2d(c_in if i == 0 else f, f, 3, stride=2, padding=1, bias=False), nn.GroupNorm(g, f),
                       nn.GELU()]
        self.features = nn.ModuleList(layers)
        side = cfg.output_res // 8
        self.fc1 = nn.Linear(f * side * side, 1024)
        self.fc2 = nn.Linear(1024, 256)
        self.fc_r = nn.Linear(256, 6)
        self.fc_t = nn.Linear(256, 3)
        self.act = nn.GELU()

    def forward(self, coor_feat: Tensor, region: Tensor, extents: Tensor) -> tuple[Tensor, Tensor]:
        # XYZ maps are normalised to [0, 1] by the extent: back to metres, centred (denormalize_by_extent)
        xyz = (coor_feat[:, :3] - 0.5) * extents[:, :, None, None]
        x = torch.cat([xyz, coor_feat[:, 3:], region], dim=1)
        for layer in self.features:
            x = layer(x)
        x = self.act(self.fc1(x.flatten(1)))
        x = self.act(self.fc2(x))
        return self.fc_r(x), self.fc_t(x)


class GDRNPPNet(nn.Module):
    """``GDRN_double_mask``: backbone -> geometry head -> Patch-PnP, class-aware maps selected per ROI."""

    def __init__(self, cfg: GDRNPPConfig):
        super().__init__()
        import timm

        self.cfg = cfg
        self.backbone = timm.create_model(cfg.backbone, pretrained=False, features_only=True,
                                          out_indices=(cfg.backbone_out_index,), in_chans=3)
        self.geo_head_net = GeoHead(cfg)
        self.pnp_net = PatchPnP(cfg)

    def forward(self, x: Tensor, roi_classes: Tensor, roi_coord_2d: Tensor, roi_extents: Tensor) -> dict[str, Tensor]:
        """x (B, 3, 256, 256) BGR/255; roi_coord_2d (B, 2, 64, 64); roi_extents (B, 3) metres.

        Returns raw ``rot6d`` (B, 6), ``site`` (B, 3) and the class-selected maps.
        """
        feat = self.backbone(x)[-1]
        vis, full, xyz, region = self.geo_head_net(feat)
        b, C, h, w = vis.shape
        idx = torch.arange(b, device=x.device)
        vis, full = vis[idx, roi_classes][:, None], full[idx, roi_classes][:, None]
        xyz = xyz[idx, :, roi_classes]                                        # (B, 3, h, w)
        region = region.reshape(b, C, -1, h, w)[idx, roi_classes]            # (B, R+1, h, w)
        region_att = F.softmax(region[:, 1:], dim=1)                         # channel 0 is background
        rot6d, site = self.pnp_net(torch.cat([xyz, roi_coord_2d], dim=1), region_att, roi_extents)
        return {"rot6d": rot6d, "site": site, "mask": vis, "full_mask": full, "xyz": xyz, "region": region}


# ------------------------------------------------------------------------------------------ checkpoints


def checkpoint_filter_fn(state_dict: dict[str, Any], model: nn.Module | None = None) -> dict[str, Tensor]:
    """Official GDRNPP checkpoint -> this module's state dict (timm's ``checkpoint_filter_fn`` convention).

    - detectron2 checkpointers save ``{"model": state_dict, ...}``; DDP adds ``module.``;
    - the official ``ConvModule`` assigns its GroupNorm to ``self.norm`` *and* registers it as ``gn``, so
      ``geo_head_net.features.N.norm.*`` duplicates ``...gn.*``: the duplicate is dropped (renamed when alone);
    - ``backbone.stages.N`` / ``backbone.stem.N`` (a ConvNeXt saved without timm's ``features_only`` wrapper) are
      renamed to the wrapper's flattened ``stages_N`` / ``stem_N``;
    - tensors are converted to float32.
    Keys are otherwise the official ones; missing, unexpected and mis-shaped keys are reported by the caller.
    """
    if "model" in state_dict and isinstance(state_dict["model"], dict):
        state_dict = state_dict["model"]
    elif "state_dict" in state_dict and isinstance(state_dict["state_dict"], dict):
        state_dict = state_dict["state_dict"]
    out: dict[str, Tensor] = {}
    for k, v in state_dict.items():
        k = k.removeprefix("module.")
        if not isinstance(v, Tensor):
            continue
        out[k] = v.float() if v.is_floating_point() else v
    for k in [k for k in out if re.match(r"backbone\.(stem|stages)\.\d+\.", k)]:
        # timm's FeatureListNet flattens the stem/stages Sequentials ('stages_3'); a plain ConvNeXt says 'stages.3'
        out[re.sub(r"^backbone\.(stem|stages)\.(\d+)\.", r"backbone.\1_\2.", k)] = out.pop(k)
    for k in [k for k in out if k.startswith("geo_head_net.features.") and ".norm." in k]:
        alias = k.replace(".norm.", ".gn.")
        v = out.pop(k)
        out.setdefault(alias, v)
    return out


def read_checkpoint(path: Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)``: tensors and plain containers only, never arbitrary pickled code."""
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(path, None, None, "checkpoint file not found") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, TypeError, KeyError, IndexError,
            AttributeError, ImportError, UnicodeDecodeError) as e:  # weights_only refuses anything but tensors
        first = str(e).splitlines()[0][:100] if str(e) else ""
        raise InputError(path, None, None,
                         f"not a loadable PyTorch checkpoint ({e.__class__.__name__}: {first})") from None
    if not isinstance(raw, dict):
        raise InputError(path, None, None,
                         f"expected a state dict or {{'model': state_dict}}, got {type(raw).__name__}")
    return raw


def match_state_dict(raw: dict[str, Any], model: nn.Module, source: str | Path | None = None) -> dict[str, Tensor]:
    """Convert an official state dict and check it against ``model``: every key present, none extra, every
    shape equal; else one :class:`InputError` naming the first offending key."""
    sd = checkpoint_filter_fn(raw, model)
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    if missing:
        raise InputError(source, f"key '{missing[0]}'", None, f"missing from the checkpoint ({len(missing)} keys "
                         "missing; not a GDRN_double_mask checkpoint of this backbone?)")
    if unexpected:
        raise InputError(source, f"key '{unexpected[0]}'", None,
                         f"not part of GDRN_double_mask ({len(unexpected)} unexpected keys)")
    for k, v in expected.items():
        if tuple(sd[k].shape) != tuple(v.shape):
            hint = " (the checkpoint has another number of classes than obj_ids)" \
                if k.startswith("geo_head_net.out_layer") else ""
            raise InputError(source, f"key '{k}'", "shape", f"expected {tuple(v.shape)}, got {tuple(sd[k].shape)}{hint}")
    return sd


# ------------------------------------------------------------------------------------------ detections


def select_detections(dets: list[Detection], obj_ids: list[int], topk: int, score_thr: float) -> list[Detection]:
    """The official ``load_detections_into_dataset``: drop scores below the threshold and unknown objects, keep
    the ``topk`` best per object (stable on ties), objects in class order."""
    out = []
    for obj in obj_ids:
        mine = [d for d in dets if d.obj_id == obj and d.score >= score_thr]
        out += sorted(mine, key=lambda d: d.score, reverse=True)[:topk]
    return out


# ------------------------------------------------------------------------------------------ the method


def _read_bgr(path: str, record: str) -> Tensor:
    """(3, H, W) uint8 in BGR order (the official ``read_image_mmcv(..., format="BGR")``)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise InputError(path, record, None, "image not found") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise InputError(path, record, None, f"not a readable image ({str(e)[:60]})") from None
    return torch.from_numpy(np.ascontiguousarray(arr[:, :, ::-1].transpose(2, 0, 1)))


def _resize_bilinear_pil(image: Tensor, new_h: int, new_w: int) -> Tensor:
    """detectron2 ``ResizeTransform.apply_image`` on uint8: PIL bilinear."""
    from PIL import Image

    pil = Image.fromarray(image.permute(1, 2, 0).numpy())
    return torch.from_numpy(np.array(pil.resize((new_w, new_h), Image.BILINEAR))).permute(2, 0, 1).contiguous()


class GDRNPP(PoseMethod):
    """GDRNPP on BOP images: detections -> zoomed-in crops -> network -> egocentric poses (mm)."""

    family = "object6d"

    def __init__(self, net: GDRNPPNet, obj_ids: list[int], extents: Tensor):
        super().__init__()
        if len(obj_ids) != net.cfg.num_classes:
            raise ValueError(f"{len(obj_ids)} obj_ids for {net.cfg.num_classes} classes")
        self.net = net.eval()
        self.cfg = net.cfg
        self.obj_ids = list(obj_ids)
        self.register_buffer("extents", extents.to(torch.float32), persistent=False)   # (C, 3) metres

    @classmethod
    def from_official_checkpoint(cls, path: Path, obj_ids: list[int] | None = None, extents: Tensor | None = None,
                                 **cfg) -> GDRNPP:
        """Build the network on the meta device (no random init) and assign the converted official weights."""
        config = GDRNPPConfig(**cfg)
        if obj_ids is None:
            obj_ids = list(range(1, config.num_classes + 1))
        if extents is None:
            raise ValueError("extents (num_classes, 3) in metres are required")
        with torch.device("meta"):
            net = GDRNPPNet(config)
        sd = match_state_dict(read_checkpoint(Path(path)), net, path)
        net.load_state_dict(sd, strict=True, assign=True)
        return cls(net, obj_ids, extents)

    # -- inference

    @torch.no_grad()
    def estimate(self, image: Tensor, K: Tensor, dets: list[Detection]) -> dict[str, Tensor]:
        """One image (3, H, W) uint8 BGR, K (3, 3), selected detections -> poses (R, t in metres), float64."""
        cfg, dev = self.cfg, self.extents.device
        K = K.to(torch.float64).clone()
        boxes = xywh_to_xyxy(torch.tensor([d.bbox_xywh for d in dets], dtype=torch.float64))
        _, H0, W0 = image.shape
        H, W = resize_shortest_edge_size(H0, W0, cfg.min_size_test, cfg.max_size_test)
        if (H, W) != (H0, W0):  # the official test-time ResizeShortestEdge: image, K rows and boxes scale along
            image = _resize_bilinear_pil(image, H, W)
            sx, sy = W / W0, H / H0
            K[0] *= sx
            K[1] *= sy
            boxes = boxes * torch.tensor([sx, sy, sx, sy], dtype=torch.float64)
        K = K.to(torch.float32).to(torch.float64)
        roi = dzi_boxes(boxes, H, W, cfg.dzi_pad_scale, cfg.output_res)
        img = image.to(dev)
        center, scale = roi.center.to(dev), roi.scale.to(dev)
        coords = coord_2d_map(H, W, device=dev)
        cls_index = torch.tensor([self.obj_ids.index(d.obj_id) for d in dets], dtype=torch.int64, device=dev)
        rot6d, site = [], []
        for a in range(0, len(dets), cfg.roi_batch_size):
            sl = slice(a, a + cfg.roi_batch_size)
            x = (crop_resize(img, center[sl], scale[sl], cfg.input_res).to(torch.float64) / 255.0).to(torch.float32)
            c2d = crop_resize(coords, center[sl], scale[sl], cfg.output_res)
            out = self.net(x, cls_index[sl], c2d, self.extents[cls_index[sl]])
            rot6d.append(out["rot6d"])
            site.append(out["site"])
        rot6d_t = torch.cat(rot6d).to(torch.float64)
        site_t = torch.cat(site).to(torch.float64)
        n = len(dets)
        t = site_translation(site_t[:, :2], site_t[:, 2], roi.center.to(dev), roi.wh.to(dev),
                             roi.resize_ratio.to(dev), K.to(dev).expand(n, 3, 3))
        R = allocentric_to_egocentric(rot6d_to_matrix(rot6d_t), t)
        return {"R": R, "t": t}

    def predict_step(self, batch: list[Sample], batch_idx: int = 0) -> list[Prediction]:
        out = []
        for s in batch:
            t0 = time.perf_counter()
            scene, im = divmod(int(s.sample_id), IM_ID_LIMIT)
            if "detections" not in s.inputs:
                raise InputError(None, f"scene {scene} image {im}", "dataset.detections",
                                 "gdrnpp needs the detections of every test image: pass dataset.detections=FILE")
            dets = select_detections(s.inputs["detections"], self.obj_ids, self.cfg.det_topk_per_obj,
                                     self.cfg.det_score_thr)
            if not dets:
                out.append(Prediction(s.sample_id, _empty()))
                continue
            rgb = s.inputs.get("rgb_path")
            if not rgb:
                raise InputError(None, f"scene {scene} image {im}", "rgb_path",
                                 "gdrnpp needs the RGB image of every test image; this dataset has none")
            K = torch.as_tensor(s.inputs["K"], dtype=torch.float64).reshape(3, 3)
            pose = self.estimate(_read_bgr(rgb, f"scene {scene} image {im}"), K, dets)
            elapsed = time.perf_counter() - t0 + dets[0].time   # official: compute time + detection time
            out.append(Prediction(s.sample_id, {
                "obj_id": torch.tensor([d.obj_id for d in dets], dtype=torch.int64),
                "R": pose["R"].cpu(),
                "t": (pose["t"] * 1000.0).cpu(),
                "score": torch.tensor([d.score for d in dets], dtype=torch.float64),
                "time": torch.tensor(elapsed, dtype=torch.float64),
            }))
        return out


def _empty() -> dict[str, Tensor]:
    return {"obj_id": torch.zeros(0, dtype=torch.int64), "R": torch.zeros(0, 3, 3, dtype=torch.float64),
            "t": torch.zeros(0, 3, dtype=torch.float64), "score": torch.zeros(0, dtype=torch.float64),
            "time": torch.tensor(-1.0, dtype=torch.float64)}


# ------------------------------------------------------------------------------------------ builder


def model_extents(models: dict[int, Any], obj_ids: list[int], source: str) -> Tensor:
    """(C, 3) bounding-box sizes in metres from model vertices in mm (the official ``_get_extents``)."""
    rows = []
    for o in obj_ids:
        m = models.get(o)
        if m is None:
            raise InputError(source, f"object {o}", None, "no model for this object of the checkpoint's classes")
        v = m.vertices if hasattr(m, "vertices") else m
        rows.append((v.max(dim=0).values - v.min(dim=0).values).to(torch.float64) / 1000.0)
    return torch.stack(rows).to(torch.float32)


def _opt(cfg: Any, key: str, default: Any) -> Any:
    v = cfg.get(key) if cfg is not None else None
    return default if v is None else v


@register_method("gdrnpp")
def build(cfg: Any, dataset: Any, weights: Path | None) -> PoseMethod:
    """Hydra node ``method`` (bench/conf/method/gdrnpp.yaml), a BOP dataset and an official checkpoint.

    ``null`` options take the official per-dataset values: class order ``obj_ids``, extents from the PLY models
    in ``<data_root>/models`` (``models_cad`` for T-LESS; ``models_eval`` when that folder is absent, with a
    warning), test resize ``min_size_test``/``max_size_test``, ``det_topk_per_obj``, ``det_score_thr``.
    """
    if weights is None:
        raise InputError(None, None, "weights", "gdrnpp needs weights=FILE (an official GDRNPP checkpoint) or "
                         "predictions=FILE (a BOP19 CSV)")
    if getattr(dataset, "detections_path", None) is None:
        raise InputError(None, None, "dataset.detections", "gdrnpp needs dataset.detections=FILE (the detections "
                         "JSON, e.g. GDRNPP's test_bboxes/yolox_*.json)")
    name = str(getattr(dataset, "name", ""))
    obj_ids = _opt(cfg, "obj_ids", None)
    if obj_ids is None:
        params = getattr(dataset, "params", None)
        obj_ids = OFFICIAL_OBJ_IDS.get(name, getattr(params, "obj_ids", None))
        if obj_ids is None:
            raise InputError(None, None, "method.obj_ids", f"no official class order for dataset {name!r}; set "
                             "method.obj_ids to the checkpoint's class order")
    obj_ids = [int(o) for o in obj_ids]
    extents = _extents(cfg, dataset, name, obj_ids)
    defaults = GDRNPPConfig(**OFFICIAL_OVERRIDES.get(name, {}))
    options = {f: type(getattr(defaults, f))(_opt(cfg, f, getattr(defaults, f)))
               for f in GDRNPPConfig.__dataclass_fields__ if f != "num_classes"}
    return GDRNPP.from_official_checkpoint(weights, obj_ids=obj_ids, extents=extents, num_classes=len(obj_ids),
                                           **options)


def _extents(cfg: Any, dataset: Any, name: str, obj_ids: list[int]) -> Tensor:
    models_dir = _opt(cfg, "models_dir", None)
    if models_dir is None and getattr(dataset, "root", None) is not None:
        official = Path(dataset.root) / OFFICIAL_MODELS_DIR.get(name, "models")
        if all((official / f"obj_{o:06d}.ply").is_file() for o in obj_ids):
            models_dir = official
    if models_dir is not None:
        models = {o: read_ply(Path(models_dir) / f"obj_{o:06d}.ply")[0] for o in obj_ids}
        return model_extents(models, obj_ids, str(models_dir))
    import warnings

    warnings.warn(f"gdrnpp: object extents from models_eval (the official code uses the "
                  f"{OFFICIAL_MODELS_DIR.get(name, 'models')}/ meshes, absent here; set method.models_dir)",
                  stacklevel=2)
    return model_extents(dataset.object_models(obj_ids), obj_ids, "models_eval")
