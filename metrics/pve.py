"""Mesh errors of the 3DPW protocol: MPJPE and PA-MPJPE on regressed joints, PVE and PA-PVE (mm).

The protocol of nkolot/SPIN ``eval.py`` (followed by HMR2.0, TokenHMR, 4D-Humans and most mesh papers):

- joints ``J = J_regressor_h36m (17x6890) @ V`` for GT and prediction alike; pelvis = H36M joint 0;
  the 14 LSP joints ``H36M_TO_J14`` minus the pelvis. MPJPE ``mean_j ||p_j - g_j||`` and PA-MPJPE (MPJPE after
  a per-frame similarity Procrustes of the prediction onto the GT: SPIN's ``reconstruction_error``, the same
  optimum as :func:`metrics.mpjpe.procrustes_align`).
- PVE (MPVPE) ``mean_v ||p_v - g_v||`` over the 6890 vertices. ``pve_alignment="pelvis"`` (default, TokenHMR's
  ``Evaluator``): both vertex sets minus their own pelvis joint first, so a global translation error is not
  counted. ``"none"`` (POCO; mmhuman3d ``vertice_pve(alignment='none')``): raw camera-frame vertices, for methods
  that predict the absolute position.
- PA-PVE: PVE after a per-frame similarity Procrustes of the predicted vertices onto the GT vertices.

Joint sets (``joints=``): ``"h36m14"`` (default, the SPIN protocol above) or ``"smpl24"``: all 24 SMPL joints
``J = J_regressor_smpl (24x6890) @ V`` with the pelvis = SMPL joint 0 (Jeff-sjtu/HybrIK ``PW3D.evaluate_xyz_24``;
the regressor is the neutral SMPL model's own, as TokenHMR ``eval.py`` builds ``J_regressor_24_SMPL``).

The pelvis for PVE is the same pelvis joint (H36M joint 0, or SMPL joint 0 with ``smpl24``) as for the joints (shared/PROTOCOLS.md; TokenHMR's ``Evaluator``
subtracts its keypoint ``pelvis_ind`` from both vertex sets the same way). ``J_regressor_h36m`` rows sum to
0.9996..1.00005, not 1, so a pure translation of a mesh changes pelvis-relative joints slightly (0.03 mm per
metre): SPIN builds the GT at the origin and a camera-frame prediction carries that residue; we follow SPIN.
Batched GEMMs may round differently for different batch sizes, so the few matrix products are taken per frame
(:func:`_per_frame_mm`): a frame's errors are bit-identical whatever batch it comes in.

Every value is per frame, in float64; the reported value is the mean over all frames (pooled) x 1000.
"""
from __future__ import annotations

import torch
from torch import Tensor

from metrics.common import cat_state, is_empty_state, unique_sorted
from metrics.mpjpe import best_rotation, joint_errors, mpjpe
from metrics.protocol import PoseMetric

#: H36M joints (of the 17 regressed by J_regressor_h36m) in the 14-joint LSP order SPIN evaluates.
H36M_TO_J14: tuple[int, ...] = (6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10)
PELVIS = 0
MESH_METRICS: tuple[str, ...] = ("MPJPE", "PA-MPJPE", "PVE", "PA-PVE")
PVE_ALIGNMENTS = ("pelvis", "none")
#: joint set -> (regressor rows, scored joint indices, pelvis index); the regressor comes from the caller
JOINT_SETS: dict[str, tuple[int, tuple[int, ...], int]] = {
    "h36m14": (17, H36M_TO_J14, PELVIS),
    "smpl24": (24, tuple(range(24)), 0),
}


def _per_frame_mm(a: Tensor, b: Tensor) -> Tensor:
    """``a[i] @ b[i]`` frame by frame over ``(B, n, k) x (B, k, m)`` (``a`` may be one 2-D matrix for all).

    A batched matmul may pick a different GEMM path for a different batch size, changing the last bits; one
    2-D product per frame is the same whatever batch the frame arrives in (results must not depend on it).
    """
    if a.ndim == 2:
        return torch.stack([a @ bi for bi in b.unbind(0)])
    return torch.stack([ai @ bi for ai, bi in zip(a.unbind(0), b.unbind(0))])


def regress_joints(vertices: Tensor, j_regressor: Tensor) -> Tensor:
    """``(B, V, 3)`` vertices -> ``(B, K, 3)`` joints with a ``(K, V)`` regressor."""
    return _per_frame_mm(j_regressor.to(vertices), vertices)


def similarity_align(pred: Tensor, target: Tensor) -> Tensor:
    """Per-frame similarity Procrustes of ``pred`` onto ``target`` ``(B, N, 3)``: SPIN's
    ``compute_similarity_transform`` optimum, computed as :func:`metrics.mpjpe.procrustes_align` does (Horn's
    quaternion kernel :func:`metrics.mpjpe.best_rotation`, elementwise over frames), with the two 3x3 products
    taken frame by frame (:func:`_per_frame_mm`) so a frame's value does not depend on its batch."""
    mu_x, mu_y = target.mean(dim=-2, keepdim=True), pred.mean(dim=-2, keepdim=True)
    x0, y0 = target - mu_x, pred - mu_y
    norm_x = torch.linalg.vector_norm(x0, dim=(-2, -1), keepdim=True)
    norm_y = torch.linalg.vector_norm(y0, dim=(-2, -1), keepdim=True)
    safe_x = torch.where(norm_x > 0, norm_x, torch.ones_like(norm_x))
    safe_y = torch.where(norm_y > 0, norm_y, torch.ones_like(norm_y))
    h = _per_frame_mm((x0 / safe_x).transpose(-1, -2), y0 / safe_y)
    r, trace = best_rotation(h)
    a = torch.where(norm_y > 0, trace[..., None, None] * norm_x / safe_y, torch.zeros_like(norm_y))
    return a * _per_frame_mm(pred, r) + (mu_x - a * _per_frame_mm(mu_y, r))


def pa_error(pred: Tensor, target: Tensor) -> Tensor:
    """Per-frame mean point error after :func:`similarity_align` (PA-MPJPE, PA-PVE): ``(B, N, 3) -> (B,)``."""
    return joint_errors(similarity_align(pred, target), target).mean(dim=-1)


def pelvis_relative_joints(vertices: Tensor, j_regressor: Tensor, joints: str = "h36m14") -> tuple[Tensor, Tensor]:
    """The scored joints of ``joints`` (a :data:`JOINT_SETS` name) minus the pelvis ``(B, J, 3)``, and the
    pelvis ``(B, 1, 3)``.

    >>> v = torch.zeros(1, 24, 3, dtype=torch.float64); v[0, :, 0] = torch.arange(24.0) + 1
    >>> j, p = pelvis_relative_joints(v, torch.eye(24, dtype=torch.float64), "smpl24")  # joint k = vertex k
    >>> tuple(j.shape), float(p[0, 0, 0]), float(j[0, 5, 0])
    ((1, 24, 3), 1.0, 5.0)
    """
    _, ids, root = _joint_set(joints, j_regressor)
    regressed = regress_joints(vertices, j_regressor)
    pelvis = regressed[..., root : root + 1, :]
    return regressed[..., list(ids), :] - pelvis, pelvis


def pelvis_relative_j14(vertices: Tensor, j_regressor: Tensor) -> tuple[Tensor, Tensor]:
    """The 14 LSP joints minus the pelvis ``(B, 14, 3)``, and the pelvis ``(B, 1, 3)`` (SPIN eval.py)."""
    return pelvis_relative_joints(vertices, j_regressor, "h36m14")


def _joint_set(joints: str, j_regressor: Tensor) -> tuple[int, tuple[int, ...], int]:
    """:data:`JOINT_SETS` entry of ``joints``, checked against the regressor's number of rows."""
    if joints not in JOINT_SETS:
        raise ValueError(f"joints must be one of {tuple(JOINT_SETS)}, got {joints!r}")
    rows, ids, root = JOINT_SETS[joints]
    if j_regressor.shape[0] != rows:
        raise ValueError(f"joints={joints!r} needs a {rows}-row regressor, got {tuple(j_regressor.shape)}")
    return rows, ids, root


def pve(pred: Tensor, target: Tensor) -> Tensor:
    """Per-frame vertex error ``mean_v ||p_v - g_v||``: ``(..., V, 3) -> (...)``."""
    return joint_errors(pred, target).mean(dim=-1)


def mesh_errors(pred: Tensor, target: Tensor, j_regressor: Tensor, pve_alignment: str = "pelvis",
                target_offset: Tensor | None = None, joints: str = "h36m14") -> Tensor:
    """Per-frame ``(MPJPE, PA-MPJPE, PVE, PA-PVE)`` in metres, ``(B, V, 3) x 2 -> (B, 4)`` float64.

    ``target_offset`` ``(B, 3)``: the translation from ``target`` to the full camera-frame GT mesh, used only
    by the unaligned PVE (SPIN's GT mesh is built at the origin; every other value is translation-free).
    ``joints``: a :data:`JOINT_SETS` name matching ``j_regressor`` (17 rows for ``h36m14``, 24 for ``smpl24``).
    """
    if pve_alignment not in PVE_ALIGNMENTS:
        raise ValueError(f"pve_alignment must be one of {PVE_ALIGNMENTS}, got {pve_alignment!r}")
    pred, target = pred.to(torch.float64), target.to(torch.float64)
    pj, pp = pelvis_relative_joints(pred, j_regressor, joints)
    gj, gp = pelvis_relative_joints(target, j_regressor, joints)
    if pve_alignment == "pelvis":
        vertex_err = pve(pred - pp, target - gp)
    else:
        full = target if target_offset is None else target + target_offset.to(target)[..., None, :]
        vertex_err = pve(pred, full)
    return torch.stack((mpjpe(pj, gj), pa_error(pj, gj), vertex_err, pa_error(pred, target)), dim=-1)


class MeshError(PoseMetric):
    """MPJPE, PA-MPJPE, PVE and PA-PVE (mm) over frames, pooled (3DPW protocol, see the module docstring).

    ``j_regressor``: ``J_regressor_h36m`` (17 x 6890) with ``joints="h36m14"`` (default), or the SMPL model's own
    ``J_regressor`` (24 x 6890) with ``joints="smpl24"``.

    ``update(preds, targets)``: one dict per frame; ``pred["vertices"]`` ``(6890, 3)`` metres camera frame,
    ``target["vertices"]`` the GT mesh, ``target["offset"]`` ``(3,)`` (optional, for ``pve_alignment="none"``)
    and ``target["sample_id"]``. Per-frame errors are kept with their ids; the evaluation drops duplicate ids
    (sampler padding) and sorts, compute() averages, so batch size, order and process count cannot change a
    result.
    """

    full_state_update = False
    higher_is_better = False
    is_differentiable = False
    bootstrap_unit = None  # no interval for 3DPW yet
    headline = ("MPJPE", "PA-MPJPE", "PVE", "PA-PVE")

    def __init__(self, j_regressor: Tensor, pve_alignment: str = "pelvis", joints: str = "h36m14", **kwargs):
        super().__init__(**kwargs)
        if pve_alignment not in PVE_ALIGNMENTS:
            raise ValueError(f"pve_alignment must be one of {PVE_ALIGNMENTS}, got {pve_alignment!r}")
        _joint_set(joints, torch.as_tensor(j_regressor))
        self.pve_alignment, self.joints = pve_alignment, joints
        self.register_buffer("j_regressor", torch.as_tensor(j_regressor, dtype=torch.float64), persistent=False)
        self.add_state("frame_id", default=[], dist_reduce_fx="cat")
        self.add_state("frame_errors", default=[], dist_reduce_fx="cat")  # (n, 4) metres

    def update(self, preds: list[dict[str, Tensor]], targets: list[dict[str, Tensor]]) -> None:
        if not targets:
            return
        gt = torch.stack([g["vertices"] for g in targets]).to(torch.float64)
        pr = torch.stack([p["vertices"] for p in preds]).to(device=gt.device, dtype=torch.float64)
        if pr.shape != gt.shape:
            raise ValueError(f"prediction {tuple(pr.shape)} vs GT {tuple(gt.shape)}")
        offset = None
        if self.pve_alignment == "none" and "offset" in targets[0]:
            offset = torch.stack([g["offset"] for g in targets]).to(gt)
        self.frame_errors.append(mesh_errors(pr, gt, self.j_regressor, self.pve_alignment, offset, self.joints))
        self.frame_id.append(torch.stack([torch.as_tensor(g["sample_id"], dtype=torch.int64).reshape(())
                                          for g in targets]).to(gt.device))

    def _evaluate(self) -> Tensor:
        """Per-frame errors ``(n, 4)`` in metres, one row per frame id (padding repeats dropped), by id."""
        if is_empty_state(self.frame_id):
            raise ValueError("MeshError: no frames were scored")
        return cat_state(self.frame_errors).reshape(-1, 4)[unique_sorted(cat_state(self.frame_id))]

    def values(self, result: Tensor) -> dict[str, Tensor]:
        mean = result.mean(0) * 1000
        return {name: mean[k] for k, name in enumerate(MESH_METRICS)}
