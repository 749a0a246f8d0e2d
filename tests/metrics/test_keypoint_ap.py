"""KeypointAP against pycocotools itself (and once against faster-coco-eval).

Every expected number here is computed in the test by the reference: pycocotools ``COCO()`` built from the
same in-memory dicts, ``loadRes``, ``COCOeval(iouType='keypoints')`` evaluate/accumulate/summarize; never by
our own code.
"""
from __future__ import annotations

import contextlib
import copy
import doctest
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import metrics.keypoint_ap as kap
from metrics.keypoint_ap import STAT_KEYS, KeypointAP, coco_oks_thresholds, coco_recall_thresholds, np_sum

SAMPLE = Path(__file__).resolve().parents[2] / "bench" / "data" / "samples" / "coco"
COCO_SIGMAS_NP = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]) / 10.0


def reference(gt: dict, dets: list[dict], sigmas=None):
    """pycocotools stats (10,) and precision (T, R, A)."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        res = coco.loadRes(copy.deepcopy(dets))
        ev = COCOeval(coco, res, "keypoints")
        if sigmas is not None:
            ev.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats, dtype=np.float64), ev.eval["precision"][:, :, 0, :, 0]


def to_metric_inputs(gt: dict, dets: list[dict], K: int):
    """Per-image target/pred dicts in the KeypointAP convention (detections in file order)."""
    targets, preds = [], []
    for im in gt["images"]:
        i = im["id"]
        anns = [a for a in gt["annotations"] if a["image_id"] == i]
        ds = [d for d in dets if d["image_id"] == i]
        targets.append({
            "image_id": torch.tensor(i),
            "keypoints": torch.tensor([a["keypoints"] for a in anns], dtype=torch.float64).reshape(-1, K, 3),
            "area": torch.tensor([a["area"] for a in anns], dtype=torch.float64),
            "bbox": torch.tensor([a["bbox"] for a in anns], dtype=torch.float64).reshape(-1, 4),
            "iscrowd": torch.tensor([bool(a["iscrowd"]) for a in anns], dtype=torch.bool),
            "num_keypoints": torch.tensor([a["num_keypoints"] for a in anns], dtype=torch.long),
            "ann_id": torch.tensor([a["id"] for a in anns], dtype=torch.long),
        })
        preds.append({
            "image_id": torch.tensor(i),
            "keypoints": torch.tensor([d["keypoints"] for d in ds], dtype=torch.float64).reshape(-1, K, 3),
            "scores": torch.tensor([d["score"] for d in ds], dtype=torch.float64),
        })
    return preds, targets


def ours(gt, dets, K=17, sigmas=None, batch=None, order=None):
    preds, targets = to_metric_inputs(gt, dets, K)
    m = KeypointAP(sigmas=sigmas)
    idx = list(range(len(targets))) if order is None else order
    step = batch or len(idx) or 1
    for s in range(0, len(idx), step):
        sel = idx[s : s + step]
        m.update([preds[i] for i in sel], [targets[i] for i in sel])
    res = m.evaluate()
    return np.array([float(res.stats[k]) for k in STAT_KEYS]), res.precision.numpy()


def assert_same(gt, dets, K=17, sigmas=None):
    want, want_p = reference(gt, dets, sigmas)
    got, got_p = ours(gt, dets, K, sigmas)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got_p, want_p, rtol=0, atol=1e-12)
    return want


# ---------------------------------------------------------------- the real bundled COCO sample

def _sample_gt() -> dict:
    return json.loads((SAMPLE / "annotations" / "person_keypoints_val2017.json").read_text())


def perturbed_predictions(gt: dict, seed: int) -> list[dict]:
    """Noisy copies of the GT people, duplicates, misses, and boxes of the real detector as false positives."""
    rng = np.random.default_rng(seed)
    boxes = json.loads((SAMPLE / "person_detection_results" / "COCO_val2017_detections_AP_H_56_person.json").read_text())
    dets = []
    for a in gt["annotations"]:
        for _ in range(int(rng.integers(0, 3))):
            kp = np.asarray(a["keypoints"], dtype=np.float64).reshape(17, 3).copy()
            s = np.sqrt(a["area"]) * rng.uniform(0.0, 0.12)
            kp[:, :2] += rng.normal(0, s, (17, 2))
            kp[:, 2] = rng.uniform(0, 1, 17)
            dets.append({"image_id": a["image_id"], "category_id": 1, "keypoints": kp.ravel().tolist(),
                         "score": float(rng.choice([0.3, 0.5, 0.9, rng.uniform()]))})
    for b in boxes[:: 1 + seed % 3]:
        x, y, w, h = b["bbox"]
        kp = np.stack([rng.uniform(x, x + w, 17), rng.uniform(y, y + h, 17), rng.uniform(0, 1, 17)], 1)
        dets.append({"image_id": b["image_id"], "category_id": 1, "keypoints": kp.ravel().tolist(),
                     "score": round(b["score"], 2)})
    rng.shuffle(dets)
    return dets


@pytest.mark.parametrize("seed", range(6))
def test_real_sample_perturbed(seed):
    gt = _sample_gt()
    dets = perturbed_predictions(gt, seed)
    want = assert_same(gt, dets)
    assert want[0] > 0  # a meaningful case, not all -1 / 0


def test_real_sample_gt_as_predictions():
    gt = _sample_gt()
    dets = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 0.5}
            for a in gt["annotations"]]
    assert_same(gt, dets)


# ---------------------------------------------------------------- generated cases

AREAS = [1.0, 20.0, 500.0, 1023.9, 1024.0, 1024.1, 5000.0, 9216.0, 9216.5, 30000.0, 2e10]


@st.composite
def coco_cases(draw, K=17):
    n_img = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    images, anns, dets = [], [], []
    img_ids = draw(st.lists(st.integers(0, 50), min_size=n_img, max_size=n_img, unique=True))
    ann_id = draw(st.sampled_from([0, 1]))  # sometimes a GT with annotation id 0 (pycocotools quirk)
    score_pool = [0.1, 0.5, 0.5, 0.9, 1.0]
    for iid in img_ids:
        images.append({"id": iid, "width": 640, "height": 480})
        n_gt = draw(st.integers(0, 5))
        people = []
        for _ in range(n_gt):
            area = float(rng.choice(AREAS)) if rng.random() < 0.7 else float(rng.uniform(1, 40000))
            side = float(np.sqrt(min(area, 1e6)))
            x, y = rng.uniform(0, 300, 2)
            kx, ky = rng.uniform(x, x + side, K), rng.uniform(y, y + side, K)
            v = rng.choice([0, 1, 2], K)
            if rng.random() < 0.15:
                v[:] = 0
            crowd = int(rng.random() < 0.15)
            nk = int((v > 0).sum())
            if rng.random() < 0.1:
                nk = 0  # field says 0 even if keypoints are labelled: pycocotools trusts the field
            kp = np.stack([np.where(v > 0, np.round(kx), 0), np.where(v > 0, np.round(ky), 0), v], 1)
            anns.append({"id": ann_id, "image_id": iid, "category_id": 1, "iscrowd": crowd, "area": area,
                         "bbox": [float(x), float(y), side, side], "num_keypoints": nk,
                         "keypoints": [float(t) for t in kp.ravel()]})
            ann_id += 1
            people.append((kx, ky, side, area))
            if rng.random() < 0.15:  # a duplicate annotation: exact OKS ties between GTs
                anns.append({**anns[-1], "id": ann_id, "iscrowd": int(rng.random() < 0.2)})
                ann_id += 1
        n_dt = draw(st.sampled_from([0, 1, 3, 8, 19, 20, 21, 26]))
        for _ in range(n_dt):
            if people and rng.random() < 0.75:
                kx, ky, side, area = people[int(rng.integers(len(people)))]
                noise = side * float(rng.choice([0.0, 0.01, 0.05, 0.1, 0.3]))
                dx, dy = kx + rng.normal(0, noise + 1e-9, K), ky + rng.normal(0, noise + 1e-9, K)
                if rng.random() < 0.2:
                    dx, dy = kx.copy(), ky.copy()  # exact copy: OKS 1
            else:
                x, y = rng.uniform(0, 500, 2)
                w = float(rng.choice([1.0, 32.0, 96.0, rng.uniform(1, 300)]))
                dx, dy = rng.uniform(x, x + w, K), rng.uniform(y, y + w, K)
            kp = np.stack([dx, dy, rng.uniform(0, 1, K)], 1)
            dets.append({"image_id": iid, "category_id": 1, "keypoints": kp.ravel().tolist(),
                         "score": float(rng.choice(score_pool))})
    if not dets:  # pycocotools' loadRes cannot take an empty list
        dets.append({"image_id": img_ids[0], "category_id": 1, "keypoints": [0.0, 0.0, 1.0] * K, "score": 0.5})
    order = rng.permutation(len(dets))
    dets = [dets[i] for i in order]
    gt = {"images": images, "annotations": anns,
          "categories": [{"id": 1, "name": "person", "keypoints": [str(k) for k in range(K)]}]}
    return gt, dets


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(coco_cases())
def test_generated_cases_match_pycocotools(case):
    gt, dets = case
    assert_same(gt, dets)


SIGMAS5 = [0.3, 0.5, 0.7, 0.9, 1.1]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(coco_cases(K=5))
def test_other_keypoint_count_and_sigmas(case):
    gt, dets = case
    assert_same(gt, dets, K=5, sigmas=SIGMAS5)


def test_many_images_with_score_ties_across_images():
    """50 images, every score one of three values: ties across images break by (image id, file position)."""
    rng = np.random.default_rng(3)
    images, anns, dets = [], [], []
    for i in range(50):
        images.append({"id": 1000 - i * 7})
        for g in range(int(rng.integers(0, 4))):
            kx, ky = rng.uniform(0, 100, 17), rng.uniform(0, 100, 17)
            anns.append({"id": len(anns) + 1, "image_id": 1000 - i * 7, "category_id": 1, "iscrowd": 0,
                         "area": float(rng.uniform(500, 12000)), "bbox": [0.0, 0.0, 100.0, 100.0],
                         "num_keypoints": 17, "keypoints": np.stack([kx, ky, np.full(17, 2.0)], 1).ravel().tolist()})
            for _ in range(int(rng.integers(0, 4))):
                kp = np.stack([kx + rng.normal(0, 6, 17), ky + rng.normal(0, 6, 17), np.ones(17)], 1)
                dets.append({"image_id": 1000 - i * 7, "category_id": 1, "keypoints": kp.ravel().tolist(),
                             "score": float(rng.choice([0.2, 0.6, 0.8]))})
    rng.shuffle(dets)
    assert_same({"images": images, "annotations": anns, "categories": [{"id": 1}]}, dets)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(coco_cases())
def test_accumulation_in_row_blocks_matches_pycocotools(case):
    """The accumulation runs a block of (threshold, area) rows at a time to bound memory: with one row per block
    (the block size patched to 1 cell) the numbers still equal pycocotools'."""
    gt, dets = case
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kap, "_ROW_BLOCK_ELEMS", 1)
        assert_same(gt, dets)


def test_oks_tie_between_gts_goes_to_the_later_gt():
    """Two identical GTs (ids 0 and 5): pycocotools gives an exact tie to the later one (a true positive);
    with the first one (id 0) the detection would count as unmatched. A second detection sits on the
    other GT's visible keypoint only, so which GT the first one took also changes the second's match."""
    kp_a = [10.0, 10.0, 2.0, 50.0, 50.0, 2.0, 90.0, 20.0, 2.0]
    kp_b = [10.0, 10.0, 2.0, 50.0, 50.0, 0.0, 90.0, 20.0, 0.0]
    def ann(i, kp, nk):
        return {"id": i, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 4000.0,
                "bbox": [10.0, 10.0, 80.0, 40.0], "num_keypoints": nk, "keypoints": kp}
    cat = [{"id": 1, "name": "person", "keypoints": ["a", "b", "c"]}]
    sig = [0.5, 0.5, 0.5]
    gt = {"images": [{"id": 1}], "annotations": [ann(0, kp_a, 3), ann(5, list(kp_a), 3)], "categories": cat}
    dets = [{"image_id": 1, "category_id": 1, "keypoints": kp_a, "score": 0.9}]
    want = assert_same(gt, dets, K=3, sigmas=sig)
    assert want[0] == pytest.approx(51 / 101)  # a true positive on the later GT (id 5), recall 1/2
    gt2 = {"images": [{"id": 1}], "annotations": [ann(3, kp_b, 1), ann(4, kp_a, 3)], "categories": cat}
    far = [10.0, 10.0, 1.0, 300.0, 300.0, 1.0, 300.0, 300.0, 1.0]
    dets2 = [{"image_id": 1, "category_id": 1, "keypoints": kp_a, "score": 0.9},
             {"image_id": 1, "category_id": 1, "keypoints": far, "score": 0.8}]
    want2 = assert_same(gt2, dets2, K=3, sigmas=sig)
    assert want2[5] == 1.0  # the first detection took GT 4 (the later of the tie), GT 3 stays for the second


# ---------------------------------------------------------------- invariance (DDP padding, batching, order)

def test_same_result_for_any_batching_order_and_duplicates():
    gt = _sample_gt()
    dets = perturbed_predictions(gt, 11)
    preds, targets = to_metric_inputs(gt, dets, 17)
    base = KeypointAP()
    base.update(preds, targets)
    want = base.compute()
    rng = np.random.default_rng(0)
    for trial in range(5):
        idx = list(rng.permutation(len(targets))) + list(rng.choice(len(targets), 3))  # padded duplicates
        m = KeypointAP()
        bs = int(rng.integers(1, 4))
        for s in range(0, len(idx), bs):
            m.update([preds[i] for i in idx[s : s + bs]], [targets[i] for i in idx[s : s + bs]])
        got = m.compute()
        for k in STAT_KEYS:
            assert torch.equal(got[k], want[k]), (trial, k)


def test_two_ranks_merged_like_ddp_gather():
    """States of two metric copies concatenated (what the cat sync does) give the single-process result."""
    gt = _sample_gt()
    dets = perturbed_predictions(gt, 5)
    preds, targets = to_metric_inputs(gt, dets, 17)
    ref, _ = reference(gt, dets)
    r0, r1 = KeypointAP(), KeypointAP()
    r0.update([preds[i] for i in (0, 2)], [targets[i] for i in (0, 2)])
    r1.update([preds[i] for i in (1, 3, 0)], [targets[i] for i in (1, 3, 0)])  # rank 1 padded with image 0
    for name in r0._defaults:
        setattr(r0, name, [torch.cat(getattr(r0, name) + getattr(r1, name))])
    got = r0.compute()
    np.testing.assert_allclose([float(got[k]) for k in STAT_KEYS], ref, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- other references and pieces

def test_faster_coco_eval_agrees():
    from faster_coco_eval import COCO as FCOCO
    from faster_coco_eval import COCOeval_faster

    gt = _sample_gt()
    dets = perturbed_predictions(gt, 21)
    with contextlib.redirect_stdout(io.StringIO()):
        c = FCOCO(copy.deepcopy(gt))
        r = c.loadRes(copy.deepcopy(dets))
        ev = COCOeval_faster(c, r, "keypoints", print_function=lambda *a, **k: None)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    got, _ = ours(gt, dets)
    np.testing.assert_allclose(got, np.asarray(ev.stats[:10], dtype=np.float64), rtol=0, atol=1e-12)


def test_thresholds_are_numpy_linspace_bits():
    assert np.array_equal(coco_recall_thresholds().numpy(), np.linspace(0.0, 1.0, 101))
    assert np.array_equal(coco_oks_thresholds().numpy(), np.linspace(0.5, 0.95, 10))


@pytest.mark.parametrize("n", [1, 5, 7, 8, 9, 16, 17, 127, 128, 129, 300, 1010])
def test_np_sum_is_numpy_sum(n):
    x = np.random.default_rng(n).uniform(0, 1, (30, n)) * 10.0 ** np.random.default_rng(n + 1).uniform(-8, 8, (30, n))
    assert np.array_equal(np_sum(torch.from_numpy(x)).numpy(), np.array([np.sum(r) for r in x]))


def test_no_detections_matches_faster_coco_eval_and_no_gt_gives_minus_one():
    """pycocotools' loadRes cannot take an empty results list; faster-coco-eval can (all zeros): we agree."""
    from faster_coco_eval import COCO as FCOCO
    from faster_coco_eval import COCOeval_faster

    gt = _sample_gt()
    with contextlib.redirect_stdout(io.StringIO()):
        c = FCOCO(copy.deepcopy(gt))
        ev = COCOeval_faster(c, c.loadRes([]), "keypoints", print_function=lambda *a, **k: None)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    _, targets = to_metric_inputs(gt, [], 17)
    m = KeypointAP()
    m.update([{"image_id": t["image_id"], "keypoints": torch.zeros(0, 17, 3), "scores": torch.zeros(0)} for t in targets],
             targets)
    out = m.compute()
    np.testing.assert_allclose([float(out[k]) for k in STAT_KEYS], ev.stats[:10], rtol=0, atol=1e-12)
    # no image at all: every stat is -1, as pycocotools gives for an absent category
    with pytest.warns(UserWarning):
        empty = KeypointAP().compute()
    assert all(float(v) == -1.0 for v in empty.values())


def test_docstring_example():
    assert doctest.testmod(kap, verbose=False).failed == 0


def test_per_image_views_of_one_results_array_are_kept_without_copies(tmp_path):
    """The results reader hands out per-image views of one flat keypoints array; fed in image order, the
    states and the concatenated detections stay views of it (no copy: issue 15's peak memory), and the
    numbers are pycocotools' whether the views are adjacent or not (reversed order: copies)."""
    from bench.predictions.coco_json import read_coco_keypoint_results, results_to_predictions

    gt = _sample_gt()
    dets = perturbed_predictions(gt, 3)
    path = tmp_path / "res.json"
    path.write_text(json.dumps(dets))
    ids = sorted(im["id"] for im in gt["images"])
    by_id = results_to_predictions(read_coco_keypoint_results(path, ids, 17))
    _, targets = to_metric_inputs(gt, dets, 17)
    targets = sorted(targets, key=lambda t: int(t["image_id"]))
    none = {"keypoints": torch.zeros(0, 17, 3, dtype=torch.float64), "scores": torch.zeros(0, dtype=torch.float64)}
    preds = [by_id[int(t["image_id"])].output if int(t["image_id"]) in by_id else {"image_id": t["image_id"], **none}
             for t in targets]
    base = next(iter(by_id.values())).output["keypoints"].untyped_storage().data_ptr()
    want, _ = reference(gt, dets)
    for order in (list(range(len(targets))), list(range(len(targets)))[::-1]):
        m = KeypointAP()
        for s in range(0, len(order), 2):
            m.update([preds[i] for i in order[s:s + 2]], [targets[i] for i in order[s:s + 2]])
        shared = [t.untyped_storage().data_ptr() == base for t in m.dt_kpts]
        flat_shared = m._flat()["dt_keypoints"].untyped_storage().data_ptr() == base
        assert all(shared) and flat_shared if order[0] == 0 else not any(shared) and not flat_shared
        got = m.compute()
        np.testing.assert_allclose([float(got[k]) for k in STAT_KEYS], want, rtol=0, atol=1e-12)
