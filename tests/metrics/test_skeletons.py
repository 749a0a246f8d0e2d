"""The shared keypoint layouts (metrics/skeletons.py) against their sources.

- COCO sigmas: pycocotools' own ``Params(iouType='keypoints').kpt_oks_sigmas`` (the installed reference), bit
  for bit, since OKS values must be the reference's float64 bits (metrics/keypoint_ap.py).
- Keypoint names: the ``categories[0]["keypoints"]`` of the bundled official-format annotation files (COCO
  val2017 and CrowdPose test, as shipped by mmpose; see their PROVENANCE.md).
- One definition: the top-down methods' OKS-NMS and the COCO dataset take the very same tensor.
"""
from __future__ import annotations

import json

import torch
from pycocotools.cocoeval import Params

from bench.data.base import SAMPLES_DIR
from metrics.skeletons import COCO_KEYPOINTS, COCO_SIGMAS, CROWDPOSE_KEYPOINTS, CROWDPOSE_SIGMAS


def _category_keypoints(path) -> tuple[str, ...]:
    return tuple(json.loads(path.read_text())["categories"][0]["keypoints"])


def test_coco_sigmas_are_pycocotools_bits():
    ref = torch.from_numpy(Params(iouType="keypoints").kpt_oks_sigmas)
    assert COCO_SIGMAS.dtype == torch.float64 and torch.equal(COCO_SIGMAS, ref)


def test_keypoint_names_are_the_annotation_files():
    coco = SAMPLES_DIR / "coco" / "annotations" / "person_keypoints_val2017.json"
    crowd = SAMPLES_DIR / "crowdpose" / "annotations" / "crowdpose_test.json"
    assert COCO_KEYPOINTS == _category_keypoints(coco) and len(COCO_SIGMAS) == len(COCO_KEYPOINTS)
    assert CROWDPOSE_KEYPOINTS == _category_keypoints(crowd) and len(CROWDPOSE_SIGMAS) == len(CROWDPOSE_KEYPOINTS)


def test_methods_and_datasets_share_one_definition():
    from bench.data.coco import CocoKeypoints
    from methods.human2d import topdown

    assert topdown.COCO_SIGMAS is COCO_SIGMAS and CocoKeypoints.default_sigmas is COCO_SIGMAS
    assert topdown.oks_nms.__defaults__[-1] is COCO_SIGMAS
