"""BlazePose (MediaPipe Pose, full model) as a top-down COCO-17 baseline that runs offline.

The model files come from the installed ``mediapipe`` wheel (0.10.14-0.10.21 ship
``modules/pose_landmark/pose_landmark_full.tflite`` and ``modules/pose_detection/pose_detection.tflite``),
run through the legacy ``mediapipe.solutions.pose.Pose`` graph with ``model_complexity=1`` (the only
complexity whose model is in the wheel: 0 and 2 would be downloaded). Nothing is downloaded, so ``weights=``
must not be given. mediapipe needs ``numpy<2`` and ``protobuf<5``, so it lives in its own environment (the
``blazepose`` extra / nox session); this module imports without it and only :func:`build` asks for it.

Pipeline, per image (top-down, on the dataset's person boxes, like every COCO top-down baseline):

1. keep the person boxes whose detector score is ``>= box_score_threshold``;
2. crop a square window centred on each box, side ``padding * max(w, h)`` (pixels outside the image are
   black), upscaled (bilinear) to at least ``min_crop_size`` pixels so that small people reach the scale
   BlazePose's person detector was trained for; square because the detector letterboxes to a square anyway;
3. run MediaPipe Pose on the crop: its own detector finds the person in the crop, its landmark model gives
   33 landmarks. ``static_image_mode=True``: every crop is independent (no tracking, no smoothing), so the
   output depends neither on batch order nor on what ran before. A crop where it finds nobody gives no
   instance;
4. take the 17 COCO joints out of the 33 landmarks (:data:`COCO_FROM_BLAZEPOSE`) and map them back to image
   pixels; a keypoint's confidence is the landmark's ``visibility`` (the legacy API leaves ``presence`` 0);
5. instance score = box score x mean keypoint confidence, the mean taken over the joints whose confidence
   is above ``vis_thr`` (mmpose's ``bbox_keypoint`` rescoring, shared with the other top-down methods; with
   ``vis_thr=0`` it is the plain mean): the box says "a person is here", the joints say "the pose is right",
   and COCO AP only ranks instances by this score;
6. greedy OKS-NMS at ``oks_nms_threshold`` (mmpose's default 0.9; area = the crop's area) drops the
   duplicates that overlapping boxes of one person produce (``null`` keeps one instance per found box).

mediapipe's C++ side logs through absl straight to file descriptor 2 (no environment variable or Python
logger reaches it): each graph says "Feedback manager requires ..." on its first run, and the first person
found brings the NORM_RECT note (moot here: the ROI is square). Until a graph has found its first person,
its stderr is held and passed on without those known lines (:func:`stderr_without`), so errors still show.
"""
from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from bench.errors import InputError
from bench.registry import register_method
from bench.types import Prediction, Sample
from methods.base import PoseMethod
from methods.human2d.topdown import load_image, oks_nms, person_boxes, rescore

#: BlazePose landmark index of each COCO-17 keypoint, in COCO order. MediaPipe's "left" is the person's
#: left, as in COCO: nose 0, left/right eye 2/5, ears 7/8, shoulders 11/12, elbows 13/14, wrists 15/16,
#: hips 23/24, knees 25/26, ankles 27/28.
COCO_FROM_BLAZEPOSE: tuple[int, ...] = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)

#: Files that must be inside the mediapipe package for model_complexity=1 to run without a download.
MODEL_FILES = ("modules/pose_landmark/pose_landmark_full.tflite", "modules/pose_detection/pose_detection.tflite")

#: Datasets whose keypoints are the 17 COCO joints and whose samples carry image_path and person_boxes.
SUPPORTED_DATASETS = ("coco",)

#: The one-time notices mediapipe 0.10.21 writes to stderr when a graph starts and first finds a person; they
#: say nothing about the result. Matched whole, so any other line (an E or F log line) is passed on.
MEDIAPIPE_NOISE = re.compile(
    r"INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.$"
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"
    r"|W\d{4} \S+ +\d+ (inference_feedback_manager\.cc:\d+\] Feedback manager requires a model with a single "
    r"signature inference\. Disabling support for feedback tensors\.$"
    r"|landmark_projection_calculator\.cc:\d+\] Using NORM_RECT without IMAGE_DIMENSIONS is only supported for "
    r"the square ROI\. Provide IMAGE_DIMENSIONS or use PROJECTION_MATRIX\.$)")


@dataclass(frozen=True)
class BlazePoseConfig:
    """Options of bench/conf/method/blazepose.yaml (the module docstring says what each does)."""

    box_score_threshold: float = 0.0
    padding: float = 1.25
    min_crop_size: int = 256
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    vis_thr: float = 0.2
    oks_nms_threshold: float | None = 0.9


@dataclass(frozen=True)
class Crop:
    """A square window of the image: its top-left pixel is ``(x0, y0)`` and it is ``side`` pixels wide."""

    x0: int
    y0: int
    side: int


def square_crop(box_xywh: Tensor, padding: float) -> Crop:
    """The integer square window centred on a ``(x, y, w, h)`` box, side ``ceil(padding * max(w, h))`` >= 1."""
    x, y, w, h = (float(v) for v in box_xywh)
    side = max(1, math.ceil(padding * max(w, h)))
    cx, cy = x + w / 2.0, y + h / 2.0
    return Crop(math.floor(cx - side / 2.0), math.floor(cy - side / 2.0), side)


def cut_window(image: np.ndarray, crop: Crop, min_size: int = 0) -> np.ndarray:
    """The crop of an ``(H, W, 3)`` uint8 RGB image, zeros outside it, upscaled (bilinear) to ``min_size``
    if smaller. Returns ``(S, S, 3)`` uint8, ``S = max(crop.side, min_size)``.

    numpy and PIL, not torch: MediaPipe takes a numpy image, and torch's intra-op threads would only fight
    MediaPipe's own for the cores.
    """
    from PIL import Image

    H, W = image.shape[:2]
    out = np.zeros((crop.side, crop.side, 3), dtype=np.uint8)
    xa, ya = max(crop.x0, 0), max(crop.y0, 0)
    xb, yb = min(crop.x0 + crop.side, W), min(crop.y0 + crop.side, H)
    if xa < xb and ya < yb:
        out[ya - crop.y0:yb - crop.y0, xa - crop.x0:xb - crop.x0] = image[ya:yb, xa:xb]
    if crop.side < min_size:
        out = np.asarray(Image.fromarray(out).resize((min_size, min_size), Image.BILINEAR))
    return np.ascontiguousarray(out)


def crop_to_image(xy_normalised: Tensor, crop: Crop) -> Tensor:
    """Landmarks normalised to the crop (``[0, 1]`` over its side, whatever it was resized to) -> image pixels."""
    offset = torch.tensor([crop.x0, crop.y0], dtype=xy_normalised.dtype, device=xy_normalised.device)
    return xy_normalised * crop.side + offset


@contextlib.contextmanager
def stderr_without(noise: re.Pattern[str]) -> Iterator[None]:
    """Hold what reaches file descriptor 2 inside the block (C++ logs bypass ``sys.stderr``) and write back
    every line that ``noise`` does not match, also when the block raises: real errors stay visible."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            lines = held.read().splitlines(keepends=True)
            kept = [ln for ln in lines if not noise.match(ln.decode("utf-8", "replace").rstrip("\r\n"))]
            if kept:
                os.write(2, b"".join(kept))


def options_from_cfg(cls: type, cfg: Any) -> Any:
    """The options dataclass ``cls`` of a mediapipe method from its YAML config: each field the config sets, cast
    to the type of the field's default (int or float); a field typed ``... | None`` may be null."""
    defaults = cls()
    get = cfg.get if cfg is not None else (lambda key, default=None: default)
    values = {}
    for f in fields(cls):
        default = getattr(defaults, f.name)
        value = get(f.name, default)
        values[f.name] = None if value is None and "None" in str(f.type) else type(default)(value)
    return cls(**values)


def find_mediapipe_models(method: str, files: tuple[str, ...], what: str, versions: str) -> Path:
    """The installed mediapipe package folder, checked to hold ``files`` (the model files ``method`` runs).

    Raises InputError (one line at the CLI) when mediapipe is missing or its wheel lacks the model files,
    instead of letting the legacy API try a download. Shared by every mediapipe method.
    """
    try:
        import mediapipe
    except ImportError as e:
        raise InputError(None, None, "method", f"{method} needs mediapipe==0.10.21 with numpy<2 and protobuf<5: "
                         "install the 'blazepose' extra (or run it in the blazepose nox env)") from e
    root = Path(mediapipe.__file__).parent
    for rel in files:
        if not (root / rel).is_file():
            raise InputError(root / rel, None, "method", f"this mediapipe wheel does not ship the {what}; "
                             f"use mediapipe {versions}")
    return root


def mediapipe_model_dir() -> Path:
    """The mediapipe folder, checked to hold the full landmark model and the detector."""
    return find_mediapipe_models("blazepose", MODEL_FILES, "BlazePose model files", "0.10.14-0.10.21")


class BlazePose(PoseMethod):
    """Top-down BlazePose-full on the dataset's person boxes -> COCO-17 keypoint instances per image."""

    family: ClassVar[str] = "human2d"

    def __init__(self, config: BlazePoseConfig = BlazePoseConfig()):
        super().__init__()
        self.config = config
        self.model_dir = mediapipe_model_dir()
        self._pose: Any = None  # the MediaPipe graph, built lazily once per process (it cannot be pickled)
        self._settled = False  # True once the graph has found a person: its one-time notices are out

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_pose"], state["_settled"] = None, False
        return state

    def _solution(self) -> Any:
        if self._pose is None:
            import mediapipe as mp

            with stderr_without(MEDIAPIPE_NOISE):
                self._pose = mp.solutions.pose.Pose(
                    static_image_mode=True,
                    model_complexity=1,
                    smooth_landmarks=False,
                    enable_segmentation=False,
                    min_detection_confidence=self.config.min_detection_confidence,
                    min_tracking_confidence=self.config.min_tracking_confidence,
                )
            self._settled = False
        return self._pose

    def _process(self, window: np.ndarray) -> Any:
        """``Pose.process``, its stderr filtered until the graph's first person (see the module docstring)."""
        pose = self._solution()
        if self._settled:
            return pose.process(window)
        with stderr_without(MEDIAPIPE_NOISE):
            result = pose.process(window)
        self._settled = result.pose_landmarks is not None
        return result

    def landmarks(self, window: np.ndarray) -> Tensor | None:
        """Run BlazePose on one ``(S, S, 3)`` uint8 RGB crop: ``(17, 3)`` float64 (x, y normalised to the
        crop, visibility) in COCO order, or None when it finds no person."""
        result = self._process(window)
        if result.pose_landmarks is None:
            return None
        lm = result.pose_landmarks.landmark
        return torch.tensor([[lm[i].x, lm[i].y, lm[i].visibility] for i in COCO_FROM_BLAZEPOSE], dtype=torch.float64)

    def predict_image(self, sample: Sample) -> dict[str, Tensor]:
        """All instances found in one image, as the coco dataset's prediction dict."""
        cfg = self.config
        boxes, box_scores = person_boxes(sample.inputs)
        chosen = torch.nonzero(box_scores >= cfg.box_score_threshold).flatten().tolist()
        found, scores, areas = [], [], []
        if chosen:
            image = load_image(sample.inputs["image_path"]).permute(1, 2, 0).numpy()
            for j in chosen:
                crop = square_crop(boxes[j], cfg.padding)
                values = self.landmarks(cut_window(image, crop, cfg.min_crop_size))
                if values is None:
                    continue
                found.append(torch.cat([crop_to_image(values[:, :2], crop), values[:, 2:]], dim=1))
                scores.append(box_scores[j])
                areas.append(float(crop.side) ** 2)
        if found:
            kpts = torch.stack(found)  # (D, 17, 3) float64
            score = rescore(kpts[:, :, 2], torch.stack(scores), cfg.vis_thr).to(torch.float64)
            if cfg.oks_nms_threshold is not None:
                keep = oks_nms(kpts, score, torch.tensor(areas, dtype=torch.float64), cfg.oks_nms_threshold)
                kpts, score = kpts[keep], score[keep]
        else:
            kpts, score = torch.zeros(0, 17, 3, dtype=torch.float64), torch.zeros(0, dtype=torch.float64)
        return {"image_id": torch.tensor(sample.sample_id, dtype=torch.int64), "keypoints": kpts, "scores": score}

    def predict_step(self, batch: list[Sample], batch_idx: int = 0) -> list[Prediction]:
        return [Prediction(s.sample_id, self.predict_image(s)) for s in batch]


@register_method("blazepose")
def build(cfg: Any, dataset: Any, weights: str | Path | None) -> BlazePose:
    """``method=blazepose``: the model files come from the mediapipe wheel, so ``weights`` must be None."""
    if weights is not None:
        raise InputError(weights, None, "weights", "blazepose runs the model shipped in the mediapipe wheel; "
                         "give no weights=")
    name = getattr(dataset, "name", None)
    if name not in SUPPORTED_DATASETS:
        raise InputError(None, None, "dataset", f"blazepose predicts the 17 COCO keypoints; it supports "
                         f"{', '.join(SUPPORTED_DATASETS)}, not {name!r}")
    return BlazePose(options_from_cfg(BlazePoseConfig, cfg))
