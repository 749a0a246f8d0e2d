"""Golden data for tests/methods/test_tokenhmr.py, produced by running the official TokenHMR modules.

Run:  TOKENHMR_REF=<checkout of saidwivedi/TokenHMR @ 198645f> PYTHONPATH=<dir with einops>
      python tests/data/tokenhmr_golden/gen_golden.py OUTDIR
Nothing here runs on import (pytest collects this folder with --doctest-modules).

Stand-ins, none of which changes what the network computes: ``lib`` packages are created empty so their
__init__ (renderers, pyrender) is skipped; ``smplx.SMPLHLayer`` (the tokenizer's module-level SMPL-H model,
used only by ``mesh_inference``) is a dummy; ``Tensor.cuda`` is the identity (QuantizeEMAReset's buffer);
``torch.load`` reads our own fake tokenizer checkpoint with ``weights_only=False`` (it pickles ``hparams``).
"""
from __future__ import annotations

import importlib
import json
import os
import pickle
import sys
import types
import zlib
from pathlib import Path

import numpy as np
import smplx
import torch

REF = Path(os.environ.get("TOKENHMR_REF", "/tmp/ref_p4/tokenhmr"))     # a checkout of saidwivedi/TokenHMR
REPO = Path(__file__).resolve().parents[3]
vit_mod = token_head = smpl_wrapper = vq = write_smpl_dir = None


def setup_reference() -> None:
    """Import the official modules with the stand-ins described above (only when run as a script)."""
    global vit_mod, token_head, smpl_wrapper, vq, write_smpl_dir
    sys.path[:0] = [str(REF), str(REPO / "tests")]


    smplx.SMPLHLayer = lambda *a, **k: torch.nn.Identity()
    torch.Tensor.cuda = lambda self, *a, **k: self
    load = torch.load
    torch.load = lambda *a, **k: load(*a, **{**k, "weights_only": False})
    for name, sub in [("lib", "tokenhmr/lib"), ("lib.utils", "tokenhmr/lib/utils"), ("lib.models", "tokenhmr/lib/models"),
                      ("lib.models.heads", "tokenhmr/lib/models/heads"),
                      ("lib.models.components", "tokenhmr/lib/models/components"),
                      ("lib.models.backbones", "tokenhmr/lib/models/backbones")]:
        m = types.ModuleType(name)
        m.__path__ = [str(REF / sub)]
        sys.modules[name] = m
    vit_mod = importlib.import_module("lib.models.backbones.vit")
    token_head = importlib.import_module("lib.models.heads.token_head")
    smpl_wrapper = importlib.import_module("lib.models.smpl_wrapper")
    vq = importlib.import_module("tokenization.models.vanilla_pose_vqvae")
    write_smpl_dir = importlib.import_module("smpl_synthetic").write_smpl_dir


class Cfg(dict):
    """yacs-like: attribute access and .get."""

    def __getattr__(self, k):
        try:
            return self[k]
        except KeyError:
            raise AttributeError(k) from None


def cfg_of(d):
    return Cfg({k: cfg_of(v) if isinstance(v, dict) else v for k, v in d.items()})


def seeded_value(key: str, shape) -> torch.Tensor:
    """Same rule as tests/methods/test_tokenhmr.py::seeded_value."""
    g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    if key.endswith("init_cam"):
        return torch.tensor([[0.9, 0.05, -0.03]])
    if len(shape) >= 2:
        fan_in = int(np.prod(shape[1:]))
        return torch.randn(shape, generator=g) / fan_in ** 0.5
    if key.endswith("weight"):
        return 1.0 + 0.1 * torch.randn(shape, generator=g)
    return 0.1 * torch.randn(shape, generator=g)


def make_cfg(tokenizer_path, mean_params, dec, tok):
    return cfg_of({
        "SMPL": {"NUM_BODY_JOINTS": 23, "MEAN_PARAMS": str(mean_params)},
        "MODEL": {"TOKENIZER_CHECKPOINT_PATH": str(tokenizer_path), "IMAGE_SIZE": 256,
                  "SMPL_HEAD": {"TYPE": "token", "IN_CHANNELS": 2048, "PREDICT_HAND": True,
                                "TOKENIZER": tok, "TRANSFORMER_DECODER": dec}},
    })


def tokenizer_ckpt(path, arch: dict, seeded=True):
    """A tokenizer.pth as train_poseVQ.py saves it: {'net': VanillaTokenizer state dict, 'hparams': ...}."""
    a = cfg_of(arch)
    net = vq.VanillaTokenizer(a, mesh_inference=False)
    sd = net.state_dict()
    if seeded:
        sd = {k: seeded_value("tokenizer." + k, tuple(v.shape)) for k, v in sd.items()}
    torch.save({"net": sd, "hparams": cfg_of({"ARCH": arch})}, path)
    return {k: list(v.shape) for k, v in sd.items()}


FULL_ARCH = {"MODEL_NAME": "vanilla", "CODE_DIM": 256, "NB_CODE": 2048, "ROT_TYPE": "rot6d", "QUANTIZER": "ema_reset",
                 "DOWN_T": 1, "WIDTH": 512, "DEPTH": 2, "DILATION_RATE": 3, "TOKEN_SIZE_MUL": 4, "TOKEN_SIZE_DIV": 4, "NB_JOINTS": 21}
FULL_DEC = {"depth": 6, "heads": 8, "mlp_dim": 1024, "dim_head": 64, "dropout": 0.0, "emb_dropout": 0.0, "norm": "layer", "context_dim": 1280}
FULL_TOK = {"TOKEN_CODE_DIM": 256, "TOKEN_NUM": 160, "TOKEN_CLASS_NUM": 2048, "TOKENIZER_TYPE": "Vanilla"}

TINY_ARCH = dict(FULL_ARCH, CODE_DIM=16, NB_CODE=64, WIDTH=32, TOKEN_SIZE_MUL=2)     # 40 tokens
TINY_DEC = dict(FULL_DEC, depth=2, heads=2, mlp_dim=32, dim_head=16, context_dim=64)
TINY_TOK = dict(FULL_TOK, TOKEN_CODE_DIM=16, TOKEN_NUM=40, TOKEN_CLASS_NUM=64)
TINY_VIT = {"img_size": (256, 192), "patch_size": 16, "embed_dim": 64, "depth": 2, "num_heads": 4, "ratio": 1, "mlp_ratio": 4,
                "qkv_bias": True, "drop_path_rate": 0.0}


def main(out: Path):
    setup_reference()
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "_tmp"
    tmp.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    mean_params = tmp / "smpl_mean_params.npz"
    np.savez(mean_params, pose=rng.normal(size=144), shape=rng.normal(size=10), cam=np.array([0.9, 0, 0]))

    # ---- full-size key layout: Lightning state_dict of TokenHMR (backbone, smpl_head, smpl buffers, initialized)
    keys = {}
    tok_keys = tokenizer_ckpt(tmp / "tokenizer_full.pth", FULL_ARCH, seeded=False)
    keys["tokenizer"] = tok_keys
    lin = torch.linspace
    torch.linspace = lambda *a, **k: lin(*a, **{**k, "device": "cpu"})   # drop-path rates are .item()-ed
    with torch.device("meta"):
        backbone = vit_mod.vit(None)
    torch.linspace = lin
    head = token_head.SMPLTokenDecoderHead(make_cfg(tmp / "tokenizer_full.pth", mean_params, FULL_DEC, FULL_TOK))
    smpl_root = write_smpl_dir(tmp / "smpl", genders=("neutral",))
    with open(tmp / "SMPL_to_J19.pkl", "wb") as fh:
        pickle.dump(np.zeros((19, 6890)), fh)
    smpl = smpl_wrapper.SMPL(model_path=str(smpl_root / "smpl"), gender="neutral", num_body_joints=23,
                             joint_regressor_extra=str(tmp / "SMPL_to_J19.pkl"))
    module = torch.nn.Module()
    module.backbone, module.smpl_head, module.smpl = backbone, head, smpl
    module.register_buffer("initialized", torch.tensor(False))
    keys["tokenhmr"] = {k: list(v.shape) for k, v in module.state_dict().items()}

    # ---- tiny variant: same code, small widths; seeded weights; forward on a seeded 256x256 input
    tiny_keys = {}
    tiny_keys["tokenizer"] = tokenizer_ckpt(tmp / "tokenizer_tiny.pth", TINY_ARCH)
    backbone = vit_mod.ViT(**TINY_VIT)
    backbone.eval()                                  # its train() returns None
    head = token_head.SMPLTokenDecoderHead(make_cfg(tmp / "tokenizer_tiny.pth", mean_params, TINY_DEC, TINY_TOK)).eval()
    module = torch.nn.Module()
    module.backbone, module.smpl_head = backbone, head
    sd = {k: seeded_value(k, tuple(v.shape)) for k, v in module.state_dict().items()}
    module.load_state_dict(sd, strict=True)
    tiny_keys["tokenhmr"] = {k: list(v.shape) for k, v in sd.items()}
    keys["tiny"] = tiny_keys

    x = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        feats = backbone(x)
        params, cam, plist = head(feats)
        # SMPL forward exactly as TokenHMR.forward_step, on the synthetic neutral model
        layer = smplx.SMPLLayer(model_path=str(smpl_root / "smpl"), gender="neutral")
        smpl_out = layer(global_orient=params["global_orient"], body_pose=params["body_pose"], betas=params["betas"],
                    pose2rot=False)
        f = 5000.0
        cam_t = torch.stack([cam[:, 1], cam[:, 2], 2 * f / (256 * cam[:, 0] + 1e-9)], -1)
        # token decoding on its own: one-hot probabilities pick codebook rows
        dec = head.decpose.tokenize.__self__.tokenizer
        onehot = torch.nn.functional.one_hot(torch.arange(40) % 64, 64).float()[None]
        pose6d_onehot = dec(onehot)
    np.savez_compressed(
        out / "tokenhmr_tiny_golden.npz",
        features=feats.numpy(), global_orient=params["global_orient"].numpy(),
        body_pose=params["body_pose"].numpy(), betas=params["betas"].numpy(), cam=cam.numpy(),
        cam_t=cam_t.numpy(), token_probs=plist["cls_logits_softmax"].numpy(),
        vertices=smpl_out.vertices.numpy(), pose6d_onehot=pose6d_onehot.numpy(),
    )
    (out / "official_keys.json").write_text(json.dumps(keys, indent=0))
    print("wrote", out)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
