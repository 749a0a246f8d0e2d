"""BlazePose (methods/human2d/blazepose.py): crop geometry, the COCO mapping, and the real model on real images.

The geometry and builder tests run everywhere. The model tests need mediapipe (numpy<2, protobuf<5), which the
core environment cannot hold: they are skipped there and run in the ``blazepose`` nox session, which sets
``POSEARENA_BLAZEPOSE_ENV=1`` so that a broken mediapipe fails them instead of skipping them.

Oracle of the model tests: mediapipe's own ``solutions.pose.Pose``, run here on windows this file cuts from the
4 bundled val2017 images by the rule the module documents (square, side ``ceil(1.25 max(w, h))``, centred on
the box, black outside, bilinear up to 256 px), joints picked by name through mediapipe's ``PoseLandmark``
enum and the GT file's ``keypoints`` list, and put back into the image as ``x * side + x0``. The wrapper must
give the same landmarks; what it adds (crop, mapping, back-projection, scores) is what is under test.
One end-to-end check scores the GT-box run with pycocotools against the COCO GT of those images.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import Tensor

import methods.human2d.blazepose as bp
from bench.errors import InputError
from bench.registry import METHODS
from bench.types import Sample

REPO = Path(__file__).resolve().parents[2]
COCO_SAMPLE = REPO / "bench" / "data" / "samples" / "coco"
COCO_GT = COCO_SAMPLE / "annotations" / "person_keypoints_val2017.json"
DET_BOXES = COCO_SAMPLE / "person_detection_results" / "COCO_val2017_detections_AP_H_56_person.json"
NO_MEDIAPIPE = "mediapipe (numpy<2, protobuf<5) is not installed here: `nox -s tests` runs these in the blazepose environment"
IN_BLAZEPOSE_ENV = os.environ.get("POSEARENA_BLAZEPOSE_ENV") == "1"

#: Lines mediapipe 0.10.21 wrote to stderr in `python -m bench evaluate` before the filter (copied verbatim).
OBSERVED_NOISE = (
    "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    ("W0000 00:00:1796416446.849711   19750 inference_feedback_manager.cc:114] Feedback manager requires a model "
     "with a single signature inference. Disabling support for feedback tensors."),
    ("W0000 00:00:1796416447.084511   19751 landmark_projection_calculator.cc:186] Using NORM_RECT without "
     "IMAGE_DIMENSIONS is only supported for the square ROI. Provide IMAGE_DIMENSIONS or use PROJECTION_MATRIX."),
)


class _Dataset:
    def __init__(self, name: str):
        self.name = name


# ------------------------------------------------------------------------------------------------ everywhere


def test_registered_under_its_cli_name():
    assert METHODS["blazepose"] is bp.build


def test_square_crop_is_centred_and_padded():
    crop = bp.square_crop(torch.tensor([10.0, 20.0, 40.0, 80.0]), 1.25)
    # centre (30, 60), side 1.25 * 80 = 100 -> top-left (-20, 10)
    assert crop == bp.Crop(x0=-20, y0=10, side=100)
    xy = torch.tensor([[0.0, 0.0], [0.5, 0.5], [1.0, 1.0]], dtype=torch.float64)
    assert torch.equal(bp.crop_to_image(xy, crop), torch.tensor([[-20.0, 10.0], [30.0, 60.0], [80.0, 110.0]],
                                                                dtype=torch.float64))
    assert bp.square_crop(torch.tensor([5.0, 5.0, 0.0, 0.0]), 1.25).side == 1  # degenerate box still crops


def test_cut_window_copies_pixels_and_pads_with_black():
    rng = np.random.default_rng(0)
    image = rng.integers(1, 256, size=(30, 40, 3), dtype=np.uint8)  # no zero pixel inside the image
    crop = bp.Crop(x0=-5, y0=20, side=16)  # sticks out left and bottom
    win = bp.cut_window(image, crop)
    assert win.shape == (16, 16, 3) and win.dtype == np.uint8
    assert np.array_equal(win[:10, 5:], image[20:30, 0:11])
    assert not win[:, :5].any() and not win[10:].any()
    up = bp.cut_window(image, bp.Crop(x0=0, y0=0, side=10), min_size=40)
    assert up.shape == (40, 40, 3)
    assert up.mean() == pytest.approx(image[:10, :10].mean(), rel=0.05)  # a resize, not a re-crop


def test_build_rejects_weights_and_foreign_datasets():
    with pytest.raises(InputError) as e:
        bp.build(OmegaConf.create({"name": "blazepose"}), _Dataset("coco"), "model.pth")
    assert e.value.field == "weights" and e.value.file == "model.pth"
    with pytest.raises(InputError) as e:
        bp.build(OmegaConf.create({"name": "blazepose"}), _Dataset("h36m"), None)
    assert e.value.field == "dataset" and "h36m" in e.value.problem


def test_missing_mediapipe_is_a_one_line_input_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # makes `import mediapipe` raise ImportError
    with pytest.raises(InputError) as e:
        bp.build(OmegaConf.create({"name": "blazepose"}), _Dataset("coco"), None)
    assert e.value.field == "method" and "mediapipe" in e.value.problem and "\n" not in e.value.line()


def test_stderr_filter_drops_the_known_notices_and_passes_the_rest(capfd):
    real = "E0000 00:00:1796416447.1   19751 calculator_graph.cc:887] INTERNAL: a real error"
    with bp.stderr_without(bp.MEDIAPIPE_NOISE):
        for line in (*OBSERVED_NOISE, real):
            os.write(2, (line + "\n").encode())
        os.write(2, (OBSERVED_NOISE[2] + " and more\n").encode())  # not the known line: kept
    assert capfd.readouterr().err == f"{real}\n{OBSERVED_NOISE[2]} and more\n"


def test_stderr_filter_restores_fd2_and_keeps_the_output_when_the_block_raises(capfd):
    with pytest.raises(RuntimeError), bp.stderr_without(bp.MEDIAPIPE_NOISE):
        os.write(2, f"{OBSERVED_NOISE[0]}\nF0000 check failed\n".encode())
        raise RuntimeError("graph failed")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "F0000 check failed\nafter\n"


# ---------------------------------------------------------------------------------------------- with mediapipe


@pytest.fixture(scope="module")
def mediapipe():
    """mediapipe, or a skip outside its environment; inside it (``POSEARENA_BLAZEPOSE_ENV=1``) a failure."""
    if not IN_BLAZEPOSE_ENV:
        return pytest.importorskip("mediapipe", reason=NO_MEDIAPIPE)
    try:
        import mediapipe
    except ImportError as e:
        pytest.fail(f"POSEARENA_BLAZEPOSE_ENV=1 but mediapipe does not import: {e}", pytrace=False)
    return mediapipe


@pytest.fixture(scope="module")
def coco_gt_boxes(mediapipe) -> list[Sample]:
    """The 4 bundled images through the coco reader with GT person boxes (explicit data_root, no box file)."""
    from bench.data.coco import build_coco

    ds = build_coco(OmegaConf.create({"data_root": str(COCO_SAMPLE)}))
    return [ds[i] for i in range(len(ds))]


@pytest.fixture(scope="module")
def coco_det_boxes(mediapipe) -> list[Sample]:
    """The same images with the bundled AP_H_56 detector boxes (118 boxes, scores 0.003-1.0)."""
    from bench.data.coco import build_coco

    ds = build_coco(OmegaConf.create({"data_root": str(COCO_SAMPLE), "person_boxes": str(DET_BOXES)}))
    return [ds[i] for i in range(len(ds))]


def coco_eval(preds) -> COCOeval:
    """pycocotools' keypoint evaluation of the predictions against the bundled GT (the oracle)."""
    res = [{"image_id": int(p.output["image_id"]), "category_id": 1, "keypoints": k.flatten().tolist(),
            "score": float(s)} for p in preds for k, s in zip(p.output["keypoints"], p.output["scores"])]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(COCO_GT))
        ev = COCOeval(gt, gt.loadRes(res), "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def best_oks_of_well_labelled_people(ev) -> list[float]:
    """For every non-crowd GT person with >= 10 labelled keypoints: the highest OKS of any prediction."""
    out = []
    for img in ev.params.imgIds:
        gts = ev._gts[img, 1]
        ious = ev.ious[img, 1]  # (detections, GT), computed by pycocotools' computeOks
        for g, a in enumerate(gts):
            if a["iscrowd"] or int((np.asarray(a["keypoints"])[2::3] > 0).sum()) < 10:
                continue
            out.append(float(np.max(ious[:, g])) if len(ious) else 0.0)
    return out


def test_coco_mapping_matches_mediapipe_landmark_names(mediapipe):
    names = json.loads(COCO_GT.read_text())["categories"][0]["keypoints"]
    landmark = mediapipe.solutions.pose.PoseLandmark
    expected = [landmark[n.upper()].value for n in names]
    assert list(bp.COCO_FROM_BLAZEPOSE) == expected


def test_model_files_come_from_the_wheel(mediapipe):
    root = bp.mediapipe_model_dir()
    assert root == Path(mediapipe.__file__).parent
    assert all((root / f).stat().st_size > 1_000_000 for f in bp.MODEL_FILES)


def test_finds_the_people_on_gt_boxes(coco_gt_boxes):
    preds = bp.build(OmegaConf.create({"name": "blazepose"}), _Dataset("coco"), None).predict_step(coco_gt_boxes)
    for s, p in zip(coco_gt_boxes, preds):
        assert p.sample_id == s.sample_id and int(p.output["image_id"]) == s.sample_id
        D = p.output["scores"].shape[0]
        assert p.output["keypoints"].shape == (D, 17, 3) and D <= len(s.inputs["person_boxes"])
        assert ((p.output["keypoints"][..., 2] >= 0) & (p.output["keypoints"][..., 2] <= 1)).all()
    ev = coco_eval(preds)
    best = best_oks_of_well_labelled_people(ev)
    assert len(best) == 12
    assert sum(o > 0.5 for o in best) >= 10, best  # measured: 11 of 12 (one occluded person is not found)
    assert ev.stats[0] > 0.5, ev.stats  # measured AP 0.609


#: Tolerances of the wrapper against mediapipe run here. Measured on the 118 detector-box windows: two graphs
#: on the same window agree bit for bit (spread 0.0), while a window moved by 1 px moves a found person's
#: landmarks by a median of 0.29 px or more (max over joints 2.6-31 px). 1e-3 px is 290x below that smallest
#: effect of an off-by-one crop or offset and only absorbs float rounding; scores are summed in float32 as
#: mmpose does (<= 20 roundings of 2^-24 each: 2e-6 relative).
XY_TOL_PX, VIS_TOL, SCORE_RTOL = 1e-3, 1e-6, 2e-6


def reference_window(image: Image.Image, box: list[float]) -> tuple[np.ndarray, int, int, int]:
    """The documented crop cut with PIL (``crop`` pads with black): the window, its top-left x0, y0 and side."""
    x, y, w, h = box
    side = max(1, math.ceil(1.25 * max(w, h)))
    x0, y0 = math.floor(x + w / 2 - side / 2), math.floor(y + h / 2 - side / 2)
    window = image.crop((x0, y0, x0 + side, y0 + side))
    if side < 256:
        window = window.resize((256, 256), Image.BILINEAR)
    return np.asarray(window), x0, y0, side


@pytest.fixture(scope="module")
def mediapipe_reference(mediapipe, coco_det_boxes) -> list[list[dict]]:
    """Per image, per detector box: mediapipe's own COCO-17 joints ``(17, 3)`` (x, y in image pixels,
    visibility; None when it finds nobody), whether the window was upscaled and whether it leaves the image."""
    names = json.loads(COCO_GT.read_text())["categories"][0]["keypoints"]
    joints = [mediapipe.solutions.pose.PoseLandmark[n.upper()].value for n in names]
    pose = mediapipe.solutions.pose.Pose(static_image_mode=True, model_complexity=1, smooth_landmarks=False,
                                         enable_segmentation=False, min_detection_confidence=0.5)
    out = []
    for s in coco_det_boxes:
        with Image.open(s.inputs["image_path"]) as im:
            image = im.convert("RGB")
        per_box = []
        for box in s.inputs["person_boxes"].tolist():
            window, x0, y0, side = reference_window(image, box)
            found = pose.process(window).pose_landmarks
            lm = None if found is None else found.landmark
            per_box.append({
                "kpts": None if lm is None else np.array(
                    [[lm[j].x * side + x0, lm[j].y * side + y0, lm[j].visibility] for j in joints], dtype=np.float64),
                "upscaled": side < 256,
                "outside": x0 < 0 or y0 < 0 or x0 + side > image.width or y0 + side > image.height,
            })
        out.append(per_box)
    pose.close()
    return out


def expected_instances(sample: Sample, reference: list[dict]) -> tuple[Tensor, Tensor]:
    """The found boxes' joints in box order and their score: box score x mean visibility above 0.2 (0 if none)."""
    rows = [(r["kpts"], float(b)) for r, b in zip(reference, sample.inputs["person_scores"]) if r["kpts"] is not None]
    if not rows:
        return torch.zeros(0, 17, 3, dtype=torch.float64), torch.zeros(0, dtype=torch.float64)
    kpts = torch.tensor(np.stack([k for k, _ in rows]))
    vis = kpts[..., 2]
    above = vis > 0.2
    mean = torch.where(above.any(1), (vis * above).sum(1) / above.sum(1).clamp(min=1), torch.zeros(()))
    return kpts, torch.tensor([b for _, b in rows], dtype=torch.float64) * mean


def test_reference_covers_upscaled_outside_and_empty_windows(mediapipe_reference):
    """The comparison below is only as good as the windows it sees: every path of the crop must occur."""
    refs = [r for per_image in mediapipe_reference for r in per_image]
    assert len(refs) == 118
    found = [r for r in refs if r["kpts"] is not None]
    assert len(found) < len(refs)  # boxes where mediapipe finds nobody (measured: 65 of 118)
    assert any(r["upscaled"] for r in found) and any(not r["upscaled"] for r in found)
    assert any(r["outside"] for r in found)


def test_landmarks_are_mediapipe_s_own_on_the_documented_crops(coco_det_boxes, mediapipe_reference):
    """Crop, 33 -> 17 mapping, back-projection and rescoring against mediapipe run on windows cut here."""
    preds = bp.BlazePose(bp.BlazePoseConfig(oks_nms_threshold=None)).predict_step(coco_det_boxes)
    for s, p, ref in zip(coco_det_boxes, preds, mediapipe_reference):
        kpts, scores = expected_instances(s, ref)
        got = p.output["keypoints"]
        assert got.shape == kpts.shape and got.dtype == torch.float64, s.sample_id
        torch.testing.assert_close(got[..., :2], kpts[..., :2], rtol=0, atol=XY_TOL_PX)
        torch.testing.assert_close(got[..., 2], kpts[..., 2], rtol=0, atol=VIS_TOL)
        torch.testing.assert_close(p.output["scores"].to(torch.float64), scores, rtol=SCORE_RTOL, atol=0)


def test_oks_nms_keeps_a_subset_of_those_instances(coco_det_boxes, mediapipe_reference):
    """With the default OKS-NMS, every kept instance is one of mediapipe's, with its score; duplicates go."""
    preds = bp.BlazePose().predict_step(coco_det_boxes)
    dropped = 0
    for s, p, ref in zip(coco_det_boxes, preds, mediapipe_reference):
        kpts, scores = expected_instances(s, ref)
        unused = set(range(len(kpts)))  # two boxes can give one window, hence identical rows
        for k, score in zip(p.output["keypoints"], p.output["scores"]):
            match = [i for i in sorted(unused) if (k[:, :2] - kpts[i, :, :2]).abs().max() <= XY_TOL_PX
                     and float(score) == pytest.approx(float(scores[i]), rel=SCORE_RTOL, abs=0)]
            assert match, s.sample_id
            unused.remove(match[0])
        assert list(p.output["scores"]) == sorted(p.output["scores"], reverse=True)
        dropped += len(kpts) - len(p.output["scores"])
    assert dropped > 0


def test_same_bits_in_any_order_and_instance(coco_gt_boxes):
    """``static_image_mode``: a fresh instance on the images in reverse order gives the same bits."""
    preds = bp.BlazePose().predict_step(coco_gt_boxes)
    again = bp.BlazePose().predict_step(coco_gt_boxes[::-1])[::-1]
    for a, b in zip(preds, again):
        assert a.sample_id == b.sample_id and a.output.keys() == b.output.keys()
        for k in a.output:
            assert torch.equal(a.output[k], b.output[k]), (a.sample_id, k)


@pytest.mark.slow  # a fresh interpreter imports torch, Lightning and mediapipe: 8-30 s
def test_a_fresh_process_writes_nothing_to_stderr(mediapipe):
    """The first graph of a process is where mediapipe's notices come (OBSERVED_NOISE): none may get out."""
    code = ("from omegaconf import OmegaConf; import methods.human2d.blazepose as bp; "
            "from bench.data.coco import build_coco; "
            f"ds = build_coco(OmegaConf.create({{'data_root': {str(COCO_SAMPLE)!r}}})); "
            "print(len(bp.BlazePose().predict_step([ds[0]])[0].output['scores']))")
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600,
                         check=False)
    assert run.returncode == 0, run.stderr
    assert int(run.stdout) > 0  # a person was found, so the landmark projection ran (and its note came)
    assert run.stderr == ""


def test_box_threshold_and_no_boxes_give_empty_predictions(coco_gt_boxes):
    s = coco_gt_boxes[0]
    none = Sample(s.sample_id, s.target, {**s.inputs, "person_boxes": torch.zeros(0, 4), "person_scores": torch.zeros(0)})
    high = bp.BlazePose(bp.BlazePoseConfig(box_score_threshold=1.5))
    for p in (high.predict_step([s])[0], high.predict_step([none])[0]):
        assert p.output["keypoints"].shape == (0, 17, 3) and p.output["scores"].shape == (0,)
        assert p.output["image_id"].dtype == torch.int64 and p.output["image_id"].ndim == 0
