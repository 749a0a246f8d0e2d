"""Scoring a method's official results file: the file's predictions replayed sample by sample.

A plain object, not a LightningModule: the plain scoring loop (bench/run.py) never imports Lightning, and the
Lightning path calls the same ``predict_step``.
"""
from __future__ import annotations

from typing import Any

from bench.types import Prediction, Sample


class PredictionsFile:
    """Replays an official results file: ``predict_step`` looks each sample up by ``sample_id``.

    Samples the file says nothing about get the dataset's empty prediction (for COCO: no detections).
    """

    def __init__(self, predictions: dict[int, Prediction], dataset: Any):
        self.predictions = predictions
        self.dataset = dataset

    def predict_step(self, batch: list[Sample], batch_idx: int = 0) -> list[Prediction]:
        out = []
        for s in batch:
            p = self.predictions.get(s.sample_id)
            out.append(p if p is not None else self.dataset.empty_prediction(s))
        return out
