"""Bootstrap CIs (metrics/bootstrap.py) and the metrics' ``bootstrap_stats``.

- Known distribution: per-frame MPJPE errors drawn from N(50 mm, 10 mm); the bootstrap percentile interval of
  the mean must agree with the analytic t interval ``mean +- t_{0.975, n-1} s / sqrt(n)`` (scipy) within 8% of
  its half-width (Monte Carlo error of the 2.5/97.5% quantiles with B = 4000 is about 3% of it).
- The weighted AP of a replicate equals pycocotools itself (``COCOeval(iouType='keypoints')``) run on the
  resampled images, each copy of an image a distinct image with new image and annotation ids (the 32 scores
  are distinct, so no tie rule is involved). Tolerance 1e-12: float64 rounding of a mean of 1010 precision
  values summed in another order (measured: at most 2.5e-15).
- ``statistic(ones)`` gives the metric's own value; the interval does not depend on update order or batching.
"""
from __future__ import annotations

import contextlib
import io
import itertools
import json
import math

import numpy as np
import pytest
import torch
from scipy import stats as sps

from metrics.bootstrap import confidence_intervals, paired_bootstrap, resample_counts
from metrics.keypoint_ap import KeypointAP
from metrics.mpjpe import H36MPoseError
from metrics.pck import CapePCK
from metrics.pckh import PCKh


def _h36m_metric(errors_m: np.ndarray, order=None, batch: int = 1, offset=(1.0, 0.0, 0.0)) -> H36MPoseError:
    """One 1-frame sequence per error; the prediction is the GT moved by ``e * offset`` on every joint."""
    m = H36MPoseError(pred_root="keep", aggregation="frame")
    rng = np.random.default_rng(0)
    gts = torch.as_tensor(rng.normal(0, 0.3, (len(errors_m), 1, 4, 3)))
    idx = list(range(len(errors_m))) if order is None else list(order)
    off = torch.tensor(offset, dtype=torch.float64)
    for s in range(0, len(idx), batch):
        part = idx[s:s + batch]
        preds = [{"joints": gts[i] + float(errors_m[i]) * off} for i in part]
        tgts = [{"joints": gts[i], "sample_id": torch.tensor(i), "action": torch.tensor(i % 15)} for i in part]
        m.update(preds, tgts)
    return m


def test_mpjpe_interval_matches_the_analytic_t_interval():
    rng = np.random.default_rng(123)
    n = 400
    err_mm = rng.normal(50.0, 10.0, n)
    m = _h36m_metric(err_mm / 1000)
    ci = confidence_intervals(m.bootstrap_stats(), samples=4000, seed=1)
    mean, s = err_mm.mean(), err_mm.std(ddof=1)
    half = sps.t.ppf(0.975, n - 1) * s / math.sqrt(n)
    assert float(m.compute()["MPJPE"]) == pytest.approx(mean, rel=1e-12)
    assert ci["MPJPE_ci_low"] == pytest.approx(mean - half, abs=0.08 * half)
    assert ci["MPJPE_ci_high"] == pytest.approx(mean + half, abs=0.08 * half)
    assert ci["MPJPE_ci_low"] < mean < ci["MPJPE_ci_high"]


def test_interval_is_the_same_for_any_order_and_batch_size():
    err = np.random.default_rng(5).gamma(2.0, 0.02, 37)
    a = confidence_intervals(_h36m_metric(err).bootstrap_stats(), samples=300)
    perm = np.random.default_rng(9).permutation(37)
    dup = list(perm) + list(perm[:5])  # sampler padding repeats samples
    b = confidence_intervals(_h36m_metric(err, order=dup, batch=7).bootstrap_stats(), samples=300)
    assert a == b
    c = confidence_intervals(_h36m_metric(err).bootstrap_stats(), samples=300, seed=1)
    assert c != a  # the seed matters


def test_resample_counts_are_draws_with_replacement():
    w = resample_counts(50, samples=200, seed=3)
    assert w.shape == (200, 50) and torch.all(w.sum(1) == 50) and torch.all(w >= 0)
    assert torch.equal(w, resample_counts(50, samples=200, seed=3, chunk=7))  # chunking does not change draws
    assert abs(float(w.mean()) - 1.0) < 1e-12 and 0.5 < float(w.var()) < 1.5  # multinomial(n, 1/n): var ~ 1


def _coco_inputs(gt: dict, results: list[dict]):
    """KeypointAP update lists, one entry per image of ``gt``."""
    preds, tgts = [], []
    for img in gt["images"]:
        anns = [a for a in gt["annotations"] if a["image_id"] == img["id"]]
        dets = [r for r in results if r["image_id"] == img["id"]]
        tgts.append({
            "image_id": torch.tensor(img["id"]),
            "keypoints": torch.tensor([a["keypoints"] for a in anns], dtype=torch.float64).reshape(-1, 17, 3),
            "area": torch.tensor([a["area"] for a in anns], dtype=torch.float64),
            "bbox": torch.tensor([a["bbox"] for a in anns], dtype=torch.float64).reshape(-1, 4),
            "iscrowd": torch.tensor([a["iscrowd"] for a in anns]),
            "num_keypoints": torch.tensor([a["num_keypoints"] for a in anns]),
            "ann_id": torch.tensor([a["id"] for a in anns]),
        })
        preds.append({"image_id": torch.tensor(img["id"]),
                      "keypoints": torch.tensor([d["keypoints"] for d in dets], dtype=torch.float64).reshape(-1, 17, 3),
                      "scores": torch.tensor([d["score"] for d in dets], dtype=torch.float64)})
    return preds, tgts


def _pycocotools_ap(gt: dict, results: list[dict], copies: dict[int, int]) -> float:
    """pycocotools' AP on ``copies[id]`` copies of each image: copy k of image i is image ``i * 100 + k``, its
    GT get fresh annotation ids (COCO indexes annotations by id) and its detections follow it."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ann_id = itertools.count(1)
    images, anns, dets = [], [], []
    for img in gt["images"]:
        for k in range(copies.get(img["id"], 0)):
            new = img["id"] * 100 + k
            images.append({**img, "id": new})
            anns += [{**a, "image_id": new, "id": next(ann_id)} for a in gt["annotations"] if a["image_id"] == img["id"]]
            dets += [{**r, "image_id": new} for r in results if r["image_id"] == img["id"]]
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {"images": images, "annotations": anns, "categories": gt["categories"]}
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(dets), "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


def _coco7(coco7):
    root, preds = coco7
    gt = json.loads((root / "annotations" / "person_keypoints_val2017.json").read_text())
    return gt, json.loads(preds.read_text())


def test_weighted_ap_equals_pycocotools_on_the_resampled_images(coco7):
    gt, results = _coco7(coco7)
    m = KeypointAP()
    m.update(*_coco_inputs(gt, results))
    bs = m.bootstrap_stats()
    ids = bs.ids.tolist()
    assert ids == sorted(img["id"] for img in gt["images"])
    ones = torch.ones(1, len(ids), dtype=torch.float64)
    ref = _pycocotools_ap(gt, results, {i: 1 for i in ids})
    assert 0.2 < ref < 0.9  # neither trivial nor perfect
    assert float(bs.statistic(ones)[0, 0]) == pytest.approx(ref, abs=1e-12)
    w = resample_counts(len(ids), samples=6, seed=11)
    assert all(min(row) == 0 and max(row) >= 2 for row in w.tolist())  # images dropped and images repeated
    got = bs.statistic(w)[:, 0]
    for b in range(w.shape[0]):
        ref = _pycocotools_ap(gt, results, {i: int(w[b, j]) for j, i in enumerate(ids)})
        assert float(got[b]) == pytest.approx(ref, abs=1e-12), b


def test_ap_interval_brackets_the_estimate(coco7):
    gt, results = _coco7(coco7)
    m = KeypointAP()
    m.update(*_coco_inputs(gt, results))
    ci = confidence_intervals(m.bootstrap_stats(), samples=200)
    ap = float(m.compute()["AP"])
    assert set(ci) == {"AP_ci_low", "AP_ci_high"}
    assert 0 <= ci["AP_ci_low"] <= ap <= ci["AP_ci_high"] <= 1 and ci["AP_ci_low"] < ci["AP_ci_high"]


def test_cape_pck_and_pckh_statistic_of_ones_is_the_metric():
    rng = np.random.default_rng(2)
    cape = CapePCK()
    preds, tgts = [], []
    for i in range(23):
        g = torch.as_tensor(rng.uniform(0, 100, (9, 2)), dtype=torch.float32)
        preds.append({"keypoints": g.double() + torch.as_tensor(rng.normal(0, 15, (9, 2)))})
        tgts.append({"sample_id": torch.tensor(i), "keypoints": g, "visible": torch.as_tensor(rng.random(9) > 0.2),
                     "norm": torch.tensor(100.0)})
    cape.update(preds, tgts)
    bs = cape.bootstrap_stats()
    assert bs.keys == ("PCK@0.2",)
    assert float(bs.statistic(torch.ones(1, 23, dtype=torch.float64))[0, 0]) == pytest.approx(
        float(cape.compute()["PCK@0.2"]), abs=1e-12)

    m = PCKh()
    g = torch.as_tensor(rng.uniform(50, 150, (31, 16, 2)))
    vis = torch.as_tensor(rng.random((31, 16)) > 0.1)
    hs = torch.as_tensor(rng.uniform(10, 30, 31))
    m.update([{"index": torch.tensor(i), "keypoints": g[i] - 1 + torch.as_tensor(rng.normal(0, 6, (16, 2)))}
              for i in range(31)],
             [{"index": torch.tensor(i), "keypoints": g[i], "visible": vis[i], "head_size": hs[i]} for i in range(31)])
    bs = m.bootstrap_stats()
    assert float(bs.statistic(torch.ones(1, 31, dtype=torch.float64))[0, 0]) == pytest.approx(
        float(m.compute()["PCKh"]), abs=1e-12)


def test_paired_bootstrap_of_a_constant_shift():
    """Method B's error is A's + 5 mm on every frame: the difference is exactly -5 mm, CI [-5, -5], p = 2/(B+1)."""
    err = np.random.default_rng(8).gamma(2.0, 0.02, 60)
    a, b = _h36m_metric(err), _h36m_metric(err + 0.005)
    r = paired_bootstrap(a.bootstrap_stats(), b.bootstrap_stats(), "MPJPE", samples=999)
    assert r.diff == pytest.approx(-5.0, abs=1e-9)
    assert r.ci_low == pytest.approx(-5.0, abs=1e-9) and r.ci_high == pytest.approx(-5.0, abs=1e-9)
    assert r.p_value == pytest.approx(2 / 1000)
    same = paired_bootstrap(a.bootstrap_stats(), a.bootstrap_stats(), "MPJPE", samples=999)
    assert same.diff == 0 and same.ci_low == 0 == same.ci_high and same.p_value == 1.0


def test_pck3d_statistic_of_ones_is_the_metric():
    from metrics.pck3d import PCK3D

    rng = np.random.default_rng(6)
    m = PCK3D()
    for i in range(9):
        t = int(rng.integers(3, 9))
        gt = torch.as_tensor(rng.normal(0, 300, (t, 17, 3)))
        gt = gt - gt[:, 14:15]
        m.update([{"joints": (gt + torch.as_tensor(rng.normal(0, 80, (t, 17, 3)))) / 1000}],
                 [{"joints_mm": gt, "valid": torch.as_tensor(rng.random(t) > 0.2), "sample_id": torch.tensor(i)}])
    bs = m.bootstrap_stats()
    assert float(bs.statistic(torch.ones(1, 9, dtype=torch.float64))[0, 0]) == pytest.approx(
        float(m.compute()["PCK3D"]), abs=1e-12)


def test_draw_count_kernel_gives_the_float_weight_kernel_bit_for_bit():
    """The AP replicates of draw counts go through a kernel that sums whole numbers with the replicates
    innermost (metrics/keypoint_ap.py ``_count_weighted_ap``); the general float-weight kernel (the one the
    pycocotools test above also covers for whole-number weights) must give the same floats, NaN replicates
    (no regular GT drawn) included. A case with ties, crowd and unlabelled GT, images without detections."""
    from bench.benchmarks.keypoint_ap import make_case
    from metrics import keypoint_ap as kap

    gt, results = make_case(n_images=150, seed=3)
    m = KeypointAP()
    m.update(*_coco_inputs(gt, results))
    bs = m.bootstrap_stats()
    n = bs.ids.numel()
    w = resample_counts(n, samples=300, seed=5)
    res = m.evaluate()
    a = res.area_labels.index("all")
    det_slot = torch.searchsorted(bs.ids, res.det_image).numpy()
    gt_slot = torch.searchsorted(bs.ids, res.gt_image).numpy()
    gt_reg = res.gt_regular[:, a].double().numpy()
    no_gt = np.setdiff1d(np.arange(n), gt_slot[gt_reg > 0])
    w[0] = 0.0
    w[0, torch.as_tensor(no_gt[:3])] = torch.tensor([1.0, 4.0, 2.0], dtype=torch.float64)  # drawn images without regular GT: NaN
    w[1] = 1.0
    tp = np.ascontiguousarray(res.det_tp[:, :, a].t().double().numpy())
    fp = np.ascontiguousarray(res.det_fp[:, :, a].t().double().numpy())
    assert tp.sum() > 100 and fp.sum() > 100 and ((tp + fp) == 0).any()  # TP, FP and ignored detections
    rthr = res.rec_thresholds.double().numpy()

    def reference(weights: torch.Tensor) -> np.ndarray:
        return kap._weighted_ap(np.ascontiguousarray(weights.numpy()), det_slot, gt_slot, tp, fp, gt_reg, rthr,
                                kap._EPS)

    assert kap._as_counts(w.numpy()) is not None
    got = bs.statistic(w)[:, 0].numpy()
    ref = reference(w)
    assert math.isnan(ref[0]) and not np.isnan(ref[1:]).any()
    assert np.array_equal(got, ref, equal_nan=True)
    counts = w.to(torch.int16)  # what confidence_intervals hands over: integer draw counts
    assert np.array_equal(bs.evaluate(counts)[:, 0].numpy(), ref, equal_nan=True)
    assert got[1] == pytest.approx(float(m.compute()["AP"]), abs=1e-12)  # summed in another order: see above
    half = w[1:5] * 0.5  # not whole numbers: the float kernel
    assert kap._as_counts(half.numpy()) is None
    assert np.array_equal(bs.statistic(half)[:, 0].numpy(), reference(half))


def test_draw_count_kernel_on_tiny_random_cases():
    """Tiny cases reach the corners of the count kernel that a large case rarely does: a first point with
    TP + FP = 1 (precision 1/(1 + eps), below the 1.0 of n/n), undrawn leading TPs (0 / eps), recall above 1,
    several thresholds crossed at one point, chunks of 1..8 replicates. Each must equal the float kernel."""
    from metrics import keypoint_ap as kap

    rng = np.random.default_rng(0)
    rthr = np.linspace(0.0, 1.0, 101)
    for _ in range(400):
        n, T, D, G = (int(rng.integers(1, 8)), int(rng.integers(1, 4)), int(rng.integers(0, 30)),
                      int(rng.integers(0, 10)))
        det_slot, gt_slot = np.sort(rng.integers(0, n, D)), rng.integers(0, n, G)
        gt_reg = (rng.random(G) < 0.8).astype(np.float64)
        code = rng.integers(0, 3, (T, D)).astype(np.int8)
        w = rng.integers(0, 4, (int(rng.integers(1, 40)), n)).astype(np.float64)
        tp, fp = (code == 1).astype(np.float64), (code == 2).astype(np.float64)
        ref = kap._weighted_ap(w, det_slot, gt_slot, tp, fp, gt_reg, rthr, kap._EPS)
        got = kap._count_weighted_ap(np.ascontiguousarray(w.T.astype(np.int16)), det_slot, code, gt_slot, gt_reg,
                                     rthr, kap._EPS, int(rng.integers(1, 9)))
        assert np.array_equal(ref, got, equal_nan=True)
