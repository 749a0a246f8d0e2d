"""BOPDetectionAP: the BOP 2024/2025 6D-detection mAP (MSSD, MSPD, MSSD in mm) as a torchmetrics Metric.

Reproduces ``scripts/eval_bop24_pose.py`` of the BOP toolkit @ cea62d6 (with eval_calc_errors.py,
eval_calc_scores.py, pose_matching.py and score.py in ``eval_mode=detection``):

- per image, the ``max_estimates`` (100; 200 for xyzibd) highest-scored estimates are kept (a stable sort by
  score, descending, so ties keep results-file order) and all of them are scored (n_top 0);
- only estimates of objects with a GT instance in the image are evaluated (the others are neither TP nor FP,
  as the toolkit computes no error for them); each gets MSSD and MSPD against every
  GT instance of its object there (every GT, whatever its visibility);
- matching per (image, object) as in BOP19 (recall.py: score order, smallest error strictly below the
  threshold, ties to the first GT in the toolkit's string order of GT ids), with every GT available;
- a GT with visib_fract < ``visib_gt_min`` (0.1) is no target, and an estimate matched to it is neither a true
  nor a false positive; the other estimates are TP if matched, FP if not;
- per object and threshold, the estimates sorted by score (stable: ties keep the order in which the toolkit
  lists them, i.e. by the image's position in test_targets_bop24.json, scenes grouped, then by rank), then
  ``recall = cumsum(TP) / n_targets``, ``precision = cumsum(TP) / (cumsum(TP) + cumsum(FP))``; the curve padded
  with (0, 0) and (1, 0); ``AP = mean over r in linspace(0, 1, 101) of max{precision : recall >= r}``;
- per error type: mean over thresholds per object, then mean over the objects that have targets. MSSD is
  divided by the diameter (thresholds 0.05..0.50), MSSD_mm is not (2..20 mm), MSPD is scaled by 640 / image
  width (5..50 px). ``mAP`` = (mAP_MSSD + mAP_MSPD) / 2 (bop24_mAP), ``bop25_mAP`` = mAP_MSSD.
- bootstrap (metrics/bootstrap.py) over test images: a replicate re-weights each estimate and each target by
  its image's draw count in the same cumulative sums (an undrawn estimate repeats the previous curve point), so
  the replicate that draws every image once is the reported ``mAP``; objects without targets in a replicate
  are left out of its mean, as the toolkit leaves out objects without targets.
- ``average_time_per_image``: the mean over the images of the results file of the time on each image's first
  kept row (score order) with a non-negative time, or -1 if any kept row has a negative time. Images of the
  file that are not test targets count too (``extra_image_times``, given by the reader).

>>> import torch
>>> from metrics.bop.model import ObjectModel
>>> cube = torch.tensor([[x, y, z] for x in (-50., 50.) for y in (-50., 50.) for z in (-50., 50.)])
>>> m = BOPDetectionAP({1: ObjectModel(1, cube, torch.zeros(0, 3, dtype=torch.int64), 173.2, [], [])})
>>> K = torch.tensor([[600., 0, 320], [0, 600., 240], [0, 0, 1]], dtype=torch.float64)
>>> t = torch.tensor([[0., 0., 800.]], dtype=torch.float64)
>>> target = {"sample_id": torch.tensor(1), "K": K, "gt_obj_id": torch.tensor([1]), "gt_R": torch.eye(3)[None].double(),
...           "gt_t": t, "gt_visib_fract": torch.tensor([0.8], dtype=torch.float64)}
>>> preds = {"obj_id": torch.tensor([1, 1]), "R": torch.eye(3).repeat(2, 1, 1).double(),
...          "t": torch.cat([t, t + 300]), "score": torch.tensor([0.5, 0.9], dtype=torch.float64),
...          "time": torch.tensor(0.2, dtype=torch.float64)}
>>> m.update([preds], [target])
>>> {k: round(float(v), 4) for k, v in m.compute().items()}  # FP at 0.9, then TP: precision 0.5 up to recall 1
{'mAP': 0.5, 'mAP_MSSD': 0.5, 'mAP_MSPD': 0.5, 'mAP_MSSD_mm': 0.5, 'bop25_mAP': 0.5, 'average_time_per_image': 0.2}
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from metrics.bootstrap import BootstrapStats
from metrics.bop.ar import BOP19_CORRECT_TH, BOP19_MSPD_TH, _cat_state, _first_of_unique, _str_rank
from metrics.bop.model import ObjectModel
from metrics.bop.object_errors import SymmetricErrors
from metrics.bop.recall import DenseGroups, dense_groups
from metrics.common import one_cpu_thread
from metrics.protocol import PoseMetric, plot_dict

__all__ = ["BOP24_MSSD_MM_TH", "BOPDetectionAP", "average_precision", "keep_top", "match_estimates", "weighted_ap"]

BOP24_MSSD_MM_TH = [float(th) for th in range(2, 21, 2)]  # the toolkit's range(2, 21, 2), in mm
REC_THRS = torch.from_numpy(np.linspace(0.0, 1.0, 101))  # numpy's values: some are one ulp above i / 100
ERRORS = ("mssd", "mssd_mm", "mspd")

_PAIR = ("sample", "est", "obj", "gt", "mssd", "mspd", "diameter", "width")
_EST = ("sample", "est", "obj", "rank", "order", "score")
_GT = ("sample", "index", "obj")
_IMG = ("sample", "time", "time_ok")
_FLOAT = {"mssd", "mspd", "diameter", "width", "score", "visib", "time"}


def _dtype(field: str) -> torch.dtype:
    return torch.float64 if field in _FLOAT else torch.int64


def keep_top(score: Tensor, k: int) -> Tensor:
    """Indices of the ``k`` highest scores in decreasing score order; ties keep their input order (the toolkit's
    stable ``sorted(..., reverse=True)``).

    >>> keep_top(torch.tensor([0.2, 0.9, 0.2, 0.9, 0.5]), 4).tolist()
    [1, 3, 4, 0]
    """
    return torch.sort(-score.to(torch.float64), stable=True).indices[:k]


def weighted_ap(tp: Tensor, fp: Tensor, w_est: Tensor, n_targets: Tensor) -> Tensor:
    """:func:`average_precision` of B weighted replicates at once: ``tp``, ``fp`` (C, N) in score order,
    ``w_est`` (B, N) each estimate's weight, ``n_targets`` (B,) -> (B, C) APs (NaN where ``n_targets`` is 0).

    >>> weighted_ap(torch.tensor([[False, True]]), torch.tensor([[True, False]]),
    ...             torch.tensor([[1.0, 1.0], [0.0, 2.0]], dtype=torch.float64),
    ...             torch.tensor([1.0, 2.0], dtype=torch.float64)).tolist()
    [[0.5], [1.0]]
    """
    B, C, N = w_est.shape[0], tp.shape[0], tp.shape[1]
    tp_c = torch.cumsum(w_est[:, None, :] * tp[None].to(torch.float64), 2)  # (B, C, N)
    fp_c = torch.cumsum(w_est[:, None, :] * fp[None].to(torch.float64), 2)
    n = n_targets.to(torch.float64)[:, None, None]
    rec = tp_c / torch.where(n > 0, n, 1.0)
    prec = torch.nan_to_num(tp_c / (tp_c + fp_c), nan=0.0)  # 0 / 0 before the first drawn estimate: (0, 0)
    zero = torch.zeros(B, C, 1, dtype=torch.float64)
    mrec = torch.cat([zero, rec, zero + 1.0], 2)
    mpre = torch.cat([zero, prec, zero], 2)
    suffix_max = torch.flip(torch.cummax(torch.flip(mpre, (2,)), 2).values, (2,))
    idx = torch.searchsorted(mrec.reshape(B * C, N + 2), REC_THRS.expand(B * C, -1).contiguous(), side="left")
    ap = torch.gather(suffix_max.reshape(B * C, N + 2), 1, idx).mean(1).reshape(B, C)
    return torch.where(n[:, :, 0] > 0, ap, float("nan"))


def average_precision(tp: Tensor, fp: Tensor, n_targets: int) -> Tensor:
    """score.calc_ap of estimates already in score order: (C, N) bool TP and FP masks -> (C,) AP (101 points).

    Rows that are neither (ignored estimates) do not move the curve.

    >>> average_precision(torch.tensor([[False, True]]), torch.tensor([[True, False]]), 1).tolist()
    [0.5]
    """
    C = tp.shape[0]
    tp_c = torch.cumsum(tp.to(torch.float64), 1)
    fp_c = torch.cumsum(fp.to(torch.float64), 1)
    keep = tp | fp  # the toolkit drops ignored estimates before the cumsums
    zero = torch.zeros(C, 1, dtype=torch.float64)
    out = torch.empty(C, dtype=torch.float64)
    for c in range(C):
        t, f = tp_c[c][keep[c]], fp_c[c][keep[c]]
        rec = t / float(n_targets)
        prec = t / (t + f)
        mrec = torch.cat([zero[0], rec, zero[0] + 1.0])
        mpre = torch.cat([zero[0], prec, zero[0]])
        suffix_max = torch.flip(torch.cummax(torch.flip(mpre, (0,)), 0).values, (0,))
        idx = torch.searchsorted(mrec, REC_THRS, side="left")  # mrec is non-decreasing; its last value is 1
        out[c] = suffix_max[idx].mean()
    return out


def match_estimates(errors: Tensor, dense: DenseGroups, thresholds: Tensor) -> Tensor:
    """Greedy matching with every GT available: (C, groups, ranks) -> the GT slot each estimate takes, -1 if none.

    ``errors`` (n_pairs,), normalised as scored; per group the estimates in rank (score) order each take the
    unmatched GT with the smallest error strictly below the threshold, the first slot on ties."""
    C = thresholds.shape[0]
    Gr, R, S = dense.err_index.shape
    out = torch.full((C, Gr, R), -1, dtype=torch.int64)
    if errors.numel() == 0:
        return out
    inf = torch.tensor(float("inf"), dtype=torch.float64)
    E = torch.where(dense.err_index >= 0, errors[dense.err_index.clamp(min=0)], inf)  # (Gr, R, S)
    taken = torch.zeros(C, Gr, S, dtype=torch.bool)
    th = thresholds.to(torch.float64)[:, None, None]
    for r in range(R):
        e = E[None, :, r, :]
        cand = (e < th) & (dense.gt_row >= 0)[None] & ~taken
        best = torch.where(cand, e, inf).argmin(-1)  # first minimal slot on ties
        has = cand.any(-1)
        taken |= torch.nn.functional.one_hot(best, S).bool() & has[..., None]
        out[:, :, r] = torch.where(has, best, -1)
    return out


class BOPDetectionAP(PoseMetric):
    """BOP24 6D-detection mAP over object models ``models`` (obj_id -> ObjectModel). See the module docstring.

    Inputs per image: ``target`` = {"sample_id", "K", "gt_obj_id", "gt_R", "gt_t" (mm), "gt_visib_fract", and
    optionally "target_order" (0-d int64: the image's place in the toolkit's listing; default: the sample id)};
    ``preds`` = {"obj_id", "R", "t" (mm), "score", "time" (0-d; or "row_time" (E,): each row's own)}, rows in
    results-file order.
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False
    bootstrap_unit = "image"
    headline = ("mAP", "mAP_MSSD", "mAP_MSPD")

    def __init__(self, models: dict[int, ObjectModel], image_width: int | None = None, max_estimates: int = 100,
                 visib_gt_min: float = 0.1, max_sym_disc_step: float = 0.01,
                 extra_image_times: Iterable[float] = (), mssd_th: Sequence[float] | None = None,
                 mssd_mm_th: Sequence[float] | None = None, mspd_th: Sequence[float] | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.models = dict(sorted(models.items()))
        self.image_width = image_width
        self.max_estimates = int(max_estimates)
        self.visib_gt_min = float(visib_gt_min)
        self.extra_image_times = [float(x) for x in extra_image_times]
        self.thresholds = {
            "mssd": torch.tensor(BOP19_CORRECT_TH if mssd_th is None else list(mssd_th), dtype=torch.float64),
            "mssd_mm": torch.tensor(BOP24_MSSD_MM_TH if mssd_mm_th is None else list(mssd_mm_th),
                                    dtype=torch.float64),
            "mspd": torch.tensor(BOP19_MSPD_TH if mspd_th is None else list(mspd_th), dtype=torch.float64),
        }
        self._pose_errors = SymmetricErrors(self.models, max_sym_disc_step)
        for table, fields in (("pair", _PAIR), ("est", _EST), ("gt", _GT), ("img", _IMG)):
            for f in fields:
                self.add_state(f"{table}_{f}", default=[], dist_reduce_fx="cat")
        self.add_state("gt_visib", default=[], dist_reduce_fx="cat")

    # ------------------------------------------------------------------------------------------ update
    def update(self, preds: list[dict[str, Tensor]], target: list[dict[str, Tensor]]) -> None:
        rows: dict[str, dict[str, list]] = {t: {f: [] for f in fs} for t, fs in
                                            (("pair", _PAIR), ("est", _EST), ("gt", (*_GT, "visib")), ("img", _IMG))}
        pose: dict[str, list[Tensor]] = {"R_e": [], "t_e": [], "R_g": [], "t_g": [], "K": []}
        for p, t in zip(preds, target):
            sid = int(t["sample_id"])
            order = int(t["target_order"]) if "target_order" in t else sid
            g_obj = t["gt_obj_id"].cpu().long()
            G = int(g_obj.numel())
            rows["gt"]["sample"] += [sid] * G
            rows["gt"]["index"] += list(range(G))
            rows["gt"]["obj"] += g_obj.tolist()
            rows["gt"]["visib"] += t["gt_visib_fract"].cpu().to(torch.float64).tolist()
            score = p["score"].cpu().to(torch.float64)
            kept = keep_top(score, self.max_estimates)
            if kept.numel():  # the image is in the results file: its time counts
                tm = p["row_time"].cpu()[kept] if "row_time" in p else p["time"].cpu().reshape(1).expand(kept.numel())
                known = tm >= 0
                rows["img"]["sample"].append(sid)
                rows["img"]["time"].append(float(tm[known][0]) if bool(known.any()) else -1.0)
                rows["img"]["time_ok"].append(int(bool(known.all())))
            width = float(self.image_width) if self.image_width else 640.0
            e_obj = p["obj_id"].cpu().long()[kept].tolist()
            present = set(g_obj.tolist())
            rank: dict[int, int] = {}
            for j, (k, o) in enumerate(zip(kept.tolist(), e_obj)):
                if o not in present:  # the toolkit evaluates only the objects of the image's GT
                    continue
                if o not in self.models:
                    raise ValueError(f"no object model for GT obj_id {o}")
                r = rank[o] = rank.get(o, -1) + 1
                for f, v in (("sample", sid), ("est", j), ("obj", o), ("rank", r), ("order", order),
                             ("score", float(score[k]))):
                    rows["est"][f].append(v)
                for g in torch.nonzero(g_obj == o).squeeze(1).tolist():
                    for f, v in (("sample", sid), ("est", j), ("obj", o), ("gt", g),
                                 ("diameter", self.models[o].diameter), ("width", width)):
                        rows["pair"][f].append(v)
                    pose["R_e"].append(p["R"][k])
                    pose["t_e"].append(p["t"][k])
                    pose["R_g"].append(t["gt_R"][g])
                    pose["t_g"].append(t["gt_t"][g])
                    pose["K"].append(t["K"])
        n = len(rows["pair"]["sample"])
        err = {"mssd": torch.zeros(0, dtype=torch.float64), "mspd": torch.zeros(0, dtype=torch.float64)}
        if n:
            f64 = {"dtype": torch.float64, "device": self.device}
            stack = {k: torch.stack([x.to(**f64) for x in v]) for k, v in pose.items()}
            with one_cpu_thread(self.device):
                err = self._errors(torch.tensor(rows["pair"]["obj"], dtype=torch.int64, device=self.device), **stack)
        rows["pair"]["mssd"], rows["pair"]["mspd"] = err["mssd"].tolist(), err["mspd"].tolist()
        for table, fields in rows.items():
            for f, v in fields.items():
                dt = _dtype(f)
                getattr(self, f"{table}_{f}").append(torch.tensor(v, dtype=dt, device=self.device))

    def _errors(self, obj: Tensor, R_e: Tensor, t_e: Tensor, R_g: Tensor, t_g: Tensor, K: Tensor) -> dict[str, Tensor]:
        """MSSD (mm; inf where the bounding spheres do not overlap) and MSPD (px) per pair, as eval_calc_errors."""
        return self._pose_errors(obj, R_e, t_e, R_g, t_g, K)

    # ----------------------------------------------------------------------------------------- compute
    def _tables(self) -> dict[str, dict[str, Tensor]]:
        """Every table deduplicated (DDP padding repeats whole samples) and sorted by its key."""
        out = {}
        for table, fields, key in (("pair", _PAIR, ("sample", "est", "gt")), ("est", _EST, ("sample", "est")),
                                   ("gt", (*_GT, "visib"), ("sample", "index")), ("img", _IMG, ("sample",))):
            cols = {f: _cat_state(getattr(self, f"{table}_{f}"), _dtype(f)) for f in fields}
            keep = _first_of_unique(*(cols[k] for k in key))
            out[table] = {f: v[keep] for f, v in cols.items()}
        return out

    def _evaluate(self) -> dict[str, Any]:
        """Matching at every threshold, per-object APs (``per_object``: error -> {obj: (C,) APs}), ``n_targets``,
        the values (``metrics``)."""
        tb = self._tables()
        pair, est, gt = tb["pair"], tb["est"], tb["gt"]
        # (image, object) groups of the GT rows; slots in the toolkit's GT iteration order (string order of ids)
        key = torch.stack([gt["sample"], gt["obj"]], 1)
        groups, gt_group = (torch.unique(key, dim=0, return_inverse=True) if key.shape[0]
                            else (key.reshape(0, 2), torch.zeros(0, dtype=torch.int64)))
        maxg = int(gt["index"].max()) + 1 if gt["index"].numel() else 1
        order = _first_of_unique(gt_group, _str_rank(maxg)[gt["index"]])
        gt_slot = torch.empty_like(gt_group)
        if order.numel():
            g_sorted = gt_group[order]
            first = torch.ones_like(g_sorted, dtype=torch.bool)
            first[1:] = g_sorted[1:] != g_sorted[:-1]
            pos = torch.arange(order.shape[0])
            gt_slot[order] = pos - torch.cummax(torch.where(first, pos, torch.zeros_like(pos)), 0).values
        gkey = gt["sample"] * maxg + gt["index"]
        gsort = torch.argsort(gkey)
        prow = gsort[torch.searchsorted(gkey[gsort], pair["sample"] * maxg + pair["gt"])]
        # each pair's estimate rank, from the estimate table
        ekey_all = est["sample"] * (self.max_estimates + 1) + est["est"]
        esort = torch.argsort(ekey_all)
        erow = esort[torch.searchsorted(ekey_all[esort], pair["sample"] * (self.max_estimates + 1) + pair["est"])]
        dense = dense_groups(gt_group[prow], est["rank"][erow], prow, gt_slot[prow], groups.shape[0], gt_group,
                             gt_slot)
        # each estimate's group: the group of its (sample, obj)
        gkey2 = groups[:, 0] * (1 << 20) + groups[:, 1] if groups.numel() else groups.new_zeros(0)
        est_group = torch.searchsorted(gkey2, est["sample"] * (1 << 20) + est["obj"])
        visible = gt["visib"] >= self.visib_gt_min
        n_targets = {o: int((visible & (gt["obj"] == o)).sum()) for o in torch.unique(gt["obj"]).tolist()}
        # per object, estimates in the toolkit's score order: score desc, then listing order (image, rank)
        sort = _first_of_unique(-est["score"], est["order"], est["sample"], est["obj"], est["rank"])
        errors = {"mssd": pair["mssd"] / pair["diameter"], "mssd_mm": pair["mssd"],
                  "mspd": pair["mspd"] * (640.0 / pair["width"])}
        per_object: dict[str, dict[int, Tensor]] = {}
        boot: dict[str, dict[int, tuple[Tensor, Tensor, Tensor]]] = {}  # error -> obj -> (estimates, tp, fp)
        for name in ERRORS:
            th = self.thresholds[name]
            slot = match_estimates(errors[name], dense, th)[:, est_group, est["rank"]] if est["sample"].numel() \
                else torch.zeros(th.shape[0], 0, dtype=torch.int64)  # (C, n_est)
            row = dense.gt_row[est_group[None].expand_as(slot), slot.clamp(min=0)]
            matched = slot >= 0
            tp = matched & visible[row.clamp(min=0)]
            fp = ~matched
            per_object[name], boot[name] = {}, {}
            for o, n in sorted(n_targets.items()):
                if n == 0:
                    continue
                mine = sort[est["obj"][sort] == o]
                per_object[name][o] = average_precision(tp[:, mine], fp[:, mine], n)
                boot[name][o] = (mine, tp[:, mine], fp[:, mine])
        maps = {name: (torch.stack([ap.mean() for ap in per_object[name].values()]).mean() if per_object[name]
                       else torch.tensor(float("nan"), dtype=torch.float64)) for name in ERRORS}
        img = tb["img"]
        times = img["time"].tolist() + [x for x in self.extra_image_times if x >= 0]
        ok = bool(img["time_ok"].all()) and all(x >= 0 for x in self.extra_image_times)
        avg = (sum(times) / len(times) if times else float("nan")) if ok else -1.0
        metrics = {"mAP": (maps["mssd"] + maps["mspd"]) / 2.0, "mAP_MSSD": maps["mssd"], "mAP_MSPD": maps["mspd"],
                   "mAP_MSSD_mm": maps["mssd_mm"], "bop25_mAP": maps["mssd"],
                   "average_time_per_image": torch.tensor(avg, dtype=torch.float64)}
        return {"metrics": metrics, "per_object": per_object, "n_targets": n_targets,
                "thresholds": {k: v.tolist() for k, v in self.thresholds.items()}, "boot": boot,
                "est_sample": est["sample"], "gt_sample": gt["sample"], "gt_obj": gt["obj"], "gt_visible": visible}

    def compute_details(self) -> dict[str, Any]:
        """The cached evaluation: ``per_object`` APs per threshold (the toolkit's scores files), ``n_targets``."""
        return self.evaluate()

    def values(self, result: dict[str, Any]) -> dict[str, Tensor]:
        return {k: v.to(torch.float64) for k, v in result["metrics"].items()}

    def bootstrap(self, result: dict[str, Any]) -> BootstrapStats:
        """Bootstrap over test images of ``mAP`` (see the module docstring); units = images with GT."""
        ids = torch.unique(result["gt_sample"])
        est_unit = torch.searchsorted(ids, result["est_sample"])
        gt_unit = torch.searchsorted(ids, result["gt_sample"])
        targets = {o: gt_unit[result["gt_visible"] & (result["gt_obj"] == o)] for o in result["boot"]["mssd"]}
        boot = {name: result["boot"][name] for name in ("mssd", "mspd")}

        def statistic(w: Tensor) -> Tensor:
            maps = []
            for name in ("mssd", "mspd"):
                per_obj = [weighted_ap(tp, fp, w[:, est_unit[mine]], w[:, targets[o]].sum(1)).mean(1)
                           for o, (mine, tp, fp) in boot[name].items()]
                maps.append(torch.stack(per_obj, 1).nanmean(1) if per_obj
                            else torch.full((w.shape[0],), float("nan"), dtype=torch.float64))
            return ((maps[0] + maps[1]) / 2.0)[:, None]

        longest = max([int(m.numel()) for b in boot.values() for m, _, _ in b.values()] or [1])
        cost = 4 * max(int(self.thresholds["mssd"].numel()), int(self.thresholds["mspd"].numel())) * (longest + 2)
        return BootstrapStats(ids, ("mAP",), statistic, self.bootstrap_unit, cost)

    def plots(self, result: dict[str, Any]) -> list[dict]:
        """Mean AP over objects against the correctness threshold, per error."""
        out = []
        for name, title, xlabel in (("mssd", "MSSD AP", "threshold (x diameter)"),
                                    ("mssd_mm", "MSSD AP (mm)", "threshold (mm)"),
                                    ("mspd", "MSPD AP", "threshold (px, 640 wide)")):
            aps = result["per_object"][name]
            if aps:
                mean = torch.stack(list(aps.values())).mean(0).tolist()
                out.append(plot_dict(title, "line", xlabel, "AP", result["thresholds"][name], {name.upper(): mean}))
        return out
