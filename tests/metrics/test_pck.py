"""CAPE PCK (metrics/pck.py) against numbers the reference code produced, and its invariances.

Golden numbers (tests/data/mp100_golden/golden.json, key ``pck`` and ``per_query_split1-test-1shot``) were
produced by running the reference itself, unmodified, on the bundled annotation files:
orhir/PoseAnything @ 7f1253f8 ``models/datasets/datasets/mp100/test_dataset.py`` (``TestPoseDataset``) and
``test_base_dataset.py`` (``evaluate`` -> ``_report_metric``), calling open-mmlab/mmpose @ v0.29.0
``mmpose/core/evaluation/top_down_eval.py`` ``keypoint_pck_accuracy``, with ``COCO`` from
jin-s13/xtcocoapi @ d74033f ``xtcocotools/coco.py``. Their mmcv/mmpose/cv2/json_tricks imports were stubbed
(registry decorator, an unused ``Compose``, std ``json``), nothing else. Per variant:
``TestPoseDataset(ann_file, 'IMG/', data_cfg, [], valid_class_ids=None, max_kpt_num=100, num_shots=S,
num_queries=15, num_episodes=200 (test) / 100 (val), test_mode=True)``, then ``evaluate(outputs, dir,
metric='PCK')`` with ``outputs`` in batches of 64: ``preds`` (N, 100, 3) float32 holding
:func:`synthetic_prediction` for query ``n`` (the index in ``paired_samples``) and keypoint ``k`` (rows past
the category's K stay 0), ``bbox_ids = n``, ``image_paths`` = the query's image file. Per-query values were
recorded by wrapping ``keypoint_pck_accuracy`` (returning its result unchanged) and keeping ``avg_acc``.
Python 3.11.7, NumPy 2.4.6. The throwaway runner script is not part of the repo.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.data.mp100 import Mp100Dataset
from bench.predictions.mp100_json import read_mp100_predictions
from metrics.pck import PCK_THRESHOLDS, CapePCK, normalized_distances, pck_hits, per_sample_pck

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "bench" / "data" / "samples" / "mp100"
GOLDEN = json.loads((REPO / "tests" / "data" / "mp100_golden" / "golden.json").read_text())
DIRS = np.array([(1.0, 0.0), (0.6, 0.8), (0.0, 1.0), (-0.8, 0.6), (-1.0, 0.0), (-0.6, -0.8), (0.0, -1.0), (0.8, -0.6)])
THR = np.array(PCK_THRESHOLDS)


def synthetic_prediction(n: int, gt: np.ndarray, s: float) -> np.ndarray:
    """The synthetic prediction fed to the reference for query ``n`` with GT ``(K, 2)`` and norm ``s``.

    Keypoint ``k`` (all arithmetic in float64, elementwise, in this order; then rounded to float32 as a
    model's output would be), by ``mode = (7n + 3k) % 10``:
      0-5: ``r = s * (((131n + 71k) % 1000) / 1000.0 * 0.3)``, ``(x, y) = g + r * DIRS[(5n + k) % 8]``;
      6-7: ``x = gx + THR[(n + k) % 5] * s``, ``y = gy`` (exactly on a threshold: the strict ``<`` and the
           float32 comparison decide these);
      8: ``g`` (exact hit);   9: ``(gx + 10.0 * s, gy - 3.0 * s)`` (far miss).
    """
    k = np.arange(len(gt))
    gx, gy = gt[:, 0].astype(np.float64), gt[:, 1].astype(np.float64)
    mode = (n * 7 + k * 3) % 10
    r = s * (((n * 131 + k * 71) % 1000) / 1000.0 * 0.3)
    d = DIRS[(n * 5 + k) % 8]
    x = np.where(mode <= 5, gx + r * d[:, 0], np.where(mode <= 7, gx + THR[(n + k) % 5] * s,
                                                       np.where(mode == 8, gx, gx + 10.0 * s)))
    y = np.where(mode <= 5, gy + r * d[:, 1], np.where(mode <= 8, gy, gy - 3.0 * s))
    return np.stack([x, y], axis=1).astype(np.float32).astype(np.float64)


def write_predictions(ds: Mp100Dataset, path: Path) -> None:
    """The synthetic predictions of every query of ``ds`` as an MP-100 predictions file."""
    records = []
    for n in range(len(ds)):
        e, q = divmod(n, 15)
        ann = ds.by_id[ds.episodes[e].query_ids[q]]
        kps = synthetic_prediction(n, ann.keypoints.numpy(), ann.norm).tolist()
        records.append({"episode": e, "query_id": ann.ann_id, "keypoints": kps})
    path.write_text(json.dumps(records))


@pytest.fixture(scope="module")
def split1_1shot() -> Mp100Dataset:
    return Mp100Dataset(SAMPLE, split=1, subset="test", shots=1, bundled=True)


@pytest.fixture(scope="module")
def split1_1shot_preds(split1_1shot, tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("mp100") / "preds.json"
    write_predictions(split1_1shot, path)
    return read_mp100_predictions(path, split1_1shot)


def score(ds: Mp100Dataset, preds: dict, indices, batch: int = 2000) -> dict[str, float]:
    metric = ds.build_metric()
    indices = list(indices)
    for b in range(0, len(indices), batch):
        samples = [ds[i] for i in indices[b:b + batch]]
        metric.update([preds[s.sample_id].output for s in samples], [s.target for s in samples])
    return {k: v.item() for k, v in metric.compute().items()}


def test_golden_split1_test_1shot(split1_1shot, split1_1shot_preds):
    """All 60,000 episode-query pairs, from a predictions file through the reader to the metric."""
    got = score(split1_1shot, split1_1shot_preds, range(len(split1_1shot)))
    want = GOLDEN["pck"]["split1-test-1shot"]
    assert list(got) == list(want) == list(split1_1shot.metric_keys)
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-9), key
    # the synthetic set spreads over the thresholds (so the comparison is not vacuous)
    assert 0.1 < want["PCK@0.05"] < want["PCK@0.25"] < 0.95


def test_golden_per_query(split1_1shot, split1_1shot_preds):
    """Per-query PCK of every 20th pair equals the reference's ``avg_acc`` exactly."""
    per_query = GOLDEN["per_query_split1-test-1shot"]
    samples = [split1_1shot[int(n)] for n in per_query]
    k = max(s.target["keypoints"].shape[0] for s in samples)
    pred = torch.zeros(len(samples), k, 2, dtype=torch.float64)
    gt = torch.zeros(len(samples), k, 2, dtype=torch.float32)
    mask = torch.zeros(len(samples), k, dtype=torch.bool)
    for i, s in enumerate(samples):
        kk = s.target["keypoints"].shape[0]
        pred[i, :kk] = split1_1shot_preds[s.sample_id].output["keypoints"]
        gt[i, :kk] = s.target["keypoints"]
        mask[i, :kk] = s.target["visible"]
    norm = torch.stack([s.target["norm"] for s in samples])[:, None].expand(-1, 2)
    got = per_sample_pck(*pck_hits(normalized_distances(pred, gt, mask, norm), PCK_THRESHOLDS))
    assert got.tolist() == list(per_query.values())


@pytest.mark.slow
@pytest.mark.parametrize("split,subset,shots", [(1, "test", 5), (5, "test", 1), (4, "val", 5)])
def test_golden_other_variants(split, subset, shots, tmp_path):
    """5-shot masks (visible in every support), split 5 / split 4 val (filtered annotations)."""
    ds = Mp100Dataset(SAMPLE, split=split, subset=subset, shots=shots, bundled=True)
    write_predictions(ds, tmp_path / "p.json")
    got = score(ds, read_mp100_predictions(tmp_path / "p.json", ds), range(len(ds)))
    want = GOLDEN["pck"][ds.variant]
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-9), key


def test_order_batch_and_duplicates_do_not_change_the_result(split1_1shot, split1_1shot_preds):
    """Shuffled order, odd batch sizes, sampler-style padding with duplicates and two 'ranks' merged."""
    idx = list(range(0, len(split1_1shot), 37))
    ref = score(split1_1shot, split1_1shot_preds, idx, batch=len(idx))
    rng = random.Random(0)
    shuffled = idx[:]
    rng.shuffle(shuffled)
    assert score(split1_1shot, split1_1shot_preds, shuffled, batch=7) == ref
    padded = shuffled + shuffled[:5]  # DistributedSampler pads with the first samples again
    assert score(split1_1shot, split1_1shot_preds, padded, batch=13) == ref

    ranks = [CapePCK(), CapePCK()]
    for r, metric in enumerate(ranks):
        part = padded[r::2]
        for b in range(0, len(part), 11):
            samples = [split1_1shot[i] for i in part[b:b + 11]]
            metric.update([split1_1shot_preds[s.sample_id].output for s in samples], [s.target for s in samples])
    ranks[1].merge_state(ranks[0])
    assert {k: v.item() for k, v in ranks[1].compute().items()} == ref


def _one(sid, gt, pred, visible, norm):
    return (
        {"keypoints": torch.tensor(pred, dtype=torch.float64)},
        {"sample_id": torch.tensor(sid), "keypoints": torch.tensor(gt, dtype=torch.float32),
         "visible": torch.tensor(visible), "norm": torch.tensor(norm, dtype=torch.float64)},
    )


def test_query_without_valid_keypoints_counts_as_zero():
    """Protocol: such a query is not skipped; it scores 0 and enters the mean."""
    a = _one(0, [[10.0, 10.0], [20.0, 20.0]], [[10.0, 10.0], [20.0, 20.0]], [True, True], 100.0)
    b = _one(1, [[10.0, 10.0], [20.0, 20.0]], [[10.0, 10.0], [20.0, 20.0]], [False, False], 100.0)
    m = CapePCK()
    m.update([a[0], b[0]], [a[1], b[1]])
    out = m.compute()
    assert all(out[k].item() == 0.5 for k in m.keys)


def test_threshold_is_strict_and_distance_is_float32():
    """d == t misses; d a hair below t in float64 still misses: stored as float32 it is float32(t) >= t."""
    gt = [[100.0, 100.0], [100.0, 100.0], [100.0, 100.0]]
    pred = [[120.0, 100.0],  # d = 20 / 100 = 0.2 exactly the threshold: miss at 0.2
            [100.0 + 20.0 * (1 - 1e-12), 100.0],  # float64 d < 0.2, but float32(d) == float32(0.2): miss
            [119.99, 100.0]]  # clearly inside: hit
    p, t = _one(0, gt, pred, [True, True, True], 100.0)
    m = CapePCK(thresholds=(0.2,))
    m.update([p], [t])
    assert m.compute()["PCK@0.2"].item() == 1 / 3


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    ds = Mp100Dataset(SAMPLE, split=1, subset="test", shots=5, bundled=True)
    idx = list(range(0, 3001, 3))  # 1001 samples: the sampler pads rank 1 with a duplicate
    sampler = torch.utils.data.DistributedSampler(idx, num_replicas=world, rank=rank, shuffle=True, seed=3)
    metric = CapePCK()
    mine = [idx[j] for j in sampler]
    for b in range(0, len(mine), 17):
        samples = [ds[i] for i in mine[b:b + 17]]
        metric.update([{"keypoints": s.target["keypoints"].double() + (s.sample_id % 7)} for s in samples],
                      [s.target for s in samples])
    out = {k: v.item() for k, v in metric.compute().items()}
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(out))
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_process_gloo_equals_one_process(tmp_path):
    """Real torch.distributed (gloo, 2 processes, DistributedSampler padding): same result, bit for bit."""
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2)
    ds = Mp100Dataset(SAMPLE, split=1, subset="test", shots=5, bundled=True)
    samples = [ds[i] for i in range(0, 3001, 3)]
    single = CapePCK()
    single.update([{"keypoints": s.target["keypoints"].double() + (s.sample_id % 7)} for s in samples],
                  [s.target for s in samples])
    want = {k: v.item() for k, v in single.compute().items()}
    for r in range(2):
        assert json.loads((tmp_path / f"rank{r}.json").read_text()) == want
