"""BlazePose + MediaPipe Hands + Face Mesh as an offline COCO-WholeBody (133 keypoints) baseline.

Nothing is downloaded: mediapipe 0.10.21's wheel ships ``pose_landmark_full``, ``palm_detection_full`` +
``hand_landmark_full`` and ``face_detection_short_range`` + ``face_landmark``, run through the legacy
``mediapipe.solutions`` graphs with ``static_image_mode=True`` (every crop alone: no tracking, any order).
``weights=`` must not be given. mediapipe needs ``numpy<2``/``protobuf<5`` (the ``blazepose`` environment).

Per person box (top-down, as :mod:`methods.human2d.blazepose`, whose crop, landmark model, person score and
OKS-NMS this reuses unchanged):

1. BlazePose on the box's square crop -> 33 landmarks. Body [0:17]: :data:`COCO_FROM_BLAZEPOSE`. Feet [17:23]
   (COCO-WholeBody: left big toe, left small toe, left heel, right ...): big toe = BlazePose ``foot_index``
   (31/32, the tip of the foot), heel = ``heel`` (29/30); the small toes have no counterpart (placed on the
   foot index, confidence 0). Confidences are the landmarks' ``visibility``.
2. Hands [91:112] left, [112:133] right: a square crop centred on the mean of BlazePose's wrist, pinky, index
   and thumb points (15/17/19/21 left, 16/18/20/22 right), side ``hand_scale`` x the forearm (elbow-wrist)
   length, at least 4 x the largest offset of those points from their mean, upscaled to ``min_crop_size``; MediaPipe Hands
   (``model_complexity=1``, up to 2 hands) on it; the hand whose wrist is nearest BlazePose's wrist is taken
   unless it is nearer the other wrist (then none). Its 21 landmarks are in COCO-WholeBody's hand order
   (wrist, thumb 1-4, forefinger 1-4, middle, ring, pinky: both follow the OpenPose hand layout), so the map is
   the identity. Confidence: the BlazePose wrist's visibility (the legacy Hands API exposes no per-point
   score). No hand found: the 21 points on BlazePose's wrist, confidence 0.
3. Face [23:91]: a square crop centred on the mean of BlazePose's 11 face landmarks (0-10), side
   ``face_scale`` x their extent; Face Mesh (468 landmarks) on it; the 68 iBUG points are means of one or two
   mesh landmarks (:data:`IBUG68_FROM_FACEMESH`, the table of PeizhiYan/Mediapipe_2_Dlib_Landmarks @ 14e7480,
   ``mediapipe2dlib/mp2dlib.py``, MIT). Confidence: BlazePose's nose visibility. No face: the 68 points on
   BlazePose's nose, confidence 0.
4. Score: BlazePose's (box score x mean body confidence above ``vis_thr``) for every part (mmpose writes only
   ``score``, so xtcocotools falls back to it for each part); area: the 17 body keypoints' extent (``loadRes``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from bench.errors import InputError
from bench.registry import register_method
from bench.types import Prediction, Sample
from methods.human2d.blazepose import (
    COCO_FROM_BLAZEPOSE,
    MEDIAPIPE_NOISE,
    BlazePose,
    BlazePoseConfig,
    Crop,
    cut_window,
    find_mediapipe_models,
    options_from_cfg,
    square_crop,
    stderr_without,
)
from methods.human2d.blazepose import MODEL_FILES as POSE_FILES
from methods.human2d.topdown import load_image, oks_nms, person_boxes, rescore

NUM_KEYPOINTS = 133

#: COCO-WholeBody foot order (left big toe, left small toe, left heel, right big toe, right small toe, right
#: heel) -> BlazePose landmark, None where BlazePose has no counterpart (the small toes).
FOOT_FROM_BLAZEPOSE: tuple[int | None, ...] = (31, None, 29, 32, None, 30)
#: Where a foot point without counterpart is placed (its confidence is 0): the same side's foot index.
FOOT_PLACEHOLDER: tuple[int, ...] = (31, 31, 29, 32, 32, 30)

#: MediaPipe Hands landmark of each of COCO-WholeBody's 21 hand points: the identity (same layout).
HAND_FROM_MEDIAPIPE: tuple[int, ...] = tuple(range(21))

#: BlazePose (wrist, elbow, pinky, index, thumb) of the left and the right hand.
HAND_ANCHORS: dict[str, tuple[int, int, int, int, int]] = {"left": (15, 13, 17, 19, 21),
                                                             "right": (16, 14, 18, 20, 22)}

#: The 68 iBUG/dlib points (COCO-WholeBody face order) as means of Face Mesh landmarks: the correspondence
#: table of PeizhiYan/Mediapipe_2_Dlib_Landmarks @ 14e7480964c564b35debd878bde359c204388919,
#: mediapipe2dlib/mp2dlib.py ``mp2dlib_correspondence`` (MIT; a single index is used alone).
IBUG68_FROM_FACEMESH: tuple[tuple[int, ...], ...] = (
    (127,), (234,), (93,), (132, 58), (58, 172), (136,), (150,), (176,), (152,), (400,), (379,), (365,),
    (397, 288), (361,), (323,), (454,), (356,),                       # contour 1-17
    (70,), (63,), (105,), (66,), (107,),                              # right brow 18-22
    (336,), (296,), (334,), (293,), (300,),                           # left brow 23-27
    (168, 6), (197, 195), (5,), (4,), (75,), (97,), (2,), (326,), (305,),  # nose 28-36
    (33,), (160,), (158,), (133,), (153,), (144,),                    # right eye 37-42
    (362,), (385,), (387,), (263,), (373,), (380,),                   # left eye 43-48
    (61,), (39,), (37,), (0,), (267,), (269,), (291,),                # outer lip, top 49-55
    (321,), (314,), (17,), (84,), (91,),                              # outer lip, bottom 56-60
    (78,), (82,), (13,), (312,), (308,),                              # inner lip, top 61-65
    (317,), (14,), (87,),                                             # inner lip, bottom 66-68
)

#: BlazePose's face landmarks (nose, eyes, ears, mouth): they place the face crop.
FACE_ANCHORS: tuple[int, ...] = tuple(range(11))

#: Model files, beyond BlazePose's, that must be in the wheel for Hands and Face Mesh to run offline.
MODEL_FILES = POSE_FILES + (
    "modules/palm_detection/palm_detection_full.tflite", "modules/hand_landmark/hand_landmark_full.tflite",
    "modules/face_detection/face_detection_short_range.tflite", "modules/face_landmark/face_landmark.tflite")

#: Datasets whose keypoints are COCO-WholeBody's 133 and whose samples carry image_path and person_boxes.
SUPPORTED_DATASETS = ("coco_wholebody",)


@dataclass(frozen=True)
class WholeBodyConfig(BlazePoseConfig):
    """Options of bench/conf/method/mediapipe-wholebody.yaml: BlazePose's, plus the hand and face crops."""

    hand_scale: float = 1.5
    face_scale: float = 2.0
    min_hand_detection_confidence: float = 0.5
    min_face_detection_confidence: float = 0.5


def anchored_crop(points: np.ndarray, side: float) -> Crop:
    """The integer square window of side ``ceil(side)`` (>= 1) centred on the mean of ``points`` (N, 2) pixels."""
    s = max(1, math.ceil(side))
    cx, cy = (float(v) for v in points.mean(axis=0))
    return Crop(math.floor(cx - s / 2.0), math.floor(cy - s / 2.0), s)


def hand_crop(body_px: np.ndarray, side: str, scale: float) -> Crop:
    """The crop around one hand from BlazePose's 33 landmarks in pixels (see the module docstring, step 2)."""
    wrist, elbow, *tips = HAND_ANCHORS[side]
    pts = body_px[[wrist, *tips]]
    spread = float(np.abs(pts - pts.mean(axis=0)).max())
    return anchored_crop(pts, max(scale * float(np.linalg.norm(body_px[wrist] - body_px[elbow])), 4.0 * spread))


def face_crop(body_px: np.ndarray, scale: float) -> Crop:
    """The crop around the face from BlazePose's 33 landmarks in pixels (see the module docstring, step 3)."""
    pts = body_px[list(FACE_ANCHORS)]
    return anchored_crop(pts, scale * float((pts.max(axis=0) - pts.min(axis=0)).max()))


def ibug68(mesh_px: np.ndarray) -> np.ndarray:
    """The 68 iBUG points (68, 2) of Face Mesh landmarks (468, 2): each the mean of its listed landmarks."""
    return np.stack([mesh_px[list(ix)].mean(axis=0) for ix in IBUG68_FROM_FACEMESH])


def to_image(xy: np.ndarray, crop: Crop) -> np.ndarray:
    """Landmarks normalised to a crop -> image pixels."""
    return xy * crop.side + np.array([crop.x0, crop.y0], dtype=np.float64)


def assemble(body_px: np.ndarray, vis: np.ndarray, hands: dict[str, np.ndarray | None],
             face: np.ndarray | None) -> np.ndarray:
    """The (133, 3) float64 keypoints of one person from BlazePose's 33 landmarks (pixels, visibility), the
    found hands' 21 points and the face's 68 (pixels, or None): the mapping of the module docstring."""
    out = np.zeros((NUM_KEYPOINTS, 3), dtype=np.float64)
    body = list(COCO_FROM_BLAZEPOSE)
    out[:17, :2], out[:17, 2] = body_px[body], vis[body]
    for k, (src, place) in enumerate(zip(FOOT_FROM_BLAZEPOSE, FOOT_PLACEHOLDER)):
        out[17 + k, :2] = body_px[place]
        out[17 + k, 2] = 0.0 if src is None else vis[src]
    nose = 0
    out[23:91, :2] = body_px[nose] if face is None else face
    out[23:91, 2] = 0.0 if face is None else vis[nose]
    for lo, side in ((91, "left"), (112, "right")):
        wrist = HAND_ANCHORS[side][0]
        hand = hands.get(side)
        out[lo:lo + 21, :2] = body_px[wrist] if hand is None else hand[list(HAND_FROM_MEDIAPIPE)]
        out[lo:lo + 21, 2] = 0.0 if hand is None else vis[wrist]
    return out


def pick_hand(found: list[np.ndarray], wrist: np.ndarray, other_wrist: np.ndarray) -> np.ndarray | None:
    """The found hand (21, 2) whose wrist is nearest ``wrist``, None when none is or it is nearer the other."""
    if not found:
        return None
    best = min(found, key=lambda h: float(np.linalg.norm(h[0] - wrist)))
    return best if np.linalg.norm(best[0] - wrist) <= np.linalg.norm(best[0] - other_wrist) else None


def mediapipe_model_dir() -> Path:
    """The mediapipe folder, checked to hold every model file this method runs."""
    return find_mediapipe_models("mediapipe-wholebody", MODEL_FILES, "pose, hand and face model files", "0.10.21")


class MediaPipeWholeBody(BlazePose):
    """BlazePose + Hands + Face Mesh on the dataset's person boxes -> COCO-WholeBody instances per image."""

    family: ClassVar[str] = "wholebody2d"

    def __init__(self, config: WholeBodyConfig = WholeBodyConfig()):
        mediapipe_model_dir()
        super().__init__(config)
        self.config: WholeBodyConfig = config
        self._hands: Any = None  # the Hands and Face Mesh graphs, built lazily (they cannot be pickled)
        self._mesh: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_hands"], state["_mesh"] = None, None
        return state

    def _graphs(self) -> tuple[Any, Any]:
        if self._hands is None:
            import mediapipe as mp

            with stderr_without(MEDIAPIPE_NOISE):
                self._hands = mp.solutions.hands.Hands(
                    static_image_mode=True, max_num_hands=2, model_complexity=1,
                    min_detection_confidence=self.config.min_hand_detection_confidence)
                self._mesh = mp.solutions.face_mesh.FaceMesh(
                    static_image_mode=True, max_num_faces=1, refine_landmarks=False,
                    min_detection_confidence=self.config.min_face_detection_confidence)
        return self._hands, self._mesh

    def body(self, window: np.ndarray) -> np.ndarray | None:
        """BlazePose on one crop: (33, 3) float64 (x, y normalised to the crop, visibility) or None."""
        result = self._process(window)
        if result.pose_landmarks is None:
            return None
        return np.array([[p.x, p.y, p.visibility] for p in result.pose_landmarks.landmark], dtype=np.float64)

    def hands(self, image: np.ndarray, body_px: np.ndarray) -> dict[str, np.ndarray | None]:
        """Each side's 21 hand points in pixels (or None), from the hand crops of ``image``."""
        graph = self._graphs()[0]
        out: dict[str, np.ndarray | None] = {}
        for side, other in (("left", "right"), ("right", "left")):
            crop = hand_crop(body_px, side, self.config.hand_scale)
            with stderr_without(MEDIAPIPE_NOISE):
                result = graph.process(cut_window(image, crop, self.config.min_crop_size))
            found = [to_image(np.array([[p.x, p.y] for p in h.landmark], dtype=np.float64), crop)
                     for h in (result.multi_hand_landmarks or [])]
            out[side] = pick_hand(found, body_px[HAND_ANCHORS[side][0]], body_px[HAND_ANCHORS[other][0]])
        return out

    def face(self, image: np.ndarray, body_px: np.ndarray) -> np.ndarray | None:
        """The 68 iBUG points in pixels from Face Mesh on the face crop of ``image``, or None."""
        mesh = self._graphs()[1]
        crop = face_crop(body_px, self.config.face_scale)
        with stderr_without(MEDIAPIPE_NOISE):
            result = mesh.process(cut_window(image, crop, self.config.min_crop_size))
        if not result.multi_face_landmarks:
            return None
        lm = result.multi_face_landmarks[0].landmark
        return ibug68(to_image(np.array([[p.x, p.y] for p in lm[:468]], dtype=np.float64), crop))

    def predict_image(self, sample: Sample) -> dict[str, Tensor]:
        """All instances found in one image, as the coco_wholebody dataset's prediction dict."""
        cfg = self.config
        boxes, box_scores = person_boxes(sample.inputs)
        chosen = torch.nonzero(box_scores >= cfg.box_score_threshold).flatten().tolist()
        found, scores, areas = [], [], []
        if chosen:
            image = np.ascontiguousarray(load_image(sample.inputs["image_path"]).permute(1, 2, 0).numpy())
            for j in chosen:
                crop = square_crop(boxes[j], cfg.padding)
                values = self.body(cut_window(image, crop, cfg.min_crop_size))
                if values is None:
                    continue
                body_px = to_image(values[:, :2], crop)
                kp = assemble(body_px, values[:, 2], self.hands(image, body_px), self.face(image, body_px))
                found.append(torch.from_numpy(kp))
                scores.append(box_scores[j])
                areas.append(float(crop.side) ** 2)
        if found:
            kpts = torch.stack(found)  # (D, 133, 3) float64
            score = rescore(kpts[:, :17, 2], torch.stack(scores), cfg.vis_thr).to(torch.float64)
            if cfg.oks_nms_threshold is not None:
                keep = oks_nms(kpts[:, :17], score, torch.tensor(areas, dtype=torch.float64), cfg.oks_nms_threshold)
                kpts, score = kpts[keep], score[keep]
        else:
            kpts, score = torch.zeros(0, NUM_KEYPOINTS, 3, dtype=torch.float64), torch.zeros(0, dtype=torch.float64)
        xy = kpts[:, :17, :2]
        ext = xy.amax(dim=1) - xy.amin(dim=1) if len(kpts) else torch.zeros(0, 2, dtype=torch.float64)
        return {"image_id": torch.tensor(sample.sample_id, dtype=torch.int64), "keypoints": kpts, "scores": score,
                "part_scores": score[:, None].expand(-1, 6).contiguous(), "area": ext[:, 0] * ext[:, 1]}

    def predict_step(self, batch: list[Sample], batch_idx: int = 0) -> list[Prediction]:
        return [Prediction(s.sample_id, self.predict_image(s)) for s in batch]


@register_method("mediapipe-wholebody")
def build(cfg: Any, dataset: Any, weights: str | Path | None) -> MediaPipeWholeBody:
    """``method=mediapipe-wholebody``: models from the mediapipe wheel, so ``weights`` must be None."""
    if weights is not None:
        raise InputError(weights, None, "weights", "mediapipe-wholebody runs the models shipped in the mediapipe "
                         "wheel; give no weights=")
    name = getattr(dataset, "name", None)
    if name not in SUPPORTED_DATASETS:
        raise InputError(None, None, "dataset", f"mediapipe-wholebody predicts the 133 COCO-WholeBody keypoints; "
                         f"it supports {', '.join(SUPPORTED_DATASETS)}, not {name!r}")
    return MediaPipeWholeBody(options_from_cfg(WholeBodyConfig, cfg))
