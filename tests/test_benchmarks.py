"""The benchmark modules time the CLI's own scoring path: on a tiny case they must give the CLI's numbers."""
from __future__ import annotations

from bench.benchmarks import memory
from bench.config import compose
from bench.run import score


def test_memory_benchmark_scores_as_the_cli_with_its_bootstrap(tmp_path):
    """``nox -s bench -- metric=memory --bootstrap-samples B``: the child's stats, intervals included, are the
    ones ``python -m bench evaluate`` computes for the same files (default seed)."""
    _, results = memory.make_case(tmp_path, n_images=40, n_det=400, seed=3)
    out = memory.score(tmp_path, results, batch_size=8, bootstrap_samples=50)
    assert out["num_detections"] == 400
    assert set(out["stages"]) == {"read GT", "read results", "update", "compute", "bootstrap"}
    cfg = compose(["method=mine", "dataset=coco", f"data_root={tmp_path}", f"predictions={results}",
                   "bootstrap.samples=50"])
    cli = score(cfg).metrics
    assert out["stats"] == {k: cli[k] for k in out["stats"]}
    assert {"AP_ci_low", "AP_ci_high"} <= set(out["stats"])
