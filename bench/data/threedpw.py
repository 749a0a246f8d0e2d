"""3DPW, official ``sequenceFiles/<split>/*.pkl`` -> one Sample per (sequence, person, valid frame).

Official format (the 3DPW readme): each sequence file is a Python-2 pickle (read with ``latin1``, through
:mod:`bench.safe_pickle`) of a dict with ``sequence`` (name), per person lists ``poses`` (T,72) SMPL axis-angle,
``trans`` (T,3), ``betas`` (10,) or more, ``genders`` ('m'/'f'), ``campose_valid`` (T,) and per frame
``cam_poses`` (T,4,4) world -> camera; plus ``jointPositions``, ``poses2d``, ``poses_60Hz``, ``trans_60Hz``,
``betas_clothed``, ``v_template_clothed``, ``texture_maps``, ``img_frame_ids``, ``cam_intrinsics`` (not
needed for the GT; ``poses2d`` and ``cam_intrinsics`` are passed to methods when present).

Protocol (nkolot/SPIN ``datasets/preprocess/pw3d.py`` + ``eval.py``; shared/PROTOCOLS.md):

- only a person's frames with ``campose_valid`` set; every such frame is one sample, pooled into one mean
  (no 2D-keypoint filter). One sample per frame keeps batches small (a 6890-vertex mesh per frame) and lets
  DDP split a long sequence; the GT of a block of frames is computed in one SMPL pass and cached.
- GT mesh: gendered SMPL from ``smpl_dir`` ('m' -> male, anything else -> female), betas truncated to 10, the
  global orientation rotated into the camera frame by ``cam_poses[:3,:3]``, NO translation (SPIN builds the GT
  body at the origin). ``target["offset"]`` is the translation from that mesh to the full camera-frame GT
  ``R_c (V_world + trans) + t_c``; only the unaligned PVE uses it.
- metrics (metrics/pve.py): MPJPE, PA-MPJPE on the 14 LSP joints regressed with the bundled
  ``J_regressor_h36m``, pelvis-relative; PVE (``pve_alignment: pelvis``, TokenHMR; ``none``: raw camera frame,
  POCO / mmhuman3d); PA-PVE as an extra key. Because the regressor rows do not sum to exactly 1, an exact
  camera-frame prediction of the GT body scores a fraction of a mm MPJPE/PVE against SPIN's origin GT (the
  protocol as published); with ``pve_alignment: none`` its PVE is 0.
- ``joints: smpl24`` scores all 24 SMPL joints instead, regressed from both meshes with the neutral SMPL model's
  own ``J_regressor`` (``smpl_dir``), pelvis = SMPL joint 0 (HybrIK ``PW3D.evaluate_xyz_24``); its rows are
  labelled ``joints=smpl24``.

Options (``bench/conf/dataset/3dpw.yaml``): ``smpl_dir`` (required), ``split`` (``test``; ``validation`` and
``train`` read the same way), ``pve_alignment`` (``pelvis`` | ``none``), ``joints`` (``h36m14`` | ``smpl24``).

Predictions: .npz, key ``"{sequence}/{person_index}"`` -> ``(T, 6890, 3)`` SMPL vertices in metres, camera
frame, every frame of the sequence (frames without a valid camera pose are skipped by the protocol).
"""
from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchmetrics import Metric

from bench.data.base import BenchmarkDataset, resolve_data_root
from bench.errors import InputError
from bench.formats.smpl import N_VERTS, load_smpl, read_smpl_arrays
from bench.predictions.npz import UnscoredKeysWarning
from bench.registry import register_dataset
from bench.safe_pickle import load_npz, load_pickle
from bench.types import Prediction, Sample
from metrics.pve import JOINT_SETS, PVE_ALIGNMENTS, MeshError

J_REGRESSOR_H36M = Path(__file__).parent / "smpl" / "J_regressor_h36m.npy"
SPLITS = ("test", "validation", "train")
REQUIRED_KEYS = ("sequence", "poses", "betas", "trans", "genders", "campose_valid", "cam_poses")
BLOCK = 64  # frames of GT computed per SMPL pass (and cached)


@dataclass(frozen=True)
class Track:
    """One person of one sequence."""

    key: str                 # "courtyard_basketball_00/1"
    sequence: str
    person: int
    gender: str              # smpl gender: "male" | "female"
    betas: np.ndarray        # (10,)
    poses: np.ndarray        # (T, 72) world frame
    trans: np.ndarray        # (T, 3)
    cam_poses: np.ndarray    # (T, 4, 4) world -> camera
    frames: np.ndarray       # (V,) indices of the frames with a valid camera pose
    num_frames: int
    poses2d: np.ndarray | None  # (T, 3, 18) or None


def smpl_gender(code) -> str:
    """3DPW gender code -> SMPL model: 'm' is male, anything else female (SPIN)."""
    return "male" if code == "m" else "female"


def _array(value, path: Path, record: str, field: str, shape: tuple[int | None, ...]) -> np.ndarray:
    """A finite numeric array of ``shape`` (None: any size) or an InputError."""
    try:
        arr = np.asarray(value)
    except Exception:  # noqa: BLE001
        arr = None
    if arr is None or arr.dtype.kind not in "fiub" or arr.ndim != len(shape) or any(
            want is not None and got != want for got, want in zip(arr.shape, shape)):
        got = f"{arr.dtype} {arr.shape}" if arr is not None else type(value).__name__
        want = tuple("N" if s is None else s for s in shape)
        raise InputError(path, record, field, f"expected a numeric array of shape {want}, got {got}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise InputError(path, record, field, "holds NaN or inf")
    return arr


def load_sequence(path: Path) -> list[Track]:
    """Read and validate one official sequence file into its tracks (one per person)."""
    data = load_pickle(path, encoding="latin1")
    if not isinstance(data, dict):
        raise InputError(path, None, None, f"expected a dict (3DPW sequence file), got {type(data).__name__}")
    for k in REQUIRED_KEYS:
        if k not in data:
            raise InputError(path, None, k, "missing key (official 3DPW sequence file expected)")
    seq = data["sequence"]
    if isinstance(seq, bytes):
        seq = seq.decode("latin1")
    if not isinstance(seq, str) or not seq or "/" in seq:
        raise InputError(path, None, "sequence", f"expected the sequence name, got {seq!r}")
    per_person = {k: data[k] for k in ("poses", "betas", "trans", "genders", "campose_valid")}
    for k, v in per_person.items():
        if not isinstance(v, (list, tuple)) and not (isinstance(v, np.ndarray) and v.ndim >= 1):
            raise InputError(path, None, k, f"expected one entry per person, got {type(v).__name__}")
    n_people = len(per_person["poses"])
    if n_people == 0:
        raise InputError(path, None, "poses", "no people")
    for k, v in per_person.items():
        if len(v) != n_people:
            raise InputError(path, None, k, f"{len(v)} entries for {n_people} people (poses)")
    cam = _array(data["cam_poses"], path, None, "cam_poses", (None, 4, 4)).astype(np.float64)
    t = cam.shape[0]
    poses2d = data.get("poses2d")
    tracks = []
    for p in range(n_people):
        rec = f"person {p}"
        poses = _array(per_person["poses"][p], path, rec, "poses", (t, 72)).astype(np.float64)
        trans = _array(per_person["trans"][p], path, rec, "trans", (t, 3)).astype(np.float64)
        betas = _array(np.asarray(per_person["betas"][p]).reshape(-1), path, rec, "betas", (None,))
        if betas.shape[0] < 10:
            raise InputError(path, rec, "betas", f"expected at least 10 shape parameters, got {betas.shape[0]}")
        valid = _array(per_person["campose_valid"][p], path, rec, "campose_valid", (t,)).astype(bool)
        gender = per_person["genders"][p]
        if isinstance(gender, bytes):
            gender = gender.decode("latin1")
        if not isinstance(gender, str):
            raise InputError(path, rec, "genders", f"expected 'm' or 'f', got {gender!r}")
        p2d = None
        if isinstance(poses2d, (list, tuple)) and len(poses2d) == n_people:
            a = np.asarray(poses2d[p])
            p2d = a if a.dtype.kind == "f" and a.shape[:1] == (t,) else None
        tracks.append(Track(f"{seq}/{p}", seq, p, smpl_gender(gender), betas[:10].astype(np.float64), poses, trans,
                            cam, np.flatnonzero(valid), t, p2d))
    return tracks


def camera_pose(track: Track, frames: np.ndarray) -> np.ndarray:
    """``(F, 72)`` SMPL pose with the global orientation rotated into the camera frame, as axis-angle (SPIN:
    ``cv2.Rodrigues(R_cam @ cv2.Rodrigues(pose[:3]))``; smplx then turns every axis-angle into a matrix
    itself, with its own epsilon, so the GT matches SPIN's to the last bits)."""
    from scipy.spatial.transform import Rotation

    pose = track.poses[frames].copy()
    r_cam = track.cam_poses[frames, :3, :3]
    pose[:, :3] = Rotation.from_matrix(r_cam @ Rotation.from_rotvec(pose[:, :3]).as_matrix()).as_rotvec()
    return pose


def gt_meshes(track: Track, frames: np.ndarray, smpl_dir) -> tuple[torch.Tensor, torch.Tensor]:
    """SPIN's GT of ``frames``: vertices ``(F, 6890, 3)`` (camera orientation, body at the origin) and the
    offset ``(F, 3)`` to the full camera-frame mesh, float64."""
    model = load_smpl(smpl_dir, track.gender, torch.float64)
    pose = torch.from_numpy(camera_pose(track, frames))
    cam = torch.from_numpy(track.cam_poses[frames])
    r_cam, t_cam = cam[:, :3, :3], cam[:, :3, 3]
    betas = torch.from_numpy(track.betas)[None].expand(len(frames), -1)
    with torch.no_grad():
        out = model(betas=betas, body_pose=pose[:, 3:], global_orient=pose[:, :3],
                    transl=torch.zeros(len(frames), 3, dtype=torch.float64))
    root = out.joints[:, 0]  # the rest pelvis: the global rotation turns the body about it
    trans = torch.from_numpy(track.trans[frames])
    offset = (r_cam @ (root + trans)[..., None])[..., 0] + t_cam - root
    return out.vertices, offset


class ThreeDPWDataset(BenchmarkDataset):
    """3DPW frames with a valid camera pose, GT meshes from the gendered SMPL in ``smpl_dir``."""

    family = "mesh"
    metric_keys = ("MPJPE", "PA-MPJPE", "PVE")

    def __init__(self, root: Path, smpl_dir, split: str = "test", pve_alignment: str = "pelvis",
                 name: str = "3dpw", bundled: bool = False, joints: str = "h36m14"):
        super().__init__(name, root, bundled)
        if split not in SPLITS:
            raise InputError(None, None, "split", f"expected one of {SPLITS}, got {split!r}")
        if pve_alignment not in PVE_ALIGNMENTS:
            raise InputError(None, None, "pve_alignment", f"expected one of {PVE_ALIGNMENTS}, got {pve_alignment!r}")
        if joints not in JOINT_SETS:
            raise InputError(None, None, "joints", f"expected one of {tuple(JOINT_SETS)}, got {joints!r}")
        self.split, self.pve_alignment, self.joints = split, pve_alignment, joints
        self.files = sorted((self.root / "sequenceFiles" / split).glob("*.pkl"))
        if not self.files:
            raise InputError(self.root / "sequenceFiles" / split, None, "data_root", "no sequence files (*.pkl)")
        tracks: list[Track] = []
        seen: dict[str, Path] = {}
        for f in self.files:
            for tr in load_sequence(f):
                if tr.sequence in seen and seen[tr.sequence] != f:
                    raise InputError(f, None, "sequence", f"name {tr.sequence!r} also used by {seen[tr.sequence]}")
                seen[tr.sequence] = f
                tracks.append(tr)
        self.tracks = sorted(tracks, key=lambda q: (q.sequence, q.person))
        self.smpl_dir = smpl_dir
        for g in sorted({tr.gender for tr in self.tracks}):
            load_smpl(smpl_dir, g, torch.float64)  # a bad smpl_dir fails here, once, in one line
        self.j_regressor = (np.load(J_REGRESSOR_H36M) if joints == "h36m14"
                            else read_smpl_arrays(smpl_dir, "neutral")["J_regressor"].astype(np.float64))
        starts = np.cumsum([0] + [len(tr.frames) for tr in self.tracks])
        self._start = {tr.key: int(s) for tr, s in zip(self.tracks, starts)}
        self._pos = [(ti, k) for ti, tr in enumerate(self.tracks) for k in range(len(tr.frames))]
        self._cache: OrderedDict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        options = (("split", split, "test"), ("joints", joints, "h36m14"), ("pve", pve_alignment, "pelvis"))
        self.variant = ",".join(f"{k}={v}" for k, v, default in options if v != default)

    def __len__(self) -> int:
        return len(self._pos)

    def _block(self, ti: int, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        key = (ti, b)
        if key not in self._cache:
            tr = self.tracks[ti]
            self._cache[key] = gt_meshes(tr, tr.frames[b * BLOCK:(b + 1) * BLOCK], self.smpl_dir)
            while len(self._cache) > 2:
                self._cache.popitem(last=False)
        return self._cache[key]

    def __getitem__(self, i: int) -> Sample:
        ti, k = self._pos[i]
        tr = self.tracks[ti]
        verts, offset = self._block(ti, k // BLOCK)
        frame = int(tr.frames[k])
        target = {"vertices": verts[k % BLOCK], "offset": offset[k % BLOCK], "sample_id": torch.tensor(i)}
        inputs = {"key": tr.key, "sequence": tr.sequence, "person": tr.person, "frame": frame,
                  "image": self.root / "imageFiles" / tr.sequence / f"image_{frame:05d}.jpg"}
        if tr.poses2d is not None:
            inputs["keypoints2d"] = torch.from_numpy(np.ascontiguousarray(tr.poses2d[frame]))
        return Sample(sample_id=i, target=target, inputs=inputs)

    def gt_files(self) -> Iterable[Path]:
        return list(self.files)

    def build_metric(self) -> Metric:
        return MeshError(torch.from_numpy(self.j_regressor), pve_alignment=self.pve_alignment, joints=self.joints)

    def read_predictions(self, path: Path) -> dict[int, Prediction]:
        """``{sequence}/{person}`` -> ``(T, 6890, 3)`` metres; kept in the file's float dtype (memory)."""
        path = Path(path)
        if not path.is_file():
            raise InputError(path, None, "predictions", "file not found")
        arrays = load_npz(path, allow_pickle_objects=False)
        expected = {tr.key: tr for tr in self.tracks}
        extra = sorted(set(arrays) - set(expected))
        if extra:
            warnings.warn(f"{path}: ignoring {len(extra)} key(s) for sequences the protocol does not score: "
                          f"{', '.join(repr(k) for k in extra[:5])}", UnscoredKeysWarning, stacklevel=2)
        out: dict[int, Prediction] = {}
        for key, tr in expected.items():
            shape = (tr.num_frames, N_VERTS, 3)
            if key not in arrays:
                raise InputError(path, f"key {key!r}", key, f"missing: the protocol scores this person "
                                                            f"(expected an array of shape {shape})")
            a = arrays[key]
            if a.dtype.kind != "f" or a.dtype.itemsize > 8:
                raise InputError(path, f"key {key!r}", "dtype", f"expected a float array, got dtype {a.dtype}")
            if a.shape != shape:
                raise InputError(path, f"key {key!r}", "shape", f"expected {shape}, got {a.shape}")
            scored = a[tr.frames]
            if not np.isfinite(scored).all():
                bad = np.argwhere(~np.isfinite(scored))[0].tolist()
                bad[0] = int(tr.frames[bad[0]])
                raise InputError(path, f"key {key!r}", "values", f"non-finite value at index {bad}")
            t = torch.from_numpy(np.ascontiguousarray(scored))
            start = self._start[key]
            for k in range(len(tr.frames)):
                out[start + k] = Prediction(start + k, {"vertices": t[k]})
        return out


@register_dataset("3dpw")
def build_3dpw(cfg) -> ThreeDPWDataset:
    split = str(cfg.get("split", "test"))
    root, bundled = resolve_data_root("3dpw", cfg.get("data_root"), [f"sequenceFiles/{split}"], sample=None)
    return ThreeDPWDataset(root, cfg.get("smpl_dir"), split=split,
                           pve_alignment=str(cfg.get("pve_alignment", "pelvis")), name=str(cfg.get("name", "3dpw")),
                           bundled=bundled, joints=str(cfg.get("joints", "h36m14")))
