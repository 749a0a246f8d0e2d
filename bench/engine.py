"""The Lightning path of a run: a method's LightningModule under a Trainer, one process or many (DDP).

Imported only when a model runs or several processes score (``bench.run.score`` picks the path): scoring a
results file in one process never pays for Lightning's import.
"""
from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Any

import torch
from lightning import LightningModule, Trainer
from omegaconf import DictConfig
from torch.utils.data import DataLoader
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from bench.errors import InputError
from bench.outcome import Outcome, summarize
from bench.types import Sample, collate_samples
from metrics import bootstrap


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

    def __init__(self, method: Any, metric: Metric, bootstrap_samples: int = bootstrap.DEFAULT_SAMPLES,
                 bootstrap_seed: int = bootstrap.DEFAULT_SEED, recorder: Metric | None = None):
        super().__init__()
        self.method = method
        self.metric = metric
        self.recorder = recorder  # the official results file of a model run (bench/results_file.py)
        self.count = UniqueSamples()
        self.outcome: Outcome | None = None
        self.bootstrap_samples = int(bootstrap_samples)
        self.bootstrap_seed = int(bootstrap_seed)

    def test_step(self, batch: list[Sample], batch_idx: int) -> None:
        preds = self.method.predict_step(batch, batch_idx)
        self.metric.update([p.output for p in preds], [s.target for s in batch])
        if self.recorder is not None:
            self.recorder.update(preds)
        self.count.update(torch.tensor([s.sample_id for s in batch], device=self.device))

    def on_test_epoch_end(self) -> None:
        values = self.metric.compute()
        num_samples = int(self.count.compute())
        results_file = self.recorder.compute() if self.recorder is not None else None  # every rank gathers
        # CIs and curves from the gathered states (every rank takes part in the gather; rank 0 computes). The
        # metric evaluated these states in compute() and keeps that result, so nothing is matched again; the
        # states are deduplicated and sorted by sample id, so the numbers do not depend on the world size
        with self.metric.sync_context(should_unsync=True):
            if self.trainer.is_global_zero:
                self.outcome = summarize(self.metric, values, num_samples, self.bootstrap_samples,
                                         self.bootstrap_seed)
                self.outcome.results_file = results_file


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




def _leave_process_group() -> None:
    """Meet every rank, then tear the process group down before any rank exits: a rank that exits with the
    group alive can abort (gloo's threads, "terminate called without an active exception") when a peer on
    another node goes away first. Nothing after the test loop needs a collective: rank 0 alone publishes."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def run(cfg: DictConfig, ds: Any, method: Any, metric: Metric, samples: int, seed: int,
        recorder: Metric | None = None) -> Outcome | None:
    """Run ``method`` over ``ds`` under a Trainer; the outcome on rank 0, None on the other ranks."""
    quiet_lightning()
    module = EvaluationModule(method, metric, samples, seed, recorder)
    loader = DataLoader(ds, batch_size=int(cfg.batch_size), shuffle=False, num_workers=int(cfg.num_workers),
                        collate_fn=collate_samples)
    trainer = make_trainer(cfg)
    trainer.test(module, dataloaders=loader, verbose=False)
    _leave_process_group()
    if not trainer.is_global_zero:
        return None
    assert module.outcome is not None
    module.outcome.world_size = trainer.world_size
    return module.outcome
