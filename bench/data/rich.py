"""RICH as WHAM scores it: WHAM's label file ``data_root/rich_test_vit.pth`` -> one Sample per sequence.

Input: the RICH test labels WHAM distributes (yohanshin/WHAM ``docs/DATASET.md``: ``dataset/parsed_data/``), the
de facto official RICH evaluation input (the code that builds it from the RICH release is not published). A
``joblib.dump`` of a dict of per-sequence lists, read by :func:`bench.safe_pickle.load_joblib` (torch tensors
through ``torch.load(weights_only=True)``). Read: ``vid`` (sequence name), ``gender`` (SMPL-X gender), ``pose``
``(T, 72)`` (axis-angle: root, the 21 SMPL-X body joints, two unused), ``betas`` ``(T, 10)``, ``frame_id`` ``(T,)``
(optional); the model inputs (``features``, ``bbox``, ``kp2d``, ``init_*``, ``flipped_*``...) are not read.

Protocol (yohanshin/WHAM ``lib/eval/evaluate_rich.py``, ``lib/data/datasets/dataset_eval.py``):

- every sequence of the file, in its order; each scores its frames but the first (WHAM's ``[1:]``: frame 0 only
  initialises the model);
- GT: the pose through WHAM's ``axis_angle_to_matrix`` -> 6D -> ``rotation_6d_to_matrix`` ->
  ``matrix_to_axis_angle``, then smplx's ``SMPLX`` of the sequence's gender (``smpl_dir/smplx/``), body pose
  ``pose[:, 1:22]``, global orientation ``pose[:, 0]``, betas, everything else at smplx's defaults (no
  translation, neutral face, hands at the PCA mean); vertices mapped to SMPL by WHAM's ``smplx2smpl.pkl``;
- prediction: neutral SMPL (``smpl_dir/smpl/``) from the predicted parameters (bench/predictions/emdb.py's npz);
- joints, both: the neutral SMPL ``J_regressor`` on the SMPL vertices (24 joints); then WHAM's camera-frame
  block (metrics/world_motion.py): PA-MPJPE, MPJPE, PVE, ACCEL after mid-hip pelvis alignment, per frame,
  pooled over all sequences. Float64 throughout (WHAM computes in float32).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

from bench.data.base import BenchmarkDataset, resolve_data_root
from bench.data.emdb import exact_matrices, matrix_to_axis_angle, predicted_targets
from bench.errors import InputError
from bench.formats.smpl import GENDERS, load_smpl
from bench.formats.smplx_model import load_smplx, load_smplx2smpl
from bench.predictions.emdb import SMPLParams, read_emdb_npz
from bench.registry import register_dataset
from bench.safe_pickle import load_joblib
from bench.types import Prediction, Sample
from metrics.world_motion import FRAME_KEYS, WorldMotionError

DEFAULT_FILE = "rich_test_vit.pth"
FIELDS = ("vid", "gender", "pose", "betas")
BLOCK = 128  # frames per SMPL-X pass


@dataclass(frozen=True)
class RICHSequence:
    """One sequence of the label file, validated (float64)."""

    key: str                  # WHAM's vid
    gender: str
    pose: np.ndarray          # (T, 24, 3) axis-angle
    betas: np.ndarray         # (T, 10)
    frame_id: np.ndarray | None  # (T,)

    @property
    def scored(self) -> np.ndarray:
        """Which frames are scored: all but the first."""
        return np.arange(len(self.pose)) > 0


def _array(value, path: Path, record: str, field: str, shapes: tuple[tuple[int, ...], ...]) -> np.ndarray:
    """A finite numeric array (a torch tensor or numpy array) of one of ``shapes``, float64."""
    if isinstance(value, Tensor):
        value = value.detach().cpu().numpy()
    arr = value if isinstance(value, np.ndarray) else None
    if arr is None or arr.dtype.kind not in "fiu" or arr.shape not in shapes:
        got = f"{arr.dtype} {arr.shape}" if arr is not None else type(value).__name__
        raise InputError(path, record, field, f"expected a numeric array of shape {' or '.join(map(str, shapes))}, "
                                              f"got {got}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise InputError(path, record, field, "holds NaN or inf")
    return arr.astype(np.float64)


def read_labels(path: Path) -> list[RICHSequence]:
    """Read and validate WHAM's label file."""
    data = load_joblib(path, allow_torch=True)
    if not isinstance(data, dict):
        raise InputError(path, None, None, f"expected a dict (WHAM's {DEFAULT_FILE}), got {type(data).__name__}")
    for k in FIELDS:
        if not isinstance(data.get(k), (list, tuple)):
            raise InputError(path, None, k, f"expected a list per sequence (WHAM's {DEFAULT_FILE}), got "
                                            f"{type(data.get(k)).__name__}")
    n = len(data["vid"])
    for k in (*FIELDS, "frame_id"):
        if k in data and len(data[k]) != n:
            raise InputError(path, None, k, f"{len(data[k])} entries for {n} sequences (vid)")
    if n == 0:
        raise InputError(path, None, "vid", "no sequences")
    seqs, seen = [], set()
    for i in range(n):
        vid, gender = data["vid"][i], data["gender"][i]
        record = f"sequence {i}"
        if not isinstance(vid, str) or not vid or "/" in vid:
            raise InputError(path, record, "vid", f"expected a sequence name without '/', got {vid!r}")
        if vid in seen:
            raise InputError(path, record, "vid", f"sequence {vid!r} appears twice")
        seen.add(vid)
        record = f"sequence {vid!r}"
        if gender not in GENDERS:
            raise InputError(path, record, "gender", f"expected one of {GENDERS}, got {gender!r}")
        pose = data["pose"][i]
        t = pose.shape[0] if isinstance(pose, (Tensor, np.ndarray)) and pose.ndim else 0
        pose = _array(pose, path, record, "pose", ((t, 72), (t, 24, 3))).reshape(t, 24, 3)
        if t < 5:
            raise InputError(path, record, "pose", f"{t} frames: the protocol scores all but the first and needs at "
                                                   "least 4 (accelerations)")
        betas = _array(data["betas"][i], path, record, "betas", ((t, 10),))
        frame_id = _array(data["frame_id"][i], path, record, "frame_id", ((t,),)) if "frame_id" in data else None
        seqs.append(RICHSequence(vid, str(gender), pose, betas, frame_id))
    return seqs


def rotation_6d_to_matrix(d6: Tensor) -> Tensor:
    """Rotation matrices ``(..., 3, 3)`` of 6D rotations ``(..., 6)`` (two rows; Zhou et al. 2019, Gram-Schmidt;
    WHAM's ``transforms.rotation_6d_to_matrix``, PyTorch3D's formulas)."""
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = torch.nn.functional.normalize(a1, dim=-1)
    b2 = torch.nn.functional.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    return torch.stack((b1, b2, torch.linalg.cross(b1, b2, dim=-1)), dim=-2)


def gt_pose(seq: RICHSequence) -> Tensor:
    """The scored frames' axis-angle pose ``(F, 24, 3)`` as WHAM hands it to SMPL-X: matrices -> 6D (the first
    two rows) -> matrices -> axis-angle (the round trip picks the vector smplx's Rodrigues gets)."""
    mats = exact_matrices(seq.pose[seq.scored])
    return matrix_to_axis_angle(rotation_6d_to_matrix(mats[..., :2, :].reshape(*mats.shape[:-2], 6)))


def smpl_vertices_from_smplx(model, betas: Tensor, pose: Tensor, smplx2smpl) -> Tensor:
    """SMPL-X bodies ``(F, 10475, 3)`` of axis-angle ``pose`` ``(F, 24, 3)`` (root, 21 body joints; the rest at
    smplx's defaults, zero translation) mapped to SMPL vertices ``(F, 6890, 3)`` by ``smplx2smpl``."""
    out = []
    with torch.no_grad():
        for s in range(0, len(pose), BLOCK):
            p, b = pose[s:s + BLOCK], betas[s:s + BLOCK]
            zeros = {k: torch.zeros(len(p), n, dtype=p.dtype) for k, n in (
                ("left_hand_pose", model.num_pca_comps), ("right_hand_pose", model.num_pca_comps),
                ("jaw_pose", 3), ("leye_pose", 3), ("reye_pose", 3), ("expression", model.num_expression_coeffs),
                ("transl", 3))}
            v = model(betas=b, global_orient=p[:, 0], body_pose=p[:, 1:22].reshape(-1, 63), **zeros).vertices
            flat = v.permute(1, 0, 2).reshape(v.shape[1], -1).numpy()
            mapped = np.asarray(smplx2smpl @ flat).reshape(smplx2smpl.shape[0], len(p), 3)
            out.append(torch.from_numpy(mapped).permute(1, 0, 2))
    return torch.cat(out)


def regress(model, verts: Tensor) -> Tensor:
    """The 24 joints ``(F, 24, 3)``: the neutral SMPL ``J_regressor`` on SMPL vertices (WHAM's ``J_regressor_eval``)."""
    return torch.matmul(model.J_regressor.to(verts.dtype), verts)


def gt_targets(seq: RICHSequence, smpl_dir, smplx2smpl) -> dict[str, Tensor]:
    """WHAM's GT of one sequence on its scored frames: camera-frame joints and SMPL vertices, float64."""
    model = load_smplx(smpl_dir, seq.gender, torch.float64)
    verts = smpl_vertices_from_smplx(model, torch.from_numpy(seq.betas[seq.scored]), gt_pose(seq), smplx2smpl)
    return {"joints_cam": regress(load_smpl(smpl_dir, "neutral", torch.float64), verts), "verts_cam": verts}


def predicted_bodies(p: SMPLParams, smpl_dir) -> dict[str, Tensor]:
    """WHAM's predicted bodies: neutral SMPL on the parameters (``pose2rot=False``), joints regressed from the
    vertices."""
    verts = predicted_targets(p, smpl_dir, "camera")["verts_cam"]
    return {"joints_cam": regress(load_smpl(smpl_dir, "neutral", torch.float64), verts), "verts_cam": verts}


class LazyPredictions(Mapping):
    """sample id -> Prediction, built by SMPL when the harness asks for that sequence."""

    def __init__(self, params: dict[int, SMPLParams], smpl_dir):
        self.params, self.smpl_dir = params, smpl_dir

    def __getitem__(self, sample_id: int) -> Prediction:
        return Prediction(sample_id, predicted_bodies(self.params[sample_id], self.smpl_dir))

    def __iter__(self) -> Iterator[int]:
        return iter(self.params)

    def __len__(self) -> int:
        return len(self.params)


class RICHDataset(BenchmarkDataset):
    """The sequences of WHAM's RICH label file, GT bodies from the gendered SMPL-X in ``smpl_dir``."""

    family = "motion"
    metric_keys = FRAME_KEYS["camera"]

    def __init__(self, root: Path, smpl_dir, file: str = DEFAULT_FILE, name: str = "rich", bundled: bool = False):
        super().__init__(name, root, bundled)
        self.path = self.root / file
        if not self.path.is_file():
            raise InputError(self.path, None, "data_root", f"file not found (WHAM's {DEFAULT_FILE} expected; "
                                                           "dataset.file= names another)")
        self.sequences = read_labels(self.path)
        self.smpl_dir = smpl_dir
        for g in sorted({s.gender for s in self.sequences}):
            load_smplx(smpl_dir, g, torch.float64)  # a bad smpl_dir fails here, once, in one line
        load_smpl(smpl_dir, "neutral", torch.float64)
        self.smplx2smpl = load_smplx2smpl(smpl_dir)
        self.variant = "" if file == DEFAULT_FILE else f"file={file}"

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, i: int) -> Sample:
        s = self.sequences[i]
        target = {**gt_targets(s, self.smpl_dir, self.smplx2smpl), "sample_id": torch.tensor(i)}
        frames = s.frame_id[1:] if s.frame_id is not None else np.flatnonzero(s.scored)
        return Sample(sample_id=i, target=target, inputs={"key": s.key, "frames": frames})

    def gt_files(self) -> Iterable[Path]:
        return [self.path]

    def build_metric(self) -> Metric:
        return WorldMotionError(frames=("camera",))

    def read_predictions(self, path: Path) -> LazyPredictions:
        """``{vid}/{field}`` SMPL parameters (bench/predictions/emdb.py, camera frame: ``poses_body``, ``betas``,
        ``poses_root_cam``), every frame or the scored ones (all but the first); bodies are built per sequence."""
        params = read_emdb_npz(path, {s.key: s.scored for s in self.sequences}, ("camera",))
        return LazyPredictions({i: params[s.key] for i, s in enumerate(self.sequences)}, self.smpl_dir)


@register_dataset("rich")
def build_rich(cfg) -> RICHDataset:
    file = str(cfg.get("file") or DEFAULT_FILE)
    root, bundled = resolve_data_root("rich", cfg.get("data_root"), [file], sample="rich")
    return RICHDataset(root, cfg.get("smpl_dir"), file=file, name=str(cfg.get("name", "rich")), bundled=bundled)
