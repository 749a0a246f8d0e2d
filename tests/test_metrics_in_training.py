"""The metrics inside a user's own training loop (README "The metrics in your own training loop").

A LightningModule that knows nothing of the harness keeps ``KeypointAP`` and ``H36MPoseError`` (MPJPE and the
other Human3.6M errors) as attributes, feeds them in ``validation_step`` of two validation loaders and computes
them at the end of the epoch, under DDP with ``devices=2`` (gloo). The numbers must equal, exactly, those the CLI
writes for the same predictions: the metrics sort by sample id and drop the DistributedSampler's padding, so
neither the world size nor the loader order can move them.

The (prediction, target) pairs are made here from the bundled data with the suite's readers and handed to the
script as a tensors-only file (``torch.load(weights_only=True)``), as a user's own pipeline would produce them.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, run_cli

pytestmark = pytest.mark.slow

H36M_PREDS = REPO / "tests" / "data" / "h36m_golden" / "predictions_seed7.npz"

SCRIPT = textwrap.dedent('''
    import json
    import sys

    import torch
    from lightning import LightningModule, Trainer
    from lightning.pytorch.strategies import DDPStrategy
    from torch.utils.data import DataLoader

    from metrics.keypoint_ap import KeypointAP
    from metrics.mpjpe import H36MPoseError

    pairs = torch.load(sys.argv[1], weights_only=True)


    class Validator(LightningModule):
        def __init__(self):
            super().__init__()
            self.ap = KeypointAP()
            self.h36m = H36MPoseError()

        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            preds, targets = [p for p, _ in batch], [t for _, t in batch]
            (self.ap if dataloader_idx == 0 else self.h36m).update(preds, targets)

        def on_validation_epoch_end(self):
            values = {**self.ap.compute(), **self.h36m.compute()}
            if self.trainer.is_global_zero:
                with open(sys.argv[2], "w") as fh:
                    json.dump({k: float(v) for k, v in values.items()}, fh)


    def loader(items, batch_size):
        return DataLoader(items, batch_size=batch_size, collate_fn=list)


    if __name__ == "__main__":
        trainer = Trainer(accelerator="cpu", devices=2, strategy=DDPStrategy(process_group_backend="gloo"),
                          logger=False, enable_checkpointing=False, enable_progress_bar=False,
                          enable_model_summary=False)
        trainer.validate(Validator(), dataloaders=[loader(pairs["coco"], 3), loader(pairs["h36m"], 5)])
''')


def _pairs(*overrides: str) -> list[tuple[dict, dict]]:
    """(prediction, target) per sample, as the CLI feeds them to the metric."""
    from bench.config import compose
    from bench.run import build_dataset, build_method

    cfg = compose(list(overrides))
    ds = build_dataset(cfg)
    method, _ = build_method(cfg, ds)
    out = []
    for i in range(len(ds)):
        s = ds[i]
        out.append((method.predict_step([s], 0)[0].output, s.target))
    return out


def _cli(tmp: Path, *args: str) -> dict[str, float]:
    r = run_cli("evaluate", *args, "bootstrap.samples=0", f"out={tmp / 'out'}", f"leaderboard_dir={tmp / 'lb'}")
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads((tmp / "out" / "metrics.json").read_text())["metrics"]


def test_keypoint_ap_and_mpjpe_in_validation_step_with_two_processes_equal_the_cli(tmp_path, coco7):
    root, preds = coco7
    coco_args = ("method=mine", "dataset=coco", f"data_root={root}", f"predictions={preds}")
    h36m_args = ("method=mine", "dataset=h36m", f"predictions={H36M_PREDS}")
    pairs = {"coco": _pairs(*coco_args), "h36m": _pairs(*h36m_args)}
    assert len(pairs["coco"]) % 2 == 1  # 7 images: the sampler pads one duplicate in, which must not count
    torch.save(pairs, tmp_path / "pairs.pt")
    (tmp_path / "train.py").write_text(SCRIPT)
    r = subprocess.run([sys.executable, str(tmp_path / "train.py"), str(tmp_path / "pairs.pt"),
                        str(tmp_path / "values.json")], check=False, cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    trained = json.loads((tmp_path / "values.json").read_text())
    cli = {**_cli(tmp_path / "coco", *coco_args), **_cli(tmp_path / "h36m", *h36m_args)}
    assert 0 < trained["AP"] < 1 and trained["MPJPE"] > 0
    assert {k: trained[k] for k in cli} == cli
