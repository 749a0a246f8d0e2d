"""Keypoint layouts the metrics and the methods share: names and OKS sigmas, defined once.

The sigmas are the per-keypoint falloffs of OKS (``exp(-d^2 / (2 s (2 sigma)^2))``); a top-down method's
OKS-NMS must use the same values as the metric that scores it, so both import them from here.
"""
from __future__ import annotations

import torch

__all__ = ["COCO_KEYPOINTS", "COCO_SIGMAS", "CROWDPOSE_KEYPOINTS", "CROWDPOSE_SIGMAS"]

COCO_KEYPOINTS: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle",
)
"""The 17 COCO person keypoints in annotation order (``categories[0]["keypoints"]`` of the COCO files)."""

COCO_SIGMAS = torch.tensor(
    [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89],
    dtype=torch.float64,
) / 10.0
"""Per-keypoint OKS sigmas of the 17 COCO keypoints (pycocotools ``kpt_oks_sigmas``, the same float64 bits:
``np.array([...]) / 10.0``)."""

CROWDPOSE_KEYPOINTS: tuple[str, ...] = (
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "head", "neck",
)
"""The 14 CrowdPose keypoints in annotation order (``crowdpose_test.json``)."""

CROWDPOSE_SIGMAS = torch.tensor(
    [0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89, 0.79, 0.79], dtype=torch.float64
) / 10.0
"""The 14 CrowdPose OKS sigmas as the official CrowdPose API builds them (``np.array([...]) / 10``). mmpose's
config writes the literals (0.107 is 1 ulp away from 1.07 / 10): pass ``dataset.sigmas`` to use those."""
