"""The shared top-down pipeline (methods/human2d/topdown.py) against the official ViTPose/mmpose 0.x code.

Golden numbers in tests/data/human2d_topdown/ were produced by running the official code, unmodified except for
framework stand-ins (mmcv registries/builders) and one numpy>=2 compatibility fix (``bbox_score`` reshaped to a
scalar), with /tmp/ref/gen_golden.py (see PROVENANCE.md there):
ViTAE-Transformer/ViTPose @ c050ed29 ``_xywh2cs``, ``TopDownAffine(use_udp=True)`` (cv2.warpAffine, OpenCV 5.0),
``keypoints_from_heatmaps(use_udp=True, post_process='default', kernel=11)``, ``oks_nms``/``oks_iou``.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.errors import InputError
from methods.human2d import topdown
from methods.human2d.topdown import (
    CropBoxes,
    affine_crop,
    boxes_to_center_scale,
    decode_udp_heatmaps,
    flip_back_heatmaps,
    flip_index,
    gaussian_blur,
    heatmap_argmax,
    heatmap_to_image,
    load_image,
    load_state_dict,
    oks_nms,
    oks_overlaps,
    refine_dark_udp,
    rescore,
    warp_matrices,
)
from tests.recorded import assert_matches_recorded, tolerance

DATA = Path(__file__).resolve().parent.parent / "data" / "human2d_topdown"
GOLD = json.loads((DATA / "golden.json").read_text())
SIZE = (192, 256)


def test_center_scale_is_official_xywh2cs():
    g = GOLD["pipeline"]
    cb = boxes_to_center_scale(torch.tensor(g["boxes"], dtype=torch.float64), SIZE, 1.25, "mmpose0")
    assert torch.equal(cb.center, torch.tensor(g["center"], dtype=torch.float32))
    s200 = torch.tensor(g["scale200"], dtype=torch.float32)
    assert torch.equal(cb.scale, (s200.double() * 200.0).float())          # transform_preds: scale * 200.0
    # aspect ratio 192/256 is kept and the 1.25 padding applied
    assert torch.allclose(cb.scale[:, 0] / cb.scale[:, 1], torch.tensor(0.75), rtol=1e-6)


def test_center_scale_mmpose1_pads_then_fixes_aspect():
    cb = boxes_to_center_scale(torch.tensor([[10.0, 20.0, 30.0, 100.0], [0.0, 0.0, 200.0, 50.0]]), SIZE, 1.25, "mmpose1")
    assert torch.allclose(cb.center, torch.tensor([[25.0, 70.0], [100.0, 25.0]]))
    assert torch.allclose(cb.scale, torch.tensor([[125.0 * 0.75, 125.0], [250.0, 250.0 / 0.75]]))


def test_affine_crop_matches_cv2_warp_affine():
    g = GOLD["pipeline"]
    ref = torch.from_numpy(np.load(DATA / "vitpose_s_golden.npz")["crops"]).permute(0, 3, 1, 2).float()
    img = load_image(DATA / "synthetic.png")
    cb = CropBoxes(torch.tensor(g["center"]), (torch.tensor(g["scale200"]).double() * 200).float())
    crops = affine_crop(img, warp_matrices(cb, SIZE, udp=True), SIZE)
    diff = (crops - ref).abs()
    # OpenCV interpolates in fixed point: at most one grey level apart, and almost never
    assert diff.max() <= 1.0
    assert (diff > 0).float().mean() < 1e-3


def test_affine_crop_known_points():
    """A ramp image I(x, y) = (x, y, 0): bilinear sampling is exact on it, so each crop pixel shows the image
    point it samples. UDP maps c - s/2 -> 0 and c + s/2 -> W_in - 1; classic maps c -> W_in / 2."""
    H, W = 300, 400
    yy, xx = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    img = torch.stack([xx, yy, torch.zeros_like(xx)])
    cb = CropBoxes(torch.tensor([[200.0, 150.0]]), torch.tensor([[96.0, 128.0]]))
    c = affine_crop(img, warp_matrices(cb, SIZE, udp=True), SIZE, round_uint8=False)[0]
    assert c[0, 0, 0].item() == pytest.approx(200 - 48, abs=1e-3)
    assert c[0, 0, 191].item() == pytest.approx(200 + 48, abs=1e-3)
    assert c[1, 0, 0].item() == pytest.approx(150 - 64, abs=1e-3)
    assert c[1, 255, 0].item() == pytest.approx(150 + 64, abs=1e-3)
    c = affine_crop(img, warp_matrices(cb, SIZE, udp=False), SIZE, round_uint8=False)[0]
    assert c[0, 128, 96].item() == pytest.approx(200.0, abs=1e-3)
    assert c[1, 128, 96].item() == pytest.approx(150.0, abs=1e-3)
    assert c[0, 0, 0].item() == pytest.approx(200 - 48, abs=1e-3)
    # outside the image: zeros (cv2 BORDER_CONSTANT)
    far = CropBoxes(torch.tensor([[-500.0, -500.0]]), torch.tensor([[96.0, 128.0]]))
    assert affine_crop(img, warp_matrices(far, SIZE, udp=True), SIZE).abs().max() == 0


def test_affine_crop_bright_dot_lands_where_the_matrix_sends_it():
    img = torch.zeros(3, 200, 300)
    img[:, 120, 77] = 255.0
    cb = CropBoxes(torch.tensor([[80.0, 110.0]]), torch.tensor([[48.0, 64.0]]))     # 4x zoom
    M = warp_matrices(cb, SIZE, udp=True)[0]
    u, v = (M[:, :2] @ torch.tensor([77.0, 120.0], dtype=torch.float64) + M[:, 2]).tolist()
    crop = affine_crop(img, M[None], SIZE)[0, 0]
    iy, ix = divmod(int(crop.argmax()), SIZE[0])
    assert abs(ix - u) <= 0.5 and abs(iy - v) <= 0.5


def blur_sensitivity(heatmaps: torch.Tensor, crops: CropBoxes, kernel: int, monkeypatch) -> torch.Tensor:
    """(P, K, 2): sum over the blurred maps of |d image coordinate / d blurred pixel| of the UDP decoding. The
    official blur (cv2, float32) and ours (a float32 convolution, whose rounding depends on the CPU) differ in
    the last bits, and DARK's Newton step divides by the log-map's curvature: a change of at most ``t`` per
    blurred pixel moves a coordinate by at most ``t`` times this, to first order."""
    blurred = {}

    def leaf_blur(h, k):
        blurred["b"] = gaussian_blur(h, k).detach().requires_grad_(True)
        return blurred["b"]

    monkeypatch.setattr(topdown, "gaussian_blur", leaf_blur)
    coords, _ = heatmap_argmax(heatmaps)
    kp = heatmap_to_image(refine_dark_udp(coords, heatmaps, kernel), crops, (heatmaps.shape[-1], heatmaps.shape[-2]))
    monkeypatch.undo()
    out = torch.zeros(kp.shape, dtype=torch.float64)
    for i in np.ndindex(*kp.shape):                 # one by one: a (-1, -1) keypoint reads its neighbour maps
        (g,) = torch.autograd.grad(kp[i], blurred["b"], retain_graph=True)
        out[i] = g.abs().sum()
    return out


def test_udp_decoding_matches_official_keypoints_from_heatmaps(monkeypatch):
    """Recorded heatmaps in, so the arg-maxes and maxima are exact; the sub-pixel step may differ by its
    sensitivity to the blurs' float32 rounding (tests/recorded.py, 64 ulps of the largest blurred value), and
    the last float32 affine map to the image by 4 ulps of the largest coordinate (three roundings)."""
    z = np.load(DATA / "udp_decode_golden.npz")
    hm = torch.from_numpy(z["heatmaps"])
    cb = CropBoxes(torch.from_numpy(z["center"]), (torch.from_numpy(z["scale200"]).double() * 200).float())
    kp, vals = decode_udp_heatmaps(hm, cb, kernel=11)
    np.testing.assert_array_equal(vals.numpy(), z["maxvals"])
    drift = blur_sensitivity(hm, cb, 11, monkeypatch) * tolerance(gaussian_blur(hm, 11))
    assert_matches_recorded(kp.double(), z["preds"], what="keypoints_from_heatmaps", ulps=4, extra=drift)
    # the map with a non-positive maximum takes the official (-1, -1) path
    assert z["maxvals"][1, 4] <= 0


def test_udp_decoding_recovers_subpixel_gaussian_centres():
    """Noise-free Gaussians (sigma 2) at known sub-pixel centres: blur + log is a quadratic, DARK is exact."""
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(48.0), indexing="ij")
    centres = torch.tensor([[10.3, 20.7], [30.55, 40.2], [24.0, 31.9]])
    hm = torch.stack([torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 8.0) for cx, cy in centres])[None]
    cb = CropBoxes(torch.tensor([[0.0, 0.0]]), torch.tensor([[47.0, 63.0]]))     # heatmap px == image px + offset
    kp, vals = decode_udp_heatmaps(hm, cb)
    expected = centres + torch.tensor([-23.5, -31.5])                            # x * 47/47 + 0 - 47/2
    assert torch.allclose(kp[0], expected, atol=0.02)
    assert torch.all(vals > 0.9)


def _marked(entries: dict[tuple[int, int, int], float]) -> torch.Tensor:
    hm = torch.zeros(1, 17, 4, 5)
    for (k, y, x), v in entries.items():
        hm[0, k, y, x] = v
    return hm


def test_flip_back_swaps_pairs_and_mirrors():
    """Expected arrays: the official ``flip_back`` (ViTPose @ c050ed2 ``post_transforms.py``, COCO flip_pairs) and,
    for ``shift``, the line after it in ``TopdownHeatmapSimpleHead.inference_model``
    (``h[..., 1:] = h[..., :-1]``: numpy copies the overlap, so column 0 stays and also fills column 1, and the
    last column is dropped), run on this input with numpy 2.4."""
    hm = _marked({(1, 2, 0): 1.0, (1, 2, 4): 2.0, (0, 1, 2): 3.0, (2, 0, 1): 4.0, (15, 3, 3): 5.0})
    out = flip_back_heatmaps(hm, flip_index())
    assert torch.equal(out, _marked({(0, 1, 2): 3.0, (1, 0, 3): 4.0, (2, 2, 0): 2.0, (2, 2, 4): 1.0, (16, 3, 1): 5.0}))
    shifted = flip_back_heatmaps(hm, flip_index(), shift=True)
    assert torch.equal(shifted, _marked({(0, 1, 3): 3.0, (1, 0, 4): 4.0, (2, 2, 0): 2.0, (2, 2, 1): 2.0,
                                         (16, 3, 2): 5.0}))
    assert torch.equal(hm, _marked({(1, 2, 0): 1.0, (1, 2, 4): 2.0, (0, 1, 2): 3.0, (2, 0, 1): 4.0, (15, 3, 3): 5.0}))
    assert flip_index() == [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]


def test_oks_nms_matches_official():
    g = GOLD["oks_nms"]
    kp, sc, ar = (torch.tensor(g[k]) for k in ("keypoints", "scores", "areas"))
    assert oks_nms(kp, sc, ar, 0.9).tolist() == g["keep"]
    assert oks_nms(kp, sc, ar, 0.5).tolist() == g["keep_05"]
    np.testing.assert_allclose(oks_overlaps(kp, ar)[0, 1:].numpy(), np.array(g["ious0"], np.float32), rtol=1e-6)


def test_rescore_is_box_score_times_mean_of_confident_keypoints():
    s = torch.tensor([[0.1] * 17, [0.5] * 8 + [0.1] * 9, [0.3, 0.9] + [0.0] * 15])
    out = rescore(s, torch.tensor([0.8, 0.5, 1.0]), 0.2)
    assert torch.allclose(out, torch.tensor([0.0, 0.25, 0.6]))


class _Meta:  # a metadata object of a foreign class inside a checkpoint
    def __init__(self):
        self.x = 3


def test_load_state_dict_wrappers_and_metadata(tmp_path):
    sd = {"module.a.weight": torch.ones(2, 2), "module.b": torch.zeros(3)}
    p = tmp_path / "c.pth"
    torch.save({"state_dict": sd, "meta": {"arr": np.arange(3), "obj": _Meta()}}, p)
    out = load_state_dict(p)
    assert set(out) == {"a.weight", "b"} and torch.equal(out["a.weight"], torch.ones(2, 2))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="weights"):
        load_state_dict(bad)
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"state_dict": {"a": 1}}))
    with pytest.raises(InputError):
        load_state_dict(evil)
