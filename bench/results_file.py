"""A model run's predictions, written as the dataset's official results file beside metrics.json.

A user who runs a checkpoint (``weights=``) gets the file the official tools read, so the run can be scored by
them, re-scored here with ``predictions=`` (the same numbers), or submitted. For BOP that is the BOP19 results
CSV ``METHOD_DATASET-SPLIT.csv`` (``scene_id,im_id,obj_id,score,R,t,time``, R row-major, t in mm, one time per
image), the file ``bop_toolkit``'s ``save_bop_results`` writes and its evaluation scripts parse. For COCO-format
keypoint datasets it is the COCO keypoint results JSON (``[{"image_id", "category_id", "keypoints": [x, y, v] *
K, "score"}]``, the records mmpose's ``CocoMetric.results2json`` writes and pycocotools' ``loadRes`` reads),
named ``ANNFILE_METHOD_results.json`` after COCO's ``[type]_[testset]_[alg]_results.json``; COCO-WholeBody's
is the same name in mmpose's whole-body record layout.

The recorder is a torchmetrics ``Metric`` for one reason: its ``cat`` states are gathered from every process
like the metric's, so the file is the same for any number of processes (rows deduplicated by image and row,
as the DistributedSampler repeats images, and sorted by image, the method's order kept inside an image).
Numbers are written as Python's ``repr`` (the shortest string that reads back as the same float).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from bench.predictions.wholebody_json import NUM_KEYPOINTS, PART_FIELDS, SCORE_FIELDS
from bench.types import Prediction

BOP19_HEADER = "scene_id,im_id,obj_id,score,R,t,time"


class BopResultsRecorder(Metric):
    """Collects the 6D estimates of a model run; :meth:`compute` gives the BOP19 CSV bytes (on every rank)."""

    full_state_update = False

    def __init__(self, im_id_limit: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.im_id_limit = int(im_id_limit)  # sample_id = scene_id * im_id_limit + im_id
        for name in ("sample", "row", "obj"):
            self.add_state(name, default=[], dist_reduce_fx="cat")
        for name in ("score", "R", "t", "time"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, preds: list[Prediction]) -> None:
        i64, f64 = {"dtype": torch.int64, "device": self.device}, {"dtype": torch.float64, "device": self.device}
        for p in preds:
            o = p.output
            n = int(o["obj_id"].numel())
            self.sample.append(torch.full((n,), int(p.sample_id), **i64))
            self.row.append(torch.arange(n, **i64))
            self.obj.append(o["obj_id"].reshape(n).to(**i64))
            self.score.append(o["score"].reshape(n).to(**f64))
            self.R.append(o["R"].reshape(n, 9).to(**f64))
            self.t.append(o["t"].reshape(n, 3).to(**f64))
            self.time.append(torch.full((n,), float(o["time"]), **f64))

    def compute(self) -> bytes:
        cols = {k: _cat(getattr(self, k), width) for k, width in
                (("sample", 0), ("row", 0), ("obj", 0), ("score", 0), ("R", 9), ("t", 3), ("time", 0))}
        keep = _unique_rows(cols["sample"], cols["row"])
        lines = [BOP19_HEADER]
        for i in keep.tolist():
            scene, im = divmod(int(cols["sample"][i]), self.im_id_limit)
            R = " ".join(repr(x) for x in cols["R"][i].tolist())
            t = " ".join(repr(x) for x in cols["t"][i].tolist())
            lines.append(f"{scene},{im},{int(cols['obj'][i])},{float(cols['score'][i])!r},{R},{t},"
                         f"{float(cols['time'][i])!r}")
        return ("\n".join(lines) + "\n").encode()


class CocoKeypointResultsRecorder(Metric):
    """Collects the keypoint detections of a model run; :meth:`compute` gives the COCO results JSON bytes (on
    every rank). ``sample_id`` is the COCO image id; every detection gets ``category_id``."""

    full_state_update = False
    score_width = 1  # score columns kept per detection

    def __init__(self, category_id: int, num_keypoints: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.category_id = int(category_id)
        self.num_keypoints = int(num_keypoints)
        for name in ("sample", "row", "scores", "keypoints"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, preds: list[Prediction]) -> None:
        i64, f64 = {"dtype": torch.int64, "device": self.device}, {"dtype": torch.float64, "device": self.device}
        for p in preds:
            kp = p.output["keypoints"].reshape(-1, self.num_keypoints * 3).to(**f64)
            n = kp.shape[0]
            self.sample.append(torch.full((n,), int(p.sample_id), **i64))
            self.row.append(torch.arange(n, **i64))
            self.scores.append(self._scores(p.output, n).to(**f64))
            self.keypoints.append(kp)

    def _scores(self, output: dict[str, Tensor], n: int) -> Tensor:
        return output["scores"].reshape(n, 1)

    def _fields(self, kp: list[float], scores: list[float]) -> list[str]:
        """The record's fields after image and category, as JSON text."""
        return [f'"keypoints": [{", ".join(map(repr, kp))}]', f'"score": {scores[0]!r}']

    def compute(self) -> bytes:
        cols = {k: _cat(getattr(self, k), width) for k, width in
                (("sample", 0), ("row", 0), ("scores", self.score_width), ("keypoints", self.num_keypoints * 3))}
        records = [
            f'{{"image_id": {int(cols["sample"][i])}, "category_id": {self.category_id}, '
            + ", ".join(self._fields(cols["keypoints"][i].tolist(), cols["scores"][i].tolist())) + "}"
            for i in _unique_rows(cols["sample"], cols["row"]).tolist()
        ]
        return ("[" + ",\n".join(records) + "]\n").encode()


class WholeBodyResultsRecorder(CocoKeypointResultsRecorder):
    """The COCO-WholeBody results JSON: mmpose's ``CocoWholeBodyMetric.results2json`` records (the 133 keypoints
    as ``keypoints``, ``foot_kpts``, ``face_kpts``, ``lefthand_kpts``, ``righthand_kpts``, and ``score``), a
    part's own score only where it is not ``score``. Its reader (bench/predictions/wholebody_json.py) takes the
    area from the body keypoints, as the methods do."""

    score_width = len(SCORE_FIELDS)

    def __init__(self, category_id: int, **kwargs: Any):
        super().__init__(category_id, NUM_KEYPOINTS, **kwargs)

    def _scores(self, output: dict[str, Tensor], n: int) -> Tensor:
        score = output["scores"].reshape(n, 1).to(torch.float64)
        parts = output.get("part_scores")
        if parts is None:
            return score.expand(n, self.score_width)
        return torch.cat([score, parts.reshape(n, self.score_width)[:, 1:].to(torch.float64)], 1)

    def _fields(self, kp: list[float], scores: list[float]) -> list[str]:
        fields, start = [], 0
        for name, k in PART_FIELDS:
            fields.append(f'"{name}": [{", ".join(map(repr, kp[start:start + 3 * k]))}]')
            start += 3 * k
        fields.append(f'"score": {scores[0]!r}')
        return fields + [f'"{name}": {v!r}' for name, v in zip(SCORE_FIELDS[1:], scores[1:]) if v != scores[0]]


def coco_results_name(ann_file: str, method: str) -> str:
    """``ANNFILE_METHOD_results.json`` (``person_keypoints_val2017_vitpose-b_results.json``): COCO's
    ``[type]_[testset]_[alg]_results.json``, the method's underscores made hyphens as in the BOP name."""
    return f"{Path(ann_file).stem}_{method.replace('_', '-')}_results.json"


def _unique_rows(sample: Tensor, row: Tensor) -> Tensor:
    """Indices of one copy of each (image, row), by image, the method's order kept inside an image: a repeated
    image (sampler padding) holds identical rows."""
    key = sample * (int(row.max()) + 1 if row.numel() else 1) + row
    key, order = torch.sort(key, stable=True)
    first = torch.ones_like(key, dtype=torch.bool)
    first[1:] = key[1:] != key[:-1]
    return order[first]


def _cat(state: list[Tensor] | Tensor, width: int) -> Tensor:
    """A gathered state as one CPU tensor (empty when no image had an estimate)."""
    if isinstance(state, list) and not state:
        return torch.zeros((0, width) if width else (0,))
    return dim_zero_cat(state).cpu()


def bop_results_name(method: str, dataset: str, split: str) -> str:
    """``METHOD_DATASET-SPLIT.csv``: the toolkit splits the name at ``_`` and ``-``, so the method's own
    underscores become hyphens."""
    return f"{method.replace('_', '-')}_{dataset}-{split}.csv"
