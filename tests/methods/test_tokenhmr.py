"""TokenHMR (methods/mesh/tokenhmr.py) against the official TokenHMR code.

Golden data in tests/data/tokenhmr_golden/ come from running saidwivedi/TokenHMR @ 198645f (its ``ViT``
backbone, ``SMPLTokenDecoderHead`` with ``TokenClassfier`` and the tokenizer's ``DecodeTokens`` loaded from a
tokenizer checkpoint, exactly as the official model is built) with tests/data/tokenhmr_golden/gen_golden.py
(``TOKENHMR_REF=<checkout> PYTHONPATH=<einops 0.8.2> python tests/data/tokenhmr_golden/gen_golden.py OUT``;
stand-ins there skip renderer imports and CUDA calls only; see tests/data/tokenhmr_golden/PROVENANCE.md):

- ``official_keys.json``: state-dict names and shapes of the release model (``tokenhmr_release.yaml``: ViT-H,
  decoder depth 6, 160 tokens x 2048 classes) as its Lightning checkpoint holds them (``backbone``,
  ``smpl_head``, the SMPL buffers ``smpl.*`` and ``initialized``), of its tokenizer checkpoint's ``net``
  (``tokenizer_amass_moyo.yaml``), and of a tiny variant of both (ViT 64 dims x 2 blocks, decoder depth 2,
  40 tokens x 64 classes, tokenizer width 32);
- ``tokenhmr_tiny_golden.npz``: the tiny official model's backbone features, SMPL rotations, betas, camera,
  camera translation and token probabilities with the weights of :func:`seeded_value`, on
  ``torch.randn(2, 3, 256, 256, generator=manual_seed(0))``; SMPL vertices of those parameters from
  ``smplx.SMPLLayer(pose2rot=False)`` (TokenHMR's ``forward_step``) on tests/smpl_synthetic.py's neutral
  model; and the official tokenizer decoder's output for one-hot token probabilities (token i -> code i).

Comparisons with these recorded float32 outputs follow tests/recorded.py: our network and SMPL run in float64.
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
from bench.types import Sample
from methods.human2d.topdown import check_and_load
from methods.human2d.vitpose import ViTArch
from methods.mesh import tokenhmr as th
from tests.recorded import assert_matches_recorded
from tests.smpl_synthetic import write_smpl_dir

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "tokenhmr_golden"
KEYS = json.loads((DATA / "official_keys.json").read_text())
GOLD = np.load(DATA / "tokenhmr_tiny_golden.npz")
TINY = th.TokenHMRArch(vit=ViTArch(64, 2, 4, 0.0), depth=2, heads=2, dim_head=16, mlp_dim=32, token_num=40,
                       token_classes=64, code_dim=16, width=32)
X = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(0))


def seeded_value(key: str, shape) -> torch.Tensor:
    """Deterministic weights per key (the same rule produced the golden outputs in gen_golden.py)."""
    g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    if key.endswith("init_cam"):
        return torch.tensor([[0.9, 0.05, -0.03]])
    if len(shape) >= 2:
        fan_in = int(np.prod(shape[1:]))
        return torch.randn(shape, generator=g) / fan_in ** 0.5
    if key.endswith("weight"):
        return 1.0 + 0.1 * torch.randn(shape, generator=g)
    return 0.1 * torch.randn(shape, generator=g)


class HParams(dict):
    """Stands in for the yacs ``CfgNode`` the official files pickle (a dict subclass from another package)."""


def official_tiny() -> tuple[dict, dict]:
    sd = {k: seeded_value(k, tuple(s)) for k, s in KEYS["tiny"]["tokenhmr"].items()}
    sd["smpl.v_template"] = torch.zeros(6890, 3)          # a Lightning checkpoint carries the SMPL buffers
    sd["initialized"] = torch.tensor(False)
    tok = {k: seeded_value("tokenizer." + k, tuple(s)) for k, s in KEYS["tiny"]["tokenizer"].items()}
    return sd, tok


def save_official(folder: Path, sd: dict, tok: dict | None) -> Path:
    """The two official files: a Lightning checkpoint and ``tokenizer.pth`` beside it (``data/checkpoints``)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tokenhmr_model_latest.ckpt"
    torch.save({"state_dict": sd, "hyper_parameters": HParams(cfg=HParams(MODEL={"IMAGE_SIZE": 256}), is_demo=False),
                "epoch": 3, "global_step": 350000, "callbacks": {"best_score": np.float64(0.5), "arr": np.zeros(2)}},
               path)
    if tok is not None:
        torch.save({"net": tok, "hparams": HParams(ARCH=HParams(CODE_DIM=16))}, folder / "tokenizer.pth")
    return path


@pytest.fixture(scope="module")
def smpl_dir(tmp_path_factory) -> Path:
    return write_smpl_dir(tmp_path_factory.mktemp("smpl"), genders=("neutral",))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, smpl_dir) -> th.TokenHMR:
    path = save_official(tmp_path_factory.mktemp("ckpt"), *official_tiny())
    return th.TokenHMR.from_official_checkpoint(path, arch=TINY, smpl_dir=smpl_dir)


@pytest.fixture(scope="module")
def tiny_out(tiny) -> th.SMPLOutput:
    with torch.no_grad():
        return tiny.net(X)


@pytest.fixture(scope="module")
def tiny64(tmp_path_factory, smpl_dir) -> th.TokenHMR:
    """The tiny model in float64 with a float64 SMPL, for comparisons with the recorded outputs."""
    from bench.formats.smpl import load_smpl

    path = save_official(tmp_path_factory.mktemp("ckpt64"), *official_tiny())
    m = th.TokenHMR.from_official_checkpoint(path, arch=TINY, smpl_dir=smpl_dir).double()
    m._smpl.append(load_smpl(smpl_dir, "neutral", torch.float64))
    return m


def test_release_layout_converts_with_nothing_missing_or_unexpected():
    """Full-size official keys and shapes (meta device) -> exactly this module's state dict."""
    with torch.device("meta"):
        net = th.TokenHMRNet()
    sd = {k: torch.empty(tuple(s), device="meta") for k, s in KEYS["tokenhmr"].items()}
    tok = {k: torch.empty(tuple(s), device="meta") for k, s in KEYS["tokenizer"].items()}
    conv = th.checkpoint_filter_fn(sd, tok, net)
    own = net.state_dict()
    assert set(conv) == set(own)
    assert all(tuple(conv[k].shape) == tuple(own[k].shape) for k in own)
    assert own["backbone.pos_embed"].shape == (1, 192, 1280) and len(net.backbone.blocks) == 32
    assert len(net.head.decoder.layers) == 6 and own["head.tokenizer.codebook"].shape == (2048, 256)
    # what the conversion leaves out: SMPL buffers, the flag, the tokenizer's encoder
    assert any(k.startswith("smpl.") for k in sd) and "initialized" in sd
    assert not any(k.startswith(("smpl.", "initialized", "tokenizer.")) or ".encoder." in k for k in conv)


def test_tiny_official_checkpoint_loads_and_matches_official_forward(tiny64):
    with torch.no_grad():
        feats = tiny64.net.features(X.double())
        out = tiny64.net(X.double())
    assert_matches_recorded(feats, GOLD["features"], what="backbone features")
    assert_matches_recorded(out.token_probs, GOLD["token_probs"], what="token probabilities")
    assert_matches_recorded(out.global_orient, GOLD["global_orient"][:, 0], what="global_orient")
    assert_matches_recorded(out.body_pose, GOLD["body_pose"], what="body_pose")
    assert_matches_recorded(out.betas, GOLD["betas"], what="betas")
    assert_matches_recorded(out.cam, GOLD["cam"], what="cam")
    assert_matches_recorded(out.cam_t, GOLD["cam_t"], what="cam_t")


def test_central_192_columns_are_what_the_backbone_sees(tiny, tiny_out):
    with torch.no_grad():
        out = tiny.net(X[..., 32:-32])
    torch.testing.assert_close(out.body_pose, tiny_out.body_pose, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="256x256 or 256x192"):
        tiny.net(X[..., :200])


def test_outputs_are_rotations_betas_camera(tiny_out):
    R = torch.cat([tiny_out.global_orient[:, None], tiny_out.body_pose], 1).double()
    assert R.shape == (2, 24, 3, 3)
    eye = torch.eye(3, dtype=torch.float64).expand_as(R)
    torch.testing.assert_close(R @ R.transpose(-1, -2), eye, rtol=0, atol=1e-5)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(2, 24, dtype=torch.float64), rtol=0, atol=1e-5)
    assert tiny_out.betas.shape == (2, 10) and tiny_out.cam.shape == (2, 3)
    assert tiny_out.token_probs.shape == (2, 40, 64)
    torch.testing.assert_close(tiny_out.token_probs.sum(-1), torch.ones(2, 40))


def test_vertices_from_synthetic_smpl_match_official_smpl_forward(tiny64):
    """predict_step on RGB crops -> SMPL vertices (N, 6890, 3) through bench.formats.smpl.load_smpl."""
    std = 255 * torch.tensor(th.IMAGE_STD).view(3, 1, 1)
    mean = 255 * torch.tensor(th.IMAGE_MEAN).view(3, 1, 1)
    crops = X * std + mean                                      # normalize_crops gives X back (to float32 rounding)
    preds = tiny64.predict_step([Sample(10 + i, {}, {"crop": crops[i]}) for i in range(2)])
    assert [p.sample_id for p in preds] == [10, 11]
    verts = torch.stack([p.output["vertices"] for p in preds])
    assert verts.shape == (2, 6890, 3) and verts.dtype == torch.float64
    cam_t = torch.stack([p.output["cam_t"] for p in preds])
    assert_matches_recorded(cam_t, GOLD["cam_t"], what="predict_step cam_t")
    # vertices = SMPL at the origin + the crop camera's translation
    assert_matches_recorded(verts - cam_t[:, None], GOLD["vertices"], what="predict_step SMPL vertices")
    assert preds[0].output["body_pose"].shape == (23, 3, 3) and preds[0].output["joints"].shape == (24, 3)


def test_full_image_translation_when_the_box_is_known(tiny):
    """``cam_crop_to_full``: a box centred in the image keeps (tx, ty); tz = 2 f / (box_size s) with
    f = 5000 / 256 * max(w, h)."""
    crop = torch.full((3, 256, 256), 128.0)
    s_crop = Sample(1, {}, {"crop": crop})
    s_full = Sample(2, {}, {"crop": crop, "box_center": [320.0, 240.0], "box_size": 300.0, "img_size": [640, 480]})
    a, b = tiny.predict_step([s_crop, s_full])
    with torch.no_grad():
        s, tx, ty = (float(v) for v in tiny.net(th.normalize_crops(crop[None])).cam[0])
    f = 5000 / 256 * 640
    np.testing.assert_allclose(b.output["cam_t"].numpy(), [tx, ty, 2 * f / (300 * s + 1e-9)], rtol=1e-5)
    np.testing.assert_allclose(a.output["cam_t"].numpy(), [tx, ty, 2 * 5000 / (256 * s + 1e-9)], rtol=1e-5)
    # same body (float32 SMPL: rows of one batch agree to ~1e-6 m), other translation
    torch.testing.assert_close(a.output["vertices"] - a.output["cam_t"], b.output["vertices"] - b.output["cam_t"],
                               rtol=0, atol=1e-5)
    assert (b.output["cam_t"] - a.output["cam_t"]).abs().max() > 1.0


def test_token_decoding_is_a_codebook_lookup():
    """One-hot token probabilities pick codebook rows exactly; the decoder on them matches the official one."""
    net = th.TokenHMRNet(TINY)
    _, tok = official_tiny()
    dec = net.head.tokenizer
    dec.codebook.copy_(tok["quantizer.codebook"])
    for k, v in tok.items():
        if k.startswith("decoder.decoder."):
            dec.decoder.get_parameter(k[len("decoder.decoder."):]).data.copy_(v)
    idx = torch.tensor([[3, 0, 63, 3]])
    onehot = torch.nn.functional.one_hot(idx, 64).float()
    assert torch.equal(dec.features(onehot)[0], tok["quantizer.codebook"][[3, 0, 63, 3]])
    half = 0.5 * (onehot[:, :1] + onehot[:, 1:2])              # an even split is the mean of the two codes
    torch.testing.assert_close(dec.features(half)[0, 0], 0.5 * (tok["quantizer.codebook"][3] + tok["quantizer.codebook"][0]))
    with torch.no_grad():
        pose6d = dec.double()(torch.nn.functional.one_hot(torch.arange(40) % 64, 64).double()[None])
    assert pose6d.shape == (1, 21, 6)
    assert_matches_recorded(pose6d, GOLD["pose6d_onehot"], what="tokenizer decoder on one-hot tokens")


def test_decoder_resampling_lengths_and_6d_convention():
    # linspace(21, 160, 4, endpoint=False) = 21, 55.75, 90.5, 125.25 -> ints, coarse to fine reversed
    assert th.decoder_lengths(160, 4) == [125, 90, 55, 21]
    assert th.decoder_lengths(40, 4) == [35, 30, 25, 21]
    x = torch.tensor([[1.0, 0, 0, 0, 1, 0], [2.0, 0, 0, 1, 1, 0], [0, 1.0, 0, -1, 0, 0]])
    R = th.rot6d_to_rotmat(x)
    torch.testing.assert_close(R[0], torch.eye(3))
    torch.testing.assert_close(R[1], torch.eye(3))                 # Gram-Schmidt removes the a1 part of a2
    torch.testing.assert_close(R[2], torch.tensor([[0.0, 1, 0], [-1, 0, 0], [0, 0, 1]]))   # vectors are rows


def test_bad_checkpoints_raise_input_error(tmp_path, tiny64):
    sd, tok = official_tiny()
    with pytest.raises(InputError, match="tokenizer"):
        th.TokenHMR.from_official_checkpoint(save_official(tmp_path / "a", sd, None), arch=TINY)
    path = save_official(tmp_path / "b", sd, tok)
    with pytest.raises(InputError, match="not a TokenHMR checkpoint"):
        th.TokenHMR.from_official_checkpoint(save_official(tmp_path / "c", {"foo.weight": torch.zeros(1)}, tok), arch=TINY)
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot read"):
        th.TokenHMR.from_official_checkpoint(tmp_path / "junk.ckpt", tokenizer=path.with_name("tokenizer.pth"), arch=TINY)
    net = tiny64.net
    missing = dict(sd)
    missing.pop("smpl_head.decpose.mixer_head.1.MLP_token.ff.3.weight")
    with pytest.raises(InputError, match=r"classifier\.mixers\.1\.token_mlp\.fc2\.weight"):
        check_and_load(net, th.checkpoint_filter_fn(missing, tok, net), "c")
    with pytest.raises(InputError, match="unknown key"):
        check_and_load(net, th.checkpoint_filter_fn(sd, {**tok, "quantizer.extra": torch.zeros(1)}, net), "c")
    with pytest.raises(InputError, match="shape"):                 # the release tokenizer on the tiny model
        check_and_load(net, th.checkpoint_filter_fn(sd, {**tok, "quantizer.codebook": torch.zeros(2048, 256)}, net), "c")
    with torch.no_grad():                                           # nothing was loaded by the failures
        assert_matches_recorded(net(X.double()).betas, GOLD["betas"], what="betas after failed loads")


def test_missing_or_bad_smpl_dir_is_one_line_error(tiny, tmp_path):
    m = th.TokenHMR(arch=TINY)
    m.net.load_state_dict(tiny.net.state_dict())
    with pytest.raises(InputError, match="smpl_dir"):
        m.predict_step([Sample(0, {}, {"crop": torch.zeros(3, 256, 256)})])
    m.smpl_dir = tmp_path / "nowhere"
    with pytest.raises(InputError, match="smpl_dir") as e:
        m.predict_step([Sample(0, {}, {"crop": torch.zeros(3, 256, 256)})])
    assert "\n" not in str(e.value)


def test_registered_builder_and_config():
    assert METHODS["tokenhmr"] is th.build
    with pytest.raises(InputError, match="weights=FILE"):
        th.build(OmegaConf.create({"name": "tokenhmr"}), None, None)
    conf = OmegaConf.load(REPO / "bench" / "conf" / "method" / "tokenhmr.yaml")
    assert conf.name == "tokenhmr" and conf.tokenizer is None and conf.focal_length == 5000
