"""COCO-format keypoint datasets of any skeleton, described by a config: keypoint names, sigmas, flip pairs, iou
type and ``use_area``; scored like mmpose's ``CocoMetric`` (xtcocotools ``COCOeval(gt, dt, 'keypoints', sigmas,
use_area)``, :mod:`metrics.xtcoco_ap`).

Two ways to name a skeleton:

- a dataset config of the suite that carries the description itself (``bench/conf/dataset/halpe.yaml``,
  ``ochuman.yaml``, ``aic.yaml``, ``humanart.yaml``: mmpose's ``configs/_base_/datasets`` and metric calls);
- ``dataset=keypoints dataset.skeleton=NAME_OR_FILE``: a skeleton YAML (the same keys as halpe.yaml), given by
  path or registered by a plugin (``register_skeleton("hand5", "hand5.yaml")`` in a module named in
  ``$POSEARENA_PLUGINS``), so a user's own skeleton needs no change to the suite.

Layout under ``data_root``: ``ann_file`` (COCO keypoint JSON, one category) and ``image_dir``. Results: COCO
keypoint results JSON (bench/predictions/coco_json.py). The GT is read as xtcocotools reads it: the labelled
keypoints are counted (the ``num_keypoints`` field may be absent) and ``area`` is needed only with
``use_area: true``.

``per_category: true`` (``dataset=ap10k``: 54 animal species, one skeleton) reads a GT file with several
categories and scores each on its own, averaged as xtcocotools' default ``useCats=1`` does
(:mod:`metrics.xtcoco_category_ap`); every results record names its category
(bench/predictions/coco_json.py ``read_coco_keypoint_results_by_category``).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

from bench.data.base import resolve_data_root
from bench.data.coco import (
    CocoKeypointGT,
    CocoKeypoints,
    _annotation_columns,
    _check_annotations,
    _is_int,
    _load_json,
    check_gt_header,
    keypoint_column,
    read_image_table,
)
from bench.errors import InputError
from bench.predictions.coco_json import (
    gc_paused,
    read_coco_keypoint_results_by_category,
    results_to_predictions,
)
from bench.registry import register_dataset
from bench.types import Prediction, Sample
from metrics.xtcoco_ap import STAT_KEYS, XtcocoKeypointAP, float32_sigmas
from metrics.xtcoco_category_ap import XtcocoCategoryKeypointAP

IOU_TYPES = ("keypoints",)  # CrowdPose's keypoints_crowd is dataset=crowdpose; whole-body is dataset=coco_wholebody
SKELETONS: dict[str, Path] = {}  # name -> skeleton YAML (register_skeleton)


@dataclass(frozen=True)
class SkeletonSpec:
    """What a keypoint dataset's config says about its skeleton and its evaluation."""

    name: str
    family: str
    keypoints: tuple[str, ...]
    sigmas: tuple[float, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    iou_type: str
    use_area: bool
    ann_file: str
    image_dir: str
    sample: str | None = None  # folder under bench/data/samples, used when no data_root is found
    per_category: bool = False  # several GT categories, each scored on its own (xtcocotools' useCats=1)


def register_skeleton(name: str, path: str | Path) -> None:
    """Make ``dataset=keypoints dataset.skeleton=NAME`` read the skeleton YAML at ``path`` (for plugins)."""
    if name in SKELETONS and SKELETONS[name] != Path(path):
        raise ValueError(f"skeleton {name!r} is registered twice")
    SKELETONS[name] = Path(path)


def skeleton_spec(cfg: Mapping[str, Any], where: str | Path | None = None) -> SkeletonSpec:
    """Check a skeleton description (a dataset config or a skeleton YAML); errors name the option."""
    def need(key: str):
        v = cfg.get(key)
        if v is None:
            raise InputError(where, None, f"dataset.{key}", "missing in the skeleton description")
        return v

    names = [str(n) for n in need("keypoints")]
    sig = need("sigmas")
    if len(sig) != len(names) or not all(isinstance(s, (int, float)) and s > 0 for s in sig):
        raise InputError(where, None, "dataset.sigmas", f"expected {len(names)} positive numbers (one per keypoint), "
                         f"found {len(sig)} values")
    pairs = [tuple(p) for p in (cfg.get("flip_pairs") or [])]
    if not all(len(p) == 2 and all(_is_int(i) and 0 <= i < len(names) for i in p) for p in pairs):
        raise InputError(where, None, "dataset.flip_pairs", f"expected pairs of keypoint indices in 0..{len(names) - 1}")
    iou = str(cfg.get("iou_type", "keypoints"))
    if iou not in IOU_TYPES:
        raise InputError(where, None, "dataset.iou_type", f"expected one of {', '.join(IOU_TYPES)}, found {iou!r}")
    flags = {k: cfg.get(k, default) for k, default in (("use_area", True), ("per_category", False))}
    for key, value in flags.items():
        if not isinstance(value, bool):
            raise InputError(where, None, f"dataset.{key}", f"expected true or false, found {value!r}")
    return SkeletonSpec(str(need("name")), str(cfg.get("family", "keypoints2d")), tuple(names),
                        tuple(float(s) for s in sig), tuple(pairs), iou, flags["use_area"], str(need("ann_file")),
                        str(cfg.get("image_dir", "images")), cfg.get("sample"), flags["per_category"])


def load_skeleton(name_or_file: str) -> SkeletonSpec:
    """A registered skeleton's or a YAML file's description."""
    path = SKELETONS.get(name_or_file, Path(name_or_file))
    if not path.is_file():
        known = ", ".join(sorted(SKELETONS)) or "none registered"
        raise InputError(None, None, "dataset.skeleton", f"{name_or_file!r} is neither a registered skeleton "
                         f"({known}) nor a YAML file")
    try:
        cfg = OmegaConf.to_container(OmegaConf.load(path))
    except Exception as e:  # noqa: BLE001 - any YAML problem is the user's file
        raise InputError(path, None, None, f"not a valid YAML skeleton ({' '.join(str(e).split())})") from None
    if not isinstance(cfg, dict):
        raise InputError(path, None, None, "expected a mapping of skeleton keys")
    return skeleton_spec(cfg, path)


@dataclass
class CategoryKeypointGT(CocoKeypointGT):
    """A GT file with several categories: ``category_id`` is the first, ``categories`` all of them (file
    order), ``ann_category`` (G,) each annotation's."""

    categories: tuple[int, ...] = ()
    ann_category: np.ndarray | None = None


def check_categories(path: Path, d) -> tuple[int, ...]:
    """The category ids of a multi-category COCO-style file (integers, unique, at least one)."""
    if isinstance(d, dict) and isinstance(d.get("categories"), list):
        check_gt_header(path, {**d, "categories": [{"id": 0}]})  # its top-level checks, not its one-category rule
    else:
        check_gt_header(path, d)  # names what is missing
    ids: list[int] = []
    for i, c in enumerate(d["categories"]):
        if not isinstance(c, dict) or not _is_int(c.get("id")):
            found = c.get("id") if isinstance(c, dict) else c
            raise InputError(path, f"categories index {i}", "id", f"expected an integer, found {found!r}")
        if c["id"] in ids:
            raise InputError(path, f"categories index {i}", "id", f"category id {c['id']} appears twice")
        ids.append(c["id"])
    if not ids:
        raise InputError(path, "categories", None, "expected at least one category")
    return tuple(ids)


def annotation_categories(path: Path, anns: list, categories: tuple[int, ...]) -> np.ndarray:
    """Each annotation's ``category_id`` (G,), checked against the file's categories."""
    known = set(categories)
    cats = [a.get("category_id") if isinstance(a, dict) else None for a in anns]
    if all(_is_int(c) and c in known for c in cats):
        return np.array(cats, np.int64).reshape(-1)
    for i, (a, c) in enumerate(zip(anns, cats)):
        where = f"annotations index {i}"
        if not isinstance(a, dict):
            raise InputError(path, where, None, "expected an object")
        if not _is_int(c):
            raise InputError(path, where, "category_id", f"expected an integer, found {c!r}")
        if c not in known:
            raise InputError(path, where, "category_id", f"category {c} is not in 'categories'")
    raise InputError(path, "annotations", "category_id", "malformed")  # pragma: no cover


def read_skeleton_gt(path: Path, spec: SkeletonSpec) -> CocoKeypointGT:
    """Read and check a COCO-format keypoint file of ``spec``'s skeleton as xtcocotools reads it."""
    with gc_paused():
        d = _load_json(path)
        # the category's keypoint names are not read (xtcocotools does not; Human-Art lists 21 for its 17-point
        # ``keypoints``): the annotations' keypoint arrays are checked against the skeleton below
        if spec.per_category:
            cats = check_categories(path, d)
            ann_cat = annotation_categories(path, d["annotations"], cats)
            cat = cats[0]
        else:
            cat, _ = check_gt_header(path, d)
        K = len(spec.keypoints)
        images, seen = read_image_table(path, d, "{}.jpg")
        # num_keypoints is counted, not read; without use_area the area is 0.53 * w * h of the bbox (the metric's)
        fill = {} if spec.use_area else {"area": 0.0}
        if spec.per_category:
            fill["category_id"] = cat  # checked above; the shared column check below expects one category
        anns = [{"num_keypoints": 0, **a, **fill} if isinstance(a, dict) else a for a in d["annotations"]]
        cols = _annotation_columns(anns, seen, cat)
        if cols is None:
            _check_annotations(path, anns, seen, cat)
            raise InputError(path, "annotations", None, "malformed annotations")  # pragma: no cover
        ann_id, ann_image, area, bbox, crowd, _ = cols
        kp = keypoint_column(path, anns, "keypoints", K)
        nkp = (kp[..., 2] > 0).sum(-1).astype(np.int64)
        if spec.per_category:
            return CategoryKeypointGT(path, cat, K, list(spec.keypoints), images, ann_id, ann_image, kp, area, bbox,
                                      crowd, nkp, cats, ann_cat)
        return CocoKeypointGT(path, cat, K, list(spec.keypoints), images, ann_id, ann_image, kp, area, bbox, crowd, nkp)


class SkeletonKeypoints(CocoKeypoints):
    """A COCO-format keypoint dataset of the skeleton ``spec``; ``sample_id`` is the image id, in id order."""

    metric_keys = STAT_KEYS

    def __init__(self, root: Path, spec: SkeletonSpec, bundled: bool = False, person_boxes: str | Path | None = None):
        self.spec = spec
        self.family = spec.family
        super().__init__(root, bundled, person_boxes, sigmas=list(spec.sigmas), name=spec.name,
                         ann_file=spec.ann_file, image_dir=spec.image_dir)

    def read_gt(self, path: Path) -> CocoKeypointGT:  # type: ignore[override]
        return read_skeleton_gt(path, self.spec)

    @property
    def flip_pairs(self) -> tuple[tuple[int, int], ...]:
        """Left/right keypoint pairs (for a method's flip test)."""
        return self.spec.flip_pairs

    def build_metric(self) -> XtcocoKeypointAP:
        return XtcocoKeypointAP(sigmas=float32_sigmas(self.spec.sigmas), use_area=self.spec.use_area)


class CategoryKeypoints(SkeletonKeypoints):
    """A keypoint dataset of one skeleton and several categories (``per_category: true``, e.g. AP-10K's species):
    targets and predictions carry each animal's ``category_id``; scored per category and averaged."""

    gt: CategoryKeypointGT

    def __init__(self, root: Path, spec: SkeletonSpec, bundled: bool = False, person_boxes: str | Path | None = None):
        if person_boxes is not None:  # detector boxes carry a category: not read yet (mmpose's configs use GT boxes)
            raise InputError(None, None, "dataset.person_boxes", f"not supported for {spec.name} (several categories): "
                             "leave it unset to use the GT boxes, as mmpose's configs do")
        super().__init__(root, spec, bundled)

    def _build_targets(self) -> list[dict[str, torch.Tensor]]:
        targets = super()._build_targets()
        order = np.argsort(self.gt.ann_image, kind="stable")  # the parent's grouping: by image, file order kept
        cats = torch.from_numpy(self.gt.ann_category[order]).split([t["keypoints"].shape[0] for t in targets])
        for t, c in zip(targets, cats):
            t["category_id"] = c
        return targets

    def read_predictions(self, path: Path) -> dict[int, Prediction]:
        res, cats = read_coco_keypoint_results_by_category(path, self.image_ids, self.gt.num_keypoints, self.gt.categories)
        preds = results_to_predictions(res)
        order = np.argsort(res.image_id, kind="stable")  # results_to_predictions' grouping
        ids, counts = np.unique(res.image_id[order], return_counts=True)
        for i, c in zip(ids.tolist(), torch.from_numpy(cats[order]).split(counts.tolist())):
            preds[i].output["category_id"] = c
        return preds

    def empty_prediction(self, sample: Sample) -> Prediction:
        p = super().empty_prediction(sample)
        p.output["category_id"] = torch.zeros(0, dtype=torch.long)
        return p

    def results_recorder(self, method: str) -> None:
        """None: a model's predictions do not carry each animal's category yet, which the file needs."""

    def build_metric(self) -> XtcocoCategoryKeypointAP:
        return XtcocoCategoryKeypointAP(sigmas=float32_sigmas(self.spec.sigmas), categories=self.gt.categories,
                                        use_area=self.spec.use_area)


@register_dataset("halpe", "ochuman", "aic", "humanart", "ap10k", "keypoints")
def build_skeleton_dataset(cfg) -> SkeletonKeypoints:
    """Builder for ``dataset=halpe|ochuman|aic|humanart|ap10k`` (the skeleton in its config) and ``dataset=keypoints dataset.skeleton=...``."""
    get = cfg.get if hasattr(cfg, "get") else (lambda k, d=None: getattr(cfg, k, d))
    if get("skeleton", None):
        spec = load_skeleton(str(get("skeleton")))
    else:
        if get("name") == "keypoints":
            raise InputError(None, None, "dataset.skeleton", "dataset=keypoints needs dataset.skeleton=NAME or a YAML "
                             "file with keypoints, sigmas, flip_pairs, iou_type, use_area, ann_file, image_dir")
        raw = OmegaConf.to_container(cfg) if OmegaConf.is_config(cfg) else dict(cfg)
        spec = skeleton_spec(raw)
    root, bundled = resolve_data_root(spec.name, get("data_root", None), [spec.ann_file], spec.sample)
    cls = CategoryKeypoints if spec.per_category else SkeletonKeypoints
    return cls(root, spec, bundled, person_boxes=get("person_boxes", None))


__all__ = ["SKELETONS", "CategoryKeypointGT", "CategoryKeypoints", "SkeletonKeypoints", "SkeletonSpec",
           "annotation_categories", "build_skeleton_dataset", "check_categories", "load_skeleton", "read_skeleton_gt",
           "register_skeleton", "skeleton_spec"]
