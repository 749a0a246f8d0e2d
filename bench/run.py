"""One evaluation in two steps: ``score(cfg) -> Scores`` and ``publish(scores, out, leaderboard_dir)``.

One sample's way: ``dataset[i] -> Sample`` -> DataLoader (a DistributedSampler under DDP) -> ``method.predict_step``
-> ``Prediction`` -> ``metric.update`` -> (after the epoch, states gathered from every rank) ``metric.compute``,
``metric.bootstrap_stats`` and ``metric.curves``, which read one cached evaluation -> :class:`Scores` (rank 0)
-> ``publish``: metrics.json, the leaderboard row, its curves and the family's summary tables (e.g. AR_C).
``compare`` and ``regression`` call :func:`score` too, so every number goes through the same path.
"""
from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from lightning import LightningModule, Trainer
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from bench import leaderboard, page, provenance
from bench.data.base import BenchmarkDataset
from bench.errors import InputError
from bench.registry import DATASETS, METHODS, load_all
from bench.types import Sample, collate_samples
from methods.base import PoseMethod, PredictionsFile
from metrics import bootstrap

REPO = provenance.REPO


class UniqueSamples(Metric):
    """Counts distinct sample ids seen on all ranks (sampler padding repeats some)."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("ids", default=[], dist_reduce_fx="cat")

    def update(self, ids: torch.Tensor) -> None:
        self.ids.append(ids.to(torch.int64))

    def compute(self) -> torch.Tensor:
        if isinstance(self.ids, list) and not self.ids:
            return torch.tensor(0)
        return torch.tensor(int(torch.unique(dim_zero_cat(self.ids)).numel()))


class EvaluationModule(LightningModule):
    """Runs a method over the test loader and feeds its predictions to the dataset's metric."""

    def __init__(self, method: PoseMethod, metric: Metric, bootstrap_samples: int = bootstrap.DEFAULT_SAMPLES,
                 bootstrap_seed: int = bootstrap.DEFAULT_SEED):
        super().__init__()
        self.method = method
        self.metric = metric
        self.count = UniqueSamples()
        self.results: dict[str, float] = {}
        self.intervals: dict[str, float] = {}
        self.curves: dict[str, Any] = {}
        self.bootstrap_info: dict[str, Any] = {}
        self.stats: bootstrap.BootstrapStats | None = None
        self.num_samples = 0
        self.bootstrap_samples = int(bootstrap_samples)
        self.bootstrap_seed = int(bootstrap_seed)

    def test_step(self, batch: list[Sample], batch_idx: int) -> None:
        preds = self.method.predict_step(batch, batch_idx)
        self.metric.update([p.output for p in preds], [s.target for s in batch])
        self.count.update(torch.tensor([s.sample_id for s in batch], device=self.device))

    def on_test_epoch_end(self) -> None:
        values = self.metric.compute()
        self.results = {k: float(v) for k, v in values.items()}
        self.num_samples = int(self.count.compute())
        # CIs and curves from the gathered states (every rank takes part in the gather; rank 0 computes). The
        # metric evaluated these states in compute() and keeps that result, so nothing is matched again; the
        # states are deduplicated and sorted by sample id, so the numbers do not depend on the world size
        with self.metric.sync_context(should_unsync=True):
            if self.trainer.is_global_zero:
                self.stats = self.metric.bootstrap_stats()
                if self.bootstrap_samples > 0 and self.stats is not None:
                    self.intervals = bootstrap.confidence_intervals(self.stats, self.bootstrap_samples,
                                                                    self.bootstrap_seed)
                    self.bootstrap_info = {"samples": self.bootstrap_samples, "seed": self.bootstrap_seed,
                                           "level": bootstrap.DEFAULT_LEVEL, "unit": self.stats.unit,
                                           "units": int(self.stats.ids.numel())}
                plots = self.metric.curves()
                self.curves = {"plots": plots} if plots else {}


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


@dataclass
class Published:
    """Where ``publish`` wrote, and the leaderboard row it replaced (None: a new row)."""

    out_dir: Path
    csv_path: Path
    replaced: dict[str, str] | None = None


def build_dataset(cfg: DictConfig) -> BenchmarkDataset:
    load_all()
    name = cfg.dataset.name
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


def build_method(cfg: DictConfig, ds: BenchmarkDataset) -> tuple[PoseMethod, str]:
    """The method to run and the sha256 of the predictions file ('' when a model runs)."""
    if cfg.predictions:
        path = Path(cfg.predictions)
        if not path.is_file():
            raise InputError(path, None, "predictions", "file not found")
        return PredictionsFile(ds.read_predictions(path), ds), provenance.sha256_file(path)
    name = cfg.method.name
    if name not in METHODS:
        raise InputError(None, None, "method", f"unknown method {name!r}; registered: {', '.join(sorted(METHODS))} "
                         "(or pass predictions=FILE to score an official results file)")
    weights = Path(cfg.weights) if cfg.weights else None
    if weights is not None and not weights.is_file():
        raise InputError(weights, None, "weights", "file not found")
    return METHODS[name](cfg.method, ds, weights), ""


def make_trainer(cfg: DictConfig) -> Trainer:
    from lightning.pytorch.callbacks import RichProgressBar
    from lightning.pytorch.strategies import DDPStrategy

    accelerator = cfg.accelerator
    if accelerator == "auto":
        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    devices = int(cfg.devices)
    num_nodes = int(cfg.num_nodes)
    launched = os.environ.get("WORLD_SIZE")  # set by torchrun (and by Lightning in the workers it starts)
    if launched is not None and launched.isdigit() and int(launched) != devices * num_nodes:
        # otherwise every process would score every sample as a world of one, all writing the same files
        raise InputError(None, None, "num_nodes", f"the launcher started {launched} processes but devices x "
                         f"num_nodes = {devices * num_nodes}: pass devices= and num_nodes= to match")
    if devices * num_nodes > 1:
        strategy: Any = DDPStrategy(process_group_backend="nccl" if accelerator == "gpu" else "gloo")
    else:
        strategy = "auto"
    show_bar = bool(cfg.progress) and sys.stderr.isatty()
    return Trainer(
        accelerator=accelerator,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=show_bar,
        callbacks=[RichProgressBar()] if show_bar else [],
        use_distributed_sampler=True,
        inference_mode=True,
        deterministic=False,
    )


def quiet_lightning() -> None:
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "lightning_fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*Consider setting `persistent_workers=True`.*")
    warnings.filterwarnings("ignore", message=r".*sync_dist=True.*")
    warnings.filterwarnings("ignore", message=r".*gather.*")
    # padding duplicates are dropped by the metrics (states keyed by sample id), so this advice does not apply
    warnings.filterwarnings("ignore", message=r".*Using `DistributedSampler` with the dataloaders.*")
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*")


def default_out(method: str, dataset: str) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = REPO / "outputs" / f"{stamp}-{dataset}-{method}"
    out, i = base, 1
    while out.exists():
        out, i = Path(f"{base}-{i}"), i + 1
    return out


def score(cfg: DictConfig, console=None) -> Scores | None:
    """Build the dataset and the method, run them, score. Returns the scores on rank 0 and None elsewhere."""
    quiet_lightning()
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
    module = EvaluationModule(method, ds.build_metric(),
                              int(OmegaConf.select(cfg, "bootstrap.samples", default=bootstrap.DEFAULT_SAMPLES)),
                              int(OmegaConf.select(cfg, "bootstrap.seed", default=bootstrap.DEFAULT_SEED)))
    loader = DataLoader(
        ds, batch_size=int(cfg.batch_size), shuffle=False, num_workers=int(cfg.num_workers),
        collate_fn=collate_samples,
    )
    trainer = make_trainer(cfg)
    trainer.test(module, dataloaders=loader, verbose=False)
    t_eval = time.perf_counter()
    if not trainer.is_global_zero:
        return None
    ordered = {k: module.results[k] for k in ds.metric_keys if k in module.results}
    ordered.update(module.intervals)  # KEY_ci_low / KEY_ci_high right after the headline metrics
    ordered.update({k: v for k, v in module.results.items() if k not in ordered})
    prov = {
        "code": provenance.git_sha() or provenance.code_version(),
        "code_version": provenance.code_version(),
        "data": ds.fingerprint(),
        "predictions": pred_sha,
        "world_size": trainer.world_size,
        "bootstrap": module.bootstrap_info,
        "versions": provenance.versions(),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    return Scores(
        method=method_name, dataset=ds.name, variant=ds.variant, family=ds.family, bundled=ds.bundled,
        metrics=ordered, metric_keys=list(ds.metric_keys), num_samples=module.num_samples, provenance=prov,
        curves=module.curves, bootstrap=module.stats,
        timings={"load_s": round(t_load - t0, 3), "evaluate_s": round(t_eval - t_load, 3)},
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
