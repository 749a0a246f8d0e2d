"""The method interface: every method is a LightningModule that maps a batch of Samples to Predictions.

A method that runs a network and an official results file (``predictions=``) both yield ``Prediction``s,
so the harness and the metrics never know where predictions came from.
"""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from lightning import LightningModule

from bench.types import Prediction, Sample


class PoseMethod(LightningModule):
    """Base class. ``family`` is one of human2d, human3d, mesh, object6d, cape."""

    family: ClassVar[str] = ""

    def predict_step(self, batch: list[Sample], batch_idx: int = 0) -> list[Prediction]:  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def from_official_checkpoint(cls, path: Path, **cfg) -> PoseMethod:  # pragma: no cover
        """Build the module and load an official checkpoint, converting its key layout."""
        raise NotImplementedError
