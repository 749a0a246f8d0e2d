"""What every dataset reader provides to the harness.

A reader turns a dataset in its official layout into ``Sample``s, knows how to read the official
predictions format of its family into ``Prediction``s (validated against its GT), and builds the metric
that scores them. ``fingerprint`` identifies the GT that was scored (it goes into every leaderboard row).
"""
from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

from torch.utils.data import Dataset
from torchmetrics import Metric

from bench.errors import InputError
from bench.types import Prediction, Sample

SAMPLES_DIR = Path(__file__).parent / "samples"


class BenchmarkDataset(Dataset, ABC):
    """A dataset in its official layout, read into Samples.

    Subclasses set ``name``, ``family`` and ``metric_keys`` (the column order of metrics.json and the
    leaderboard CSV), and ``variant`` (e.g. ``split1-test-1shot``) when one dataset name has several
    leaderboards rows per method.
    """

    family: ClassVar[str]
    metric_keys: ClassVar[tuple[str, ...]]
    bundled_note: ClassVar[str] = "a few samples, not the full benchmark"

    def __init__(self, name: str, root: Path, bundled: bool):
        self.name = name
        self.root = Path(root)
        self.bundled = bundled
        self.variant = ""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def __getitem__(self, index: int) -> Sample: ...

    @abstractmethod
    def gt_files(self) -> Iterable[Path]:
        """The files whose content defines the GT (hashed into the fingerprint)."""

    @abstractmethod
    def build_metric(self) -> Metric:
        """A fresh metric; ``update(preds, target)`` takes lists of output/target dicts."""

    @abstractmethod
    def read_predictions(self, path: Path) -> dict[int, Prediction]:
        """Read the family's official results file, validated against this GT; raise InputError."""

    def results_recorder(self, method: str) -> tuple[str, Metric] | None:
        """For a model run: the official results file's name and a recorder whose ``update(predictions)``
        collects the method's outputs and whose ``compute()`` gives the file's bytes (bench/results_file.py);
        None when the dataset has no writer."""
        return None

    def empty_prediction(self, sample: Sample) -> Prediction:
        """The prediction of a sample that a results file says nothing about (e.g. no detections)."""
        raise InputError(None, f"sample {sample.sample_id}", None, "no prediction for this sample")

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for f in sorted(Path(p) for p in self.gt_files()):
            h.update(f.relative_to(self.root).as_posix().encode())
            h.update(b"\0")
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        return h.hexdigest()[:16]


def resolve_data_root(name: str, data_root: str | None, required: Iterable[str], sample: str | None) -> tuple[Path, bool]:
    """Find the dataset folder: ``data_root``, else ``$POSEARENA_DATA/<name>``, else the bundled sample.

    Returns ``(root, bundled)``. A ``data_root`` given explicitly must hold the required files (else a
    one-line error); the fallbacks are tried in order.
    """
    required = list(required)

    def complete(root: Path) -> bool:
        return all((root / r).exists() for r in required)

    if data_root:
        root = Path(data_root).expanduser()
        missing = [r for r in required if not (root / r).exists()]
        if missing:
            raise InputError(root, None, "data_root", f"dataset {name!r} needs {missing[0]} under it (official layout)")
        return root, False
    env = os.environ.get("POSEARENA_DATA")
    if env and complete(Path(env) / name):
        return Path(env) / name, False
    if sample is not None and complete(SAMPLES_DIR / sample):
        return SAMPLES_DIR / sample, True
    where = f"$POSEARENA_DATA/{name}" if env else "data_root=DIR (or set $POSEARENA_DATA)"
    raise InputError(None, None, "data_root", f"no {name!r} data found: pass {where} holding {required[0]}")
