"""The metric protocol (metrics/protocol.py): one evaluation per synced state behind compute, bootstrap and curves.

What is checked, and why it matters:

- every metric class of ``metrics/`` is a :class:`PoseMetric` that declares its bootstrap unit and headline keys
  and goes through the protocol's entry points (the harness asks every metric the same way, no ``hasattr``);
- on each dataset's real case (the bundled samples and golden cases of tests/test_intervals.py) the run's
  sequence ``compute()``, then ``bootstrap_stats()`` and ``curves()`` under a sync, evaluates once, and the
  headline and unit agree with what the bootstrap resamples;
- the cache follows the states: a two-process sync (simulated: a gather that adds a second rank's states)
  is evaluated once for the runner's two syncs and not reused for the local states; an update, a reset, a
  merge, a forward and a move drop it; pickling and deep copies carry no cached result.

Expected values here are the same metric evaluated afresh on the same states (no recorded numbers): the
protocol must not change any number, only how often the evaluation runs.
"""
from __future__ import annotations

import copy
import gc
import importlib
import itertools
import pickle
import pkgutil
import weakref

import pytest
import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

import metrics
from metrics.keypoint_ap import KeypointAP
from metrics.protocol import PoseMetric

UNITS = {"image", "sequence", "episode-query", "person", "instance"}  # instance: a face or hand on its own box
SUITE = {"KeypointAP", "CrowdPoseAP", "BOPAR", "CapePCK", "PCKh", "H36MPoseError", "PCK3D", "MeshError"}
PROTOCOL_ENTRY_POINTS = ("evaluate", "compute", "bootstrap_stats", "curves")


def _metric_classes() -> dict[str, type]:
    found = {}
    for info in pkgutil.walk_packages(metrics.__path__, "metrics."):
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if (isinstance(obj, type) and issubclass(obj, Metric) and obj.__module__ == info.name
                    and obj is not PoseMetric):
                found[obj.__name__] = obj
    return found


def _declares(cls: type, name: str) -> bool:
    """Whether ``cls`` or one of its suite ancestors (below PoseMetric) sets ``name`` itself."""
    mro = cls.__mro__
    return any(name in vars(c) for c in mro[: mro.index(PoseMetric)])


# ------------------------------------------------------------------ every metric class


def test_every_metric_class_is_a_pose_metric_declaring_unit_and_headline():
    classes = _metric_classes()
    assert SUITE <= set(classes), f"not found in metrics/: {SUITE - set(classes)}"
    for name, cls in classes.items():
        assert issubclass(cls, PoseMetric), f"{name} is a Metric but not a PoseMetric"
        assert _declares(cls, "bootstrap_unit") and _declares(cls, "headline"), name
        assert cls.bootstrap_unit is None or cls.bootstrap_unit in UNITS, (name, cls.bootstrap_unit)
        assert cls.headline and all(isinstance(k, str) for k in cls.headline), name
        assert _declares(cls, "_evaluate") and _declares(cls, "values"), name
        if cls.bootstrap_unit is not None:
            assert _declares(cls, "bootstrap"), f"{name} has a bootstrap unit but no bootstrap()"
        for entry in PROTOCOL_ENTRY_POINTS:  # compute() is values(evaluate()) for every metric, etc.
            assert not _declares(cls, entry), f"{name} overrides PoseMetric.{entry}"


# ------------------------------------------------------------------ each dataset's real case

REAL_CASES = ("coco", "crowdpose-sample_seed2", "mpii", "h36m-action", "mpi_inf_3dhp", "mp100", "ycbv", "3dpw")


@pytest.fixture(scope="module")
def intervals():
    from tests import test_intervals

    return test_intervals


@pytest.mark.parametrize("case", REAL_CASES)
def test_a_run_evaluates_once_and_headline_is_what_the_bootstrap_resamples(case, intervals, tmp_path):
    _, make = intervals.CASES[case]
    m = intervals._scored_metric(*make(tmp_path))
    start = PoseMetric.evaluations
    values = m.compute()
    with m.sync_context(should_unsync=True):  # what the runner does after compute() (a no-op sync here)
        stats = m.bootstrap_stats()
        plots = m.curves()
    assert PoseMetric.evaluations - start == 1
    cls = type(m)
    assert set(cls.headline) <= set(values), (cls.headline, list(values))
    if cls.bootstrap_unit is None:
        assert stats is None
    else:
        assert stats.unit == cls.bootstrap_unit and stats.keys[0] == cls.headline[0]
    fresh = copy.deepcopy(m)  # a copy carries no cached result: the same states evaluated again
    assert fresh.curves() == plots and PoseMetric.evaluations - start == 2
    assert {k: float(v) for k, v in fresh.values(fresh.evaluate()).items()} == pytest.approx(
        {k: float(v) for k, v in values.items()}, rel=0, abs=0, nan_ok=True)


# ------------------------------------------------------------------ the cache on a small COCO case


def _person(dx: float, dy: float) -> torch.Tensor:
    return torch.tensor([[[10.0 + 3 * k + dx, 20.0 + 2 * k + dy, 2.0] for k in range(17)]], dtype=torch.float64)


def _image(image_id: int, shifts: list[tuple[float, float]], scores: list[float]):
    """One image with two people; detections shifted from the first person by ``shifts``."""
    two = torch.cat([_person(0, 0), _person(100, 0)])
    gt = {"image_id": torch.tensor(image_id), "keypoints": two, "area": torch.tensor([1500.0, 1500.0]),
          "bbox": torch.tensor([[10.0, 20.0, 48.0, 32.0], [110.0, 20.0, 48.0, 32.0]]),
          "iscrowd": torch.tensor([False, False]), "num_keypoints": torch.tensor([17, 17]),
          "ann_id": torch.tensor([10 * image_id, 10 * image_id + 1])}
    dets = torch.cat([_person(dx, dy) for dx, dy in shifts])
    return {"image_id": torch.tensor(image_id), "keypoints": dets, "scores": torch.tensor(scores)}, gt


IMAGE_1 = _image(1, [(2.0, 1.0), (104.0, -3.0), (50.0, 60.0)], [0.9, 0.6, 0.8])
IMAGE_2 = _image(2, [(5.0, -4.0), (101.0, 2.0)], [0.7, 0.95])


def _fed(*images, **kwargs) -> KeypointAP:
    m = KeypointAP(**kwargs)
    for pred, gt in images:
        m.update([pred], [gt])
    return m


def _numbers(values: dict) -> dict[str, float]:
    return {k: float(v) for k, v in values.items()}


class _SecondRank:
    """A gather for ``sync``: every state comes back as [this rank's, the other metric's] (two processes).

    torchmetrics gathers the states one by one in ``add_state`` order; the other rank's states follow the
    same order, so a cycle over them pairs each state with its counterpart."""

    def __init__(self, other: Metric):
        self._next = itertools.cycle([dim_zero_cat(getattr(other, a)) for a in other._defaults])

    def __call__(self, tensor: torch.Tensor, group=None) -> list[torch.Tensor]:
        return [tensor, next(self._next)]


def test_two_process_sync_is_evaluated_once_and_not_reused_for_the_local_states():
    gather = _SecondRank(_fed(IMAGE_2))
    m = _fed(IMAGE_1, dist_sync_fn=gather, distributed_available_fn=lambda: True)
    both, local = _fed(IMAGE_1, IMAGE_2), _fed(IMAGE_1)
    start = PoseMetric.evaluations
    assert _numbers(m.compute()) == _numbers(both.compute())  # compute() syncs, evaluates, unsyncs
    with m.sync_context(dist_sync_fn=gather, distributed_available=lambda: True, should_unsync=True):
        assert m._is_synced  # the runner's second sync really gathered
        stats, plots = m.bootstrap_stats(), m.curves()
    assert PoseMetric.evaluations - start == 2  # m once (not three times), plus the reference `both`
    assert stats.ids.tolist() == [1, 2] and plots == both.curves()
    ones = torch.ones(1, 2, dtype=torch.float64)
    assert float(stats.statistic(ones)[0, 0]) == float(both.compute()["AP"])
    assert _numbers(m.values(m.evaluate())) == _numbers(local.compute())  # unsynced: image 1 alone


def test_update_invalidates_and_frees_the_evaluation():
    m = _fed(IMAGE_1)
    first = m.evaluate()
    assert m.evaluate() is first and m.curves() == m.plots(first)
    ref = weakref.ref(first)
    del first
    start = PoseMetric.evaluations
    m.update([IMAGE_2[0]], [IMAGE_2[1]])
    gc.collect()
    assert ref() is None  # an update drops the cached result at once (no stale result kept alive)
    assert _numbers(m.values(m.evaluate())) == _numbers(_fed(IMAGE_1, IMAGE_2).compute())
    assert PoseMetric.evaluations - start == 2


def test_reset_drops_the_evaluation_even_though_the_update_count_starts_again():
    m = _fed(IMAGE_1)
    ref = weakref.ref(m.evaluate())
    m.reset()
    gc.collect()
    assert ref() is None
    m.update([IMAGE_2[0]], [IMAGE_2[1]])  # update count 1 again, as before the reset
    assert _numbers(m.compute()) == _numbers(_fed(IMAGE_2).compute())


def test_merge_state_forward_and_move_drop_the_evaluation():
    m = _fed(IMAGE_1)
    m.compute()
    m.merge_state(_fed(IMAGE_2))  # torchmetrics keeps the update count (and its own compute cache) here
    assert _numbers(m.compute()) == _numbers(_fed(IMAGE_1, IMAGE_2).compute())

    kept = []

    class Recording(KeypointAP):
        def _evaluate(self):
            result = super()._evaluate()
            kept.append(weakref.ref(result))
            return result

    r = Recording()
    batch = r([IMAGE_1[0]], [IMAGE_1[1]])  # forward: the batch's value, evaluated on the batch alone
    assert _numbers(batch) == _numbers(_fed(IMAGE_1).compute())
    r([IMAGE_2[0]], [IMAGE_2[1]])
    gc.collect()
    assert kept and all(k() is None for k in kept)  # no batch evaluation outlives forward
    assert _numbers(r.compute()) == _numbers(_fed(IMAGE_1, IMAGE_2).compute())

    start = PoseMetric.evaluations
    r.curves()  # compute() evaluated these states
    assert PoseMetric.evaluations == start
    r.to("cpu")  # a move (here to the same device) would leave results on the old one: evaluate again
    r.curves()
    assert PoseMetric.evaluations - start == 1


def test_pickles_and_copies_carry_no_cached_result_and_keep_updating():
    m = _fed(IMAGE_1)
    want = _numbers(m.compute())
    for clone in (pickle.loads(pickle.dumps(m)), copy.deepcopy(m), m.clone()):
        start = PoseMetric.evaluations
        assert _numbers(clone.values(clone.evaluate())) == want and PoseMetric.evaluations - start == 1
        clone.update([IMAGE_2[0]], [IMAGE_2[1]])  # the restored update still drops the cache
        assert _numbers(clone.compute()) == _numbers(_fed(IMAGE_1, IMAGE_2).compute())
    assert _numbers(m.compute()) == want  # the copies' updates did not touch the original


def test_no_bootstrap_unit_means_no_interval_without_evaluating():
    class Sum(PoseMetric):
        headline = ("sum",)

        def __init__(self):
            super().__init__()
            self.add_state("x", default=[], dist_reduce_fx="cat")

        def update(self, x):
            self.x.append(x)

        def _evaluate(self):
            return dim_zero_cat(self.x)

        def values(self, result):
            return {"sum": result.sum()}

    s = Sum()
    s.update(torch.tensor([1.0, 2.0]))
    start = PoseMetric.evaluations
    assert s.bootstrap_stats() is None and PoseMetric.evaluations == start
    assert s.curves() == [] and float(s.compute()["sum"]) == 3.0 and PoseMetric.evaluations - start == 1
