"""DWPose (methods/human2d/dwpose.py) against the official code.

Golden data (tests/data/dwpose_golden/, made by its gen_golden.py from the official modules, see PROVENANCE.md):
- ``official_keys.json``: state-dict names and shapes of mmdet's ``CSPNeXt`` + DWPose-mmpose's ``RTMCCHead`` as
  the dw-ll_ucoco_384 and dw-mm_ucoco configs build them, and of a reduced config (``REDUCED`` below); the
  configs' ``test_cfg`` and codec; COCO-WholeBody's ``flip_indices`` as mmpose parses them;
- ``golden.npz``: the reduced model with ``seeded_value`` weights (gen_golden.py's rule) on the stored
  ``input``: plain x/y logits, the flip test's averaged vectors and ``RTMCCHead.predict``'s decoded keypoints.
Comparisons with the recorded float32 outputs follow tests/recorded.py: our network runs in float64.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from bench.errors import InputError
from bench.registry import METHODS
from bench.types import Sample
from methods.human2d import dwpose as dw
from methods.human2d.topdown import check_and_load, flip_index
from tests.data.dwpose_golden.gen_golden import REDUCED as REDUCED_CFG
from tests.data.dwpose_golden.gen_golden import seeded_value
from tests.recorded import argmax_margin, assert_matches_recorded, tolerance

DATA = Path(__file__).resolve().parent.parent / "data" / "dwpose_golden"
KEYS = json.loads((DATA / "official_keys.json").read_text())
NPZ = np.load(DATA / "golden.npz")
_gau = REDUCED_CFG["head"]["gau_cfg"]
REDUCED = dw.DWPoseArch(deepen_factor=REDUCED_CFG["backbone"]["deepen_factor"],
                        widen_factor=REDUCED_CFG["backbone"]["widen_factor"],
                        input_size=REDUCED_CFG["head"]["input_size"], hidden_dims=_gau["hidden_dims"], s=_gau["s"],
                        expansion_factor=_gau["expansion_factor"],
                        final_layer_kernel_size=REDUCED_CFG["head"]["final_layer_kernel_size"])


def reduced_checkpoint(tmp_path) -> Path:
    sd = {k: seeded_value(k, tuple(s)) for k, s in KEYS["reduced"].items()}
    path = tmp_path / "reduced.pth"
    torch.save({"state_dict": sd, "meta": {"note": "official layout"}}, path)
    return path


def reduced_model(tmp_path, **cfg) -> dw.DWPose:
    pipe = replace(dw.PIPELINE, input_size=REDUCED.input_size)
    return dw.DWPose.from_official_checkpoint(reduced_checkpoint(tmp_path), arch=REDUCED, pipeline=pipe, **cfg)


@pytest.mark.parametrize("name", ["dwpose-l", "dwpose-m"])
def test_official_layout_loads_with_no_missing_or_unexpected_keys(name):
    arch = dw.ARCHS[name[-1]]
    net = dw.DWPoseNet(arch)
    own = {k: list(v.shape) for k, v in net.state_dict().items()}
    assert own == KEYS[name]                                   # same names (no renames), same shapes
    check_and_load(net, {k: torch.zeros(s) for k, s in KEYS[name].items()}, "ckpt.pth")
    w, h = arch.input_size
    with torch.no_grad():
        px, py = net.eval()(torch.zeros(1, 3, h, w))
    assert px.shape == (1, 133, 2 * w) and py.shape == (1, 133, 2 * h)
    codec = KEYS[name + "-codec"]
    assert tuple(codec["input_size"]) == arch.input_size and codec["simcc_split_ratio"] == arch.simcc_split_ratio
    assert codec["use_dark"] is False and KEYS[name + "-test_cfg"] == {"flip_test": True}


def test_flip_pairs_are_the_official_flip_indices():
    assert flip_index(133, dw.WHOLEBODY_FLIP_PAIRS) == KEYS["flip_indices"]


def test_reduced_model_matches_official_outputs(tmp_path):
    m = reduced_model(tmp_path)
    x = torch.from_numpy(NPZ["input"]).double()
    m.net.double()
    with torch.no_grad():
        px, py = m.net(x)
        fx, fy = m.vectors(x)
    assert_matches_recorded(px, NPZ["x"], what="DWPose reduced x logits")
    assert_matches_recorded(py, NPZ["y"], what="DWPose reduced y logits")
    assert_matches_recorded(fx, NPZ["flip_x"], what="DWPose flip-test x vectors")
    assert_matches_recorded(fy, NPZ["flip_y"], what="DWPose flip-test y vectors")
    # decoding: the recorded vectors through ours give the official keypoints and scores bit for bit
    locs, vals = dw.simcc_maximum(torch.from_numpy(NPZ["flip_x"]), torch.from_numpy(NPZ["flip_y"]))
    np.testing.assert_array_equal((locs / 2.0).numpy(), NPZ["keypoints"])
    np.testing.assert_array_equal(vals.numpy(), NPZ["keypoint_scores"])
    # and ours end to end, where the recorded arg-max is decided by more than twice the tolerance (tests/recorded.py
    # rule 4); 527 of the 532 are (the flip test averages each x vector with its mirror image: near-ties come easily)
    safe = torch.stack([argmax_margin(torch.from_numpy(NPZ[k]).double()) > 2 * tolerance(NPZ[k])
                        for k in ("flip_x", "flip_y")], -1)
    assert safe.float().mean() > 0.98
    locs, vals = dw.simcc_maximum(fx, fy)
    ours, rec = (locs / 2.0).float().numpy(), NPZ["keypoints"]
    np.testing.assert_array_equal(ours[safe.numpy()], rec[safe.numpy()])
    assert_matches_recorded(vals, NPZ["keypoint_scores"], what="DWPose keypoint scores",
                            scale=max(float(np.abs(NPZ["flip_x"]).max()), float(np.abs(NPZ["flip_y"]).max())))


def test_changed_weight_is_caught(tmp_path):
    """One weight of the head's GAU x (1 + 1e-3) moves the outputs past the tolerance."""
    m = reduced_model(tmp_path).net.double()
    with torch.no_grad():
        m.head.gau.uv.weight.mul_(1.001)
        px, _ = m(torch.from_numpy(NPZ["input"]).double())
    with pytest.raises(AssertionError, match="differ by more than"):
        assert_matches_recorded(px, NPZ["x"], what="x")


def test_bad_checkpoints_are_one_line_errors(tmp_path):
    sd = {k: seeded_value(k, tuple(s)) for k, s in KEYS["reduced"].items()}
    pipe = replace(dw.PIPELINE, input_size=REDUCED.input_size)
    for change, match in ((lambda d: d.pop("head.gau.uv.weight"), "missing"),
                          (lambda d: d.update({"head.gau.w": torch.zeros(3)}), "unknown key"),
                          (lambda d: d.update({"head.cls_x.weight": torch.zeros(95, 32)}), "cls_x.weight")):
        bad = dict(sd)
        change(bad)
        torch.save({"state_dict": bad}, tmp_path / "bad.pth")
        with pytest.raises(InputError, match=match):
            dw.DWPose.from_official_checkpoint(tmp_path / "bad.pth", arch=REDUCED, pipeline=pipe)


def _sample(tmp_path) -> Sample:
    rng = np.random.default_rng(0)
    path = tmp_path / "img.png"
    Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)).save(path)
    boxes = torch.tensor([[20.0, 10.0, 60.0, 90.0], [20.0, 10.0, 60.0, 90.0], [100.0, 30.0, 40.0, 50.0]])
    return Sample(7, {}, {"image_path": str(path), "person_boxes": boxes,
                          "person_scores": torch.tensor([0.9, 0.8, 0.7], dtype=torch.float64)})


def test_predict_step_wholebody_and_coco(tmp_path):
    s = _sample(tmp_path)
    (p,) = reduced_model(tmp_path).predict_step([s])
    out = p.output
    assert p.sample_id == 7 and out["keypoints"].shape == (2, 133, 3)       # the duplicate box: OKS-NMS drops it
    assert torch.equal(out["part_scores"], out["scores"][:, None].expand(-1, 6))
    body = out["keypoints"][:, :17]
    ext = (body[..., 0].amax(-1) - body[..., 0].amin(-1)) * (body[..., 1].amax(-1) - body[..., 1].amin(-1))
    assert torch.equal(out["area"], ext)
    assert out["scores"][0] >= out["scores"][1]
    # the 17-keypoint output (dataset=coco) keeps the body of the same people
    (q,) = reduced_model(tmp_path, wholebody=False).predict_step([s])
    assert q.output["keypoints"].shape == (2, 17, 3) and "part_scores" not in q.output
    assert torch.equal(q.output["keypoints"], out["keypoints"][:, :17])


def test_simcc_to_image_known_value():
    """Bin (100, 301) of a 288x384 crop with centre (500, 400), scale (144, 192): x = 50/288*144 + 500 - 72."""
    locs = torch.tensor([[[100.0, 301.0]]])
    kp = dw.simcc_to_image(locs, dw.CropBoxes(torch.tensor([[500.0, 400.0]]), torch.tensor([[144.0, 192.0]])),
                           (288, 384))
    assert torch.allclose(kp[0, 0], torch.tensor([50 / 288 * 144 + 428, 150.5 / 384 * 192 + 304]))


def test_registered_and_configs():
    assert METHODS["dwpose-l"] is dw.build and METHODS["dwpose-m"] is dw.build
    with pytest.raises(InputError, match="weights=FILE"):
        dw.build(OmegaConf.create({"name": "dwpose-l"}), None, None)
    with pytest.raises(InputError, match="coco_wholebody"):
        dw.output_for(type("D", (), {"name": "crowdpose", "family": "human2d"})())
    root = Path(dw.__file__).resolve().parents[2] / "bench" / "conf" / "method"
    for name in ("dwpose-l", "dwpose-m"):
        conf = OmegaConf.load(root / f"{name}.yaml")
        arch = dw.ARCHS[name[-1]]
        assert conf.name == name and tuple(conf.pipeline.input_size) == arch.input_size
        assert conf.pipeline.flip_test is True and conf.pipeline.udp is False
        assert conf.pipeline.box_convention == "mmpose1" and conf.pipeline.normalization == "preprocessor"
