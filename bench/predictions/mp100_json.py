"""MP-100 predictions: a JSON list of ``{"episode": e, "query_id": id, "keypoints": [[x, y], ...]}``.

``episode`` is the index in the reference episode order of the dataset's split, subset and shots (see
:mod:`bench.data.mp100`; ``Mp100Dataset.dump_episodes`` writes that order), ``query_id`` the annotation id
of one of that episode's 15 queries, ``keypoints`` one ``[x, y]`` per keypoint of the category, in image
pixels. Other fields in a record are ignored.

Every (episode, query) pair must be predicted exactly once: the reference scores every query (a query
without a valid keypoint still counts as 0), so a missing pair would silently change the mean and is an
error, as are unknown episodes or queries, a wrong keypoint count, non-finite values and duplicates.
Coordinates are kept in float64, so a file written from float32 model outputs scores as the reference would.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

from bench.errors import InputError
from bench.types import Prediction


class EpisodeIndex(Protocol):
    """What the reader needs of the MP-100 dataset: the episode order and the query annotations (the
    dataset object satisfies it; the reader does not import the dataset module)."""

    variant: str
    episodes: Sequence[Any]  # each with ``query_ids``
    by_id: Mapping[int, Any]  # annotation id -> record with ``keypoints``

    def sample_id(self, episode: int, query: int) -> int: ...


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_finite_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _diagnose(path: Path, rec: str, kps: list) -> None:
    """Raise the InputError that names the first bad keypoint of a record."""
    for j, p in enumerate(kps):
        if not (isinstance(p, list) and len(p) == 2):
            raise InputError(path, rec, "keypoints", f"keypoint {j}: expected [x, y], got {p!r}")
        if not (_is_finite_number(p[0]) and _is_finite_number(p[1])):
            raise InputError(path, rec, "keypoints", f"keypoint {j}: expected finite numbers, got {p!r}")
    raise InputError(path, rec, "keypoints", "expected a list of [x, y] number pairs")


def read_mp100_predictions(path: Path, dataset: EpisodeIndex) -> dict[int, Prediction]:
    """Read and validate a predictions file against ``dataset``'s episodes -> {sample_id: Prediction}."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            records = json.load(f)
    except (OSError, ValueError) as e:
        raise InputError(path, None, None, f"cannot read it as JSON ({e})") from None
    if not isinstance(records, list):
        raise InputError(path, None, None, f"expected a JSON list of records, got {type(records).__name__}")

    episodes = dataset.episodes
    query_pos = [{qid: q for q, qid in enumerate(ep.query_ids)} for ep in episodes]
    seen: dict[int, int] = {}
    out: dict[int, Prediction] = {}
    for i, r in enumerate(records):
        rec = f"index {i}"
        if not isinstance(r, dict):
            raise InputError(path, rec, None, f"expected an object, got {type(r).__name__}")
        for field in ("episode", "query_id", "keypoints"):
            if field not in r:
                raise InputError(path, rec, field, "missing")
        e, qid, kps = r["episode"], r["query_id"], r["keypoints"]
        if not _is_int(e):
            raise InputError(path, rec, "episode", f"expected an integer, got {e!r}")
        if not 0 <= e < len(episodes):
            raise InputError(path, rec, "episode", f"{e} is out of range: {dataset.variant} has episodes 0..{len(episodes) - 1}")
        if not _is_int(qid):
            raise InputError(path, rec, "query_id", f"expected an integer annotation id, got {qid!r}")
        q = query_pos[e].get(qid)
        if q is None:
            raise InputError(path, rec, "query_id", f"{qid} is not a query of episode {e} (queries: {list(episodes[e].query_ids)})")
        sid = dataset.sample_id(e, q)
        if sid in seen:
            raise InputError(path, rec, "query_id", f"duplicate: episode {e} query {qid} is also at index {seen[sid]}")
        k = dataset.by_id[qid].keypoints.shape[0]
        if not isinstance(kps, list) or len(kps) != k:
            n = len(kps) if isinstance(kps, list) else type(kps).__name__
            raise InputError(path, rec, "keypoints", f"expected {k} [x, y] pairs for category {episodes[e].category_id}, got {n}")
        try:  # fast path; anything odd is diagnosed keypoint by keypoint below
            xy = torch.tensor(kps, dtype=torch.float64)
            ok = xy.shape == (k, 2) and bool(torch.isfinite(xy).all())
        except (TypeError, ValueError, RuntimeError):
            ok = False
        if not ok or any(type(v) is bool for p in kps for v in p):
            _diagnose(path, rec, kps)
        seen[sid] = i
        out[sid] = Prediction(sid, {"keypoints": xy})

    expected = len(episodes) * len(query_pos[0]) if episodes else 0
    if len(out) != expected:
        for e, ep in enumerate(episodes):
            for q, qid in enumerate(ep.query_ids):
                if dataset.sample_id(e, q) not in out:
                    raise InputError(
                        path, None, "episode",
                        f"no prediction for episode {e} query_id {qid} ({expected - len(out)} of {expected} "
                        "episode-query pairs missing; every pair must be predicted)",
                    )
    return out
