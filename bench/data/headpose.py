"""Head pose datasets (family ``headpose``): AFLW2000-3D and BIWI, scored as 6DRepNet's test.py scores them
(and GE as opal23_headpose's evaluator does; metrics/headpose.py).

``aflw2000``: ``data_root/AFLW2000/imageNNNNN.jpg`` with ``imageNNNNN.mat`` beside it (the official 3DDFA
release). ``Pose_Para`` (1, 7) holds pitch, yaw, roll (radians) first. Images are listed as 6DRepNet's
``create_filename_list.py`` lists them: every ``.jpg`` with its ``.mat``, kept when ``|pitch|``, ``|yaw|`` and
``|roll|`` (``angle * 180 / pi`` in float64) are all ``<= 99`` (``max_abs_deg``; null keeps all): 1969 of 2000.
Sample ids are positions in the sorted list of kept stems; predictions name images by stem (``"image"``).

``biwi``: the .npz that FSA-Net's ``data/TYY_create_db_biwi.py`` writes and 6DRepNet's ``BIWI`` dataset reads
(``image`` (N, S, S, 3) uint8 crops, ``pose`` (N, 3) [yaw, pitch, roll] degrees): ``BIWI_noTrack.npz`` by
default (protocol 1: all 24 sequences, MTCNN crops, every row scored, no angle filter, as 6DRepNet's test),
``file=BIWI_test.npz`` for the 70/30 split (``TYY_create_db_biwi_70_30.py``). The GT angles are
``pose / 180 * pi`` in float64 before the float32 labels; sample ids and predictions use the row (``"index"``).
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from bench.data.base import BenchmarkDataset, resolve_data_root
from bench.errors import InputError
from bench.predictions.headpose import read_headpose_predictions
from bench.registry import register_dataset
from bench.types import Prediction, Sample
from metrics.headpose import HEADPOSE_KEYS, HeadPoseError, rotation_from_euler

AFLW_DIR = "AFLW2000"
BIWI_FILE = "BIWI_noTrack.npz"
MAX_ABS_DEG = 99.0


def _get(cfg):
    return cfg.get if hasattr(cfg, "get") else (lambda k, d=None: getattr(cfg, k, d))


def read_pose_para(path: Path) -> np.ndarray:
    """``Pose_Para[0][:3]`` of an AFLW2000 .mat: [pitch, yaw, roll] radians, float64."""
    from scipy.io import loadmat

    try:
        m = loadmat(path, variable_names=["Pose_Para"])
    except Exception as e:  # noqa: BLE001 - scipy raises many types for a bad file
        raise InputError(path, None, None, f"not a readable MATLAB .mat file ({e})") from None
    if "Pose_Para" not in m:
        raise InputError(path, None, "Pose_Para", "missing")
    p = np.asarray(m["Pose_Para"])
    if p.ndim != 2 or p.shape[0] < 1 or p.shape[1] < 3 or not np.issubdtype(p.dtype, np.number):
        raise InputError(path, None, "Pose_Para", f"expected a numeric (1, 7) array, found {p.dtype} {p.shape}")
    pose = p[0, :3].astype(np.float64)
    if not np.isfinite(pose).all():
        raise InputError(path, None, "Pose_Para", "expected finite pitch, yaw, roll")
    return pose


def keep_aflw2000(pose: np.ndarray, max_abs_deg: float | None = MAX_ABS_DEG) -> bool:
    """create_filename_list.py's test: each of pitch, yaw, roll as ``rad * 180 / pi`` within +-max_abs_deg."""
    if max_abs_deg is None:
        return True
    return all(abs(float(a) * 180 / np.pi) <= max_abs_deg for a in pose)


class HeadPoseDataset(BenchmarkDataset):
    """Images with GT [yaw, pitch, roll] radians, scored by :class:`metrics.headpose.HeadPoseError`."""

    family = "headpose"
    metric_keys = HEADPOSE_KEYS
    key = "image"

    def __init__(self, name: str, root: Path, bundled: bool, keys: list, angles: np.ndarray,
                 gt_files: list[Path], image_paths: list[str] | None = None):
        super().__init__(name, root, bundled)
        self.keys = list(keys)
        self.ids = {k: i for i, k in enumerate(self.keys)}
        self._gt_files = gt_files
        self.image_paths = image_paths
        self.left_out: set = set()  # image keys the protocol leaves out (their predictions are ignored)
        a = torch.from_numpy(np.asarray(angles, dtype=np.float64).reshape(-1, 3))  # yaw, pitch, roll
        self._R = rotation_from_euler(a[:, 1], a[:, 0], a[:, 2])  # float64: GE's GT; test.py's path takes float32
        self._angles = a.to(torch.float32)

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: int) -> Sample:
        inputs = {"image_path": self.image_paths[index]} if self.image_paths else {}
        return Sample(sample_id=index, target={"id": torch.tensor(index), "R": self._R[index],
                                               "angles": self._angles[index]}, inputs=inputs)

    def gt_files(self) -> Iterable[Path]:
        return self._gt_files

    def build_metric(self) -> HeadPoseError:
        return HeadPoseError()

    def read_predictions(self, path: Path) -> dict[int, Prediction]:
        preds = read_headpose_predictions(path, self.key, self.ids, self.left_out)
        return {i: Prediction(i, {"id": torch.tensor(i), "R": R}) for i, R in preds.items()}


class Aflw2000(HeadPoseDataset):
    """AFLW2000-3D with create_filename_list.py's [-99, 99] degree filter."""

    key = "image"

    def __init__(self, root: Path, bundled: bool = False, max_abs_deg: float | None = MAX_ABS_DEG):
        root = Path(root)
        folder = root / AFLW_DIR
        stems, poses, mats, left_out = [], [], [], set()
        for jpg in sorted(folder.glob("*.jpg")):
            mat = jpg.with_suffix(".mat")
            if not mat.is_file():
                raise InputError(mat, None, None, f"missing: {jpg.name} has no annotation beside it")
            pose = read_pose_para(mat)
            mats.append(mat)
            if keep_aflw2000(pose, max_abs_deg):
                stems.append(jpg.stem)
                poses.append(pose[[1, 0, 2]])  # -> yaw, pitch, roll
            else:
                left_out.add(jpg.stem)
        if not stems:
            raise InputError(folder, None, None, "no image with its .mat inside the angle range")
        self.filtered = len(mats) - len(stems)
        super().__init__("aflw2000", root, bundled, stems, np.array(poses), mats,
                         [str(folder / f"{s}.jpg") for s in stems])
        self.left_out = left_out


class Biwi(HeadPoseDataset):
    """BIWI as FSA-Net's preprocessing stores it; every row is scored (6DRepNet's test)."""

    key = "index"

    def __init__(self, root: Path, bundled: bool = False, file: str = BIWI_FILE):
        path = Path(root) / file
        try:
            with np.load(path, allow_pickle=False) as d:
                if "pose" not in d.files:
                    raise InputError(path, None, "pose", "missing")
                pose = d["pose"]
        except InputError:
            raise
        except Exception as e:  # noqa: BLE001 - numpy/zipfile raise many types for a bad file
            raise InputError(path, None, None, f"not a readable .npz file ({e})") from None
        if pose.ndim != 2 or pose.shape[1] != 3 or pose.dtype.kind not in "fiu" or not np.isfinite(pose).all():
            raise InputError(path, None, "pose", f"expected finite (N, 3) [yaw, pitch, roll] degrees, found {pose.dtype} {pose.shape}")
        rad = pose.astype(np.float64) / 180 * np.pi
        super().__init__("biwi", root, bundled, list(range(len(pose))), rad, [path])
        self.file = file


@register_dataset("aflw2000")
def build_aflw2000(cfg) -> Aflw2000:
    """Builder for ``dataset=aflw2000`` (options: data_root, max_abs_deg)."""
    get = _get(cfg)
    root, bundled = resolve_data_root("aflw2000", get("data_root", None), [AFLW_DIR], "aflw2000")
    m = get("max_abs_deg", MAX_ABS_DEG)
    return Aflw2000(root, bundled, None if m is None else float(m))


@register_dataset("biwi")
def build_biwi(cfg) -> Biwi:
    """Builder for ``dataset=biwi`` (options: data_root, file)."""
    get = _get(cfg)
    file = str(get("file", BIWI_FILE))
    if not re.fullmatch(r"[\w.-]+\.npz", file):
        raise InputError(None, None, "file", f"expected an .npz file name inside data_root, found {file!r}")
    root, bundled = resolve_data_root("biwi", get("data_root", None), [file], "biwi")
    return Biwi(root, bundled, file)
