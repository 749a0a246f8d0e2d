"""EMDB, the official layout ``P*/<sequence>/<P*>_<sequence>_data.pkl`` -> one Sample per scored sequence.

Official format (eth-ait/emdb ``dataset.md``): each sequence pickle holds a dict with ``gender`` ("female",
"male" or "neutral"), ``name`` (``{subject}_{sequence}``), ``emdb1`` / ``emdb2`` (bool: the sequence belongs to that
benchmark subset), ``n_frames``, ``good_frames_mask`` (n_frames,), ``camera`` (``intrinsics`` (3, 3),
``extrinsics`` (n_frames, 4, 4) world -> camera, ``width``, ``height``), ``smpl`` (``poses_root`` (n_frames, 3),
``poses_body`` (n_frames, 69), ``trans`` (n_frames, 3), ``betas`` (10,)), ``kp2d``, ``bboxes``. Read through
:mod:`bench.safe_pickle` (numpy arrays and plain containers only).

Protocol (yohanshin/WHAM ``lib/eval/evaluate_emdb.py``, shared/PROTOCOLS.md; metrics/world_motion.py):

- ``subset=emdb1`` (default; EMDB's own ``evaluate.py`` set): the sequences with ``emdb1`` set, camera frame:
  PA-MPJPE, MPJPE, PVE, ACCEL, and EMDB's MPJAE (eth-ait/emdb ``evaluation_metrics.py``: global orientations of
  9 joints; EMDB reports it for EMDB 1 only). ``subset=emdb2``: the sequences with ``emdb2`` set, world frame:
  WA-MPJPE100, W-MPJPE100, RTE, JITTER, FS. Sequences in the order of their sorted paths (WHAM's ``sorted(glob(...))``).
- only the ``good_frames_mask`` frames, concatenated (chunks, accelerations and jerks run over them as WHAM's do).
- GT bodies: the pickle's ``gender`` SMPL from ``smpl_dir``, betas repeated over the frames; world: ``poses_root``
  and ``trans`` as they are; camera: the root orientation turned by the extrinsics' rotation, no translation.
  Predicted bodies: neutral SMPL from the predicted parameters (bench/predictions/emdb.py). Joints: the 24 SMPL
  joints of smplx's output. MPJAE's orientations: the local rotations (exact matrices of the axis-angle, or the
  predicted matrices as given) composed down the model's kinematic tree; the GT's in the world, then turned by
  the extrinsics' rotation (EMDB's ``apply_camera_transforms``), the prediction's from its camera-frame root.
  Everything in float64 (WHAM builds its tensors in float32; the goldens run its steps in float64, where they
  agree to 1e-9 mm).

One Sample per sequence: every key is a per-sequence computation (chunks, trajectory alignment). SMPL runs
per sequence in blocks of frames; predictions are turned into bodies only when their sequence is scored, so
memory holds one batch of sequences (about 330 MB of float64 vertices per 1,000 frames, GT and prediction:
``batch_size=1`` for the long sequences of the real set).
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
from bench.errors import InputError
from bench.formats.smpl import GENDERS, load_smpl
from bench.predictions.emdb import SMPLParams, read_emdb_npz
from bench.registry import register_dataset
from bench.safe_pickle import load_pickle
from bench.types import Prediction, Sample
from metrics.world_motion import (
    ANGLE_JOINTS,
    FOOT_VERTICES,
    FRAME_KEYS,
    WorldMotionError,
    global_orientations,
)

SUBSETS = {"emdb1": "camera", "emdb2": "world"}
#: the key groups (metrics/world_motion.py) each frame scores: EMDB 1 adds EMDB's MPJAE
GROUPS = {"camera": ("camera", "angles"), "world": ("world",)}
PATTERN = "*/*/*_data.pkl"
BLOCK = 128  # frames per SMPL pass (float64 skinning of 6890 vertices: about 110 MB per block)


@dataclass(frozen=True)
class EMDBSequence:
    """One official sequence file, validated."""

    key: str                  # "P0_09_outdoor_walk": {subject}_{sequence} (WHAM's vid)
    path: Path
    gender: str
    emdb1: bool
    emdb2: bool
    good: np.ndarray          # (n_frames,) bool
    extrinsics: np.ndarray    # (n_frames, 4, 4) world -> camera
    poses_root: np.ndarray    # (n_frames, 3)
    poses_body: np.ndarray    # (n_frames, 69)
    trans: np.ndarray         # (n_frames, 3)
    betas: np.ndarray         # (10,)
    intrinsics: np.ndarray | None


def _array(value, path: Path, field: str, shape: tuple[int, ...]) -> np.ndarray:
    """A finite numeric float64 array of exactly ``shape``, or an InputError naming the field."""
    try:
        arr = np.asarray(value)
    except Exception:  # noqa: BLE001
        arr = None
    if arr is None or arr.dtype.kind not in "fiub" or arr.shape != shape:
        got = f"{arr.dtype} {arr.shape}" if arr is not None else type(value).__name__
        raise InputError(path, None, field, f"expected a numeric array of shape {shape}, got {got}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise InputError(path, None, field, "holds NaN or inf")
    return arr.astype(np.float64)


def _dict(data: dict, path: Path, field: str, keys: tuple[str, ...]) -> dict:
    sub = data.get(field)
    if not isinstance(sub, dict):
        raise InputError(path, None, field, f"expected a dict, got {type(sub).__name__}")
    for k in keys:
        if k not in sub:
            raise InputError(path, None, f"{field}.{k}", "missing key (official EMDB *_data.pkl expected)")
    return sub


def load_sequence(path: Path, root: Path) -> EMDBSequence:
    """Read and validate one ``P*/<sequence>/*_data.pkl``."""
    data = load_pickle(path)
    if not isinstance(data, dict):
        raise InputError(path, None, None, f"expected a dict (EMDB *_data.pkl), got {type(data).__name__}")
    for k in ("gender", "emdb1", "emdb2", "n_frames", "good_frames_mask", "camera", "smpl"):
        if k not in data:
            raise InputError(path, None, k, "missing key (official EMDB *_data.pkl expected)")
    gender = data["gender"]
    if gender not in GENDERS:
        raise InputError(path, None, "gender", f"expected one of {GENDERS}, got {gender!r}")
    flags = {}
    for k in ("emdb1", "emdb2"):
        if not isinstance(data[k], (bool, np.bool_)):
            raise InputError(path, None, k, f"expected a bool, got {data[k]!r}")
        flags[k] = bool(data[k])
    n = data["n_frames"]
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(path, None, "n_frames", f"expected a positive int, got {n!r}")
    n = int(n)
    good = np.asarray(data["good_frames_mask"])
    if good.dtype.kind != "b" or good.shape != (n,):
        raise InputError(path, None, "good_frames_mask", f"expected a bool array of shape ({n},), got "
                                                         f"{good.dtype} {good.shape}")
    if good.sum() < 4:
        raise InputError(path, None, "good_frames_mask", f"{int(good.sum())} good frames: the protocol needs at least "
                                                         "4 (accelerations, jerks)")
    cam = _dict(data, path, "camera", ("extrinsics",))
    smpl = _dict(data, path, "smpl", ("poses_root", "poses_body", "trans", "betas"))
    extrinsics = _array(cam["extrinsics"], path, "camera.extrinsics", (n, 4, 4))
    intrinsics = np.asarray(cam["intrinsics"]) if "intrinsics" in cam else None
    rel = path.parent.relative_to(root).parts
    return EMDBSequence(f"{rel[0]}_{rel[1]}", path, str(gender), flags["emdb1"], flags["emdb2"], good.copy(),
                        extrinsics, _array(smpl["poses_root"], path, "smpl.poses_root", (n, 3)),
                        _array(smpl["poses_body"], path, "smpl.poses_body", (n, 69)),
                        _array(smpl["trans"], path, "smpl.trans", (n, 3)),
                        _array(np.asarray(smpl["betas"]).reshape(-1), path, "smpl.betas", (10,)), intrinsics)


def smpl_bodies(model, betas: Tensor, body: Tensor, root: Tensor, transl: Tensor | None = None,
                pose2rot: bool = True) -> tuple[Tensor, Tensor]:
    """The 24 joints ``(F, 24, 3)`` and vertices ``(F, 6890, 3)`` of smplx's SMPL, in blocks of frames."""
    joints, verts = [], []
    with torch.no_grad():
        for s in range(0, len(betas), BLOCK):
            sl = slice(s, s + BLOCK)
            kw = {"transl": transl[sl]} if transl is not None else {}
            out = model(betas=betas[sl], body_pose=body[sl], global_orient=root[sl], pose2rot=pose2rot, **kw)
            joints.append(out.joints[:, :24])
            verts.append(out.vertices)
    return torch.cat(joints), torch.cat(verts)


def orientations(model, root: Tensor, body: Tensor) -> Tensor:
    """The global orientations ``(F, 9, 3, 3)`` of the :data:`ANGLE_JOINTS` from local rotation matrices
    (``root`` ``(F, 1, 3, 3)``, ``body`` ``(F, 23, 3, 3)``) down ``model``'s kinematic tree."""
    return global_orientations(torch.cat((root, body), dim=1), model.parents.tolist())[:, list(ANGLE_JOINTS)]


def _targets(frame: str, model, betas: Tensor, body: Tensor, root_cam: Tensor | None, root_world: Tensor | None,
             trans: Tensor | None, pose2rot: bool) -> dict[str, Tensor]:
    """What metrics/world_motion.py reads for ``frame`` (but the orientations), from SMPL parameters."""
    if frame == "camera":
        joints, verts = smpl_bodies(model, betas, body, root_cam, None, pose2rot)
        return {"joints_cam": joints, "verts_cam": verts}
    joints, verts = smpl_bodies(model, betas, body, root_world, trans, pose2rot)
    return {"joints_world": joints, "transl_world": trans, "feet_world": verts[:, list(FOOT_VERTICES)]}


def exact_matrices(axis_angle: np.ndarray) -> Tensor:
    """Rotation matrices ``(..., 3, 3)`` of axis-angle vectors ``(..., 3)``, without smplx's ``+ 1e-8`` in the
    angle (WHAM turns axis-angle into matrices with the quaternion formulas, exact to rounding)."""
    from scipy.spatial.transform import Rotation

    flat = Rotation.from_rotvec(axis_angle.reshape(-1, 3)).as_matrix()
    return torch.from_numpy(flat.reshape(axis_angle.shape[:-1] + (3, 3)))


def matrix_to_axis_angle(r: Tensor) -> Tensor:
    """Axis-angle ``(..., 3)`` of rotation matrices as WHAM's ``transforms.matrix_to_axis_angle`` (PyTorch3D's
    formulas) returns it: the quaternion from the best-conditioned of the four candidates (the one whose own
    component is largest, taken positive), then ``angle = 2 atan2(|v|, w)`` in [0, 2 pi).

    Why this exact vector: the GT's camera-frame root goes through it and back through smplx's Rodrigues, whose
    ``+ 1e-8`` in the angle gives different bodies (by up to 1e-6 mm) for the two vectors of one rotation.
    """
    m = r.reshape(-1, 9).unbind(-1)
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = m
    q_abs = torch.stack([1.0 + m00 + m11 + m22, 1.0 + m00 - m11 - m22, 1.0 - m00 + m11 - m22,
                         1.0 - m00 - m11 + m22], -1).clamp(min=0).sqrt()
    cand = torch.stack([
        torch.stack([q_abs[:, 0] ** 2, m21 - m12, m02 - m20, m10 - m01], -1),
        torch.stack([m21 - m12, q_abs[:, 1] ** 2, m10 + m01, m02 + m20], -1),
        torch.stack([m02 - m20, m10 + m01, q_abs[:, 2] ** 2, m12 + m21], -1),
        torch.stack([m10 - m01, m20 + m02, m21 + m12, q_abs[:, 3] ** 2], -1)], -2)
    best = q_abs.argmax(-1)
    rows = torch.arange(len(best))
    q = cand[rows, best] / (2.0 * q_abs[rows, best].clamp(min=0.1))[:, None]
    norm = torch.linalg.vector_norm(q[:, 1:], dim=-1, keepdim=True)
    half = torch.atan2(norm, q[:, :1])
    angle = 2 * half
    small = angle.abs() < 1e-6
    ratio = torch.where(small, 0.5 - angle * angle / 48, torch.sin(half) / torch.where(small, 1.0, angle))
    return (q[:, 1:] / ratio).reshape(r.shape[:-2] + (3,))


def gt_targets(seq: EMDBSequence, smpl_dir, frame: str) -> dict[str, Tensor]:
    """WHAM's GT of one sequence on its good frames: gendered SMPL from axis-angle poses, world (``poses_root``,
    ``trans``) or camera (root ``R_ext @ R_root`` back to axis-angle as WHAM does, no translation), float64."""
    g = seq.good
    model = load_smpl(smpl_dir, seq.gender, torch.float64)
    betas = torch.from_numpy(np.repeat(seq.betas[None], int(g.sum()), axis=0))
    body = torch.from_numpy(seq.poses_body[g])
    if frame == "world":
        return _targets(frame, model, betas, body, None, torch.from_numpy(seq.poses_root[g]),
                        torch.from_numpy(seq.trans[g]), True)
    turn = torch.from_numpy(seq.extrinsics[g, :3, :3])
    world_root = exact_matrices(seq.poses_root[g])
    root = matrix_to_axis_angle(turn @ world_root)
    local_body = exact_matrices(seq.poses_body[g].reshape(-1, 23, 3))
    orients = turn[:, None] @ orientations(model, world_root[:, None], local_body)
    return {**_targets(frame, model, betas, body, root, None, None, True), "orients_cam": orients}


def predicted_targets(p: SMPLParams, smpl_dir, frame: str) -> dict[str, Tensor]:
    """The neutral-SMPL bodies of one sequence's predicted parameters (WHAM: ``smpl['neutral']`` on rotation
    matrices, ``pose2rot=False``; axis-angle predictions are turned into matrices exactly first)."""
    model = load_smpl(smpl_dir, "neutral", torch.float64)

    def mats(a: np.ndarray, joints: int) -> Tensor:
        m = torch.from_numpy(np.ascontiguousarray(a)) if p.rotmat else exact_matrices(a.reshape(len(a), joints, 3))
        return m.reshape(len(a), joints, 3, 3)

    roots = {k: mats(v, 1) for k, v in p.roots.items()}
    trans = torch.from_numpy(p.trans_world) if p.trans_world is not None else None
    body = mats(p.poses_body, 23)
    out = _targets(frame, model, torch.from_numpy(p.betas), body, roots.get("poses_root_cam"),
                   roots.get("poses_root_world"), trans, False)
    if frame == "camera":
        out["orients_cam"] = orientations(model, roots["poses_root_cam"], body)
    return out


class LazyPredictions(Mapping):
    """sample id -> Prediction, whose bodies are built by SMPL when the harness asks for that sequence (so only the
    sequences being scored are in memory)."""

    def __init__(self, params: dict[int, SMPLParams], smpl_dir, frame: str):
        self.params, self.smpl_dir, self.frame = params, smpl_dir, frame

    def __getitem__(self, sample_id: int) -> Prediction:
        return Prediction(sample_id, predicted_targets(self.params[sample_id], self.smpl_dir, self.frame))

    def __iter__(self) -> Iterator[int]:
        return iter(self.params)

    def __len__(self) -> int:
        return len(self.params)


class EMDBDataset(BenchmarkDataset):
    """The sequences of one EMDB subset, GT bodies from the gendered SMPL in ``smpl_dir``."""

    family = "motion"
    metric_keys = tuple(k for group in GROUPS["camera"] for k in FRAME_KEYS[group])

    def __init__(self, root: Path, smpl_dir, subset: str = "emdb1", name: str = "emdb", bundled: bool = False):
        super().__init__(name, root, bundled)
        if subset not in SUBSETS:
            raise InputError(None, None, "subset", f"expected one of {tuple(SUBSETS)}, got {subset!r}")
        self.subset, self.frame = subset, SUBSETS[subset]
        self.metric_keys = tuple(k for group in GROUPS[self.frame] for k in FRAME_KEYS[group])
        files = sorted(self.root.glob(PATTERN))
        if not files:
            raise InputError(self.root, None, "data_root", f"no sequence files ({PATTERN}, official EMDB layout)")
        seqs = [load_sequence(f, self.root) for f in files]
        keys = [s.key for s in seqs]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise InputError(self.root, None, "data_root", f"several *_data.pkl files for sequence {dup[0]!r}")
        self.sequences = [s for s in seqs if getattr(s, subset)]
        self.others = [s.key for s in seqs if not getattr(s, subset)]
        if not self.sequences:
            raise InputError(self.root, None, "subset", f"no sequence has {subset} set")
        self.smpl_dir = smpl_dir
        for g in sorted({s.gender for s in self.sequences} | {"neutral"}):
            load_smpl(smpl_dir, g, torch.float64)  # a bad smpl_dir fails here, once, in one line
        self.variant = "" if subset == "emdb1" else f"subset={subset}"

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, i: int) -> Sample:
        s = self.sequences[i]
        target = {**gt_targets(s, self.smpl_dir, self.frame), "sample_id": torch.tensor(i)}
        inputs = {"key": s.key, "images": s.path.parent / "images", "frames": np.flatnonzero(s.good),
                  "intrinsics": s.intrinsics}
        return Sample(sample_id=i, target=target, inputs=inputs)

    def gt_files(self) -> Iterable[Path]:
        return [s.path for s in self.sequences]

    def build_metric(self) -> Metric:
        return WorldMotionError(frames=GROUPS[self.frame])

    def read_predictions(self, path: Path) -> LazyPredictions:
        """``{sequence}/{field}`` SMPL parameters (bench/predictions/emdb.py); bodies are built per sequence."""
        params = read_emdb_npz(path, {s.key: s.good for s in self.sequences}, (self.frame,), self.others)
        return LazyPredictions({i: params[s.key] for i, s in enumerate(self.sequences)}, self.smpl_dir, self.frame)


@register_dataset("emdb")
def build_emdb(cfg) -> EMDBDataset:
    root, bundled = resolve_data_root("emdb", cfg.get("data_root"), ["."], sample="emdb")
    return EMDBDataset(root, cfg.get("smpl_dir"), subset=str(cfg.get("subset", "emdb1")),
                       name=str(cfg.get("name", "emdb")), bundled=bundled)
