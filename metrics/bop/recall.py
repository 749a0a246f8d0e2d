"""BOP19 matching and recall (bop_toolkit_lib/pose_matching.py, score.py, scripts/eval_calc_scores.py), vectorised.

Per (image, object) group, the evaluated estimates (the top ``inst_count`` by score, stable for ties, chosen
before the errors are computed) are visited in decreasing score (ties: file order). Each takes, among the
*valid* GT instances of that object not yet matched, the one with the smallest error strictly below the
threshold; a tie between GT instances goes to the first in the toolkit's iteration order, which is the
string order of the GT ids (its errors JSON is written with sorted string keys: "10" < "2"). A GT is valid
(visib_gt_min = -1) when it is one of the ``inst_count`` most visible instances of a target object (stable
sort by visib_fract, descending). recall = matched valid GTs / valid GTs (0 if none); the toolkit's
n_top = -1 counts every valid GT as a target.

Errors arrive normalised as the toolkit scores them: MSSD (and ADD/ADI) divided by the diameter, MSPD
multiplied by 640 / image width.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["DenseGroups", "dense_groups", "greedy_match", "recall_at", "valid_gt_mask", "vocap_auc"]


def valid_gt_mask(gt_obj_id: Tensor, visib_fract: Tensor, target_obj_id: Tensor, target_inst_count: Tensor) -> Tensor:
    """(G,) bool: the ``inst_count`` most visible GT instances of each target object (visib_gt_min = -1)."""
    G = gt_obj_id.shape[0]
    valid = torch.zeros(G, dtype=torch.bool)
    if G == 0:
        return valid
    order = sorted(range(G), key=lambda g: float(visib_fract[g]), reverse=True)  # stable, as Python's sort
    to_add = {int(o): int(c) for o, c in zip(target_obj_id.tolist(), target_inst_count.tolist())}
    for g in order:
        o = int(gt_obj_id[g])
        if to_add.get(o, 0) > 0:
            valid[g] = True
            to_add[o] -= 1
    return valid


class DenseGroups:
    """Pairs laid out densely: ``err_index[group, est_rank, gt_slot]`` -> pair row (-1 where none).

    ``gt_row[group, gt_slot]`` -> row in the GT table (-1 padding). Slots follow the toolkit's GT order."""

    def __init__(self, err_index: Tensor, gt_row: Tensor):
        self.err_index = err_index
        self.gt_row = gt_row


def dense_groups(pair_group: Tensor, pair_rank: Tensor, pair_gt_row: Tensor, pair_gt_slot: Tensor,
                 n_groups: int, gt_group: Tensor, gt_slot: Tensor) -> DenseGroups:
    """Build the dense layout from flat pair rows (group, est rank, GT slot) and GT rows (group, slot)."""
    R = int(pair_rank.max()) + 1 if pair_rank.numel() else 1
    S = int(gt_slot.max()) + 1 if gt_slot.numel() else 1
    err_index = torch.full((n_groups, R, S), -1, dtype=torch.int64)
    if pair_group.numel():
        err_index[pair_group, pair_rank, pair_gt_slot] = torch.arange(pair_group.shape[0])
    gt_row = torch.full((n_groups, S), -1, dtype=torch.int64)
    if gt_group.numel():
        gt_row[gt_group, gt_slot] = torch.arange(gt_group.shape[0])
    return DenseGroups(err_index, gt_row)


def greedy_match(errors: Tensor, dense: DenseGroups, gt_valid: Tensor, thresholds: Tensor,
                 return_errors: bool = False):
    """Matched GT rows for each threshold: (C, n_gt) bool (and, with ``return_errors``, the matched error per
    GT row, inf where unmatched).

    ``errors`` (n_pairs,) or (n_pairs, C) (one error column per threshold, e.g. VSD with its tau), already
    normalised; ``thresholds`` (C,). Strict ``<`` as the toolkit."""
    C = thresholds.shape[0]
    n_gt = gt_valid.shape[0]
    Gr, R, S = dense.err_index.shape
    if errors.dim() == 1:
        errors = errors[:, None].expand(-1, C)
    if errors.shape[0] == 0:  # no evaluated estimate at all
        none = torch.zeros(C, n_gt, dtype=torch.bool)
        return (none, torch.full((C, n_gt), float("inf"), dtype=torch.float64)) if return_errors else none
    inf = torch.tensor(float("inf"), dtype=torch.float64)
    idx = dense.err_index.clamp(min=0)
    E = torch.where(dense.err_index[None] >= 0, errors.T[:, idx], inf)  # (C, Gr, R, S)
    slot_valid = (dense.gt_row >= 0) & gt_valid[dense.gt_row.clamp(min=0)]  # (Gr, S)
    matched = torch.zeros(C, Gr, S, dtype=torch.bool)
    merr = torch.full((C, Gr, S), float("inf"), dtype=torch.float64)
    th = thresholds.to(torch.float64)[:, None, None]
    for r in range(R):
        e = E[:, :, r, :]  # (C, Gr, S)
        cand = (e < th) & slot_valid[None] & ~matched
        masked = torch.where(cand, e, inf)
        best = masked.argmin(-1)  # first minimal slot on ties (torch.argmin returns the first)
        has = cand.any(-1)
        hit = torch.nn.functional.one_hot(best, S).bool() & has[..., None]
        matched |= hit
        merr = torch.where(hit, e, merr)
    out = torch.zeros(C, n_gt, dtype=torch.bool)
    out_err = torch.full((C, n_gt), float("inf"), dtype=torch.float64)
    rows = dense.gt_row
    ok = rows >= 0
    out[:, rows[ok]] = matched[:, ok]
    out_err[:, rows[ok]] = merr[:, ok]
    return (out, out_err) if return_errors else out


def recall_at(matched: Tensor, gt_valid: Tensor) -> tuple[Tensor, Tensor, int]:
    """(recalls (C,), tp counts (C,), target count): matched valid GTs over valid GTs (0.0 if no target)."""
    targets = int(gt_valid.sum())
    tp = (matched & gt_valid[None]).sum(1)
    rec = tp.to(torch.float64) / targets if targets > 0 else torch.zeros(tp.shape, dtype=torch.float64)
    return rec, tp, targets


def vocap_auc(errors: Tensor, max_threshold: float) -> float:
    """Area under the accuracy-threshold curve on [0, max_threshold], normalised to [0, 1], as the YCB-Video
    toolbox's VOCap (PoseCNN): sorted errors up to the maximum (plot_accuracy_keyframe.m sets only errors
    ``> max_distance`` to inf), monotone precision, rectangle sum. ``inf`` errors (missed targets) count in the
    denominator only."""
    n = errors.shape[0]
    if n == 0:
        return 0.0
    rec = torch.sort(errors.to(torch.float64)).values
    prec = torch.arange(1, n + 1, dtype=torch.float64) / n
    keep = rec <= max_threshold
    rec, prec = rec[keep], prec[keep]
    if rec.numel() == 0:
        return 0.0
    mrec = torch.cat([rec.new_zeros(1), rec, rec.new_tensor([max_threshold])])
    mpre = torch.cat([prec.new_zeros(1), prec, prec[-1:]])
    mpre = torch.cummax(mpre, 0).values
    i = torch.nonzero(mrec[1:] != mrec[:-1]).squeeze(1) + 1
    return float(((mrec[i] - mrec[i - 1]) * mpre[i]).sum() / max_threshold)
