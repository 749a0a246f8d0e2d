"""What the 2D -> 3D lifters (VideoPose3D, GLA-GCN) share: input normalisation, flip test, checkpoint reading.

Both follow facebookresearch/VideoPose3D's ``run.py`` conventions:

- 2D input: pixels mapped by ``normalize_screen_coordinates`` with the camera's resolution, ``[0, w] -> [-1, 1]``
  keeping the aspect ratio (``x / w * 2 - [1, h / w]``) with ``run.py``'s dtypes: ``x / w * 2`` in the file's
  float32, the subtraction of the Python list in float64, the result stored back as float32.
- Flip test: the input is mirrored (x negated, left/right keypoints swapped with the 2D file's
  ``keypoints_symmetry``), the output of the mirrored input is mirrored back (x negated, left/right joints of
  the H36M skeleton swapped) and averaged with the plain output.
- Output: root-relative 3D joints in metres, camera frame. The official evaluation zeroes the root of the GT
  only and scores the raw output (``zero_root: false``); ``zero_root: true`` sets joint 0 of the output to 0.
- Official checkpoints: ``torch.save({"epoch", "lr", "random_state", "optimizer", "model_pos", ...})``; the
  model's state dict is under ``model_pos`` (with a ``module.`` prefix when it was saved from DataParallel).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from bench.errors import InputError
from bench.types import Prediction, Sample
from methods.base import PoseMethod
from methods.checkpoint import read_checkpoint
from methods.human2d.topdown import check_and_load

#: Left / right joints of VideoPose3D's 17-joint H36M skeleton (``h36m_skeleton`` after ``remove_joints``).
JOINTS_LEFT: tuple[int, ...] = (4, 5, 6, 11, 12, 13)
JOINTS_RIGHT: tuple[int, ...] = (1, 2, 3, 14, 15, 16)


def normalize_screen_coordinates(x: np.ndarray, w: int, h: int) -> np.ndarray:
    """Pixels -> ``[-1, 1]`` across the width, aspect ratio kept: ``x / w * 2 - [1, h / w]`` (numpy dtype rules
    as in VideoPose3D: float32 division, float64 subtraction; the caller casts to float32)."""
    return x / w * 2 - np.array([1.0, h / w])


def mirror(x: Tensor, left: tuple[int, ...], right: tuple[int, ...]) -> Tensor:
    """Horizontal mirror of poses ``(..., J, C)``: negate x and swap the left and right joints."""
    out = x.clone()
    out[..., 0] *= -1
    out[..., list(left) + list(right), :] = out[..., list(right) + list(left), :]
    return out


def load_official_state_dict(path: str | Path) -> dict[str, Tensor]:
    """``model_pos`` of an official VideoPose3D / GLA-GCN checkpoint, read with ``torch.load(weights_only=True)``.

    The file also pickles a numpy ``RandomState`` and the optimizer state; the classes it names are replaced by
    inert stand-ins so nothing from the file runs. A bare state dict is accepted too. Strips ``module.``.
    """
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt, dict):
        raise InputError(path, None, "model_pos", "expected a dict checkpoint")
    sd = ckpt.get("model_pos", ckpt)
    if not isinstance(sd, dict) or not sd or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in sd.items()):
        raise InputError(path, "key model_pos", "model_pos", "expected the model's state dict (a dict of tensors) "
                                                            "under model_pos, as the official checkpoints store it")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return dict(sd)


class LiftingMethod(PoseMethod):
    """A 2D -> 3D lifter over Human3.6M sequences: each Sample is one (subject, action, camera) sequence.

    The 2D inputs arrive with the sample (the dataset option ``dataset.keypoints_2d=NAME``, which the lifters'
    configs set to the official detections): ``inputs["keypoints_2d"]`` ``(T, 17, 2)`` pixels,
    ``inputs["keypoints_symmetry"]`` (left, right) of the 2D file and ``inputs["image_size"]`` (w, h) of the
    camera. ``predict_step`` normalises a sequence, runs :meth:`lift` (with the flip test when ``flip_test``)
    and returns ``{"joints": (T, 17, 3)}`` in metres.
    """

    family = "human3d"

    def __init__(self, net: nn.Module, flip_test: bool = True, zero_root: bool = False):
        super().__init__()
        self.net = net
        self.flip_test = flip_test
        self.zero_root = zero_root

    def lift(self, x: Tensor) -> Tensor:
        """Normalised 2D ``(B, T, 17, 2)`` -> 3D ``(B, T, 17, 3)``: every frame, its own window convention."""
        raise NotImplementedError

    def predict_sequence(self, kps: Tensor, kps_left: tuple[int, ...] = JOINTS_LEFT,
                         kps_right: tuple[int, ...] = JOINTS_RIGHT) -> Tensor:
        """One normalised 2D sequence ``(T, 17, 2)`` -> ``(T, 17, 3)``, with the official flip test (the input
        mirrored with the 2D file's symmetry, the output with the H36M skeleton's)."""
        if not self.flip_test:
            out = self.lift(kps[None])[0]
        else:
            both = self.lift(torch.stack((kps, mirror(kps, kps_left, kps_right))))
            out = (both[0] + mirror(both[1], JOINTS_LEFT, JOINTS_RIGHT)) / 2
        if self.zero_root:
            out = out.clone()
            out[:, 0] = 0
        return out

    def normalized_input(self, sample: Sample) -> Tensor:
        if "keypoints_2d" not in sample.inputs:
            raise InputError(None, f"sequence {sample.inputs.get('key', sample.sample_id)!r}", "dataset.keypoints_2d",
                             "a lifter needs the 2D inputs of every sequence: pass dataset.keypoints_2d=NAME "
                             "(data_2d_h36m_<NAME>.npz beside the 3D file)")
        w, h = sample.inputs["image_size"]
        kps = normalize_screen_coordinates(np.asarray(sample.inputs["keypoints_2d"]), int(w), int(h))
        return torch.from_numpy(kps.astype(np.float32)).to(self.device)

    @torch.no_grad()
    def predict_step(self, batch: list[Sample], batch_idx: int = 0) -> list[Prediction]:
        self.net.eval()
        out = []
        for s in batch:
            left, right = s.inputs.get("keypoints_symmetry", (JOINTS_LEFT, JOINTS_RIGHT))
            joints = self.predict_sequence(self.normalized_input(s), tuple(left), tuple(right))
            out.append(Prediction(s.sample_id, {"joints": joints.to(torch.float64)}))
        return out


def load_into(net: nn.Module, converted: dict[str, Tensor], path: str | Path | None) -> None:
    """Strict load (InputError on a missing/unknown key or a shape mismatch), then eval mode."""
    check_and_load(net, converted, path)
    net.eval()


def require_inputs(dataset, cfg) -> None:
    """The lifters score Human3.6M sequences with 2D inputs: refuse other datasets in one line."""
    if getattr(dataset, "keypoints_2d_name", None) is None:
        raise InputError(None, None, "dataset", f"{cfg.get('name')} lifts Human3.6M 2D detections: use dataset=h36m "
                         "with dataset.keypoints_2d=NAME (the method's config sets the official one)")
