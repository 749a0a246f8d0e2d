"""3D joint errors: MPJPE, P-MPJPE, N-MPJPE, MPJVE (Human3.6M). MPI-INF-3DHP's PCK3D is in metrics/pck3d.py.

Kernels are pure float64 torch functions over ``(..., J, 3)`` poses that return one value per frame (or per
frame pair for velocities); the reference value of a sequence is the mean of those. They reproduce
facebookresearch/VideoPose3D ``common/loss.py`` and the aggregation of its ``run.py`` (``evaluate`` and
``run_evaluation``):

- MPJPE (protocol 1): ``mean_j ||p_j - g_j||``.
- P-MPJPE (protocol 2): MPJPE after a per-frame similarity Procrustes alignment of the prediction to the GT
  (centre both, divide by the Frobenius norms, ``H = X0^T Y0 = U S V^T``, ``R = V U^T`` with the last column
  of V and the last singular value negated when ``det R < 0``, scale ``a = tr(S) |X0| / |Y0|``, translation
  ``t = mu_X - a mu_Y R``; the prediction becomes ``a p R + t``). The same optimum is computed with Horn's
  quaternion method (the top eigenvector of a symmetric 4x4 matrix by Jacobi rotations) instead of an SVD.
- N-MPJPE (protocol 3): per-frame scale only, ``s = mean_j <p_j, g_j> / mean_j <p_j, p_j>``. VideoPose3D's
  ``n_mpjpe`` averages over dim 2 of a ``(1, T, J, 3)`` batch, i.e. over the joints of each frame.
- MPJVE: ``mean_{t,j} ||(p_{t+1,j} - p_{t,j}) - (g_{t+1,j} - g_{t,j})||`` over the T-1 frame pairs of a
  sequence; ``run.py`` weights each sequence's MPJVE by T (not T-1) when it averages an action.

Per action, ``run.py`` weights each (subject, action, camera) sequence by its frame count T and reports the
unweighted mean over the 15 actions. Everything is computed in float64 (VideoPose3D's own float32 path
differs by up to 3e-5 mm).

Two paths, equal to VideoPose3D within a few float64 ulps of the coordinates (tests/metrics/test_mpjpe_cpu.py):
float64 CPU tensors outside autograd go through the compiled kernels of :mod:`metrics.mpjpe_cpu` (one pass per
frame for all four errors: H36MPoseError over 550,000 poses in ~0.5 s of one core, 5x the batched-SVD
reference; ``python -m bench.benchmarks.mpjpe``); CUDA, float32 and autograd tensors through the torch kernels
below (the Jacobi sweeps vectorised over frames, a fixed count).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from metrics import mpjpe_cpu
from metrics.bootstrap import BootstrapStats
from metrics.common import as_id, cat_state, is_empty_state, one_cpu_thread, unique_sorted
from metrics.protocol import PoseMetric, plot_dict

# --------------------------------------------------------------------------------------------- kernels


def joint_errors(pred: Tensor, target: Tensor) -> Tensor:
    """Euclidean distance per joint, ``(..., J, 3) -> (..., J)``."""
    return torch.linalg.vector_norm(pred - target, dim=-1)


def mpjpe(pred: Tensor, target: Tensor) -> Tensor:
    """Per-frame MPJPE ``mean_j ||p_j - g_j||``: ``(..., J, 3) -> (...)``."""
    return joint_errors(pred, target).mean(dim=-1)


_JACOBI_PAIRS = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))
_CHUNK = 8192  # frames per Jacobi pass: keeps the working set in cache
_JACOBI_SWEEPS = 6  # cyclic Jacobi on 4x4 reaches double precision in 4-5 sweeps; a fixed count is deterministic


def _sym_eig4_max(n: Tensor) -> tuple[Tensor, Tensor]:
    """Largest eigenvalue and its unit eigenvector of symmetric ``(..., 4, 4)`` matrices.

    Cyclic Jacobi rotations on the 10 distinct entries held as separate tensors, so every step is one
    elementwise op over all frames: batched LAPACK costs ~14 us per small matrix on CPU (7 s for 550k
    frames), this a fraction of that, and each frame is computed independently of the rest of the batch.
    """
    a = {(i, j): n[..., i, j] for i in range(4) for j in range(i, 4)}
    one, zero = torch.ones_like(n[..., 0, 0]), torch.zeros_like(n[..., 0, 0])
    v = [[one if i == j else zero for j in range(4)] for i in range(4)]

    def get(i: int, j: int) -> Tensor:
        return a[(i, j) if i <= j else (j, i)]

    def put(i: int, j: int, x: Tensor) -> None:
        a[(i, j) if i <= j else (j, i)] = x

    for _ in range(_JACOBI_SWEEPS):
        for p, q in _JACOBI_PAIRS:
            apq = a[(p, q)]
            nonzero = apq != 0
            theta = (a[(q, q)] - a[(p, p)]) / (2 * torch.where(nonzero, apq, one))
            t = torch.where(nonzero, torch.copysign(one, theta) / (theta.abs() + torch.hypot(theta, one)), zero)
            c = torch.rsqrt(t * t + 1)
            s = t * c
            for k in range(4):
                if k != p and k != q:
                    akp, akq = get(k, p), get(k, q)
                    put(k, p, c * akp - s * akq)
                    put(k, q, s * akp + c * akq)
            a[(p, p)] = a[(p, p)] - t * apq
            a[(q, q)] = a[(q, q)] + t * apq
            a[(p, q)] = zero
            for row in v:
                vp, vq = row[p], row[q]
                row[p], row[q] = c * vp - s * vq, s * vp + c * vq
    eig = torch.stack([a[(i, i)] for i in range(4)], dim=-1)
    vecs = torch.stack([torch.stack(row, dim=-1) for row in v], dim=-2)  # columns are eigenvectors
    best = eig.argmax(dim=-1, keepdim=True)
    vec = torch.gather(vecs, -1, best[..., None, :].expand(*vecs.shape[:-1], 1))[..., 0]
    return eig.gather(-1, best)[..., 0], vec


def _quat_to_matrix(q: Tensor) -> Tensor:
    w, x, y, z = q.unbind(-1)
    return torch.stack((
        torch.stack((w * w + x * x - y * y - z * z, 2 * (x * y - w * z), 2 * (x * z + w * y)), -1),
        torch.stack((2 * (x * y + w * z), w * w - x * x + y * y - z * z, 2 * (y * z - w * x)), -1),
        torch.stack((2 * (x * z - w * y), 2 * (y * z + w * x), w * w - x * x - y * y + z * z), -1),
    ), -2)


def best_rotation(h: Tensor) -> tuple[Tensor, Tensor]:
    """Proper rotation ``R`` maximising ``tr(R H)`` and that maximum, for ``H (..., 3, 3)``.

    Equals VideoPose3D's SVD solution (``H = U S V^T``, ``R = V U^T``, last column of V negated when
    ``det R < 0``; maximum ``s1 + s2 + sign(det) s3``), computed with Horn's quaternion method: ``tr(R H) =
    <R, H^T>_F = q^T N q`` for the 4x4 symmetric ``N`` built from ``M = H^T``, so the maximum is the largest
    eigenvalue of N and R the rotation of its eigenvector.
    """
    m = h.transpose(-1, -2)
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    n = torch.stack((
        torch.stack((m00 + m11 + m22, m21 - m12, m02 - m20, m10 - m01), -1),
        torch.stack((m21 - m12, m00 - m11 - m22, m01 + m10, m02 + m20), -1),
        torch.stack((m02 - m20, m01 + m10, -m00 + m11 - m22, m12 + m21), -1),
        torch.stack((m10 - m01, m02 + m20, m12 + m21, -m00 - m11 + m22), -1),
    ), -2)
    lam, q = _sym_eig4_max(n)
    return _quat_to_matrix(q), lam


def _procrustes_chunk(pred: Tensor, target: Tensor) -> Tensor:
    mu_x = target.mean(dim=-2, keepdim=True)
    mu_y = pred.mean(dim=-2, keepdim=True)
    x0 = target - mu_x
    y0 = pred - mu_y
    norm_x = torch.linalg.vector_norm(x0, dim=(-2, -1), keepdim=True)
    norm_y = torch.linalg.vector_norm(y0, dim=(-2, -1), keepdim=True)
    safe_x = torch.where(norm_x > 0, norm_x, torch.ones_like(norm_x))
    safe_y = torch.where(norm_y > 0, norm_y, torch.ones_like(norm_y))
    h = (x0 / safe_x).transpose(-1, -2) @ (y0 / safe_y)
    r, trace = best_rotation(h)
    a = torch.where(norm_y > 0, trace[..., None, None] * norm_x / safe_y, torch.zeros_like(norm_y))
    t = mu_x - a * (mu_y @ r)
    return a * (pred @ r) + t


def _compiled(*tensors: Tensor) -> bool:
    """Whether the compiled CPU kernels apply: float64 CPU tensors outside autograd."""
    return all(t.device.type == "cpu" and t.dtype == torch.float64 and not t.requires_grad for t in tensors)


def procrustes_align_torch(pred: Tensor, target: Tensor) -> Tensor:
    """:func:`procrustes_align` in torch ops (any device, dtype and autograd), frames in chunks of 8192."""
    shape = pred.shape
    p, g = pred.reshape(-1, *shape[-2:]), target.reshape(-1, *shape[-2:])
    if p.shape[0] <= _CHUNK:
        return _procrustes_chunk(p, g).reshape(shape)
    return torch.cat([_procrustes_chunk(p[i:i + _CHUNK], g[i:i + _CHUNK])
                      for i in range(0, p.shape[0], _CHUNK)]).reshape(shape)


def procrustes_align(pred: Tensor, target: Tensor) -> Tensor:
    """Similarity-align each frame of ``pred`` to ``target`` as VideoPose3D's ``p_mpjpe`` does.

    Centre, Frobenius-normalise, best proper rotation of ``H = X0^T Y0`` (:func:`best_rotation`), scale
    ``a = tr * |X0| / |Y0|``, translation ``t = mu_X - a mu_Y R``; returns ``a * pred @ R + t``. A prediction
    collapsed to one point (zero norm) gets scale 0 (the limit), not NaN. float64 CPU tensors outside autograd
    go through the compiled kernel (:mod:`metrics.mpjpe_cpu`), the rest through :func:`procrustes_align_torch`.
    """
    if pred.shape != target.shape or not _compiled(pred, target):
        return procrustes_align_torch(pred, target)
    shape = pred.shape
    p = pred.reshape(-1, *shape[-2:]).contiguous().numpy()
    g = target.reshape(-1, *shape[-2:]).contiguous().numpy()
    out = np.empty_like(p)
    mpjpe_cpu.procrustes_align_frames(p, g, out)
    return torch.from_numpy(out).reshape(shape)


def p_mpjpe(pred: Tensor, target: Tensor) -> Tensor:
    """Per-frame P-MPJPE (protocol 2): MPJPE after :func:`procrustes_align`."""
    return mpjpe(procrustes_align(pred, target), target)


def n_mpjpe(pred: Tensor, target: Tensor) -> Tensor:
    """Per-frame N-MPJPE (protocol 3): MPJPE of ``s p`` with ``s = mean_j <p,g> / mean_j <p,p>`` per frame."""
    pp = torch.einsum("...jc,...jc->...", pred, pred)
    pg = torch.einsum("...jc,...jc->...", target, pred)
    scale = pg / pp  # the 1/J of both means cancels
    return mpjpe(scale[..., None, None] * pred, target)


def velocity_errors(pred: Tensor, target: Tensor) -> Tensor:
    """Per-frame-pair velocity error of a sequence ``(T, J, 3) -> (T-1,)``; MPJVE is their mean."""
    return mpjpe(torch.diff(pred, dim=-3), torch.diff(target, dim=-3))


def mean_velocity_error(pred: Tensor, target: Tensor) -> Tensor:
    """MPJVE of one sequence ``(T, J, 3)``: mean over the T-1 frame pairs and the joints."""
    return velocity_errors(pred, target).mean()


def sequence_errors(pred: Tensor, target: Tensor) -> Tensor:
    """MPJPE, P-MPJPE, N-MPJPE and MPJVE of one sequence ``(T, J, 3)``: the means over its frames (MPJVE over
    its T-1 frame pairs, 0 when T = 1), as a float64 ``(4,)``. On the CPU one compiled pass over the frames
    (:func:`metrics.mpjpe_cpu.frame_errors`), elsewhere the torch kernels above.

    A shifted copy: MPJPE is the shift, the Procrustes alignment and the velocities remove it.

    >>> g = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 2, 0]], dtype=torch.float64).repeat(2, 1, 1)
    >>> [round(x, 6) for x in sequence_errors(g + torch.tensor([3.0, 4, 0], dtype=torch.float64), g).tolist()]
    [5.0, 0.0, 0.890907, 0.0]
    """
    pred, target = pred.to(torch.float64), target.to(torch.float64)
    t = target.shape[0]
    if pred.shape == target.shape and _compiled(pred, target):
        per_frame = np.empty((t, 4))
        mpjpe_cpu.frame_errors(pred.contiguous().numpy(), target.contiguous().numpy(), per_frame)
        f = torch.from_numpy(per_frame)
        vel = f[:-1, 3].mean() if t > 1 else torch.zeros((), dtype=torch.float64)
        return torch.stack((f[:, 0].mean(), f[:, 1].mean(), f[:, 2].mean(), vel))
    vel = mean_velocity_error(pred, target) if t > 1 else torch.zeros((), dtype=torch.float64, device=target.device)
    return torch.stack((mpjpe(pred, target).mean(), p_mpjpe(pred, target).mean(), n_mpjpe(pred, target).mean(), vel))


PRED_ROOT_MODES = ("zero", "keep", "subtract")


def prepare_pred_root(pred: Tensor, mode: str, root: int = 0) -> Tensor:
    """Root handling of a prediction: ``zero`` sets the root joint to 0 (HoT, MixSTE, MotionBERT test code),
    ``keep`` leaves it (VideoPose3D, GLA-GCN), ``subtract`` translates the pose so its root is at 0."""
    if mode == "keep":
        return pred
    if mode == "zero":
        out = pred.clone()
        out[..., root, :] = 0
        return out
    if mode == "subtract":
        return pred - pred[..., root : root + 1, :]
    raise ValueError(f"unknown root mode {mode!r}; expected one of {PRED_ROOT_MODES}")


# --------------------------------------------------------------------------------------------- H36M

H36M_ACTIONS: tuple[str, ...] = (
    "Directions", "Discussion", "Eating", "Greeting", "Phoning", "Photo", "Posing", "Purchases",
    "Sitting", "SittingDown", "Smoking", "Waiting", "WalkDog", "Walking", "WalkTogether",
)
H36M_METRICS: tuple[str, ...] = ("MPJPE", "P-MPJPE", "N-MPJPE", "MPJVE")


class SequenceErrors(NamedTuple):
    """The evaluated states of :class:`H36MPoseError`: per sequence (ascending id) its action index, frame
    count and mean errors ``(n, 4)`` in metres (MPJPE, P-MPJPE, N-MPJPE, MPJVE)."""

    ids: Tensor
    action: Tensor
    frames: Tensor
    errors: Tensor


class H36MPoseError(PoseMetric):
    """MPJPE, P-MPJPE, N-MPJPE and MPJVE (mm) over Human3.6M sequences, per action and their mean.

    ``update(preds, targets)``: lists of dicts, one per sequence; ``pred["joints"]`` and
    ``target["joints"]`` are ``(T, J, 3)`` metres (GT root-relative), ``target["sample_id"]`` the sequence id
    and ``target["action"]`` the action index into ``actions``. Each sequence's four errors are computed in
    float64 at update; the evaluation drops duplicate sequence ids (sampler padding) and sorts by id,
    compute() averages.

    ``aggregation="action"``: per action, sequences weighted by T; headline = unweighted mean over the actions
    present (VideoPose3D ``run_evaluation``). ``"frame"``: all sequences pooled, weighted by T (VideoPose3D
    ``evaluate`` over the whole test set). ``pred_root``: see :func:`prepare_pred_root`.
    """

    full_state_update = False
    higher_is_better = False
    is_differentiable = False
    bootstrap_unit = "sequence"
    headline = ("MPJPE", "P-MPJPE")

    def __init__(self, actions: Sequence[str] = H36M_ACTIONS, pred_root: str = "zero",
                 aggregation: str = "action", root: int = 0, **kwargs):
        super().__init__(**kwargs)
        if pred_root not in PRED_ROOT_MODES:
            raise ValueError(f"pred_root must be one of {PRED_ROOT_MODES}, got {pred_root!r}")
        if aggregation not in ("action", "frame"):
            raise ValueError(f"aggregation must be 'action' or 'frame', got {aggregation!r}")
        self.actions = tuple(actions)
        self.pred_root = pred_root
        self.aggregation = aggregation
        self.root = root
        for name in ("seq_id", "seq_action", "seq_frames"):
            self.add_state(name, default=[], dist_reduce_fx="cat")
        self.add_state("seq_errors", default=[], dist_reduce_fx="cat")  # (n, 4) float64 per-sequence means

    def update(self, preds: list[dict[str, Tensor]], targets: list[dict[str, Tensor]]) -> None:
        with one_cpu_thread(self.device):  # per-sequence copies: torch's thread pool costs more than it saves
            self._update(preds, targets)

    def _update(self, preds: list[dict[str, Tensor]], targets: list[dict[str, Tensor]]) -> None:
        for p, g in zip(preds, targets, strict=True):
            gt = g["joints"].to(torch.float64)
            pr = prepare_pred_root(p["joints"].to(device=gt.device, dtype=torch.float64), self.pred_root, self.root)
            if pr.shape != gt.shape or gt.ndim != 3:
                raise ValueError(f"sequence {int(g['sample_id'])}: prediction {tuple(pr.shape)} vs GT {tuple(gt.shape)}")
            t = gt.shape[0]
            errs = sequence_errors(pr.detach(), gt.detach())
            self.seq_id.append(as_id(g["sample_id"], gt.device))
            self.seq_action.append(as_id(g["action"], gt.device))
            self.seq_frames.append(as_id(t, gt.device))
            self.seq_errors.append(errs.reshape(1, 4))

    def _evaluate(self) -> SequenceErrors:
        """The per-sequence errors, one row per sequence id (padding repeats dropped), by ascending id."""
        if is_empty_state(self.seq_id):
            raise ValueError("H36MPoseError: no sequences were scored")
        ids, act, frames = cat_state(self.seq_id), cat_state(self.seq_action), cat_state(self.seq_frames)
        errs = cat_state(self.seq_errors)
        keep = unique_sorted(ids)
        return SequenceErrors(ids[keep], act[keep], frames[keep], errs[keep].reshape(-1, 4))

    def values(self, result: SequenceErrors) -> dict[str, Tensor]:
        act, frames, errs = result.action, result.frames, result.errors
        w = frames.to(torch.float64)[:, None]
        out: dict[str, Tensor] = {}
        if self.aggregation == "frame":
            pooled = (w * errs).sum(0) / w.sum() * 1000
            for k, name in enumerate(H36M_METRICS):
                out[name] = pooled[k]
        per_action = []
        for a, action in enumerate(self.actions):
            m = act == a
            if bool(m.any()):
                v = (w[m] * errs[m]).sum(0) / w[m].sum() * 1000
                per_action.append(v)
            else:
                v = torch.full((4,), float("nan"), dtype=torch.float64, device=errs.device)
            for k, name in enumerate(H36M_METRICS):
                out[f"{name}/{action}"] = v[k]
        if self.aggregation == "action":
            mean = torch.stack(per_action).mean(0)
            for k, name in enumerate(H36M_METRICS):
                out[name] = mean[k]
        return {k: out[k] for k in (*H36M_METRICS, *[k for k in out if "/" in k])}

    def bootstrap(self, result: SequenceErrors) -> BootstrapStats:
        """Bootstrap over sequences (metrics/bootstrap.py): MPJPE and P-MPJPE for weights ``(B, n_seq)``.

        A sequence drawn k times weighs k x T in its action (or in the pool); an action absent from a
        replicate is left out of the mean over actions, as compute() leaves out actions with no sequence.
        """
        ids, act, frames, errs = result
        errs2 = errs[:, :2].cpu()
        ft = frames.to(torch.float64).cpu()
        onehot = torch.nn.functional.one_hot(act.cpu(), len(self.actions)).to(torch.float64)  # (n, A)
        frame_pool = self.aggregation == "frame"

        def statistic(w: Tensor) -> Tensor:
            wt = w * ft  # (B, n)
            if frame_pool:
                return (wt @ errs2) / wt.sum(1, keepdim=True) * 1000
            num = torch.einsum("bn,na,nk->bak", wt, onehot, errs2)
            den = (wt @ onehot)[..., None]  # (B, A, 1)
            per_action = num / den  # NaN where an action has no drawn sequence
            return torch.nanmean(per_action, dim=1) * 1000

        return BootstrapStats(ids.cpu(), ("MPJPE", "P-MPJPE"), statistic, self.bootstrap_unit,
                              cost=ids.numel() * len(self.actions) * 2)

    def plots(self, result: SequenceErrors) -> list[dict]:
        """MPJPE and P-MPJPE per action (the actions with at least one sequence)."""
        v = self.values(result)
        acts = [a for a in self.actions if not math.isnan(float(v[f"MPJPE/{a}"]))]
        return [plot_dict("Error per action", "bar", "action", "mm", acts,
                          {k: [float(v[f"{k}/{a}"]) for a in acts] for k in ("MPJPE", "P-MPJPE")})]
