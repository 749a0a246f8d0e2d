"""MPI-INF-3DHP official test set: ``TS1/annot_data.mat`` ... ``TS6/annot_data.mat`` -> one Sample per sequence.

Official format (the test set README and ``mpii_test_predictions.m``): ``univ_annot3`` is a MATLAB
``3 x 17 x 1 x n`` matrix of joint positions in mm, scaled to the universal H36M skeleton; ``annot3`` the
same unscaled; ``valid_frame`` marks the frames that are scored. Some files are MATLAB v7.3 (HDF5, read with
h5py, which reverses the dimensions to ``n x 1 x 17 x 3``), others older (read with scipy.io). The 17 joints
are in the 3DHP test order (HeadTop, Neck, RSho, RElb, RWri, LSho, LElb, LWri, RHip, RKnee, RAnk, LHip,
LKnee, LAnk, Root, Spine, Head); GT is made root-relative at the pelvis (joint 14) as the official code does.

Options (``bench/conf/dataset/mpi_inf_3dhp.yaml``): ``gt: univ_annot3`` (official) or ``annot3``;
``joints: official14`` (PCK/AUC over the 14 joints of the official groups) or ``all17`` (mmpose);
``pred_root: subtract`` (default; no-op for root-relative predictions), ``zero`` or ``keep``.

Predictions: .npz, keys ``TS1``..``TS6`` -> ``(T,17,3)`` metres, camera frame, every frame.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torchmetrics import Metric

from bench.data.base import BenchmarkDataset, resolve_data_root
from bench.errors import InputError
from bench.predictions.npz import read_pose_npz
from bench.registry import register_dataset
from bench.types import Prediction, Sample
from metrics.mpjpe import PRED_ROOT_MODES
from metrics.pck3d import MPI_INF_3DHP_ROOT, PCK3D, PCK_JOINTS

SEQUENCES: tuple[str, ...] = ("TS1", "TS2", "TS3", "TS4", "TS5", "TS6")
JOINT_NAMES: tuple[str, ...] = ("HeadTop", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow",
                                "LWrist", "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "Root", "Spine",
                                "Head")
GT_KEYS = ("univ_annot3", "annot3")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def _is_hdf5(path: Path) -> bool:
    """MATLAB v7.3 files are HDF5 with a 512-byte user block: the signature sits at 0, 512, 1024, ..."""
    with open(path, "rb") as fh:
        for offset in (0, 512, 1024, 2048):
            fh.seek(offset)
            if fh.read(8) == _HDF5_MAGIC:
                return True
    return False


def scipy_io_error() -> type[Exception]:
    from scipy.io.matlab import MatReadError

    return MatReadError


def read_annot(path: Path, gt_key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(joints (n,17,3) float64 mm, valid (n,) bool)`` from one ``annot_data.mat``."""
    try:
        if _is_hdf5(path):
            import h5py

            with h5py.File(path, "r") as f:
                if gt_key not in f or "valid_frame" not in f:
                    raise InputError(path, None, gt_key if gt_key not in f else "valid_frame", "missing variable")
                joints = np.asarray(f[gt_key][()], dtype=np.float64)     # (n,1,17,3): HDF5 reverses MATLAB dims
                valid = np.asarray(f["valid_frame"][()])
        else:
            import scipy.io

            m = scipy.io.loadmat(path, variable_names=[gt_key, "valid_frame"])
            if gt_key not in m or "valid_frame" not in m:
                raise InputError(path, None, gt_key if gt_key not in m else "valid_frame", "missing variable")
            joints = np.asarray(m[gt_key], dtype=np.float64)
            if joints.ndim == 4 and joints.shape[:3] == (3, 17, 1):  # MATLAB order 3 x 17 x 1 x n
                joints = joints.transpose(3, 2, 1, 0)
            valid = np.asarray(m["valid_frame"])
    except InputError:
        raise
    except (OSError, ValueError, TypeError, KeyError, NotImplementedError, scipy_io_error()) as e:
        raise InputError(path, None, None, f"cannot read MATLAB file: {e}") from None
    if joints.ndim != 4 or joints.shape[1:] != (1, 17, 3):
        raise InputError(path, None, gt_key, f"expected n x 1 x 17 x 3 (3 x 17 x 1 x n in MATLAB), got {joints.shape}")
    joints = joints[:, 0]
    valid = valid.reshape(-1)
    if valid.shape[0] != joints.shape[0]:
        raise InputError(path, None, "valid_frame", f"{valid.shape[0]} flags for {joints.shape[0]} frames")
    if not np.isfinite(joints[valid.astype(bool)]).all():
        raise InputError(path, None, gt_key, "non-finite joint positions in a valid frame")
    return joints, valid.astype(bool)


class MpiInf3dhpDataset(BenchmarkDataset):
    """The six official test sequences; invalid frames are carried and skipped by the metric."""

    family = "human3d"
    metric_keys = ("PCK3D", "AUC", "MPJPE")

    def __init__(self, root: Path, bundled: bool, sequences: Iterable[str] = SEQUENCES, gt: str = "univ_annot3",
                 joints: str = "official14", pred_root: str = "subtract", name: str = "mpi_inf_3dhp"):
        super().__init__(name, root, bundled)
        if gt not in GT_KEYS:
            raise InputError(None, None, "gt", f"expected one of {GT_KEYS}, got {gt!r}")
        if joints not in PCK_JOINTS:
            raise InputError(None, None, "joints", f"expected one of {tuple(PCK_JOINTS)}, got {joints!r}")
        if pred_root not in PRED_ROOT_MODES:
            raise InputError(None, None, "pred_root", f"expected one of {PRED_ROOT_MODES}, got {pred_root!r}")
        self.sequences = tuple(str(s) for s in sequences)
        unknown = [s for s in self.sequences if s not in SEQUENCES]
        if unknown:
            raise InputError(None, None, "sequences", f"unknown test sequence {unknown[0]!r}; expected TS1..TS6")
        self.gt_key, self.joints, self.pred_root = gt, joints, pred_root
        self.files = [self.root / s / "annot_data.mat" for s in self.sequences]
        self.gt: list[tuple[torch.Tensor, torch.Tensor]] = []
        for f in self.files:
            j, v = read_annot(f, gt)
            j = j - j[:, MPI_INF_3DHP_ROOT : MPI_INF_3DHP_ROOT + 1]
            self.gt.append((torch.from_numpy(j), torch.from_numpy(v)))
        parts = [p for p, default in ((gt, "univ_annot3"), (joints, "official14"), (pred_root, "subtract")) if p != default]
        self.variant = ",".join(parts)

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, i: int) -> Sample:
        joints, valid = self.gt[i]
        target = {"joints_mm": joints, "valid": valid, "sample_id": torch.tensor(i)}
        return Sample(sample_id=i, target=target, inputs={"sequence": self.sequences[i]})

    def gt_files(self) -> Iterable[Path]:
        return list(self.files)

    def build_metric(self) -> Metric:
        return PCK3D(joints=self.joints, pred_root=self.pred_root)

    def read_predictions(self, path: Path) -> dict[int, Prediction]:
        expected = {s: (self.gt[i][0].shape[0], 17, 3) for i, s in enumerate(self.sequences)}
        arrays = read_pose_npz(path, expected, what="test sequence")
        return {i: Prediction(i, {"joints": arrays[s]}) for i, s in enumerate(self.sequences)}


@register_dataset("mpi_inf_3dhp")
def build_mpi_inf_3dhp(cfg) -> MpiInf3dhpDataset:
    sequences = list(cfg.get("sequences", SEQUENCES))
    required = [f"{s}/annot_data.mat" for s in sequences]
    root, bundled = resolve_data_root("mpi_inf_3dhp", cfg.get("data_root"), required, sample="mpi_inf_3dhp")
    return MpiInf3dhpDataset(root, bundled, sequences=sequences, gt=str(cfg.get("gt", "univ_annot3")),
                             joints=str(cfg.get("joints", "official14")),
                             pred_root=str(cfg.get("pred_root", "subtract")), name=str(cfg.get("name", "mpi_inf_3dhp")))
