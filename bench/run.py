"""One evaluation in two steps: ``score(cfg) -> Scores`` and ``publish(scores, out, leaderboard_dir)``.

Two paths with the same batches, updates and summary: a results file in one process goes through
:func:`run_plain`; a model, or several processes, through a Lightning Trainer (bench/engine.py).

One sample's way: ``dataset[i] -> Sample`` -> DataLoader (a DistributedSampler under DDP) -> ``method.predict_step``
-> ``Prediction`` -> ``metric.update`` -> (after the epoch, states gathered from every rank) ``metric.compute``,
``metric.bootstrap_stats`` and ``metric.curves``, which read one cached evaluation -> :class:`Scores` (rank 0)
-> ``publish``: metrics.json, the leaderboard row, its curves and the family's summary tables (e.g. AR_C).
``compare`` and ``regression`` call :func:`score` too, so every number goes through the same path.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from bench import leaderboard, page, provenance
from bench.data.base import BenchmarkDataset
from bench.errors import InputError
from bench.heap import release_free_memory
from bench.outcome import Outcome, summarize
from bench.registry import DATASETS, METHODS, load_datasets, load_methods
from bench.replay import PredictionsFile
from bench.types import collate_samples
from metrics import bootstrap
from metrics.common import one_cpu_thread

REPO = provenance.REPO


def run_plain(ds: Any, method: Any, metric: Any, batch_size: int, samples: int, seed: int,
              recorder: Any = None) -> Outcome:
    """A results file in one process: the same batches, updates and summary as the Lightning path, without a
    Trainer (and without importing Lightning). ``recorder``: see :meth:`BenchmarkDataset.results_recorder`."""
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=collate_samples)
    seen: set[int] = set()
    release_free_memory()  # what reading the inputs freed (bench/heap.py)
    # one torch thread: a results file feeds small tensors, where intra-op threads only add synchronisation
    # (BOP, 60 images: 0.15 s -> 0.01 s for the matching; the compiled kernels keep their own threads)
    with torch.inference_mode(), one_cpu_thread("cpu"):
        for i, batch in enumerate(loader):
            preds = method.predict_step(batch, i)
            metric.update([p.output for p in preds], [s.target for s in batch])
            if recorder is not None:
                recorder.update(preds)
            seen.update(s.sample_id for s in batch)
        values = metric.compute()
        release_free_memory()  # the evaluation's temporaries, before the bootstrap's
        outcome = summarize(metric, values, len(seen), samples, seed)
        if recorder is not None:
            outcome.results_file = recorder.compute()
        return outcome


def use_lightning(cfg: DictConfig) -> bool:
    """``engine=auto``: Lightning when a model runs or several processes score, the plain loop otherwise."""
    engine = str(cfg.get("engine", "auto"))
    if engine not in ("auto", "lightning", "plain"):
        raise InputError(None, None, "engine", f"expected auto, lightning or plain, got {engine!r}")
    several = int(cfg.devices) * int(cfg.num_nodes) > 1 or os.environ.get("WORLD_SIZE", "1") != "1"
    if engine == "plain" and (not cfg.predictions or several):
        raise InputError(None, None, "engine", "engine=plain scores a results file (predictions=) in one process")
    return engine == "lightning" or not cfg.predictions or several


@dataclass
class Scores:
    """What one evaluation found: everything ``publish`` writes, nothing written yet."""

    method: str
    dataset: str
    variant: str
    family: str
    bundled: bool
    metrics: dict[str, float]  # headline keys, then their intervals (KEY_ci_low/high), then the rest
    metric_keys: list[str]
    num_samples: int
    provenance: dict[str, Any]
    curves: dict[str, Any] = field(default_factory=dict)
    bootstrap: bootstrap.BootstrapStats | None = None  # per-unit statistics (the paired bootstrap of compare)
    timings: dict[str, float] = field(default_factory=dict)
    results_file: tuple[str, bytes] | None = None  # a model run's predictions in the official format (name, bytes)


@dataclass
class Published:
    """Where ``publish`` wrote, and the leaderboard row it replaced (None: a new row)."""

    out_dir: Path
    csv_path: Path
    replaced: dict[str, str] | None = None


def build_dataset(cfg: DictConfig) -> BenchmarkDataset:
    name = cfg.dataset.name
    load_datasets(name)
    if name not in DATASETS:
        raise InputError(None, None, "dataset", f"unknown dataset {name!r}; registered: {', '.join(sorted(DATASETS))}")
    ds_cfg = OmegaConf.merge(cfg.dataset, {"data_root": cfg.data_root or cfg.dataset.get("data_root")})
    # what the method needs from the data (2D inputs of a lifter, ...) is a dataset option: the method's config
    # names the official default under ``inputs``, the user's dataset.X= wins
    inputs = {} if cfg.predictions else (OmegaConf.select(cfg, "method.inputs") or {})
    needs = {k: v for k, v in inputs.items() if ds_cfg.get(k) is None}
    if needs:
        ds_cfg = OmegaConf.merge(ds_cfg, needs)
    if cfg.get("smpl_dir"):  # top-level smpl_dir= is the mesh datasets' (and TokenHMR's) SMPL folder
        ds_cfg = OmegaConf.merge(ds_cfg, {"smpl_dir": cfg.smpl_dir})
    return DATASETS[name](ds_cfg)


def build_method(cfg: DictConfig, ds: BenchmarkDataset) -> tuple[Any, str]:
    """The method to run and the sha256 of the predictions file ('' when a model runs)."""
    if cfg.predictions:
        path = Path(cfg.predictions)
        if not path.exists():
            raise InputError(path, None, "predictions", "file not found")
        # a folder (the per-image result files some official code writes, e.g. NOCS) is read by the dataset
        digest = provenance.sha256_tree(path) if path.is_dir() else provenance.sha256_file(path)
        return PredictionsFile(ds.read_predictions(path), ds), digest
    load_methods()  # a model runs: only now the method modules (timm, Lightning) are imported
    name = cfg.method.name
    if name not in METHODS:
        raise InputError(None, None, "method", f"unknown method {name!r}; registered: {', '.join(sorted(METHODS))} "
                         "(or pass predictions=FILE to score an official results file)")
    weights = Path(cfg.weights) if cfg.weights else None
    if weights is not None and not weights.is_file():
        raise InputError(weights, None, "weights", "file not found")
    return METHODS[name](cfg.method, ds, weights), ""


def default_out(method: str, dataset: str) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = REPO / "outputs" / f"{stamp}-{dataset}-{method}"
    out, i = base, 1
    while out.exists():
        out, i = Path(f"{base}-{i}"), i + 1
    return out


def score(cfg: DictConfig, console=None) -> Scores | None:
    """Build the dataset and the method, run them, score. Returns the scores on rank 0 and None elsewhere."""
    t0 = time.perf_counter()
    ds = build_dataset(cfg)
    method_name = str(cfg.method.name)
    if ds.bundled and console is not None and int(os.environ.get("LOCAL_RANK", "0")) == 0:
        console.print(
            f"[bold yellow]NOTE: no {ds.name!r} data under data_root or $POSEARENA_DATA: using the BUNDLED SAMPLE "
            f"at {ds.root} ({ds.bundled_note}).[/]",
            soft_wrap=True,
        )
    method, pred_sha = build_method(cfg, ds)
    t_load = time.perf_counter()
    samples = int(OmegaConf.select(cfg, "bootstrap.samples", default=bootstrap.DEFAULT_SAMPLES))
    seed = int(OmegaConf.select(cfg, "bootstrap.seed", default=bootstrap.DEFAULT_SEED))
    recording = None if cfg.predictions else ds.results_recorder(method_name)  # a model run: write its results
    recorder = recording[1] if recording else None
    if use_lightning(cfg):
        from bench import engine

        outcome = engine.run(cfg, ds, method, ds.build_metric(), samples, seed, recorder)
    else:
        outcome = run_plain(ds, method, ds.build_metric(), int(cfg.batch_size), samples, seed, recorder)
    t_eval = time.perf_counter()
    if outcome is None:  # not rank 0
        return None
    ordered = {k: outcome.results[k] for k in ds.metric_keys if k in outcome.results}
    ordered.update(outcome.intervals)  # KEY_ci_low / KEY_ci_high right after the headline metrics
    ordered.update({k: v for k, v in outcome.results.items() if k not in ordered})
    prov = {
        "code": provenance.git_sha() or provenance.code_version(),
        "code_version": provenance.code_version(),
        "data": ds.fingerprint(),
        "predictions": pred_sha,
        "world_size": outcome.world_size,
        "bootstrap": outcome.bootstrap_info,
        "versions": provenance.versions(),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    return Scores(
        method=method_name, dataset=ds.name, variant=ds.variant, family=ds.family, bundled=ds.bundled,
        metrics=ordered, metric_keys=list(ds.metric_keys), num_samples=outcome.num_samples, provenance=prov,
        curves=outcome.curves, bootstrap=outcome.stats,
        timings={"load_s": round(t_load - t0, 3), "evaluate_s": round(t_eval - t_load, 3)},
        results_file=(recording[0], outcome.results_file) if recording and outcome.results_file is not None else None,
    )


def publish(scores: Scores, out: Path, leaderboard_dir: Path) -> Published:
    """Write metrics.json (and curves.json) to ``out``, the row and its curves to the leaderboard, then the
    family's summary tables (registered with :func:`bench.leaderboard.register_summary`)."""
    prov = scores.provenance
    payload = {
        "method": scores.method, "dataset": scores.dataset, "variant": scores.variant, "metrics": scores.metrics,
        "num_samples": scores.num_samples, "bundled_sample": scores.bundled, "provenance": prov,
        "timings": scores.timings,
    }
    leaderboard.write_atomic(out / "metrics.json", leaderboard.metrics_json(payload))
    curves_bytes = page.dumps({"method": scores.method, "dataset": scores.dataset, "variant": scores.variant,
                               "family": scores.family, **scores.curves}) if scores.curves else None
    if curves_bytes:
        leaderboard.write_atomic(out / "curves.json", curves_bytes)
    if scores.results_file is not None:
        leaderboard.write_atomic(out / scores.results_file[0], scores.results_file[1])
    row = leaderboard.make_row(
        scores.method, scores.variant, scores.metrics,
        {"num_samples": scores.num_samples, "code": prov["code_version"], "data": prov["data"],
         "predictions": prov["predictions"]},
    )
    path = leaderboard.csv_path(leaderboard_dir, scores.family, scores.dataset)
    replaced = leaderboard.upsert_row(path, row, list(scores.metrics))
    if curves_bytes:  # the page plots the leaderboard's curves: kept beside the CSV, one file per row
        leaderboard.write_atomic(page.curves_path(leaderboard_dir, scores.family, scores.dataset, scores.method,
                                                  scores.variant), curves_bytes)
    for summary in leaderboard.summaries(scores.family):
        summary(leaderboard_dir, scores.dataset)
    return Published(out, path, replaced)


def evaluate(cfg: DictConfig, console=None) -> tuple[Scores, Published] | None:
    """``python -m bench evaluate``: score, then publish (rank 0). None on the other ranks."""
    scores = score(cfg, console)
    if scores is None:
        return None
    out = Path(cfg.out) if cfg.out else default_out(scores.method, scores.dataset)
    lb_dir = Path(cfg.leaderboard_dir) if cfg.leaderboard_dir else REPO / "leaderboards"
    return scores, publish(scores, out, lb_dir)
