"""Human3.6M, VideoPose3D layout: ``data_3d_h36m.npz`` -> one Sample per (subject, action, camera) sequence.

Protocol (facebookresearch/VideoPose3D run.py): test subjects S9 and S11, every frame, the 17 joints
``[0,1,2,3,6,7,8,12,13,14,15,17,18,19,25,26,27]`` of the 32 mocap joints, world -> camera frame with the
suite's copy of VideoPose3D's camera constants (float64), GT root-relative (root joint 0 at the origin).
Actions are grouped by the name before the first space ("Walking 1" -> "Walking").

Options (``bench/conf/dataset/h36m.yaml``):
- ``subjects``: scored subjects (default ``[S9, S11]``).
- ``root_relative_pred``: ``true`` (default, the root-relative protocol of HoT / MixSTE / MotionBERT: the
  predicted root joint is set to 0), ``false`` (VideoPose3D / GLA-GCN: the predicted root is left as it is),
  or ``subtract`` (the prediction is translated so its root is at 0: for absolute camera-frame poses).
- ``aggregation``: ``action`` (default: per action weighted by frames, headline = mean of the 15 actions) or
  ``frame`` (headline pooled over all frames).

Predictions: .npz, key ``"{subject}/{action}/{camera_index}"`` -> ``(T,17,3)`` metres, camera frame.

2D inputs of lifting methods (VideoPose3D layout, :meth:`H36MDataset.keypoints_2d`): ``data_2d_h36m_<name>.npz``
beside the 3D file, key ``positions_2d`` -> {subject: {action: [4 x (T',17,2) pixels]}} (camera order of
``h36m_cameras.CAMERA_IDS``) and ``metadata`` -> {"keypoints_symmetry": [left, right], ...}. As VideoPose3D's
``run.py`` does, a 2D sequence may be longer than the mocap (some videos have extra frames) and is cut to T.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchmetrics import Metric

from bench.data import h36m_cameras
from bench.data.base import BenchmarkDataset, resolve_data_root
from bench.errors import InputError
from bench.predictions.npz import read_pose_npz
from bench.registry import register_dataset
from bench.safe_pickle import load_npz
from bench.types import Prediction, Sample
from metrics.mpjpe import H36M_ACTIONS, H36M_METRICS, H36MPoseError

GT_FILE = "data_3d_h36m.npz"
KEPT_JOINTS: tuple[int, ...] = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)
NUM_MOCAP_JOINTS = 32
NUM_CAMERAS = 4
#: VideoPose3D's 2D keypoint symmetry of the 17 H36M joints (``metadata["keypoints_symmetry"]``: left, right).
KEYPOINTS_SYMMETRY: tuple[tuple[int, ...], tuple[int, ...]] = ((4, 5, 6, 11, 12, 13), (1, 2, 3, 14, 15, 16))
_ROOT_MODES = {True: "zero", False: "keep", "true": "zero", "false": "keep", "zero": "zero", "keep": "keep",
               "subtract": "subtract"}


def action_group(action: str) -> str:
    """The scored action of a file action name: the part before the first space."""
    return action.split(" ")[0]


@dataclass(frozen=True)
class Sequence:
    key: str            # "S9/Walking 1/0"
    subject: str
    action: str         # file action name ("Walking 1")
    camera: int
    action_index: int   # index into H36M_ACTIONS


def load_positions_3d(path: Path, subjects: Iterable[str]) -> dict[str, dict[str, np.ndarray]]:
    """Read ``positions_3d`` of the given subjects, validated: ``{subject: {action: (T,32,3) float}}``."""
    data = load_npz(path)
    if "positions_3d" not in data:
        raise InputError(path, None, "positions_3d", f"missing key (found {sorted(data)})")
    obj = data["positions_3d"]
    tree = obj.item() if obj.dtype == object and obj.shape == () else None
    if not isinstance(tree, dict):
        raise InputError(path, "key positions_3d", "positions_3d", "expected a pickled dict {subject: {action: array}}")
    out: dict[str, dict[str, np.ndarray]] = {}
    for subject in subjects:
        actions = tree.get(subject)
        if not isinstance(actions, dict) or not actions:
            raise InputError(path, f"key positions_3d/{subject}", subject, "subject missing or has no actions")
        out[subject] = {}
        for action, pos in actions.items():
            rec = f"key positions_3d/{subject}/{action}"
            if not isinstance(action, str):
                raise InputError(path, rec, "action", "action names must be strings")
            if action_group(action) not in H36M_ACTIONS:
                raise InputError(path, rec, "action", f"unknown action {action_group(action)!r}; expected one of "
                                                      f"{', '.join(H36M_ACTIONS)}")
            if not isinstance(pos, np.ndarray) or pos.ndim != 3 or pos.shape[1:] != (NUM_MOCAP_JOINTS, 3):
                shape = getattr(pos, "shape", type(pos).__name__)
                raise InputError(path, rec, "positions", f"expected (T, 32, 3) world positions, got {shape}")
            if pos.dtype.kind != "f" or pos.shape[0] == 0 or not np.isfinite(pos).all():
                raise InputError(path, rec, "positions", "expected a non-empty finite float array")
            out[subject][action] = pos
    return out


def detections_file(name: str) -> str:
    """File name of the 2D detections ``name`` (``cpn_ft_h36m_dbb``, ``gt``, ...), VideoPose3D's convention."""
    return f"data_2d_h36m_{name}.npz"


@dataclass(frozen=True)
class Keypoints2D:
    """2D inputs of the scored sequences: ``arrays[key]`` is ``(T,17,2)`` float32 pixels (cut to the mocap T)."""

    path: Path
    arrays: dict[str, np.ndarray]
    kps_left: tuple[int, ...]
    kps_right: tuple[int, ...]


def _symmetry(path: Path, data: dict[str, np.ndarray]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    if "metadata" not in data:
        return KEYPOINTS_SYMMETRY
    meta = data["metadata"].item() if data["metadata"].dtype == object and data["metadata"].shape == () else None
    sym = meta.get("keypoints_symmetry") if isinstance(meta, dict) else None
    if sym is None:
        return KEYPOINTS_SYMMETRY
    try:
        left, right = (tuple(int(i) for i in side) for side in sym)
    except (TypeError, ValueError):
        raise InputError(path, "key metadata", "keypoints_symmetry", "expected two lists of joint indices") from None
    if len(left) != len(right) or not set(left + right) <= set(range(len(KEPT_JOINTS))) or set(left) & set(right):
        raise InputError(path, "key metadata", "keypoints_symmetry", f"not a left/right split of 17 joints: {sym}")
    return left, right


def load_positions_2d(path: Path, sequences: Iterable[Sequence], frames: dict[str, int]) -> Keypoints2D:
    """Read and validate the 2D inputs of ``sequences`` from a ``data_2d_h36m_<name>.npz`` file."""
    if not path.is_file():
        raise InputError(path, None, "keypoints", "2D detections file not found (VideoPose3D's "
                         "data_2d_h36m_<name>.npz beside data_3d_h36m.npz; choose one with keypoints=<name>)")
    data = load_npz(path)
    if "positions_2d" not in data:
        raise InputError(path, None, "positions_2d", f"missing key (found {sorted(data)})")
    obj = data["positions_2d"]
    tree = obj.item() if obj.dtype == object and obj.shape == () else None
    if not isinstance(tree, dict):
        raise InputError(path, "key positions_2d", "positions_2d", "expected a pickled dict {subject: {action: [arrays]}}")
    arrays: dict[str, np.ndarray] = {}
    for q in sequences:
        rec = f"key positions_2d/{q.subject}/{q.action}"
        cams = tree.get(q.subject, {}).get(q.action) if isinstance(tree.get(q.subject), dict) else None
        if not isinstance(cams, (list, tuple)) or len(cams) != NUM_CAMERAS:
            raise InputError(path, rec, "cameras", f"expected a list of {NUM_CAMERAS} per-camera arrays for this "
                                                   "scored sequence")
        kps = cams[q.camera]
        rec = f"{rec}/{q.camera}"
        t = frames[q.key]
        if not isinstance(kps, np.ndarray) or kps.ndim != 3 or kps.shape[1] != len(KEPT_JOINTS) or kps.shape[2] < 2:
            shape = getattr(kps, "shape", type(kps).__name__)
            raise InputError(path, rec, "keypoints", f"expected (T, 17, 2) pixel coordinates, got {shape}")
        if kps.shape[0] < t:
            raise InputError(path, rec, "keypoints", f"{kps.shape[0]} frames, fewer than the {t} mocap frames")
        kps = kps[:t, :, :2]
        if kps.dtype.kind != "f" or not np.isfinite(kps).all():
            raise InputError(path, rec, "keypoints", "expected finite float coordinates")
        arrays[q.key] = np.ascontiguousarray(kps, dtype=np.float32)
    left, right = _symmetry(path, data)
    return Keypoints2D(path, arrays, left, right)


class H36MDataset(BenchmarkDataset):
    """S9/S11 sequences (one per subject, action and camera), GT in the camera frame, root-relative."""

    family = "human3d"
    metric_keys = (*H36M_METRICS, *[f"{m}/{a}" for m in H36M_METRICS for a in H36M_ACTIONS])

    def __init__(self, root: Path, bundled: bool, subjects: Iterable[str] = ("S9", "S11"),
                 root_relative_pred: Any = True, aggregation: str = "action", name: str = "h36m",
                 keypoints_2d: str | None = None):
        super().__init__(name, root, bundled)
        self.keypoints_2d_name = None if keypoints_2d in (None, "") else str(keypoints_2d)
        self.subjects = tuple(str(s) for s in subjects)
        mode = root_relative_pred.lower() if isinstance(root_relative_pred, str) else root_relative_pred
        if mode not in _ROOT_MODES:
            raise InputError(None, None, "root_relative_pred", f"expected true, false or subtract, got {root_relative_pred!r}")
        self.pred_root = _ROOT_MODES[mode]
        if aggregation not in ("action", "frame"):
            raise InputError(None, None, "aggregation", f"expected action or frame, got {aggregation!r}")
        self.aggregation = aggregation
        for s in self.subjects:
            if s not in h36m_cameras.EXTRINSICS_MM:
                raise InputError(None, None, "subjects", f"no camera extrinsics for subject {s!r}")
        self.gt_path = self.root / GT_FILE
        self.positions = load_positions_3d(self.gt_path, self.subjects)
        keys = []
        for s in self.subjects:
            for a in self.positions[s]:
                for c in range(NUM_CAMERAS):
                    keys.append(Sequence(f"{s}/{a}/{c}", s, a, c, H36M_ACTIONS.index(action_group(a))))
        self.sequences: list[Sequence] = sorted(keys, key=lambda q: q.key)
        self.index = {q.key: i for i, q in enumerate(self.sequences)}
        if self.keypoints_2d_name is not None:
            self.keypoints_2d(self.keypoints_2d_name)  # read and checked now: a bad file is one line before any run
        self.variant = "" if (self.pred_root, aggregation) == ("zero", "action") else \
            f"pred_root={self.pred_root},aggregation={aggregation}"

    def __len__(self) -> int:
        return len(self.sequences)

    def num_frames(self, i: int) -> int:
        q = self.sequences[i]
        return int(self.positions[q.subject][q.action].shape[0])

    def gt_joints(self, i: int) -> torch.Tensor:
        """``(T,17,3)`` float64 camera-frame GT of sequence ``i`` in metres, root joint at the origin."""
        q = self.sequences[i]
        world = torch.from_numpy(self.positions[q.subject][q.action][:, list(KEPT_JOINTS)]).to(torch.float64)
        ori, trans = h36m_cameras.camera_extrinsics(q.subject, q.camera)
        cam = h36m_cameras.world_to_camera(world, ori, trans)
        return cam - cam[:, :1]

    def __getitem__(self, i: int) -> Sample:
        q = self.sequences[i]
        target = {"joints": self.gt_joints(i), "sample_id": torch.tensor(i), "action": torch.tensor(q.action_index)}
        intr = h36m_cameras.INTRINSICS[q.camera]
        inputs = {"key": q.key, "subject": q.subject, "action": q.action, "camera": q.camera,
                  "camera_id": h36m_cameras.CAMERA_IDS[q.camera], "image_size": (intr.res_w, intr.res_h)}
        if self.keypoints_2d_name is not None:  # the 2D inputs of a lifter (dataset.keypoints_2d=NAME)
            kp = self.keypoints_2d(self.keypoints_2d_name)
            inputs["keypoints_2d"] = kp.arrays[q.key]
            inputs["keypoints_symmetry"] = (kp.kps_left, kp.kps_right)
        return Sample(sample_id=i, target=target, inputs=inputs)

    def gt_files(self) -> Iterable[Path]:
        return [self.gt_path]

    def keypoints_2d(self, name: str) -> Keypoints2D:
        """The 2D inputs ``data_2d_h36m_<name>.npz`` of every scored sequence (read once, then cached)."""
        cache = self.__dict__.setdefault("_keypoints_2d", {})
        if name not in cache:
            frames = {q.key: self.num_frames(i) for i, q in enumerate(self.sequences)}
            cache[name] = load_positions_2d(self.root / detections_file(name), self.sequences, frames)
        return cache[name]

    def build_metric(self) -> Metric:
        return H36MPoseError(actions=H36M_ACTIONS, pred_root=self.pred_root, aggregation=self.aggregation)

    def read_predictions(self, path: Path) -> dict[int, Prediction]:
        expected = {q.key: (self.num_frames(i), len(KEPT_JOINTS), 3) for i, q in enumerate(self.sequences)}
        arrays = read_pose_npz(path, expected, what="sequence")
        warn_if_absolute(path, arrays, self.pred_root)
        return {self.index[k]: Prediction(self.index[k], {"joints": v}) for k, v in arrays.items()}


ABSOLUTE_ROOT_M = 0.5  # root-relative: joint 0 within centimetres of the origin; absolute: 2-7 m away (camera to subject)


def warn_if_absolute(path: Path, arrays: dict[str, torch.Tensor], pred_root: str) -> None:
    """Warn when predictions look absolute (roots metres from the origin) under a mode that keeps or zeroes
    only the root joint: the other joints would stay where they are and score thousands of millimetres.

    The protocol itself is silent here (VideoPose3D would score such a file as is), so this only warns.
    """
    if pred_root == "subtract" or not arrays:
        return
    roots = torch.cat([a[:, 0] for a in arrays.values()])
    median = float(roots.norm(dim=-1).median())
    if median > ABSOLUTE_ROOT_M:
        mode = "true" if pred_root == "zero" else "false"
        warnings.warn(f"{path}: the predicted root joint (joint 0) lies {median:.2f} m from the camera-frame "
                      f"origin (median over frames), so the poses look absolute; under "
                      f"dataset.root_relative_pred={mode} only the root is {'zeroed' if mode == 'true' else 'kept'}"
                      f" and the other joints stay absolute: pass dataset.root_relative_pred=subtract to "
                      f"translate each pose to its root", stacklevel=3)


@register_dataset("h36m")
def build_h36m(cfg) -> H36MDataset:
    root, bundled = resolve_data_root("h36m", cfg.get("data_root"), [GT_FILE], sample="h36m")
    return H36MDataset(root, bundled, subjects=list(cfg.get("subjects", ["S9", "S11"])),
                       root_relative_pred=cfg.get("root_relative_pred", True),
                       aggregation=str(cfg.get("aggregation", "action")), name=str(cfg.get("name", "h36m")),
                       keypoints_2d=cfg.get("keypoints_2d", None))
