"""ViTPose (methods/human2d/vitpose.py) against the official ViTPose code.

Golden data in tests/data/human2d_topdown/ come from running ViTAE-Transformer/ViTPose @ c050ed29 (its
mmpose 0.24 ``ViT`` backbone, ``TopdownHeatmapSimpleHead``, ``TopDown.forward_test`` with flip test,
``TopDownCocoDataset._xywh2cs``, ``TopDownAffine(use_udp=True)``, ``TopDownCocoDataset.evaluate`` rescoring +
OKS-NMS) with /tmp/ref/gen_golden.py, framework registries replaced by stand-ins:

- ``official_keys.json``: state-dict names and shapes of the official ``TopDown`` model for ViTPose-S/B/L/H
  (classic decoder) and ViTPose-S (simple decoder);
- ``vitpose_s_golden.npz``: heatmaps of the official ViTPose-S (classic, simple) with the weights of
  :func:`seeded_value` on ``torch.randn(2, 3, 256, 192, generator=manual_seed(0))`` (sample 0 kept), and the
  four cv2 crops of ``synthetic.png``;
- ``golden.json["pipeline"]``: ``forward_test`` preds (flip test, UDP decoding) of those crops and the final
  instances of ``evaluate`` (rescoring, OKS-NMS 0.9).

Comparisons with these recorded float32 outputs follow tests/recorded.py: our network runs in float64.
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
from methods.human2d import vitpose as vp
from methods.human2d.topdown import (
    CropBoxes,
    check_and_load,
    decode_udp_heatmaps,
    heatmap_argmax,
    heatmap_to_image,
    instances,
    normalize,
    refine_dark_udp,
)
from tests.recorded import argmax_margin, assert_matches_recorded, tolerance

DATA = Path(__file__).resolve().parent.parent / "data" / "human2d_topdown"
KEYS = json.loads((DATA / "official_keys.json").read_text())
GOLD = json.loads((DATA / "golden.json").read_text())
NPZ = np.load(DATA / "vitpose_s_golden.npz")


def seeded_value(key: str, shape) -> torch.Tensor:
    """Deterministic weights per key (the same rule produced the golden outputs in gen_golden.py)."""
    g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    if key.endswith("num_batches_tracked"):
        return torch.tensor(0, dtype=torch.int64)
    if key.endswith("running_var"):
        return 0.5 + torch.rand(shape, generator=g)
    if len(shape) >= 2:
        fan_in = int(np.prod(shape[1:]))
        return torch.randn(shape, generator=g) / fan_in ** 0.5
    if key.endswith("weight"):
        return 1.0 + 0.1 * torch.randn(shape, generator=g)
    return 0.1 * torch.randn(shape, generator=g)


_STATES: dict[str, dict[str, torch.Tensor]] = {}


def official_state(name: str) -> dict[str, torch.Tensor]:
    """Official key layout with seeded values (cached: the tests only read it)."""
    if name not in _STATES:
        _STATES[name] = {k: seeded_value(k, tuple(s)) for k, s in KEYS[name].items()}
    return _STATES[name]


def to_mmpose1(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same weights in mmpose 1.x names (mmpretrain ViT + HeatmapHead), pos_embed folded to (1, N, C)
    as mmpose's converted checkpoints hold it."""
    out = {}
    for k, v in sd.items():
        if k == "backbone.pos_embed":
            v = v[:, 1:] + v[:, :1]
        k = k.replace("backbone.patch_embed.proj.", "backbone.patch_embed.projection.")
        k = k.replace("backbone.last_norm.", "backbone.ln1.")
        k = k.replace("backbone.blocks.", "backbone.layers.")
        k = k.replace(".norm1.", ".ln1.").replace(".norm2.", ".ln2.")
        k = k.replace(".mlp.fc1.", ".ffn.layers.0.0.").replace(".mlp.fc2.", ".ffn.layers.1.")
        k = k.replace("keypoint_head.", "head.")
        out[k] = v
    return out


def save(tmp_path, sd, name="ckpt.pth") -> Path:
    p = tmp_path / name
    torch.save({"state_dict": sd, "meta": {"epoch": 210}}, p)
    return p


X = torch.randn(2, 3, 256, 192, generator=torch.Generator().manual_seed(0))[:1]


@pytest.fixture(scope="module")
def s_checkpoint(tmp_path_factory) -> Path:
    return save(tmp_path_factory.mktemp("vp"), official_state("vitpose-s"))


@pytest.fixture(scope="module")
def vitpose_s64(s_checkpoint) -> vp.ViTPose:
    """The same model in float64, for comparisons with the recorded outputs (tests/recorded.py)."""
    return vp.ViTPose.from_official_checkpoint(s_checkpoint, arch="s").double()


def test_original_layout_loads_and_matches_official_heatmaps(vitpose_s64):
    assert vitpose_s64.net.decoder == "classic"
    with torch.no_grad():
        hm = vitpose_s64.net(X.double())
    assert_matches_recorded(hm, NPZ["heatmaps_s"], what="ViTPose-S heatmaps")


def test_simple_decoder_detected_and_matches_official(tmp_path):
    m = vp.ViTPose.from_official_checkpoint(save(tmp_path, official_state("vitpose-s-simple")), arch="s")
    assert m.net.decoder == "simple"
    with torch.no_grad():
        hm = m.double().net(X.double())
    assert_matches_recorded(hm, NPZ["heatmaps_s_simple"], what="ViTPose-S simple-decoder heatmaps")


def test_mmpose1_layout_gives_the_same_network(tmp_path):
    m = vp.ViTPose.from_official_checkpoint(save(tmp_path, to_mmpose1(official_state("vitpose-s"))), arch="s")
    with torch.no_grad():
        hm = m.double().net(X.double())
    assert_matches_recorded(hm, NPZ["heatmaps_s"], what="ViTPose-S heatmaps, mmpose 1.x layout")


@pytest.mark.slow
def test_vitpose_b_loads_both_layouts_and_runs(tmp_path):
    sd = {k: torch.zeros(tuple(s)) if s else torch.tensor(0) for k, s in KEYS["vitpose-b"].items()}
    m = vp.ViTPose.from_official_checkpoint(save(tmp_path, sd), arch="b")
    with torch.no_grad():
        assert m.net(X).shape == (1, 17, 64, 48)
    own = m.net.state_dict()
    conv = vp.checkpoint_filter_fn(to_mmpose1(sd), m.net)
    assert set(conv) == set(own) and all(conv[k].shape == own[k].shape for k in own)


@pytest.mark.parametrize("arch", ["l", "h"])
def test_vitpose_l_h_shapes_match_official_keys(arch):
    with torch.device("meta"):
        net = vp.ViTPoseNet(arch)
    shapes = {k: tuple(v) for k, v in KEYS[f"vitpose-{arch}"].items()}
    conv = vp.checkpoint_filter_fn({k: torch.empty(s, device="meta") for k, s in shapes.items()}, net)
    own = net.state_dict()
    assert set(conv) == set(own)
    assert all(tuple(conv[k].shape) == tuple(own[k].shape) for k in own)


def test_vit_small_uses_12_heads():
    net = vp.ViTPoseNet("s")
    assert net.backbone.blocks[0].attn.num_heads == 12
    assert net.backbone.patch_embed.proj.padding == (2, 2)
    assert net.backbone.pos_embed.shape == (1, 192, 384)


def decode_sensitivity(hm: torch.Tensor, cb: CropBoxes) -> torch.Tensor:
    """(P, K, 2): sum over a keypoint's heatmap of |d image coordinate / d pixel| of the UDP decoding at ``hm``
    (arg-max held): a change of at most ``t`` per pixel moves the decoded coordinate by at most ``t`` times this,
    to first order. DARK's Newton step divides by the log-heatmap's curvature, so on flat random-weight maps
    this factor reaches 1e5 px per unit of heatmap, while on clipped maps it is 0."""
    h = hm.detach().float().requires_grad_(True)
    coords, _ = heatmap_argmax(h.detach())
    kp = heatmap_to_image(refine_dark_udp(coords, h), cb, (h.shape[-1], h.shape[-2]))
    grads = [torch.autograd.grad(kp[..., c].sum(), h, retain_graph=c == 0)[0] for c in range(2)]
    return torch.stack([g.abs().sum((-1, -2)) for g in grads], -1).double()       # each map feeds its keypoint


def test_pipeline_from_official_crops_matches_forward_test_and_evaluate(vitpose_s64):
    """Official crops -> our flip test + UDP decoding -> the preds of ``forward_test``; then our rescoring and
    OKS-NMS -> the instances ``evaluate`` keeps. The recorded run's heatmaps (not stored) are within
    ``tol`` of ours: every arg-max is decided (margin > 2 tol), and each decoded coordinate may differ by its
    first-order sensitivity to ``tol`` (on top of the coordinates' own float32 tolerance)."""
    g = GOLD["pipeline"]
    crops = torch.from_numpy(NPZ["crops"]).permute(0, 3, 1, 2).float()
    cb = CropBoxes(torch.tensor(g["center"]), (torch.tensor(g["scale200"]).double() * 200).float())
    with torch.no_grad():
        hm = vitpose_s64.heatmaps(normalize(crops, "totensor").double())
    tol = tolerance(hm)
    assert (argmax_margin(hm.flatten(2)) > 2 * tol).all()
    kp, vals = decode_udp_heatmaps(hm, cb)
    preds = torch.tensor(g["preds"], dtype=torch.float64)
    drift = decode_sensitivity(hm, cb) * tol
    assert_matches_recorded(kp.double(), preds[..., :2], what="ViTPose-S forward_test keypoints", extra=drift)
    assert_matches_recorded(vals.double(), preds[..., 2], what="ViTPose-S forward_test scores", scale=hm.abs().max())
    assert ((vals.double() - 0.2).abs() > tol).all()                         # rescoring's threshold is decided
    pred = instances(7, kp, vals, torch.tensor(g["box_scores"]), cb.area, vitpose_s64.pipeline)
    kept = g["final_bbox_ids"]
    assert pred.output["scores"].shape == (len(kept),)                      # kept, in the official keep order
    assert_matches_recorded(pred.output["scores"], g["final_scores"], what="evaluate scores", scale=hm.abs().max())
    final = torch.tensor(g["final_keypoints"], dtype=torch.float64)
    assert_matches_recorded(pred.output["keypoints"][..., :2], final[..., :2], what="evaluate keypoints",
                            extra=drift[kept])
    assert_matches_recorded(pred.output["keypoints"][..., 2], final[..., 2], what="evaluate keypoint scores",
                            scale=hm.abs().max())


def _sample(image_path, boxes, scores, sid=7, width=320, height=240):
    return Sample(sid, {}, {"image_path": str(image_path), "width": width, "height": height,
                            "person_boxes": torch.tensor(boxes, dtype=torch.float64),
                            "person_scores": torch.tensor(scores, dtype=torch.float64)})


def test_predict_step_end_to_end_near_official(vitpose_s64):
    """predict_step on the image file: the official forward_test preds, up to OpenCV's fixed-point crops (<= 1
    grey level on 0.006% of the pixels), which random-weight heatmaps (several near-equal peaks, flat
    clipped logs) turn into occasional jumps: 90% of the keypoints must agree within 0.05 px."""
    g = GOLD["pipeline"]
    vitpose_s64.pipeline.oks_nms_thr = None
    try:
        (a,) = vitpose_s64.predict_step([_sample(DATA / "synthetic.png", g["boxes"], g["box_scores"])])
    finally:
        vitpose_s64.pipeline.oks_nms_thr = 0.9
    ka = a.output["keypoints"]
    assert a.output["image_id"].dtype == torch.int64 and int(a.output["image_id"]) == 7
    assert ka.shape == (4, 17, 3)
    ref = torch.tensor(g["preds"], dtype=torch.float64)
    close = ((ka[..., :2] - ref[..., :2]).norm(dim=-1) < 0.05).float().mean()
    assert close > 0.9
    np.testing.assert_allclose(a.output["scores"].numpy(), np.array(g["boxes_out"])[:, 5] * 0 +
                               rescore_reference(ref[..., 2], g["box_scores"]), rtol=1e-3)


def rescore_reference(kpt_scores, box_scores, thr=0.2):
    s = kpt_scores.numpy()
    out = []
    for row, b in zip(s, box_scores):
        v = row[row > thr]
        out.append((v.mean() if len(v) else 0.0) * b)
    return np.array(out)


class PeakNet(torch.nn.Module):
    """A stand-in network with well-separated Gaussian peaks whose heights depend on the image (left vs right
    half), so the flip-averaged heatmaps have one clear winner per keypoint: the flip-test equivariance check
    is then not at the mercy of random-weight heatmaps."""

    def forward(self, x):
        yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(48.0), indexing="ij")
        px = 4.3 + 0.8 * torch.arange(17.0)              # left half: mirrored peaks stay apart
        py = 5.1 + 3.3 * torch.arange(17.0)
        g = torch.exp(-((xx - px[:, None, None]) ** 2 + (yy - py[:, None, None]) ** 2) / 8.0)
        amp = 1 + torch.sigmoid(5 * (x[..., :96].mean((1, 2, 3)) - x[..., 96:].mean((1, 2, 3))))
        return amp[:, None, None, None] * g[None]


def test_flip_test_mirrored_image_gives_mirrored_keypoints(tmp_path):
    from PIL import Image
    g = GOLD["pipeline"]
    img = Image.open(DATA / "synthetic.png")
    W = img.width
    img.transpose(Image.FLIP_LEFT_RIGHT).save(tmp_path / "mirror.png")
    boxes = torch.tensor(g["boxes"][:3], dtype=torch.float64)
    mirrored = boxes.clone()
    mirrored[:, 0] = W - 1 - boxes[:, 0] - boxes[:, 2]                # UDP: centre c -> W - 1 - c
    m = vp.ViTPose("s")
    m.net = PeakNet()
    m.pipeline.oks_nms_thr = None
    a, b = m.predict_step([_sample(DATA / "synthetic.png", boxes.tolist(), g["box_scores"][:3]),
                           _sample(tmp_path / "mirror.png", mirrored.tolist(), g["box_scores"][:3], 8)])
    ka, kb = a.output["keypoints"], b.output["keypoints"]
    kb_back = kb[:, m.flip_idx].clone()
    kb_back[..., 0] = W - 1 - kb_back[..., 0]
    d = (ka[..., :2] - kb_back[..., :2]).abs()
    assert d.max() < 1e-3, d.amax(-1)
    assert torch.allclose(ka[..., 2], kb_back[..., 2], atol=1e-5)
    # and the flip test matters: without it the mirrored image does not mirror the keypoints
    m.pipeline.flip_test = False
    a, b = m.predict_step([_sample(DATA / "synthetic.png", boxes.tolist(), g["box_scores"][:3]),
                           _sample(tmp_path / "mirror.png", mirrored.tolist(), g["box_scores"][:3], 8)])
    kb_back = b.output["keypoints"][:, m.flip_idx].clone()
    kb_back[..., 0] = W - 1 - kb_back[..., 0]
    assert not torch.allclose(a.output["keypoints"][..., :2], kb_back[..., :2], atol=1.0)


def test_empty_image_gives_empty_prediction(vitpose_s64):
    (p,) = vitpose_s64.predict_step([_sample(DATA / "synthetic.png", np.zeros((0, 4)).tolist(), [], sid=3)])
    assert p.output["keypoints"].shape == (0, 17, 3) and p.output["scores"].shape == (0,)


def test_bad_checkpoints_raise_input_error(tmp_path, vitpose_s64):
    """Key/shape problems are checked before anything is loaded (in memory here: same code path as a file)."""
    net = vitpose_s64.net
    sd = official_state("vitpose-s")
    missing = dict(sd)
    missing.pop("backbone.blocks.3.attn.qkv.weight")
    with pytest.raises(InputError, match="blocks.3.attn.qkv.weight"):
        check_and_load(net, vp.checkpoint_filter_fn(missing, net), "ckpt.pth")
    with pytest.raises(InputError, match="unknown key"):
        check_and_load(net, vp.checkpoint_filter_fn({**sd, "keypoint_head.extra.weight": torch.zeros(1)}, net), "c")
    with pytest.raises(InputError, match="shape"):
        check_and_load(net, vp.checkpoint_filter_fn({**sd, "backbone.pos_embed": torch.zeros(1, 193, 768)}, net), "c")
    with pytest.raises(InputError, match="not a ViTPose checkpoint"):
        vp.ViTPose.from_official_checkpoint(save(tmp_path, {"foo.weight": torch.zeros(1)}), arch="s")
    with torch.no_grad():                                                 # nothing was loaded by the failures
        assert_matches_recorded(net(X.double()), NPZ["heatmaps_s"], what="ViTPose-S heatmaps after failed loads")


def test_predictions_are_what_the_coco_metric_scores():
    """GT keypoints sent through ``instances`` (rescoring) score AP 1 on the bundled COCO sample."""
    from bench.data.coco import build_coco
    ds = build_coco(OmegaConf.create({"name": "coco", "data_root": None, "person_boxes": None, "sigmas": None}))
    metric = ds.build_metric()
    for i in range(len(ds)):
        t = ds[i].target
        keep = ~t["iscrowd"] & (t["num_keypoints"] > 0)
        kp = t["keypoints"][keep].float()
        pred = instances(int(t["image_id"]), kp[..., :2], torch.full(kp.shape[:2], 0.9), torch.ones(kp.shape[0]),
                         t["area"][keep].float(), vp.TopDownConfig(oks_nms_thr=None))
        assert pred.output["keypoints"].shape == (int(keep.sum()), 17, 3)
        metric.update([pred.output], [t])
    assert metric.compute()["AP"].item() == pytest.approx(1.0)


def test_registered_builders_and_weights_required():
    for name in ("vitpose-s", "vitpose-b", "vitpose-l", "vitpose-h"):
        assert METHODS[name] is vp.build
    with pytest.raises(InputError, match="weights=FILE"):
        vp.build(OmegaConf.create({"name": "vitpose-b"}), None, None)
    with pytest.raises(InputError, match="pipeline.bogus"):
        vp.pipeline_from_cfg(OmegaConf.create({"pipeline": {"bogus": 1}}))
    conf = OmegaConf.load(Path(vp.__file__).resolve().parents[2] / "bench" / "conf" / "method" / "vitpose-l.yaml")
    assert conf.name == "vitpose-l" and vp.pipeline_from_cfg(conf).oks_nms_thr == 0.9


@pytest.mark.slow
def test_cli_vitpose_b_with_official_checkpoint_writes_a_row(tmp_path):
    """``nox -s evaluate -- method=vitpose-b dataset=coco weights=FILE`` on the bundled sample: an official-layout
    checkpoint (seeded random weights) goes through conversion, the top-down pipeline and the COCO metric."""
    from tests.conftest import run_cli

    ckpt = save(tmp_path, {k: seeded_value(k, tuple(s)) for k, s in KEYS["vitpose-b"].items()})
    out, boards = tmp_path / "out", tmp_path / "boards"
    r = run_cli("evaluate", "method=vitpose-b", "dataset=coco", f"weights={ckpt}", f"out={out}",
                f"leaderboard_dir={boards}", "batch_size=2")
    assert r.returncode == 0, r.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert 0.0 <= metrics["AP"] <= 1.0 and "AR" in metrics
    rows = (boards / "human2d" / "coco.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith("vitpose-b,")
    # the run's COCO keypoint results JSON, scored as a results file, gives the run's numbers exactly
    results = out / "person_keypoints_val2017_vitpose-b_results.json"
    assert json.loads(results.read_text()), "the model run wrote no detections"
    r2 = run_cli("evaluate", "method=vitpose-b", "dataset=coco", f"predictions={results}", f"out={tmp_path / 'o2'}",
                 f"leaderboard_dir={tmp_path / 'b2'}")
    assert r2.returncode == 0, r2.stderr[-2000:]
    assert json.loads((tmp_path / "o2" / "metrics.json").read_text())["metrics"] == metrics
