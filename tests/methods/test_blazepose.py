"""BlazePose (methods/human2d/blazepose.py): crop geometry, the COCO mapping, and the real model on real images.

The geometry and builder tests run everywhere. The model tests need mediapipe (numpy<2, protobuf<5), which the
core environment cannot hold: they are skipped there and run in the ``blazepose`` nox session. Their oracle is
the COCO GT of the 4 bundled val2017 images, scored by pycocotools (OKS per person, and AP); the joint names
come from mediapipe's own ``PoseLandmark`` enum and the GT file's ``keypoints`` list.
"""
from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import methods.human2d.blazepose as bp
from bench.errors import InputError
from bench.registry import METHODS
from bench.types import Sample

REPO = Path(__file__).resolve().parents[2]
COCO_SAMPLE = REPO / "bench" / "data" / "samples" / "coco"
COCO_GT = COCO_SAMPLE / "annotations" / "person_keypoints_val2017.json"
DET_BOXES = COCO_SAMPLE / "person_detection_results" / "COCO_val2017_detections_AP_H_56_person.json"
NO_MEDIAPIPE = "mediapipe (numpy<2, protobuf<5) is not installed here: `nox -s tests` runs these in the blazepose environment"


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


# ---------------------------------------------------------------------------------------------- with mediapipe


@pytest.fixture(scope="module")
def mediapipe():
    return pytest.importorskip("mediapipe", reason=NO_MEDIAPIPE)


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


def test_detector_boxes_ap_and_determinism(coco_det_boxes):
    """AP with the bundled detector boxes; a fresh instance on the images in reverse order gives the same bits."""
    preds = bp.BlazePose().predict_step(coco_det_boxes)
    ev = coco_eval(preds)
    assert ev.stats[0] > 0.45, ev.stats  # measured AP 0.565, AP50 0.911
    assert sum(o > 0.5 for o in best_oks_of_well_labelled_people(ev)) >= 10
    again = bp.BlazePose().predict_step(coco_det_boxes[::-1])[::-1]
    for a, b in zip(preds, again):
        assert a.sample_id == b.sample_id and a.output.keys() == b.output.keys()
        for k in a.output:
            assert torch.equal(a.output[k], b.output[k]), (a.sample_id, k)


def test_box_threshold_and_no_boxes_give_empty_predictions(coco_gt_boxes):
    s = coco_gt_boxes[0]
    none = Sample(s.sample_id, s.target, {**s.inputs, "person_boxes": torch.zeros(0, 4), "person_scores": torch.zeros(0)})
    high = bp.BlazePose(bp.BlazePoseConfig(box_score_threshold=1.5))
    for p in (high.predict_step([s])[0], high.predict_step([none])[0]):
        assert p.output["keypoints"].shape == (0, 17, 3) and p.output["scores"].shape == (0,)
        assert p.output["image_id"].dtype == torch.int64 and p.output["image_id"].ndim == 0
