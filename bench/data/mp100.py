"""MP-100 category-agnostic pose (CAPE): the reference test episodes, one Sample per (episode, query).

Reference: orhir/PoseAnything @ 7f1253f8 ``models/datasets/datasets/mp100/test_dataset.py`` (CapeFormer and
POMNet sample the same way). What it does, and what this reader reproduces exactly:

- Annotations are read per image in the JSON ``images`` order, each image's annotations in JSON order.
  An annotation is dropped if it is a crowd, has no ``bbox``, its cleaned box is degenerate or its
  ``area`` is <= 0, it has no ``keypoints``, all its keypoint values are 0, or ``num_keypoints`` is 0.
  Cleaned box: ``x1 = max(0, x)``, ``x2 = min(W - 1, x1 + max(0, w - 1))`` (same for y), kept if ``x2 > x1``
  and ``y2 > y1``; it is ``[x1, y1, x2 - x1, y2 - y1]``. A category's pool is its kept annotations in that order.
- Episodes: one ``random.Random(1)`` stream (the reference seeds the global ``random``; a private instance
  gives the same draws without touching the caller's state) runs through the categories in the order of
  the JSON ``categories`` list and, per category, ``num_episodes`` draws of
  ``sample(pool, shots + 15)``: the first ``shots`` are the supports, the other 15 the queries.
  ``num_episodes`` is 200 for test and 100 for val (the val dataset class of the reference also drops
  annotations whose image file is missing; with the full image set that changes nothing).
- Episode ``e`` is the index in that order (``e = category_position * num_episodes + draw``); the
  predictions format names episodes by it. ``sample_id = e * 100 + q`` for the ``q``-th query (0..14).

Targets (see :class:`metrics.pck.CapePCK`): the query's keypoints (float32, as the reference stores them),
``visible`` = visible (v > 0) in the query AND in every support, and ``norm`` = max(w, h) of the query's
cleaned box. Two categories (ids 18 and 40) have empty keypoint-name lists: the count comes from the
annotations, which must agree within a category.
"""
from __future__ import annotations

import json
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bench.data.base import BenchmarkDataset, resolve_data_root
from bench.errors import InputError
from bench.predictions.mp100_json import read_mp100_predictions
from bench.registry import register_dataset
from bench.types import Prediction, Sample
from metrics.pck import PCK_THRESHOLDS, CapePCK

NUM_QUERIES = 15
EPISODES_PER_CATEGORY = {"test": 200, "val": 100}
SAMPLE_ID_STRIDE = 100  # sample_id = episode * 100 + query index


@dataclass(frozen=True)
class Mp100Annotation:
    """One kept annotation: what episodes and targets need from it."""

    ann_id: int
    image_id: int
    category_id: int
    file_name: str
    keypoints: Tensor  # (K, 2) float32
    visible: Tensor  # (K,) bool, v > 0
    bbox: tuple[float, float, float, float]  # cleaned [x1, y1, w, h]

    @property
    def norm(self) -> float:
        """PCK normaliser: the larger side of the cleaned box."""
        return max(self.bbox[2], self.bbox[3])


@dataclass(frozen=True)
class Mp100Category:
    id: int
    name: str
    num_keypoints: int
    skeleton: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Episode:
    """One reference episode: ``shots`` supports and 15 queries of one category (annotation ids)."""

    index: int
    category_id: int
    support_ids: tuple[int, ...]
    query_ids: tuple[int, ...]


def clean_bbox(bbox: Any, width: Any, height: Any) -> tuple[float, float, float, float] | None:
    """The reference's box sanitising (Python arithmetic, as there); ``None`` when degenerate."""
    x, y, w, h = bbox
    x1 = max(0, x)
    y1 = max(0, y)
    x2 = min(width - 1, x1 + max(0, w - 1))
    y2 = min(height - 1, y1 + max(0, h - 1))
    if x2 > x1 and y2 > y1:
        return (x1, y1, x2 - x1, y2 - y1)
    return None


def _is_number(v: Any) -> bool:
    return type(v) is float or type(v) is int or (isinstance(v, (int, float)) and not isinstance(v, bool))


def load_annotations(path: Path) -> tuple[list[Mp100Category], list[Mp100Annotation]]:
    """Read an MP-100 JSON: categories in file order and the kept annotations in pool order.

    Raises InputError naming the record and field for anything the reference could not use.
    """
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise InputError(path, None, None, f"cannot read it as JSON ({e})") from None
    if not isinstance(data, dict):
        raise InputError(path, None, None, "expected a COCO-style JSON object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise InputError(path, None, key, "missing or not a list")

    anns_by_image: dict[Any, list[tuple[int, dict]]] = {}
    seen_ann: set[Any] = set()
    for i, a in enumerate(data["annotations"]):
        rec = f"annotations[{i}]"
        if not isinstance(a, dict):
            raise InputError(path, rec, None, "not an object")
        for field in ("id", "image_id", "category_id"):
            if not isinstance(a.get(field), int) or isinstance(a.get(field), bool):
                raise InputError(path, rec, field, f"expected an integer, got {a.get(field)!r}")
        if a["id"] in seen_ann:
            raise InputError(path, rec, "id", f"duplicate annotation id {a['id']}")
        seen_ann.add(a["id"])
        anns_by_image.setdefault(a["image_id"], []).append((i, a))

    categories: list[Mp100Category] = []
    cat_kpts: dict[int, int | None] = {}
    for i, c in enumerate(data["categories"]):
        if not isinstance(c, dict) or not isinstance(c.get("id"), int):
            raise InputError(path, f"categories[{i}]", "id", "expected an object with an integer id")
        if c["id"] in cat_kpts:
            raise InputError(path, f"categories[{i}]", "id", f"duplicate category id {c['id']}")
        names = c.get("keypoints") or []
        cat_kpts[c["id"]] = len(names) or None  # empty name lists (ids 18, 40): count from annotations
        skel = tuple(tuple(int(v) for v in e) for e in (c.get("skeleton") or []))
        categories.append(Mp100Category(c["id"], str(c.get("name", c["id"])), len(names), skel))

    kept: list[Mp100Annotation] = []
    seen_img: set[Any] = set()
    for j, img in enumerate(data["images"]):
        rec = f"images[{j}]"
        if not isinstance(img, dict) or not isinstance(img.get("id"), int):
            raise InputError(path, rec, "id", "expected an object with an integer id")
        if img["id"] in seen_img:
            raise InputError(path, rec, "id", f"duplicate image id {img['id']}")
        seen_img.add(img["id"])
        for field in ("width", "height"):
            if not _is_number(img.get(field)):
                raise InputError(path, rec, field, f"expected a number, got {img.get(field)!r}")
        if not isinstance(img.get("file_name"), str):
            raise InputError(path, rec, "file_name", "expected a string")
        for i, a in anns_by_image.get(img["id"], []):
            ann = _keep(path, f"annotations[{i}]", a, img, cat_kpts)
            if ann is not None:
                kept.append(ann)
    return [
        Mp100Category(c.id, c.name, cat_kpts[c.id] or 0, c.skeleton) for c in categories
    ], kept


def _keep(path: Path, rec: str, a: dict, img: dict, cat_kpts: dict[int, int | None]) -> Mp100Annotation | None:
    """The reference's filters, in its order; ``None`` for a dropped annotation."""
    if a.get("iscrowd", 0):
        return None
    if "bbox" not in a:
        return None
    bbox = a["bbox"]
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
        raise InputError(path, rec, "bbox", f"expected [x, y, w, h] numbers, got {bbox!r}")
    if "area" in a and not _is_number(a["area"]):
        raise InputError(path, rec, "area", f"expected a number, got {a['area']!r}")
    box = clean_bbox(bbox, img["width"], img["height"])
    if box is None or ("area" in a and a["area"] <= 0):
        return None
    kp = a.get("keypoints")
    if kp is None:
        return None
    if not (isinstance(kp, list) and kp and len(kp) % 3 == 0 and all(_is_number(v) for v in kp)):
        raise InputError(path, rec, "keypoints", "expected a non-empty flat list [x, y, v, ...] of numbers")
    if max(kp) == 0 or a.get("num_keypoints", None) == 0:
        return None
    k = len(kp) // 3
    cid = a["category_id"]
    if cid not in cat_kpts:
        raise InputError(path, rec, "category_id", f"category {cid} is not in the categories list")
    if cat_kpts[cid] is None:
        cat_kpts[cid] = k
    elif cat_kpts[cid] != k:
        raise InputError(path, rec, "keypoints", f"{k} keypoints, but category {cid} has {cat_kpts[cid]}")
    t = torch.tensor(kp, dtype=torch.float64).reshape(k, 3)
    return Mp100Annotation(
        ann_id=a["id"], image_id=img["id"], category_id=cid, file_name=img["file_name"],
        keypoints=t[:, :2].to(torch.float32), visible=t[:, 2] > 0, bbox=box,
    )


def sample_episodes(
    category_order: Iterable[int], pools: dict[int, list[int]], shots: int, num_episodes: int,
    num_queries: int = NUM_QUERIES, seed: int = 1, file: Path | None = None,
) -> list[Episode]:
    """The reference episodes: one seeded stream over categories (in order) and their draws."""
    rng = random.Random(seed)
    episodes: list[Episode] = []
    for cid in category_order:
        pool = pools.get(cid, [])
        if len(pool) < shots + num_queries:
            raise InputError(file, f"category {cid}", "annotations",
                             f"{len(pool)} usable annotations, an episode needs {shots + num_queries}")
        for _ in range(num_episodes):
            draw = rng.sample(pool, shots + num_queries)
            episodes.append(Episode(len(episodes), cid, tuple(draw[:shots]), tuple(draw[shots:])))
    return episodes


def episodes_to_json(episodes: list[Episode]) -> list[dict[str, Any]]:
    """A plain, inspectable form of the episode list (what :meth:`Mp100Dataset.dump_episodes` writes)."""
    return [
        {"episode": e.index, "category_id": e.category_id, "support_ids": list(e.support_ids),
         "query_ids": list(e.query_ids)}
        for e in episodes
    ]


class Mp100Dataset(BenchmarkDataset):
    """MP-100 split ``split`` (1..5), ``subset`` (test|val), ``shots`` (1|5): one Sample per episode query."""

    family = "cape"
    metric_keys = tuple(f"PCK@{t}" for t in PCK_THRESHOLDS) + ("mPCK",)
    bundled_note = "the complete official val/test annotations; images are not bundled, so only predictions= runs"

    def __init__(self, root: Path, split: int = 1, subset: str = "test", shots: int = 1, bundled: bool = False):
        super().__init__("mp100", root, bundled)
        self.split, self.subset, self.shots = split, subset, shots
        self.variant = f"split{split}-{subset}-{shots}shot"
        self.ann_file = self.root / annotation_file(split, subset)
        self.categories, self.annotations = load_annotations(self.ann_file)
        self.by_id = {a.ann_id: a for a in self.annotations}
        pools: dict[int, list[int]] = {}
        for a in self.annotations:
            pools.setdefault(a.category_id, []).append(a.ann_id)
        self.category_by_id = {c.id: c for c in self.categories}
        self.episodes = sample_episodes(
            [c.id for c in self.categories], pools, shots, EPISODES_PER_CATEGORY[subset], file=self.ann_file
        )
        self._support_cache: dict[int, dict[str, Any]] = {}
        self._query_cache: dict[int, tuple[Path, Tensor, Tensor]] = {}

    def __len__(self) -> int:
        return len(self.episodes) * NUM_QUERIES

    def sample_id(self, episode: int, query_index: int) -> int:
        return episode * SAMPLE_ID_STRIDE + query_index

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < len(self):
            raise IndexError(index)
        e, q = divmod(index, NUM_QUERIES)
        ep = self.episodes[e]
        query = self.by_id[ep.query_ids[q]]
        support = self._support(e)
        image, bbox, norm = self._query(query)
        sid = self.sample_id(e, q)
        return Sample(
            sample_id=sid,
            target={
                "sample_id": torch.tensor(sid, dtype=torch.int64),
                "keypoints": query.keypoints,
                "visible": query.visible & support["support_visible_all"],
                "norm": norm,
            },
            inputs={
                "episode": e,
                "query_index": q,
                "category_id": ep.category_id,
                "query_id": query.ann_id,
                "query_image": image,
                "query_bbox": bbox,
                **support,
            },
        )

    def _query(self, a: Mp100Annotation) -> tuple[Path, Tensor, Tensor]:
        if a.ann_id not in self._query_cache:
            self._query_cache[a.ann_id] = (
                self.root / "images" / a.file_name,
                torch.tensor(a.bbox, dtype=torch.float64),
                torch.tensor(a.norm, dtype=torch.float64),
            )
        return self._query_cache[a.ann_id]

    def _support(self, e: int) -> dict[str, Any]:
        """The support side of episode ``e`` (shared by its 15 queries, so built once)."""
        if e not in self._support_cache:
            ep = self.episodes[e]
            supports = [self.by_id[s] for s in ep.support_ids]
            self._support_cache[e] = {
                "support_ids": list(ep.support_ids),
                "support_images": [self.root / "images" / s.file_name for s in supports],
                "support_bboxes": torch.tensor([s.bbox for s in supports], dtype=torch.float64),
                "support_keypoints": torch.stack([s.keypoints for s in supports]),
                "support_visible": torch.stack([s.visible for s in supports]),
                "support_visible_all": torch.stack([s.visible for s in supports]).all(dim=0),
                "skeleton": [list(edge) for edge in self.category_by_id[ep.category_id].skeleton],
            }
        return self._support_cache[e]

    def gt_files(self) -> Iterable[Path]:
        return [self.ann_file]

    def build_metric(self) -> CapePCK:
        return CapePCK(PCK_THRESHOLDS)

    def read_predictions(self, path: Path) -> dict[int, Prediction]:
        return read_mp100_predictions(path, self)

    def dump_episodes(self, path: Path) -> None:
        """Write the episode list as JSON (``episode``, ``category_id``, ``support_ids``, ``query_ids``)."""
        payload = {"dataset": "mp100", "variant": self.variant, "episodes": episodes_to_json(self.episodes)}
        Path(path).write_text(json.dumps(payload, indent=1))


def annotation_file(split: int, subset: str) -> str:
    return f"annotations/mp100_split{split}_{subset}.json"


@register_dataset("mp100")
def build_mp100(cfg: Any) -> Mp100Dataset:
    """Builder for ``dataset=mp100`` (options: ``split`` 1..5, ``subset`` test|val, ``shots`` 1|5)."""
    split, subset, shots = cfg.get("split", 1), str(cfg.get("subset", "test")), cfg.get("shots", 1)
    if split not in (1, 2, 3, 4, 5):
        raise InputError(None, None, "dataset.split", f"must be 1..5, got {split!r}")
    if subset not in EPISODES_PER_CATEGORY:
        raise InputError(None, None, "dataset.subset", f"must be test or val, got {subset!r}")
    if shots not in (1, 5):
        raise InputError(None, None, "dataset.shots", f"must be 1 or 5, got {shots!r}")
    root, bundled = resolve_data_root("mp100", cfg.get("data_root"), [annotation_file(split, subset)], "mp100")
    return Mp100Dataset(root, split=split, subset=subset, shots=shots, bundled=bundled)
