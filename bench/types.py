"""What flows through the suite: one ``Sample`` per scored unit, one ``Prediction`` per sample.

``sample_id`` is stable and global (a COCO image id, a BOP ``(scene, image)`` pair encoded as an int, an H36M
frame ...); metrics key their states by it, sort by it and drop duplicates, so sampler padding, batch size,
order and device count cannot change a result. ``target`` and ``output`` are dicts of tensors whose keys
each family's metric documents (the torchmetrics convention of ``list[dict[str, Tensor]]``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor


@dataclass
class Sample:
    """One scored unit read from the dataset files: what a method sees and what the metric checks."""

    sample_id: int
    target: dict[str, Tensor]
    inputs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Prediction:
    """A method's answer for one sample (from a model or from an official results file)."""

    sample_id: int
    output: dict[str, Tensor]


def collate_samples(batch: list[Sample]) -> list[Sample]:
    """DataLoader collate: keep samples as a list (their sizes differ)."""
    return list(batch)


@dataclass
class Detection:
    """One upstream 2D detection of an object in a BOP test image (xywh pixels, its score and the detector's
    time per image in seconds)."""

    obj_id: int
    bbox_xywh: tuple[float, float, float, float]
    score: float
    time: float
