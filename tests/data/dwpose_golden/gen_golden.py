"""Record the official DWPose modules (CSPNeXt + RTMCCHead) on seeded weights, for tests/methods/test_dwpose.py.

The reference runs unchanged from its sources: mmdet 3.1.0's ``CSPNeXt`` (``mmdet/models/backbones/cspnext.py``,
``layers/csp_layer.py``, ``layers/se_layer.py``, ``backbones/csp_darknet.py``; DWPose's configs build it with
``_scope_='mmdet'``) on mmcv-lite 2.0.1's ``ConvModule`` / ``DepthwiseSeparableConvModule``, and the
``RTMCCHead`` (``models/heads/coord_cls_heads/rtmcc_head.py``, ``models/utils/rtmcc_block.py``,
``models/utils/tta.py`` ``flip_vectors``, ``codecs/simcc_label.py`` ``SimCCLabel.decode``,
``codecs/utils/post_processing.py`` ``get_simcc_maximum``) of the mmpose 1.1.0 that IDEA-Research/DWPose
bundles. Packages are imported with stub parents (their ``__path__`` is the source folder), so that the
package ``__init__`` files, which import every model and mmcv's compiled ops, never run; every module that
runs is the reference's own.

Written (``--out``):
- ``official_keys.json``: names and shapes of ``backbone.*`` / ``head.*`` of the two released models'
  configs (``rtmpose-l_8xb32-270e_coco-ubody-wholebody-384x288.py`` = dw-ll_ucoco_384,
  ``rtmpose-m_8xb64-270e_coco-ubody-wholebody-256x192.py`` = dw-mm_ucoco) and of the reduced one, plus
  COCO-WholeBody's ``flip_indices`` (``parse_pose_metainfo`` of ``configs/_base_/datasets/coco_wholebody.py``);
- ``golden.npz``: the reduced model (``REDUCED``: the same CSPNeXt P5 + RTMCCHead with deepen 0.33, widen
  0.125, a 48x64 input and a 32-wide GAU; weights by ``seeded_value`` per official key) on ``input`` =
  ``torch.randn(2, 3, 64, 48, generator=manual_seed(3))``: the plain forward
  (``x``, ``y``), the flip test's averaged vectors as ``RTMCCHead.predict`` forms them (``flip_x``,
  ``flip_y``: ``flip_vectors`` of the mirrored crop's outputs, then ``(a + b) * 0.5``) and its decoded
  ``keypoints`` / ``keypoint_scores`` (crop pixels), all float32 as the reference computes them.

Command and environment: tests/data/dwpose_golden/PROVENANCE.md.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import types
import zlib
from pathlib import Path

CONFIGS = {  # name: (config file under configs/wholebody_2d_keypoint/rtmpose/ubody/)
    "dwpose-l": "rtmpose-l_8xb32-270e_coco-ubody-wholebody-384x288.py",
    "dwpose-m": "rtmpose-m_8xb64-270e_coco-ubody-wholebody-256x192.py",
}
REDUCED = {
    "backbone": {"arch": "P5", "expand_ratio": 0.5, "deepen_factor": 0.33, "widen_factor": 0.125,
                 "out_indices": (4,), "channel_attention": True, "norm_cfg": {"type": "BN"},
                 "act_cfg": {"type": "SiLU"}},
    "head": {"in_channels": 128, "out_channels": 133, "input_size": (48, 64), "in_featuremap_size": (2, 2),
             "simcc_split_ratio": 2.0, "final_layer_kernel_size": 7,
             "gau_cfg": {"hidden_dims": 32, "s": 16, "expansion_factor": 2, "dropout_rate": 0.0, "drop_path": 0.0,
                         "act_fn": "SiLU", "use_rel_bias": False, "pos_enc": False}},
}


def seeded_value(key: str, shape):
    """Deterministic weights per official key (tests/methods/test_dwpose.py imports this rule).

    tests/methods/test_simcc.py's rule with the gains this network needs to pass a signal: convolutions and
    linear maps ``1.5 randn / sqrt(fan_in)`` (at 1.0 the 30-layer CSPNeXt output no longer depends on its
    input: 1e-5 of its range), ScaleNorm gains ``g`` near 1 and GAU ``gamma`` / ``beta`` unit normals (small
    ones leave the attention branch at zero, so the GAU's weights could not be checked).
    """
    import numpy as np
    import torch

    g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    if key.endswith("num_batches_tracked"):
        return torch.tensor(0, dtype=torch.int64)
    if key.endswith("running_var"):
        return 0.5 + torch.rand(shape, generator=g)
    if key.endswith((".gamma", ".beta")):
        return torch.randn(shape, generator=g)
    if len(shape) >= 2:
        return 1.5 * torch.randn(shape, generator=g) / int(np.prod(shape[1:])) ** 0.5
    if key.endswith(("weight", ".g")):
        return 1.0 + 0.1 * torch.randn(shape, generator=g)
    return 0.1 * torch.randn(shape, generator=g)


def _stub(name: str, path: Path) -> types.ModuleType:
    pkg = types.ModuleType(name)
    pkg.__path__ = [str(path / name.replace(".", "/"))]
    sys.modules[name] = pkg
    return pkg


def load_reference(dw_mmpose: Path, mmdet_root: Path) -> dict:
    """The reference classes: mmdet's CSPNeXt, DWPose-mmpose's RTMCCHead, SimCCLabel, parse_pose_metainfo."""
    for name in ("mmdet", "mmdet.models", "mmdet.models.backbones", "mmdet.models.layers", "mmdet.utils"):
        _stub(name, mmdet_root)
    tu = importlib.import_module("mmdet.utils.typing_utils")
    vars(sys.modules["mmdet.utils"]).update({k: getattr(tu, k) for k in dir(tu) if not k.startswith("_")})
    csp = importlib.import_module("mmdet.models.layers.csp_layer")
    sys.modules["mmdet.models.layers"].CSPLayer = csp.CSPLayer
    cspnext = importlib.import_module("mmdet.models.backbones.cspnext")

    sys.path.insert(0, str(dw_mmpose))
    for name in ("mmpose", "mmpose.models", "mmpose.models.heads", "mmpose.models.heads.coord_cls_heads",
                 "mmpose.models.utils", "mmpose.models.losses", "mmpose.evaluation", "mmpose.evaluation.functional",
                 "mmpose.utils", "mmpose.codecs", "mmpose.datasets", "mmpose.datasets.datasets"):
        _stub(name, dw_mmpose)
    importlib.import_module("mmpose.structures")        # numpy / mmengine only: its __init__ runs
    typing_mod = importlib.import_module("mmpose.utils.typing")
    sys.modules["mmpose.utils"].typing = typing_mod
    ke = importlib.import_module("mmpose.evaluation.functional.keypoint_eval")
    sys.modules["mmpose.evaluation.functional"].simcc_pck_accuracy = ke.simcc_pck_accuracy
    importlib.import_module("mmpose.models.losses.classification_loss")   # registers KLDiscretLoss
    simcc_label = importlib.import_module("mmpose.codecs.simcc_label")    # registers SimCCLabel
    head = importlib.import_module("mmpose.models.heads.coord_cls_heads.rtmcc_head")
    tta = importlib.import_module("mmpose.models.utils.tta")
    dsu = importlib.import_module("mmpose.datasets.datasets.utils")
    return {"CSPNeXt": cspnext.CSPNeXt, "RTMCCHead": head.RTMCCHead, "SimCCLabel": simcc_label.SimCCLabel,
            "flip_vectors": tta.flip_vectors, "parse_pose_metainfo": dsu.parse_pose_metainfo}


def build(ref: dict, backbone_cfg: dict, head_cfg: dict):
    """The official backbone and head as the configs build them (``type``/``_scope_``/``init_cfg`` dropped)."""
    import torch

    bb = {k: v for k, v in backbone_cfg.items() if k not in ("type", "_scope_", "init_cfg")}
    if bb.get("norm_cfg", {}).get("type") == "SyncBN":   # SyncBN is BatchNorm2d in eval on one process
        bb["norm_cfg"] = {**bb["norm_cfg"], "type": "BN"}
    hd = {k: v for k, v in head_cfg.items() if k not in ("type", "decoder")}
    codec = head_cfg.get("decoder")
    model = torch.nn.Module()
    model.backbone = ref["CSPNeXt"](**bb)
    model.head = ref["RTMCCHead"](**hd, decoder=dict(codec) if codec else None)
    return model.eval()


def keys_of(model) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def main() -> None:
    import numpy as np
    import torch
    from mmengine.config import Config

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dwpose", type=Path, required=True, help="checkout of IDEA-Research/DWPose")
    ap.add_argument("--mmdet", type=Path, required=True, help="the folder holding mmdet/ (site-packages)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    dw = args.dwpose / "mmpose"
    ref = load_reference(dw, args.mmdet)
    args.out.mkdir(parents=True, exist_ok=True)

    keys: dict = {}
    for name, cfg_file in CONFIGS.items():
        cfg = Config.fromfile(str(dw / "configs/wholebody_2d_keypoint/rtmpose/ubody" / cfg_file))
        keys[name] = keys_of(build(ref, cfg.model.backbone.to_dict(), cfg.model.head.to_dict()))
        keys[name + "-test_cfg"] = cfg.model.test_cfg.to_dict()
        keys[name + "-codec"] = {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.codec.to_dict().items()}
    meta = ref["parse_pose_metainfo"]({"from_file": str(dw / "configs/_base_/datasets/coco_wholebody.py")})
    keys["flip_indices"] = [int(i) for i in meta["flip_indices"]]

    codec = {"type": "SimCCLabel", "input_size": REDUCED["head"]["input_size"], "sigma": (4.9, 5.66),
             "simcc_split_ratio": 2.0, "normalize": False, "use_dark": False}
    model = build(ref, REDUCED["backbone"], dict(REDUCED["head"], decoder=codec))
    keys["reduced"] = keys_of(model)
    sd = {k: seeded_value(k, tuple(v.shape)) for k, v in model.state_dict().items()}
    model.load_state_dict(sd, strict=True)
    (args.out / "official_keys.json").write_text(json.dumps(keys, indent=1, sort_keys=True) + "\n")

    x = torch.randn(2, 3, 64, 48, generator=torch.Generator().manual_seed(3))

    class _Sample:  # what RTMCCHead.predict reads of a data sample: metainfo["flip_indices"]
        def __init__(self):
            self.metainfo = {"flip_indices": keys["flip_indices"]}

    with torch.no_grad():
        feats = model.backbone(x)
        px, py = model.head.forward(feats)
        feats_flip = model.backbone(x.flip(-1))
        fx, fy = model.head.forward(feats_flip)
        fx, fy = ref["flip_vectors"](fx, fy, flip_indices=keys["flip_indices"])
        preds = model.head.predict([feats, feats_flip], [_Sample()] * 2, test_cfg={"flip_test": True})
    kp = np.concatenate([p.keypoints for p in preds]).astype(np.float32)
    sc = np.concatenate([p.keypoint_scores for p in preds]).astype(np.float32)
    np.savez_compressed(args.out / "golden.npz", input=x.numpy(), x=px.numpy(), y=py.numpy(),
                        flip_x=((px + fx) * 0.5).numpy(), flip_y=((py + fy) * 0.5).numpy(),
                        keypoints=kp, keypoint_scores=sc)
    print("wrote", sorted(p.name for p in args.out.iterdir()))


if __name__ == "__main__":
    main()
