"""BOPAR: the BOP Challenge 2019 average recall (AR_VSD, AR_MSSD, AR_MSPD, AR) as a torchmetrics Metric.

Reproduces ``scripts/eval_bop19_pose.py`` of the BOP toolkit (n_top = -1, visib_gt_min = -1, VSD bop19 with
delta 15 mm and taus 0.05..0.5, step cost, errors normalised by the diameter; correct_th 0.05..0.5 for VSD and
MSSD (x diameter), 5..50 px for MSPD (x 640 / image width); AR = mean of the three averages).

update() does the heavy work per image (depth maps are big): it selects the evaluated estimates (top
``inst_count`` by score per target object, stable for ties, i.e. file order) and computes every error of each
evaluated estimate against every GT instance of its object in the image. It stores, in ``cat`` states, one row
per (estimate, GT) pair plus one row per GT instance, all carrying the ``sample_id``. The evaluation (run once
per synced state, metrics/protocol.py) drops duplicate rows (DDP padding repeats whole samples), sorts, and
runs the matching and recall of recall.py, so the result does not depend on batch size, order or number of
processes; compute(), the bootstrap and the curves read it.

Inputs (one dict per test image listed in test_targets_bop19.json):
    target = {"sample_id", "scene_id", "im_id": int64 0-d, "K": (3,3) float64, "depth": (H,W) float32 mm
              (0 = missing), "gt_obj_id": (G,), "gt_R": (G,3,3), "gt_t": (G,3) mm, "gt_visib_fract": (G,),
              "target_obj_id": (T,), "target_inst_count": (T,)}
    preds  = {"obj_id": (E,), "R": (E,3,3), "t": (E,3) mm, "score": (E,)}   rows in results-file order

Extra keys: ``ADD`` and ``ADD-S`` (recall at 0.1 x diameter with the same matching; the toolkit's 'add' and
'adi' errors), ``ADD-S_AUC`` and ``ADD(-S)_AUC`` (YCB-Video style area under the accuracy curve up to 100 mm,
VOCap; each valid GT takes the error of the estimate greedily matched to it up to 100 mm, else counts as a miss;
ADD(-S) uses ADD-S for objects with any symmetry in models_info, ADD otherwise).
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torchmetrics.utilities import dim_zero_cat

from metrics.bootstrap import BootstrapStats
from metrics.bop import pose_error
from metrics.bop.model import ObjectModel
from metrics.bop.object_errors import SymmetricErrors
from metrics.bop.recall import dense_groups, greedy_match, recall_at, valid_gt_mask, vocap_auc
from metrics.common import one_cpu_thread
from metrics.protocol import PoseMetric, plot_dict
from metrics.render.raster import MeshBank

__all__ = ["BOP19_CORRECT_TH", "BOP19_MSPD_TH", "BOP19_TAUS", "BOPAR"]

# The toolkit's np.arange(0.05, 0.51, 0.05) and np.arange(5, 51, 5), value for value.
BOP19_TAUS = [0.05 + i * 0.05 for i in range(10)]
BOP19_CORRECT_TH = list(BOP19_TAUS)
BOP19_MSPD_TH = [5.0 * (i + 1) for i in range(10)]

_PAIR_FIELDS = ("sample", "est_index", "est_id", "rank", "score", "gt", "obj", "mssd", "mspd", "add", "adi",
                "diameter", "width")
_GT_FIELDS = ("sample", "index", "obj", "valid")


def _dtype(field: str) -> torch.dtype:
    return torch.float64 if field in ("score", "diameter", "width", "mssd", "mspd", "add", "adi") else torch.int64


def _cat_state(state, dtype: torch.dtype, tail: tuple[int, ...] = ()) -> Tensor:
    """A cat state as one CPU tensor: a list before sync (maybe empty), a tensor after."""
    if isinstance(state, Tensor):
        return state.cpu().reshape(-1, *tail)
    if not state:
        return torch.zeros(0, *tail, dtype=dtype)
    return dim_zero_cat(state).cpu().reshape(-1, *tail)


def _str_rank(n: int) -> Tensor:
    """rank[i] = position of i in the string order of 0..n-1 (the toolkit iterates GT ids as sorted strings)."""
    order = sorted(range(n), key=str)
    rank = torch.empty(n, dtype=torch.int64)
    rank[torch.tensor(order, dtype=torch.int64)] = torch.arange(n)
    return rank


def _first_of_unique(*keys: Tensor) -> Tensor:
    """Indices of the first row of each distinct key tuple, in lexicographic key order."""
    if keys[0].numel() == 0:
        return torch.zeros(0, dtype=torch.int64)
    order = torch.arange(keys[0].shape[0])
    for k in reversed(keys):  # stable sorts from the last key to the first = lexicographic
        order = order[torch.sort(k[order], stable=True).indices]
    sk = torch.stack([k[order] for k in keys], 1)
    keep = torch.ones(order.shape[0], dtype=torch.bool)
    keep[1:] = (sk[1:] != sk[:-1]).any(1)
    return order[keep]


class BOPAR(PoseMetric):
    """BOP19 average recall over object models ``models`` (obj_id -> ObjectModel). See the module docstring."""

    full_state_update = False
    higher_is_better = True
    is_differentiable = False
    bootstrap_unit = "image"
    headline = ("AR", "AR_VSD", "AR_MSSD", "AR_MSPD")

    def __init__(self, models: dict[int, ObjectModel], vsd_delta: float = 15.0, vsd_taus=None, vsd_th=None,
                 mssd_th=None, mspd_th=None, image_width: int | None = None, max_sym_disc_step: float = 0.01,
                 extras: bool = True, **kwargs: Any):
        super().__init__(**kwargs)
        self.models = dict(sorted(models.items()))
        self.vsd_delta = float(vsd_delta)
        self.vsd_taus = torch.tensor(BOP19_TAUS if vsd_taus is None else list(vsd_taus), dtype=torch.float64)
        self.vsd_th = torch.tensor(BOP19_CORRECT_TH if vsd_th is None else list(vsd_th), dtype=torch.float64)
        self.mssd_th = torch.tensor(BOP19_CORRECT_TH if mssd_th is None else list(mssd_th), dtype=torch.float64)
        self.mspd_th = torch.tensor(BOP19_MSPD_TH if mspd_th is None else list(mspd_th), dtype=torch.float64)
        self.image_width = image_width  # None: each image's own width (== the dataset's im_size in BOP)
        self.extras = extras
        self._mesh_index = {oid: i for i, oid in enumerate(self.models)}
        self._pose_errors = SymmetricErrors(self.models, max_sym_disc_step)
        self._banks: dict[str, MeshBank] = {}
        for f in _PAIR_FIELDS:
            self.add_state(f"pair_{f}", default=[], dist_reduce_fx="cat")
        self.add_state("pair_vsd", default=[], dist_reduce_fx="cat")
        for f in _GT_FIELDS:
            self.add_state(f"gt_{f}", default=[], dist_reduce_fx="cat")

    # ------------------------------------------------------------------------------------------ update
    def _bank(self, device: torch.device) -> MeshBank:
        key = str(device)
        if key not in self._banks:
            self._banks[key] = MeshBank.from_meshes([(m.vertices, m.faces) for m in self.models.values()], device)
        return self._banks[key]

    def update(self, preds: list[dict[str, Tensor]], target: list[dict[str, Tensor]]) -> None:
        rows: dict[str, list] = {f: [] for f in _PAIR_FIELDS}
        pose = {"R_e": [], "t_e": [], "R_g": [], "t_g": [], "K": [], "image": []}
        gts: dict[str, list] = {f: [] for f in _GT_FIELDS}
        depths, hw = [], []
        dev = target[0]["depth"].device if target else torch.device("cpu")
        for i, (p, t) in enumerate(zip(preds, target)):
            sid = int(t["sample_id"])
            g_obj = t["gt_obj_id"].cpu().long()
            valid = valid_gt_mask(g_obj, t["gt_visib_fract"].cpu(), t["target_obj_id"].cpu(),
                                  t["target_inst_count"].cpu())
            G = g_obj.shape[0]
            gts["sample"] += [sid] * G
            gts["index"] += list(range(G))
            gts["obj"] += g_obj.tolist()
            gts["valid"] += valid.long().tolist()
            H, W = t["depth"].shape[-2:]
            depths.append(t["depth"].reshape(-1).to(dev, torch.float32))
            hw.append((H, W))
            width = float(self.image_width) if self.image_width else float(W)
            e_obj = p["obj_id"].cpu().long().tolist()
            e_score = p["score"].cpu().to(torch.float64).tolist()
            for o, n in zip(t["target_obj_id"].tolist(), t["target_inst_count"].tolist()):
                if o not in self.models:
                    raise ValueError(f"no object model for target obj_id {o}")
                mine = [k for k, eo in enumerate(e_obj) if eo == o]  # file order
                est_id = {k: j for j, k in enumerate(mine)}
                top = sorted(mine, key=lambda k: e_score[k], reverse=True)[:n]  # stable: ties keep file order
                g_idx = [g for g in range(G) if int(g_obj[g]) == o]
                for rank, k in enumerate(top):
                    for g in g_idx:
                        for f, v in (("sample", sid), ("est_index", k), ("est_id", est_id[k]), ("rank", rank),
                                     ("score", e_score[k]), ("gt", g), ("obj", o),
                                     ("diameter", self.models[o].diameter), ("width", width)):
                            rows[f].append(v)
                        pose["R_e"].append(p["R"][k])
                        pose["t_e"].append(p["t"][k])
                        pose["R_g"].append(t["gt_R"][g])
                        pose["t_g"].append(t["gt_t"][g])
                        pose["K"].append(t["K"])
                        pose["image"].append(i)
        for f in _GT_FIELDS:
            getattr(self, f"gt_{f}").append(torch.tensor(gts[f], dtype=torch.int64, device=self.device))
        n = len(rows["sample"])
        T = self.vsd_taus.shape[0]
        if n == 0:  # still append (empty) rows: every rank must hold one tensor per state for the DDP gather
            for f in _PAIR_FIELDS:
                getattr(self, f"pair_{f}").append(torch.zeros(0, dtype=_dtype(f), device=self.device))
            self.pair_vsd.append(torch.zeros(0, T, dtype=torch.float64, device=self.device))
            return
        f64 = {"dtype": torch.float64, "device": dev}
        R_e = torch.stack(pose["R_e"]).to(**f64).reshape(n, 3, 3)
        t_e = torch.stack(pose["t_e"]).to(**f64).reshape(n, 3)
        R_g = torch.stack(pose["R_g"]).to(**f64).reshape(n, 3, 3)
        t_g = torch.stack(pose["t_g"]).to(**f64).reshape(n, 3)
        K = torch.stack(pose["K"]).to(**f64).reshape(n, 3, 3)
        obj = torch.tensor(rows["obj"], dtype=torch.int64, device=dev)
        diam = torch.tensor(rows["diameter"], **f64)
        with one_cpu_thread(dev):  # torch's and numba's OpenMP pools must not compete
            err = self._errors(obj, R_e, t_e, R_g, t_g, K, diam,
                               torch.tensor(pose["image"], dtype=torch.int64, device=dev), depths, hw)
        for f in _PAIR_FIELDS:
            getattr(self, f"pair_{f}").append(
                err[f].to(self.device) if f in err else torch.tensor(rows[f], dtype=_dtype(f), device=self.device))
        self.pair_vsd.append(err["vsd"].to(self.device))

    def _errors(self, obj, R_e, t_e, R_g, t_g, K, diam, image, depths, hw) -> dict[str, Tensor]:
        """Per-pair errors: vsd (P,T), mssd (mm), mspd (px), add, adi (mm)."""
        dev = R_e.device
        errors = self._pose_errors(obj, R_e, t_e, R_g, t_g, K, add=self.extras)
        out = {k: errors.get(k, torch.zeros(obj.shape[0], dtype=torch.float64, device=dev))
               for k in ("mssd", "mspd", "add", "adi")}
        sizes = torch.tensor([h * w for h, w in hw], dtype=torch.int64, device=dev)
        offs = torch.cumsum(sizes, 0) - sizes
        mesh = torch.tensor([self._mesh_index[o] for o in obj.tolist()], dtype=torch.int64, device=dev)
        out["vsd"] = pose_error.vsd_batch(
            self._bank(dev), mesh, R_e, t_e, R_g, t_g, K, image, torch.cat(depths), offs,
            torch.tensor(hw, dtype=torch.int64, device=dev), diam, self.vsd_delta, self.vsd_taus.to(dev))
        return out

    # ----------------------------------------------------------------------------------------- compute
    def _tables(self) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Deduplicated, sorted pair and GT tables on CPU."""
        pair = {f: _cat_state(getattr(self, f"pair_{f}"), _dtype(f)) for f in _PAIR_FIELDS}
        pair["vsd"] = _cat_state(self.pair_vsd, torch.float64, (self.vsd_taus.shape[0],))
        gt = {f: _cat_state(getattr(self, f"gt_{f}"), torch.int64) for f in _GT_FIELDS}
        keep = _first_of_unique(pair["sample"], pair["est_index"], pair["gt"])
        pair = {k: v[keep] for k, v in pair.items()}
        keep = _first_of_unique(gt["sample"], gt["index"])
        gt = {k: v[keep] for k, v in gt.items()}
        return pair, gt

    def per_estimate_errors(self) -> list[dict]:
        """One record per evaluated (estimate, GT) pair, keyed like the toolkit's errors files:
        scene_id, im_id, obj_id, est_id (index among the image's rows of that object, file order), gt_id,
        est_index (row in the image's predictions), score, and vsd (list per tau), mssd, mspd, add, adi (raw)."""
        pair, _ = self._tables()
        out = []
        for i in range(pair["sample"].shape[0]):
            sid = int(pair["sample"][i])
            out.append({
                "scene_id": sid // 1_000_000, "im_id": sid % 1_000_000, "obj_id": int(pair["obj"][i]),
                "est_id": int(pair["est_id"][i]), "gt_id": int(pair["gt"][i]),
                "est_index": int(pair["est_index"][i]), "score": float(pair["score"][i]),
                "vsd": pair["vsd"][i].tolist(), "mssd": float(pair["mssd"][i]), "mspd": float(pair["mspd"][i]),
                "add": float(pair["add"][i]), "adi": float(pair["adi"][i]),
            })
        return out

    def compute_details(self) -> dict[str, Any]:
        """Scores plus every recall (as the toolkit's scores files: recall, tp_count, targets_count): the
        cached evaluation (:meth:`evaluate`), not a copy, so read it and do not change it."""
        return self.evaluate()

    def _evaluate(self) -> dict[str, Any]:
        """The matching of every error at every threshold: ``metrics`` (the values), ``scores`` (the same as
        floats), ``recalls`` (per error and threshold, the toolkit's scores files), ``counts``, and for the
        bootstrap each GT's image, validity and hits (``gt_sample``, ``gt_valid``, ``gt_hits``)."""
        with one_cpu_thread(self.device):  # small tensors: 13x faster on one thread (60 images: 0.15 -> 0.01 s)
            return self._match()

    def _match(self) -> dict[str, Any]:
        pair, gt = self._tables()
        valid = gt["valid"].bool()
        # Groups = (image, object) among the GT rows; slots in the toolkit's GT iteration order.
        key = torch.stack([gt["sample"], gt["obj"]], 1)
        groups, gt_group = (torch.unique(key, dim=0, return_inverse=True) if key.shape[0]
                            else (key, torch.zeros(0, dtype=torch.int64)))
        maxg = int(gt["index"].max()) + 1 if gt["index"].numel() else 1
        srank = _str_rank(maxg)[gt["index"]]
        order = _first_of_unique(gt_group, srank)  # unique anyway: sorts by (group, string rank)
        gt_slot = torch.empty_like(gt_group)
        if order.numel():
            g_sorted = gt_group[order]
            start = torch.zeros_like(g_sorted)
            first = torch.ones_like(g_sorted, dtype=torch.bool)
            first[1:] = g_sorted[1:] != g_sorted[:-1]
            pos = torch.arange(order.shape[0])
            start = torch.cummax(torch.where(first, pos, torch.zeros_like(pos)), 0).values
            gt_slot[order] = pos - start
        # Map pairs to GT rows via (sample, gt index).
        gkey = gt["sample"] * maxg + gt["index"]
        gsort = torch.argsort(gkey)
        pkey = pair["sample"] * maxg + pair["gt"]
        prow = gsort[torch.searchsorted(gkey[gsort], pkey)] if pkey.numel() else pkey
        dense = dense_groups(gt_group[prow], pair["rank"], prow, gt_slot[prow], groups.shape[0], gt_group, gt_slot)

        details: dict[str, Any] = {"recalls": {"vsd": [], "mssd": [], "mspd": []}}
        vsd_recalls = []
        hits: dict[str, list[Tensor]] = {"vsd": [], "mssd": [], "mspd": []}  # (C, n_gt) per error, for bootstrap
        for ti, tau in enumerate(self.vsd_taus.tolist()):
            m = greedy_match(pair["vsd"][:, ti].contiguous(), dense, valid, self.vsd_th)
            hits["vsd"].append(m)
            rec, tp, n = recall_at(m, valid)
            vsd_recalls.append(rec)
            for c, th in enumerate(self.vsd_th.tolist()):
                details["recalls"]["vsd"].append({"vsd_tau": tau, "correct_th": th, "recall": float(rec[c]),
                                                  "tp_count": int(tp[c]), "targets_count": n})
        ar = {}
        ar["AR_VSD"] = torch.cat(vsd_recalls).mean()
        for name, err, th in (("mssd", pair["mssd"] / pair["diameter"], self.mssd_th),
                              ("mspd", pair["mspd"] * (640.0 / pair["width"]), self.mspd_th)):
            m = greedy_match(err, dense, valid, th)
            hits[name].append(m)
            rec, tp, n = recall_at(m, valid)
            for c, t in enumerate(th.tolist()):
                details["recalls"][name].append({"correct_th": t, "recall": float(rec[c]), "tp_count": int(tp[c]),
                                                 "targets_count": n})
            ar[f"AR_{name.upper()}"] = rec.mean()
        ar["AR"] = (ar["AR_VSD"] + ar["AR_MSSD"] + ar["AR_MSPD"]) / 3.0
        if self.extras:
            th01 = torch.tensor([0.1], dtype=torch.float64)
            for name, col in (("ADD", "add"), ("ADD-S", "adi")):
                rec, _, _ = recall_at(greedy_match(pair[col] / pair["diameter"], dense, valid, th01), valid)
                ar[name] = rec[0]
            sym = torch.tensor([bool(self.models[int(o)].symmetries_discrete or
                                     self.models[int(o)].symmetries_continuous) for o in pair["obj"].tolist()],
                               dtype=torch.bool)
            # strict < in greedy_match: the next float above 100 keeps an error of exactly 100 mm, as VOCap
            th100 = torch.tensor([math.nextafter(100.0, math.inf)], dtype=torch.float64)
            for name, err in (("ADD-S_AUC", pair["adi"]), ("ADD(-S)_AUC", torch.where(sym, pair["adi"], pair["add"]))):
                _, e = greedy_match(err, dense, valid, th100, return_errors=True)
                ar[name] = torch.tensor(vocap_auc(e[0][valid], 100.0), dtype=torch.float64)
        details["scores"] = {k: float(v) for k, v in ar.items()}
        details["counts"] = {"images": int(torch.unique(gt["sample"]).numel()), "gt": int(gt["sample"].numel()),
                             "targets": int(valid.sum()), "estimates_evaluated":
                             int(torch.unique(torch.stack([pair["sample"], pair["est_index"]], 1), dim=0).shape[0])
                             if pair["sample"].numel() else 0}
        details["metrics"] = ar
        details["gt_hits"] = {k: torch.cat(v) if v else torch.zeros(0, valid.numel(), dtype=torch.bool)
                              for k, v in hits.items()}
        details["gt_sample"], details["gt_valid"] = gt["sample"], valid
        return details

    def values(self, result: dict[str, Any]) -> dict[str, Tensor]:
        return {k: v.to(torch.float64) for k, v in result["metrics"].items()}

    def bootstrap(self, result: dict[str, Any]) -> BootstrapStats:
        """Bootstrap over test images (metrics/bootstrap.py): AR = mean of AR_VSD, AR_MSSD and AR_MSPD.

        Matching is per (image, object), so each valid GT's hit at every (tau,) threshold is fixed; a
        replicate's recall is ``sum_i w_i hits_i / sum_i w_i targets_i`` over images i, averaged per error.
        """
        sample, valid = result["gt_sample"].cpu(), result["gt_valid"].cpu()
        ids = torch.unique(sample)
        slot = torch.searchsorted(ids, sample)

        def per_image(x: Tensor) -> Tensor:  # (n_gt, ...) -> (n_images, ...) sums
            return torch.zeros(ids.numel(), *x.shape[1:], dtype=torch.float64).index_add_(0, slot, x)

        hits = {k: per_image((v.cpu() & valid[None]).to(torch.float64).t())
                for k, v in result["gt_hits"].items()}
        targets = per_image(valid.to(torch.float64))  # (n_images,)

        def statistic(w: Tensor) -> Tensor:
            n = (w @ targets)[:, None]
            ar = [torch.where(n > 0, (w @ hits[k]) / n, 0.0).mean(1) for k in ("vsd", "mssd", "mspd")]
            return ((ar[0] + ar[1] + ar[2]) / 3.0)[:, None]

        return BootstrapStats(ids, ("AR",), statistic, self.bootstrap_unit)

    def plots(self, result: dict[str, Any]) -> list[dict]:
        """Recall against the correctness threshold: VSD (mean over tau), MSSD and MSPD."""
        d = result["recalls"]
        out = []
        vsd: dict[float, list[float]] = {}
        for r in d["vsd"]:
            vsd.setdefault(r["correct_th"], []).append(r["recall"])
        if vsd:
            xs = sorted(vsd)
            out.append(plot_dict("VSD recall (mean over tau)", "line", "correct threshold (x diameter)",
                                 "recall", xs, {"VSD": [sum(vsd[x]) / len(vsd[x]) for x in xs]}))
        for key, title, xlabel in (("mssd", "MSSD recall", "threshold (x diameter)"),
                                   ("mspd", "MSPD recall", "threshold (px, 640 wide)")):
            rows = d[key]
            if rows:
                out.append(plot_dict(title, "line", xlabel, "recall", [r["correct_th"] for r in rows],
                                     {key.upper(): [r["recall"] for r in rows]}))
        return out
