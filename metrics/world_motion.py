"""World-grounded human motion errors of EMDB (and RICH): the kernels of WHAM's ``lib/eval/evaluate_emdb.py``.

Everything is per sequence, on the scored (``good_frames_mask``) frames only, in float64 metres; SMPL joints are
the 24 body-model joints, the pelvis the midpoint of the hips (joints 1 and 2).

Camera frame (EMDB 1), per frame:

- MPJPE / PVE: ``mean ||p - g||`` over the 24 joints / 6890 vertices after subtracting each body's own pelvis;
- PA-MPJPE: MPJPE after a per-frame similarity Procrustes of the pelvis-aligned joints;
- acceleration error: ``mean_j ||(p[t-1] - 2p[t] + p[t+1]) - (g[t-1] - 2g[t] + g[t+1])|| * 30**2`` on the
  pelvis-aligned joints, for t = 2 .. T-3 (WHAM drops the first and the last of the T-2 values).

Joint angles (EMDB 1, eth-ait/emdb ``evaluation_metrics.py``), per frame:

- MPJAE (degrees): the global orientation ``G_j`` of each joint (the local rotations composed down the kinematic
  chain from the root, camera frame), for EMDB's 9 joints :data:`ANGLE_JOINTS`; per joint the angle of
  ``G_j^pred (G_j^gt)^T``, ``acos((tr - 1) / 2)`` as ``cv2.Rodrigues`` takes it (0 when ``||vee(R - R^T)|| / 2 <
  1e-5`` and the cosine is positive); the mean over the 9 joints.

World frame (EMDB 2):

- W-MPJPE100 / WA-MPJPE100: the sequence is cut into chunks of 100 frames (the last one shorter); the predicted
  joints of a chunk are moved by the similarity transform (Umeyama) that best maps the joints of its first two
  frames (W) or of all its frames (WA) onto the GT; then per-frame MPJPE, without pelvis alignment;
- RTE (%): the predicted root translations ``transl`` are rigidly (no scale) aligned onto the GT's over the whole
  sequence; per frame ``||g_t - (R p_t + t)|| / L * 100`` with ``L`` the length of the GT path
  ``sum_t ||g_{t+1} - g_t||``;
- jitter (10 m/s^3, of the prediction alone): ``mean_j ||p[t+3] - 3p[t+2] + 3p[t+1] - p[t]|| * 30**3 / 10`` per
  frame, t = 0 .. T-4, on the world joints;
- foot sliding (mm): the four foot vertices ``(3216, 3387, 6617, 6787)`` are in contact at step t when the GT
  vertex moved less than 1 cm from frame t to t+1; the value is the predicted vertex's displacement over every
  such (step, vertex), x 1000.

Every reported value is the mean over all per-frame (or per-contact) values of all sequences, pooled.

>>> g = torch.zeros(5, 24, 3, dtype=torch.float64); g[:, :, 0] = torch.arange(5.0)[:, None]  # 1 m per frame
>>> float(jitter(g).abs().max()), float(rte_percent(2 * g[:, 0], g[:, 0]).max())  # no jerk; RTE of 2x
(0.0, 50.0)
>>> turn = torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.float64)  # 90 deg about z
>>> rest = torch.eye(3, dtype=torch.float64).expand(1, 9, 3, 3)
>>> joint_angle_error(turn @ rest, rest).tolist()  # every joint off by 90 degrees
[90.0]
"""
from __future__ import annotations

import torch
from torch import Tensor

from metrics.bootstrap import BootstrapStats
from metrics.common import cat_state, is_empty_state, unique_sorted
from metrics.mpjpe import joint_errors
from metrics.protocol import PoseMetric
from metrics.pve import pa_error

HIPS = (1, 2)
CHUNK = 100
FPS = 30
FOOT_VERTICES = (3216, 3387, 6617, 6787)
#: EMDB's MPJAE joints (``SMPL_OR_JOINTS``): pelvis, hips, knees, shoulders, elbows
ANGLE_JOINTS = (0, 1, 2, 4, 5, 16, 17, 18, 19)
CONTACT_M = 1e-2  # GT foot displacement per frame below which a foot is in contact


def align_by_hips(joints: Tensor, *others: Tensor) -> tuple[Tensor, ...]:
    """``joints`` ``(T, 24, 3)`` and any ``others`` ``(T, N, 3)`` minus the mid-hip pelvis of ``joints``."""
    pelvis = joints[:, list(HIPS)].mean(dim=1, keepdim=True)
    return tuple(x - pelvis for x in (joints, *others))


def umeyama(target: Tensor, source: Tensor, fixed_scale: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """Similarity ``(s, R, t)`` minimising ``sum ||target - (s R source + t)||^2`` over ``(*, N, 3)`` points
    (Umeyama 1991; the SLAHMR/WHAM ``align_pcl``): ``s`` ``(*, 1)``, ``R`` ``(*, 3, 3)``, ``t`` ``(*, 3)``;
    ``fixed_scale``: ``s = 1`` (a rigid fit)."""
    n = source.shape[-2]
    my, mx = target.mean(dim=-2), source.mean(dim=-2)
    y0, x0 = target - my[..., None, :], source - mx[..., None, :]
    cov = y0.transpose(-1, -2) @ x0 / n
    u, d, vh = torch.linalg.svd(cov)
    sign = torch.ones_like(d)
    sign[..., 2] = torch.where(torch.linalg.det(u) * torch.linalg.det(vh) < 0, -1.0, 1.0)
    r = u @ (sign[..., :, None] * vh)
    if fixed_scale:
        s = torch.ones(*d.shape[:-1], 1, dtype=d.dtype, device=d.device)
    else:
        s = (d * sign).sum(dim=-1, keepdim=True) / ((x0 ** 2).sum(dim=(-1, -2))[..., None] / n)
    t = my - s * (r @ mx[..., None])[..., 0]
    return s, r, t


def _apply(s: Tensor, r: Tensor, t: Tensor, points: Tensor) -> Tensor:
    """``s R p + t`` for one transform (``s`` ``(1,)``, ``R`` ``(3, 3)``, ``t`` ``(3,)``) over ``(T, J, 3)``."""
    return s * (points @ r.transpose(-1, -2)) + t


def world_mpjpe(pred: Tensor, target: Tensor, chunk: int = CHUNK) -> tuple[Tensor, Tensor]:
    """Per-frame W-MPJPE and WA-MPJPE ``(T,)`` (metres) of world joints ``(T, J, 3)``, chunk by chunk."""
    w, wa = [], []
    for start in range(0, len(target), chunk):
        g, p = target[start:start + chunk], pred[start:start + chunk]
        s, r, t = umeyama(g[:2].reshape(-1, 3), p[:2].reshape(-1, 3))
        w.append(joint_errors(_apply(s, r, t, p), g).mean(dim=-1))
        s, r, t = umeyama(g.reshape(-1, 3), p.reshape(-1, 3))
        wa.append(joint_errors(_apply(s, r, t, p), g).mean(dim=-1))
    return torch.cat(w), torch.cat(wa)


def rte_percent(pred_transl: Tensor, target_transl: Tensor) -> Tensor:
    """Per-frame root translation error ``(T,)`` in % of the GT path length, after a rigid fit."""
    s, r, t = umeyama(target_transl, pred_transl, fixed_scale=True)
    aligned = _apply(s, r, t, pred_transl)
    path = torch.linalg.vector_norm(target_transl[1:] - target_transl[:-1], dim=-1).sum()
    return torch.linalg.vector_norm(target_transl - aligned, dim=-1) / path * 100


def jitter(pred: Tensor, fps: int = FPS) -> Tensor:
    """Per-frame jerk ``(T-3,)`` of world joints ``(T, J, 3)`` in 10 m/s^3."""
    jerk = (pred[3:] - 3 * pred[2:-1] + 3 * pred[1:-2] - pred[:-3]) * fps ** 3
    return torch.linalg.vector_norm(jerk, dim=-1).mean(dim=-1) / 10


def foot_sliding(pred_verts: Tensor, target_verts: Tensor) -> Tensor:
    """Predicted foot displacement (metres) at every GT contact, ``(n,)``; vertices ``(T, 6890, 3)`` or already
    the four foot vertices ``(T, 4, 3)``."""
    idx = list(FOOT_VERTICES) if target_verts.shape[1] > len(FOOT_VERTICES) else slice(None)
    g, p = target_verts[:, idx], pred_verts[:, idx]
    contact = torch.linalg.vector_norm(g[1:] - g[:-1], dim=-1) < CONTACT_M
    return torch.linalg.vector_norm(p[1:] - p[:-1], dim=-1)[contact]


def accel_error(pred: Tensor, target: Tensor, fps: int = FPS) -> Tensor:
    """Per-frame acceleration error ``(T-4,)`` of joints ``(T, J, 3)`` (WHAM: x fps^2, ends dropped)."""
    acc_p = pred[:-2] - 2 * pred[1:-1] + pred[2:]
    acc_g = target[:-2] - 2 * target[1:-1] + target[2:]
    return joint_errors(acc_p, acc_g).mean(dim=-1)[1:-1] * fps ** 2


def global_orientations(local: Tensor, parents) -> Tensor:
    """Global joint rotations ``(..., J, 3, 3)`` of local ones: ``G_j = G_parent(j) @ L_j``, the root (parent < 0)
    as it is; ``parents`` lists each joint's parent, parents before children (SMPL's kinematic tree)."""
    out: list[Tensor] = []
    for j, p in enumerate(int(p) for p in parents):
        out.append(local[..., j, :, :] if p < 0 else out[p] @ local[..., j, :, :])
    return torch.stack(out, dim=-3)


def rotation_angles(r: Tensor) -> Tensor:
    """The angle (radians) of rotation matrices ``(..., 3, 3)`` as the norm of ``cv2.Rodrigues``'s vector:
    ``acos`` of the clamped ``(tr - 1) / 2``, and 0 where ``s = ||(r21 - r12, r02 - r20, r10 - r01)|| / 2 < 1e-5``
    with a positive cosine (why: near the identity ``acos`` is all rounding; EMDB's angles are OpenCV's)."""
    vee = torch.stack((r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0], r[..., 1, 0] - r[..., 0, 1]), -1)
    s = torch.sqrt((vee * vee).sum(dim=-1) * 0.25)
    c = ((r[..., 0, 0] + r[..., 1, 1] + r[..., 2, 2] - 1) * 0.5).clamp(-1.0, 1.0)
    return torch.where((s < 1e-5) & (c > 0), torch.zeros_like(c), torch.acos(c))


def joint_angle_error(pred_orients: Tensor, target_orients: Tensor) -> Tensor:
    """Per-frame MPJAE ``(T,)`` in degrees of global joint orientations ``(T, J, 3, 3)`` (EMDB:
    ``angle(R_pred R_gt^T)`` per joint, the mean over the joints)."""
    angles = rotation_angles(pred_orients @ target_orients.transpose(-1, -2))
    return torch.rad2deg(angles).mean(dim=-1)


def camera_errors(pred_joints: Tensor, target_joints: Tensor, pred_verts: Tensor, target_verts: Tensor) -> Tensor:
    """Per-frame ``(MPJPE, PA-MPJPE, PVE)`` ``(T, 3)`` metres, camera frame, each body minus its mid-hip pelvis."""
    pj, pv = align_by_hips(pred_joints, pred_verts)
    gj, gv = align_by_hips(target_joints, target_verts)
    return torch.stack((joint_errors(pj, gj).mean(dim=-1), pa_error(pj, gj), joint_errors(pv, gv).mean(dim=-1)),
                       dim=-1)


#: reported keys, each the pooled mean of its per-frame (per-contact for FS) values
MOTION_METRICS: tuple[str, ...] = ("MPJPE", "PA-MPJPE", "PVE", "ACCEL", "MPJAE", "W-MPJPE100", "WA-MPJPE100",
                                   "RTE", "JITTER", "FS")
#: the keys of each group, in the references' table order: camera (EMDB 1, WHAM), angles (EMDB 1, EMDB's own
#: MPJAE: it needs joint orientations, so it is a group of its own) and world (EMDB 2, WHAM)
FRAME_KEYS: dict[str, tuple[str, ...]] = {"camera": ("PA-MPJPE", "MPJPE", "PVE", "ACCEL"), "angles": ("MPJAE",),
                                          "world": ("WA-MPJPE100", "W-MPJPE100", "RTE", "JITTER", "FS")}
#: the inputs each group's keys read (the other keys of :func:`sequence_values` may be absent)
FRAME_INPUTS: dict[str, tuple[str, ...]] = {"camera": ("joints_cam", "verts_cam"), "angles": ("orients_cam",),
                                            "world": ("joints_world", "transl_world", "feet_world")}
_SCALE = {"MPJPE": 1000.0, "PA-MPJPE": 1000.0, "PVE": 1000.0, "W-MPJPE100": 1000.0, "WA-MPJPE100": 1000.0,
          "FS": 1000.0}


def sequence_values(pred: dict[str, Tensor], target: dict[str, Tensor],
                    frames: tuple[str, ...] = ("camera", "world")) -> dict[str, Tensor]:
    """Every per-frame value of one sequence in the reported units (mm, %, 10 m/s^3). Both dicts hold
    ``joints_cam`` ``(T, 24, 3)``, ``verts_cam`` ``(T, 6890, 3)`` (camera frame), ``joints_world`` ``(T, 24, 3)``,
    ``transl_world`` ``(T, 3)`` and ``feet_world`` ``(T, 4, 3)`` (the :data:`FOOT_VERTICES`) (world frame),
    float64 metres, and ``orients_cam`` ``(T, 9, 3, 3)`` (the camera-frame global orientations of the
    :data:`ANGLE_JOINTS`, angles); only the inputs of the selected ``frames`` (:data:`FRAME_INPUTS`) are read."""
    raw: dict[str, Tensor] = {}
    if "camera" in frames:
        cam = camera_errors(pred["joints_cam"], target["joints_cam"], pred["verts_cam"], target["verts_cam"])
        raw.update({"MPJPE": cam[:, 0], "PA-MPJPE": cam[:, 1], "PVE": cam[:, 2],
                    "ACCEL": accel_error(align_by_hips(pred["joints_cam"])[0], align_by_hips(target["joints_cam"])[0])})
    if "angles" in frames:
        raw["MPJAE"] = joint_angle_error(pred["orients_cam"], target["orients_cam"])
    if "world" in frames:
        w, wa = world_mpjpe(pred["joints_world"], target["joints_world"])
        raw.update({"W-MPJPE100": w, "WA-MPJPE100": wa, "RTE": rte_percent(pred["transl_world"], target["transl_world"]),
                    "JITTER": jitter(pred["joints_world"]),
                    "FS": foot_sliding(pred["feet_world"], target["feet_world"])})
    return {k: raw[k] * _SCALE.get(k, 1.0) for k in MOTION_METRICS if k in raw}


class WorldMotionError(PoseMetric):
    """EMDB camera-frame and world-frame motion errors (module docstring), pooled over all sequences.

    ``frames``: which key groups to score, ``("camera",)`` (EMDB 1: PA-MPJPE MPJPE PVE ACCEL), ``("angles",)``
    (EMDB 1: MPJAE), ``("world",)`` (EMDB 2: WA-MPJPE100 W-MPJPE100 RTE JITTER FS) or several (default: camera
    and world); the inputs of the other groups may then be absent.
    ``update(preds, targets)``: one dict per sequence (keys of :func:`sequence_values`; ``target["sample_id"]`` the
    sequence id). Each value is kept with the id ``sequence id * 2**32 + position``, so the evaluation can drop
    the sequences a DistributedSampler pads in and order the rest: the result does not depend on the number of
    processes or on the order of the sequences.

    Bootstrap unit: the sequence (the frames of one sequence are one take of one person; the world keys are
    aligned per sequence or chunk). A sequence drawn k times weighs its sum and count k times in each pooled mean.
    """

    full_state_update = False
    higher_is_better = False
    is_differentiable = False
    bootstrap_unit = "sequence"
    headline = ("W-MPJPE100", "WA-MPJPE100", "RTE", "MPJPE", "PA-MPJPE", "PVE")

    def __init__(self, frames: tuple[str, ...] | list[str] = ("camera", "world"), **kwargs):
        super().__init__(**kwargs)
        unknown = [f for f in frames if f not in FRAME_KEYS]
        if unknown or not frames:
            raise ValueError(f"WorldMotionError: frames must be some of {tuple(FRAME_KEYS)}, got {tuple(frames)}")
        self.frames = tuple(f for f in FRAME_KEYS if f in frames)
        self.keys = tuple(k for f in self.frames for k in FRAME_KEYS[f])
        self.headline = tuple(k for f in self.frames for k in FRAME_KEYS[f]
                              if k not in ("ACCEL", "MPJAE", "JITTER", "FS"))
        for k in self.keys:
            self.add_state(f"{k}_ids", default=[], dist_reduce_fx="cat")
            self.add_state(f"{k}_values", default=[], dist_reduce_fx="cat")

    def update(self, preds: list[dict[str, Tensor]], targets: list[dict[str, Tensor]]) -> None:
        for pred, target in zip(preds, targets):
            p = {k: v.to(torch.float64) for k, v in pred.items() if k != "sample_id"}
            g = {k: v.to(torch.float64) for k, v in target.items() if k != "sample_id"}
            seq = int(target["sample_id"])
            for k, v in sequence_values(p, g, self.frames).items():
                getattr(self, f"{k}_values").append(v)
                getattr(self, f"{k}_ids").append(seq * 2 ** 32 + torch.arange(len(v), device=v.device))

    def _evaluate(self) -> dict[str, tuple[Tensor, Tensor]]:
        """Per key the (ids, values) of every sequence once, ordered by (sequence id, position)."""
        if is_empty_state(getattr(self, f"{self.keys[0]}_ids")):
            raise ValueError("WorldMotionError: no sequences were scored")
        out = {}
        for k in self.keys:
            ids = getattr(self, f"{k}_ids")
            if is_empty_state(ids):  # e.g. FS when no GT foot is ever in contact
                out[k] = (torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.float64))
                continue
            all_ids = cat_state(ids)
            keep = unique_sorted(all_ids)
            out[k] = (all_ids[keep], cat_state(getattr(self, f"{k}_values"))[keep])
        return out

    def values(self, result: dict[str, tuple[Tensor, Tensor]]) -> dict[str, Tensor]:
        return {k: v.mean() if len(v) else torch.tensor(float("nan"), dtype=torch.float64)
                for k, (_, v) in result.items()}

    def bootstrap(self, result: dict[str, tuple[Tensor, Tensor]]) -> BootstrapStats:
        """Bootstrap over sequences (metrics/bootstrap.py): each key's pooled mean for weights ``(B, n_seq)``,
        from per-sequence sums and counts of its values (a sequence with no value of a key adds nothing)."""
        keys = self.keys
        seqs = torch.unique(torch.cat([ids.cpu() >> 32 for ids, _ in result.values()]))
        sums = torch.zeros(len(seqs), len(keys), dtype=torch.float64)
        counts = torch.zeros(len(seqs), len(keys), dtype=torch.float64)
        for j, k in enumerate(keys):
            ids, v = result[k]
            pos = torch.searchsorted(seqs, ids.cpu() >> 32)
            sums[:, j].index_add_(0, pos, v.cpu())
            counts[:, j].index_add_(0, pos, torch.ones_like(v.cpu()))

        def statistic(w: Tensor) -> Tensor:
            return (w @ sums) / (w @ counts)

        return BootstrapStats(seqs, keys, statistic, self.bootstrap_unit, cost=len(seqs) * len(keys))
