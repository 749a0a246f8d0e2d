"""Head pose from MediaPipe's face landmarks and a PnP against MediaPipe's canonical face: an offline baseline.

Nothing is downloaded and nothing is trained here; ``weights=`` must not be given. Per image:

1. MediaPipe Face Mesh (the legacy ``mediapipe.solutions.face_mesh`` graph; its face detector
   ``face_detection_short_range.tflite`` and landmark model ``face_landmark.tflite`` ship in the mediapipe
   0.10.x wheel) on the whole RGB image: ``static_image_mode=True`` (no tracking: each image alone, any order),
   one face, ``refine_landmarks=False`` (468 landmarks, no iris model). Landmark ``i`` at ``(x W, y H)`` pixels.
2. The mean face: the 468 vertices of MediaPipe's canonical face model (vertex ``i`` is landmark ``i``; axes x
   to the image right of a frontal face, i.e. the person's left, y up, z out of the face; centimetres). The
   wheel does not ship it, so methods/headpose/data/canonical_face_model.obj is bundled (Apache-2.0; source
   and commit in data/PROVENANCE.md).
3. Camera: pinhole, focal length = image width W (pixels) on both axes, principal point at the image centre
   ``(W/2, H/2)``, no distortion. ``cv2.solvePnP`` (``SOLVEPNP_ITERATIVE``: DLT start, Levenberg-Marquardt on
   the reprojection error) over all 468 correspondences, unweighted, gives ``R_cv``: canonical face -> OpenCV
   camera (x right, y down, z forward).
4. Convention. AFLW2000-3D's ``Pose_Para`` come from 3DDFA's fit ``v' = s R3 v + t`` in a camera with y up
   and z towards the viewer (the image row is ``H - y``), ``R3 = Rx(-pitch) Ry(-yaw) Rz(-roll)`` (face3d's
   ``angle2matrix_3ddfa``), i.e. ``R3 = get_R(pitch, yaw, roll)^T`` with 6DRepNet's ``get_R = Rz(roll) Ry(yaw)
   Rx(pitch)``; the face frame there has the canonical face's axes. The dataset scores ``get_R`` (its GT ``R``),
   so with ``F = diag(1, -1, -1)`` (OpenCV camera axes -> that camera's): ``R3 = F R_cv`` and the prediction is
   ``R = R3^T = R_cv^T F``. Positive yaw turns the nose to the image left, positive pitch raises it, positive
   roll turns the face clockwise on screen (as 6DRepNet's ``draw_axis`` draws them).
5. No face found (or a failed PnP): the frontal pose ``R = I`` (yaw = pitch = roll = 0), scored like any
   prediction. 6DRepNet's test.py scores every listed image and knows no misses; a constant frontal guess keeps
   every image in the means (a miss costs its full angles), where dropping it would flatter the method.

mediapipe needs ``numpy<2`` and ``protobuf<5`` (the ``blazepose`` environment); this module imports without it
and only :func:`build` asks for it. mediapipe's one-time stderr notices are filtered as BlazePose's are.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from bench.errors import InputError
from bench.registry import register_method
from bench.types import Prediction, Sample
from methods.base import PoseMethod
from methods.human2d.blazepose import MEDIAPIPE_NOISE, find_mediapipe_models, options_from_cfg, stderr_without
from methods.human2d.topdown import load_image

CANONICAL_FACE = Path(__file__).parent / "data" / "canonical_face_model.obj"
NUM_LANDMARKS = 468

#: Files that must be inside the mediapipe package for Face Mesh to run without a download.
MODEL_FILES = ("modules/face_detection/face_detection_short_range.tflite", "modules/face_landmark/face_landmark.tflite")

#: Datasets whose samples carry ``image_path`` and score one rotation per image.
SUPPORTED_DATASETS = ("aflw2000",)

#: OpenCV camera axes (y down, z forward) -> 3DDFA's (y up, z towards the viewer).
FLIP_YZ = np.diag([1.0, -1.0, -1.0])


@dataclass(frozen=True)
class MediaPipeHeadPoseConfig:
    """Options of bench/conf/method/mediapipe-headpose.yaml."""

    min_detection_confidence: float = 0.5


def read_obj(path: Path = CANONICAL_FACE) -> tuple[np.ndarray, np.ndarray]:
    """A Wavefront .obj's vertices ``(V, 3)`` float64 and triangles ``(T, 3)`` int64 (0-based)."""
    vertices, faces = [], []
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == "v":
            vertices.append([float(x) for x in parts[1:4]])
        elif parts and parts[0] == "f":
            faces.append([int(p.split("/")[0]) - 1 for p in parts[1:4]])
    return np.array(vertices, dtype=np.float64), np.array(faces, dtype=np.int64)


def camera_matrix(width: int, height: int) -> np.ndarray:
    """The assumed intrinsics: focal length = image width on both axes, principal point at the centre."""
    return np.array([[width, 0.0, width / 2.0], [0.0, width, height / 2.0], [0.0, 0.0, 1.0]], dtype=np.float64)


def solve_pnp(points_px: np.ndarray, model: np.ndarray, K: np.ndarray) -> np.ndarray | None:
    """``cv2.solvePnP`` (iterative) of ``(N, 2)`` pixels against ``(N, 3)`` model points: ``R_cv`` (model ->
    OpenCV camera) ``(3, 3)`` float64, or None when it fails."""
    import cv2

    ok, rvec, _ = cv2.solvePnP(np.ascontiguousarray(model, dtype=np.float64),
                               np.ascontiguousarray(points_px, dtype=np.float64), K, None,
                               flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok or not np.isfinite(rvec).all():
        return None
    return cv2.Rodrigues(rvec)[0]


def rotation_from_opencv(R_cv: np.ndarray) -> np.ndarray:
    """``R_cv`` (canonical face -> OpenCV camera) -> the dataset's ``get_R(pitch, yaw, roll)``: ``R_cv^T F``."""
    return np.asarray(R_cv, dtype=np.float64).T @ FLIP_YZ


def mediapipe_model_dir() -> Path:
    """The mediapipe folder, checked to hold the face detector and the landmark model."""
    return find_mediapipe_models("mediapipe-headpose", MODEL_FILES, "Face Mesh model files", "0.10.14-0.10.21")


class MediaPipeHeadPose(PoseMethod):
    """Face Mesh landmarks -> PnP against the canonical face -> one rotation per image (6DRepNet's convention)."""

    family: ClassVar[str] = "headpose"

    def __init__(self, config: MediaPipeHeadPoseConfig = MediaPipeHeadPoseConfig()):
        super().__init__()
        self.config = config
        self.model_dir = mediapipe_model_dir()
        self.mean_face = read_obj(CANONICAL_FACE)[0]
        if self.mean_face.shape != (NUM_LANDMARKS, 3):
            raise InputError(CANONICAL_FACE, None, "v", f"expected {NUM_LANDMARKS} vertices, found {len(self.mean_face)}")
        self._mesh: Any = None  # the MediaPipe graph, built lazily once per process (it cannot be pickled)
        self._settled = False  # True once the graph has found a face: its one-time notices are out

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_mesh"], state["_settled"] = None, False
        return state

    def _solution(self) -> Any:
        if self._mesh is None:
            import mediapipe as mp

            with stderr_without(MEDIAPIPE_NOISE):
                self._mesh = mp.solutions.face_mesh.FaceMesh(
                    static_image_mode=True, max_num_faces=1, refine_landmarks=False,
                    min_detection_confidence=self.config.min_detection_confidence)
            self._settled = False
        return self._mesh

    def landmarks(self, image: np.ndarray) -> np.ndarray | None:
        """Face Mesh on one ``(H, W, 3)`` uint8 RGB image: ``(468, 2)`` float64 (x, y normalised to the image),
        or None when it finds no face."""
        mesh = self._solution()
        if self._settled:
            result = mesh.process(image)
        else:
            with stderr_without(MEDIAPIPE_NOISE):
                result = mesh.process(image)
            self._settled = result.multi_face_landmarks is not None
        if not result.multi_face_landmarks:
            return None
        lm = result.multi_face_landmarks[0].landmark
        return np.array([[p.x, p.y] for p in lm[:NUM_LANDMARKS]], dtype=np.float64)

    def rotation(self, image: np.ndarray) -> np.ndarray | None:
        """The head rotation ``get_R(pitch, yaw, roll)`` of one RGB image, or None without a face or a PnP."""
        found = self.landmarks(image)
        if found is None:
            return None
        H, W = image.shape[:2]
        R_cv = solve_pnp(found * np.array([W, H], dtype=np.float64), self.mean_face, camera_matrix(W, H))
        return None if R_cv is None else rotation_from_opencv(R_cv)

    def predict_image(self, sample: Sample) -> dict[str, Tensor]:
        """One image -> the headpose datasets' prediction dict; no face -> the frontal pose (identity)."""
        image = np.ascontiguousarray(load_image(sample.inputs["image_path"]).permute(1, 2, 0).numpy())
        R = self.rotation(image)
        return {"id": torch.tensor(sample.sample_id, dtype=torch.int64),
                "R": torch.eye(3, dtype=torch.float64) if R is None else torch.from_numpy(R)}

    def predict_step(self, batch: list[Sample], batch_idx: int = 0) -> list[Prediction]:
        return [Prediction(s.sample_id, self.predict_image(s)) for s in batch]


@register_method("mediapipe-headpose")
def build(cfg: Any, dataset: Any, weights: str | Path | None) -> MediaPipeHeadPose:
    """``method=mediapipe-headpose``: models from the mediapipe wheel, so ``weights`` must be None."""
    if weights is not None:
        raise InputError(weights, None, "weights", "mediapipe-headpose runs the models shipped in the mediapipe "
                         "wheel; give no weights=")
    name = getattr(dataset, "name", None)
    if name not in SUPPORTED_DATASETS:
        raise InputError(None, None, "dataset", f"mediapipe-headpose reads each sample's image; it supports "
                         f"{', '.join(SUPPORTED_DATASETS)}, not {name!r}")
    return MediaPipeHeadPose(options_from_cfg(MediaPipeHeadPoseConfig, cfg))
