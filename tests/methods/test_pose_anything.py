"""Pose Anything (methods/cape/pose_anything.py) against the official PoseAnything code.

Golden data in tests/data/pose_anything/ come from running orhir/PoseAnything @ 7f1253f8 on the CPU, its
mmcv/mmpose registries replaced by stand-ins (``Registry``/``build_from_cfg``/``BaseModule`` plumbing and
mmpose's ``resize`` re-stated as ``F.interpolate``; every model and target-generation line is the official one):

- ``official_keys.json`` (/tmp/ref_p1/dump_keys.py): state-dict names and shapes of the official
  ``PoseAnythingModel`` for the SwinV2-T configs (``configs/1shots|5shots/graph_split*``) and the SwinV2-S
  configs (``configs/1shot-swin|5shot-swin/graph_split*``), and the graph-less ``base_split*`` variants of both;
- ``golden_tiny.json`` (/tmp/ref_p1/gen_golden.py): a reduced model of the same layout (SwinV2 embed 16, depths
  2/2/2/2, heads 1/2/2/4; head d_model 32, 4 heads, FFN 48, 3 + 3 layers, ``graph_decoder='pre'``) with the
  weights of :func:`make_weights` (seed 0) and the official buffers; inputs ``torch.randn`` with seed 1
  (2 queries, 2 shots each), support keypoints/visibility from ``np.random.RandomState(0)`` (stored), the
  horse_body (17 keypoints) and long_sleeved_outwear (39) skeletons of the MP-100 JSON, padded to 100 keypoints;
  stored: ``TopDownGenerateTargetFewShot(sigma=1)._msra_generate_target`` weights / non-zero pixels / sums, the
  backbone ``forward_features`` sums, and ``PoseAnythingModel.predict`` outputs of every decoder layer;
- ``pipeline.json`` + ``crop{0,1,2}.png`` (/tmp/ref_p1/gen_pipeline.py, opencv-python-headless 5.0 in a
  separate venv): on :func:`synthetic_image`, for three boxes, ``TestPoseDataset._xywh2cs``, the
  ``TopDownAffineFewShot`` crops (cv2.warpAffine) and crop keypoints, ``TopDownGenerateTargetFewShot(sigma=1)``
  weights / sums / arg-maxes, and ``PoseHead.decode`` (mmpose 0.x ``transform_preds``) of random outputs.

Comparisons with the recorded float32 network outputs follow tests/recorded.py: our network runs in float64.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

import methods.cape.pose_anything as pa
from bench.data.mp100 import Mp100Dataset
from bench.errors import InputError
from bench.registry import METHODS
from methods.human2d.topdown import check_and_load
from metrics.pck import PCK_THRESHOLDS, CapePCK
from tests.recorded import argmax_margin, assert_matches_recorded, tolerance

DATA = Path(__file__).resolve().parent.parent / "data" / "pose_anything"
KEYS = json.loads((DATA / "official_keys.json").read_text())
GOLD = json.loads((DATA / "golden_tiny.json").read_text())
BUFFERS = ("relative_position_index", "relative_coords_table", "attn_mask")
SAMPLES = Path(__file__).resolve().parents[2] / "bench" / "data" / "samples" / "mp100" / "annotations"

#: the reduced config of golden_tiny.json (the official head asserts d_model = 2 x num_feats = 32)
TINY = replace(pa.GraphCapeConfig(), embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), d_model=32, nhead=4,
               dim_feedforward=48, similarity_proj_dim=32, dynamic_proj_dim=32)


def make_weights(shapes: dict[str, list[int]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Official-layout state dict with seeded values, in the official key order (the rule of gen_golden.py).
    The constant buffers are filled with zeros: the conversion drops them (timm rebuilds them)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, shp in shapes.items():
        if k.rsplit(".", 1)[-1] in BUFFERS:
            out[k] = torch.zeros(shp)
            continue
        x = torch.randn(shp, generator=g, dtype=torch.float32)
        if k.endswith("logit_scale"):
            v = math.log(10) + 0.3 * x
        elif re.search(r"norm\d?\.weight$", k):
            v = 1 + 0.2 * x
        elif len(shp) >= 2:
            v = x / math.sqrt(int(np.prod(shp[1:])))
        else:
            v = 0.1 * x
        out[k] = v
    return out


@pytest.fixture(scope="module")
def tiny_state() -> dict[str, torch.Tensor]:
    sd = make_weights(GOLD["state_dict_shapes"])
    total = sum(float(v.double().sum()) for k, v in sd.items() if k.rsplit(".", 1)[-1] not in BUFFERS)
    assert total == pytest.approx(GOLD["weights_sum"], rel=1e-12)   # the same weights as the reference run
    return sd


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory, tiny_state) -> Path:
    """The reduced official state dict saved the way the official runner saves it (``{"state_dict": ...}``)."""
    path = tmp_path_factory.mktemp("pa") / "tiny.pth"
    torch.save({"meta": {"epoch": 200}, "state_dict": tiny_state}, path)
    return path


@pytest.fixture(scope="module")
def tiny_model(tiny_ckpt) -> pa.PoseAnything:
    return pa.PoseAnything.from_official_checkpoint(tiny_ckpt, nhead=4)


# ----------------------------------------------------------------------------------------------------------
# key layout


@pytest.mark.parametrize("arch", ["swinv2-tiny", "swinv2-small", "swinv2-tiny-base", "swinv2-small-base"])
def test_official_config_key_layout(arch):
    """Every official key of the real configs maps onto the model (built on ``meta``) with its shape, none left."""
    with torch.device("meta"):
        net = pa.GraphCape(pa.ARCHS[arch])
    official = {k: torch.empty(s, device="meta") for k, s in KEYS[arch].items()}
    conv = pa.checkpoint_filter_fn(official, net)
    own = net.state_dict()
    assert sorted(conv) == sorted(own)
    assert {k: tuple(v.shape) for k, v in conv.items()} == {k: tuple(v.shape) for k, v in own.items()}
    # only the constant buffers and the unused ImageNet classifier are dropped
    dropped = {k for k, v in official.items() if not pa.checkpoint_filter_fn({k: v})}
    assert all(k.rsplit(".", 1)[-1] in BUFFERS or k.startswith("backbone.head.") for k in dropped)
    assert {"backbone.head.weight", "backbone.head.bias"} <= dropped
    assert pa.infer_arch(official) == pa.ARCHS[arch]


def test_reduced_official_state_dict_loads(tiny_ckpt):
    """The reduced official layout loads strictly (zero missing / unexpected keys) through the checkpoint path."""
    m = pa.PoseAnything.from_official_checkpoint(tiny_ckpt, nhead=4)
    assert m.net.cfg == TINY
    sd = torch.load(tiny_ckpt, weights_only=True)["state_dict"]
    sd.pop("keypoint_head.query_proj.bias")
    bad = tiny_ckpt.with_name("bad.pth")
    torch.save({"state_dict": sd}, bad)
    with pytest.raises(InputError, match="missing from the checkpoint"):
        pa.PoseAnything.from_official_checkpoint(bad, nhead=4)
    torch.save({"state_dict": {"backbone.blocks.0.weight": torch.zeros(1)}}, bad)
    with pytest.raises(InputError, match="not a Pose Anything checkpoint"):
        pa.PoseAnything.from_official_checkpoint(bad)


# ----------------------------------------------------------------------------------------------------------
# numbers of the official code


def test_support_targets_match_official():
    """``msra_heatmaps`` = ``TopDownGenerateTargetFewShot._msra_generate_target`` (sigma 1, 64x64)."""
    kp = torch.tensor(GOLD["support_keypoints"])
    vis = torch.tensor(GOLD["support_visible"]) > 0
    tg, w = pa.msra_heatmaps(kp, vis)
    assert torch.equal(w, torch.tensor(GOLD["target_weights"]))
    torch.testing.assert_close(tg.sum((-1, -2)), torch.tensor(GOLD["target_sums"]), atol=1e-5, rtol=1e-6)
    for b, k in enumerate(GOLD["num_keypoints"]):
        for s in range(GOLD["S"]):
            for j in range(k):
                assert torch.nonzero(tg[b, s, j] > 0).tolist() == GOLD["target_nonzero"][b][s][j]


def test_forward_matches_official(tiny_state):
    """Backbone features and the query keypoints of ``PoseAnythingModel.predict`` (17 and 39 keypoints, 2 shots,
    padded to 100 tokens) agree with the official code. The proposal generator takes an arg-max of the
    similarity map: its margin must exceed twice the map's tolerance, so the recorded run picked the same peak.
    (float64 default dtype while it runs: ``skeleton_adjacency`` builds its kernels in the default dtype.)"""
    net = pa.GraphCape(TINY).eval()
    check_and_load(net, pa.checkpoint_filter_fn(tiny_state, net), None)
    net.double()
    B, S = GOLD["B"], GOLD["S"]
    g = torch.Generator().manual_seed(GOLD["images_seed"])
    img_q = torch.randn(B, 3, 256, 256, generator=g).double()
    img_s = torch.randn(B, S, 3, 256, 256, generator=g).double()
    tg, w = pa.msra_heatmaps(torch.tensor(GOLD["support_keypoints"]), torch.tensor(GOLD["support_visible"]) > 0)
    sims = []
    hook = net.keypoint_head.transformer.proposal_generator.register_forward_hook(
        lambda mod, args, out: sims.append(out[1]))
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        with torch.no_grad():
            f = net.features(img_q)
            out = net(img_q, img_s, tg.double(), w.double(), GOLD["skeletons"])
    finally:
        torch.set_default_dtype(default)
        hook.remove()
    assert list(f.shape) == GOLD["query_feature_shape"]
    abs_sum = GOLD["query_feature_abs_sum"]                   # the bound of both sums' float32 accumulation
    assert_matches_recorded(f.sum(), GOLD["query_feature_sum"], what="query feature sum", scale=abs_sum)
    assert_matches_recorded(f.abs().sum(), abs_sum, what="query feature |sum|")
    assert out.shape == (B, GOLD["max_kpt_num"], 2)
    (sim,) = sims
    for b, k in enumerate(GOLD["num_keypoints"]):
        assert (argmax_margin(sim[b, :k].flatten(1)) > 2 * tolerance(sim[b, :k])).all()
        assert_matches_recorded(out[b, :k], torch.tensor(GOLD["output"][b]), what=f"query {b} keypoints")


def synthetic_image(h: int = 240, w: int = 300) -> np.ndarray:
    """The smooth RGB test pattern of gen_pipeline.py (uint8 HxWx3)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 127.5 + 127.5 * np.sin(x / 17.0) * np.cos(y / 23.0)
    g = 255.0 * x / (w - 1)
    b = 255.0 * ((x + 2 * y) % 97) / 96.0
    return np.stack([r, g, b], -1).round().astype(np.uint8)


def test_pipeline_matches_official():
    """Crop (cv2 within one grey level), crop keypoints, support targets and the decoding back to the image."""
    pipe = json.loads((DATA / "pipeline.json").read_text())
    img = torch.from_numpy(synthetic_image()).permute(2, 0, 1).contiguous()
    model = pa.PoseAnything(TINY)
    for i, c in enumerate(pipe["cases"]):
        crop, mats, center, scale = model.crops([img], torch.tensor([c["bbox"]], dtype=torch.float64))
        assert center[0].tolist() == c["center"]
        assert scale[0].tolist() == (torch.tensor(c["scale"], dtype=torch.float32) * 200).tolist()
        with Image.open(DATA / f"crop{i}.png") as im:
            ref = torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1).float()
        diff = (crop[0] - ref).abs()
        assert diff.max() <= 1 and (diff > 0).float().mean() < 0.005      # OpenCV's fixed-point bilinear
        xy = torch.tensor(c["keypoints"], dtype=torch.float64)
        cxy = (torch.cat([xy, torch.ones(len(xy), 1, dtype=torch.float64)], 1) @ mats[0].T).to(torch.float32)
        vis = torch.tensor(c["visible"]) > 0
        torch.testing.assert_close(cxy[vis], torch.tensor(c["crop_keypoints"])[vis], atol=1e-4, rtol=0)
        tg, w = pa.msra_heatmaps(cxy, vis)
        assert w.tolist() == c["target_weight"]
        on = w > 0
        assert tg.flatten(1).argmax(1)[on].tolist() == [a for a, o in zip(c["target_argmax"], on.tolist()) if o]
        torch.testing.assert_close(tg.sum((-1, -2)), torch.tensor(c["target_sums"]), atol=1e-5, rtol=0)
        dec = pa.crop_to_image(torch.tensor(c["pred"], dtype=torch.float64)[None] * 256, center, scale)[0]
        assert torch.equal(dec, torch.tensor(c["decoded"], dtype=torch.float64))


# ----------------------------------------------------------------------------------------------------------
# skeleton graph


def test_skeleton_adjacency_table_by_hand():
    """MP-100 ``table`` (8 keypoints): edges 0-2 2-3 3-1 1-0 1-5 7-3 6-2 4-0, symmetric, row-normalised."""
    cats = {c["id"]: c for c in json.loads((SAMPLES / "mp100_split2_test.json").read_text())["categories"]}
    table = cats[98]
    assert table["name"] == "table"
    third, half = 1 / 3, 1 / 2
    expected = torch.tensor([
        # 0      1      2      3      4    5    6    7
        [0,     third, third, 0,     third, 0, 0, 0],   # 0: 1, 2, 4
        [third, 0,     0,     third, 0, third, 0, 0],   # 1: 0, 3, 5
        [third, 0,     0,     third, 0, 0, third, 0],   # 2: 0, 3, 6
        [0,     third, third, 0,     0, 0, 0, third],   # 3: 1, 2, 7
        [1, 0, 0, 0, 0, 0, 0, 0],                       # 4: 0
        [0, 1, 0, 0, 0, 0, 0, 0],                       # 5: 1
        [0, 0, 1, 0, 0, 0, 0, 0],                       # 6: 2
        [0, 0, 0, 1, 0, 0, 0, 0],                       # 7: 3
    ])
    ignore = torch.zeros(1, 8, dtype=torch.bool)
    adj = pa.skeleton_adjacency(8, [table["skeleton"]], ignore)
    assert adj.shape == (1, 2, 8, 8)
    torch.testing.assert_close(adj[0, 0], torch.eye(8))
    torch.testing.assert_close(adj[0, 1], expected)
    # keypoint 1 not visible in a support: its row and column go, neighbours renormalise, 5 loses its only one
    masked = torch.zeros(1, 8, dtype=torch.bool)
    masked[0, 1] = True
    adj = pa.skeleton_adjacency(8, [table["skeleton"]], masked)
    exp = expected.clone()
    exp[1] = 0
    exp[:, 1] = 0
    exp[0] = torch.tensor([0, 0, half, 0, half, 0, 0, 0])
    exp[3] = torch.tensor([0, 0, half, 0, 0, 0, 0, half])
    torch.testing.assert_close(adj[0, 1], exp)
    torch.testing.assert_close(adj[0, 0], torch.diag(torch.tensor([1.0, 0, 1, 1, 1, 1, 1, 1])))
    # padded to more tokens: the padding takes no part
    pad = torch.zeros(1, 12, dtype=torch.bool)
    pad[0, 8:] = True
    adj = pa.skeleton_adjacency(12, [table["skeleton"]], pad)
    torch.testing.assert_close(adj[0, 1, :8, :8], expected)
    assert adj[0, :, 8:].abs().sum() == 0 and adj[0, :, :, 8:].abs().sum() == 0
    with pytest.raises(InputError, match="skeleton"):
        pa.skeleton_adjacency(4, [table["skeleton"]], torch.zeros(1, 4, dtype=torch.bool))


def test_skeletons_of_every_mp100_category_fit():
    """Every MP-100 category (8 to 68 keypoints) gives a symmetric graph on its keypoints."""
    sizes = set()
    for f in sorted(SAMPLES.glob("mp100_split*_test.json")):
        data = json.loads(f.read_text())
        counts: dict[int, int] = {}
        for a in data["annotations"]:
            counts.setdefault(a["category_id"], len(a["keypoints"]) // 3)
        for c in data["categories"]:
            k = counts[c["id"]]
            adj = pa.skeleton_adjacency(k, [c["skeleton"]], torch.zeros(1, k, dtype=torch.bool))[0, 1]
            nz = adj > 0
            assert torch.equal(nz, nz.T)
            sizes.add(k)
    assert min(sizes) == 8 and max(sizes) == 68


# ----------------------------------------------------------------------------------------------------------
# the method on MP-100 episodes


def _synthetic_mp100(root: Path, per_category: int = 20) -> None:
    """A small MP-100 layout: horse_body (17 keypoints) and long_sleeved_outwear (39), random images."""
    real = {c["id"]: c for c in json.loads((SAMPLES / "mp100_split1_test.json").read_text())["categories"]}
    rng = np.random.RandomState(3)
    images, anns, cats = [], [], []
    for cid, k in ((2, 17), (78, 39)):
        c = real[cid]
        cats.append({"id": cid, "name": c["name"], "keypoints": c["keypoints"], "skeleton": c["skeleton"]})
        for i in range(per_category):
            iid = cid * 1000 + i
            w, h = int(rng.randint(180, 320)), int(rng.randint(160, 300))
            name = f"{c['name']}/{iid}.png"
            (root / "images" / c["name"]).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.randint(0, 256, (h, w, 3), dtype=np.uint8)).save(root / "images" / name)
            images.append({"id": iid, "file_name": name, "width": w, "height": h})
            x0, y0 = float(rng.uniform(0, w / 3)), float(rng.uniform(0, h / 3))
            bw, bh = float(rng.uniform(w / 3, w - x0)), float(rng.uniform(h / 3, h - y0))
            kp = []
            for _ in range(k):
                kp += [x0 + float(rng.uniform(0, bw)), y0 + float(rng.uniform(0, bh)), int(rng.rand() > 0.15) * 2]
            anns.append({"id": iid, "image_id": iid, "category_id": cid, "bbox": [x0, y0, bw, bh], "area": bw * bh,
                         "keypoints": kp, "num_keypoints": k, "iscrowd": 0})
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "mp100_split1_val.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats}))


@pytest.fixture(scope="module")
def mp100_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mp100")
    _synthetic_mp100(root)
    return root


@pytest.mark.parametrize("shots", [1, 5])
def test_predict_step_on_mp100_episodes(mp100_root, tiny_model, shots):
    """predict_step on episodes of a 17- and a 39-keypoint category: (K, 2) keypoints in image pixels, inside the
    query's crop window (``c +- s/2``), scored by CapePCK; a mixed batch equals the samples one by one (1-shot)."""
    ds = Mp100Dataset(mp100_root, split=1, subset="val", shots=shots)
    model = tiny_model
    batch = [ds[0], ds[100 * 15 + 1]]                       # category 2 (17), category 78 (39)
    assert [s.inputs["category_id"] for s in batch] == [2, 78]
    assert [len(s.inputs["support_images"]) for s in batch] == [shots, shots]
    preds = model.predict_step(batch)
    for s, p, k in zip(batch, preds, (17, 39)):
        assert p.sample_id == s.sample_id
        kp = p.output["keypoints"]
        assert kp.shape == (k, 2) and kp.dtype == torch.float64 and torch.isfinite(kp).all()
        x, y, w, h = s.inputs["query_bbox"].tolist()
        side = max(w, h) * 1.25                             # the square crop window of _xywh2cs
        cx, cy = x + w / 2, y + h / 2
        assert (kp[:, 0] >= cx - side / 2 - 1e-3).all() and (kp[:, 0] <= cx + side / 2 + 1e-3).all()
        assert (kp[:, 1] >= cy - side / 2 - 1e-3).all() and (kp[:, 1] <= cy + side / 2 + 1e-3).all()
        assert kp.std(0).min() > 0                          # not a constant
    if shots == 1:                                          # (the 5-shot case costs the same again: once is enough)
        one_by_one = [model.predict_step([s])[0] for s in batch]
        for a, b in zip(preds, one_by_one):
            torch.testing.assert_close(a.output["keypoints"], b.output["keypoints"], atol=1e-3, rtol=0)
    metric = CapePCK(PCK_THRESHOLDS)
    metric.update([p.output for p in preds], [s.target for s in batch])
    res = metric.compute()
    assert all(0.0 <= float(res[f"PCK@{t}"]) <= 1.0 for t in PCK_THRESHOLDS)


def test_padding_to_max_kpt_num_changes_nothing(mp100_root, tiny_model):
    """Padded tokens are masked everywhere (attention keys, graph, support pooling): 100 tokens = K tokens."""
    s = Mp100Dataset(mp100_root, split=1, subset="val", shots=1)[3]
    assert tiny_model.max_kpt_num == 100
    padded = tiny_model.predict_step([s])[0].output["keypoints"]
    tiny_model.max_kpt_num = None
    try:
        unpadded = tiny_model.predict_step([s])[0].output["keypoints"]
    finally:
        tiny_model.max_kpt_num = 100
    torch.testing.assert_close(padded, unpadded, atol=1e-3, rtol=0)


def test_registered_builder(tiny_ckpt, mp100_root):
    ds = Mp100Dataset(mp100_root, split=1, subset="val", shots=1)
    cfg = OmegaConf.load(Path(pa.__file__).resolve().parents[2] / "bench" / "conf" / "method" / "pose-anything.yaml")
    assert cfg.name == "pose-anything"
    with pytest.raises(InputError, match="weights"):
        METHODS["pose-anything"](cfg, ds, None)
    # the official configs all use 8 heads, which the builder assumes (head counts are not in the keys)
    m = METHODS["pose-anything"](cfg, ds, tiny_ckpt)
    assert isinstance(m, pa.PoseAnything) and m.net.cfg == replace(TINY, nhead=8) and m.max_kpt_num == 100
