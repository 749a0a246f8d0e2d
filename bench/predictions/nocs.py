"""Category-level pose results (NOCS layout) -> per-image arrays, every field checked.

A method's results come in the layout the official evaluation consumes: per image ``pred_class_ids`` (P,)
in 1..6, ``pred_RTs`` (P, 4, 4) ``[s R | t]`` in metres with last row ``0 0 0 1``, ``pred_scales`` (P, 3) and
``pred_scores`` (P,). Accepted files (extra fields such as ``gt_*``, ``pred_bboxes`` or ``pred_masks`` are
ignored):

- a pickle (read by the restricted unpickler): GIVEPose's ``pred_result.pkl`` (a list of per-image dicts), or
  one per-image dict; each names its image by ``image_path`` (``.../scene_1/0000``, NOCS's convention);
- a folder of per-image ``results_*.pkl`` (NOCS / SPD / DualPoseNet), named like the dataset's files;
- a JSON list of ``{"image": "scene_1/0000", "pred_class_ids": [...], "pred_RTs": [...], ...}``;
- an ``.npz`` with one array per ``"<image>/<field>"`` (e.g. ``scene_1/0000/pred_RTs``).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import InputError, load_json
from bench.safe_pickle import load_npz, load_pickle

PRED_FIELDS = ("pred_class_ids", "pred_RTs", "pred_scales", "pred_scores")
NUM_CATEGORIES = 6


def as_array(value: Any, tail: tuple[int, ...], file: Path, record: str, field: str, integer: bool = False) -> np.ndarray:
    """``value`` as a float64 (or int64) array of shape ``(n, *tail)``, finite; one InputError line otherwise."""
    try:
        a = np.asarray(value)
        ok = a.dtype.kind in "biuf"
    except (ValueError, TypeError):
        ok = False
    if not ok:
        raise InputError(file, record, field, "expected an array of numbers")
    if a.size == 0:
        a = a.reshape((0, *tail))
    if a.ndim != 1 + len(tail) or a.shape[1:] != tail:
        want = "(n" + "".join(f", {t}" for t in tail) + ")"
        raise InputError(file, record, field, f"expected shape {want}, found {a.shape}")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise InputError(file, record, field, "expected finite numbers")
    if integer:
        if (a != np.round(a)).any():
            raise InputError(file, record, field, "expected integers")
        return a.astype(np.int64)
    return a


def check_RTs(RT: np.ndarray, file: Path, record: str, field: str) -> None:
    """The reference stops on an RT whose last row is not exactly 0 0 0 1: refuse it here instead."""
    bad = np.flatnonzero((RT[:, 3, :] != np.array([0.0, 0.0, 0.0, 1.0])).any(1))
    if len(bad):
        raise InputError(file, record, field, f"RT {int(bad[0])}: the last row must be 0 0 0 1, found "
                                              f"{RT[bad[0], 3].tolist()}")


def check_classes(ids: np.ndarray, file: Path, record: str, field: str) -> None:
    bad = np.flatnonzero((ids < 1) | (ids > NUM_CATEGORIES))
    if len(bad):
        raise InputError(file, record, field, f"class id {int(ids[bad[0]])} is not a NOCS category (1..6: bottle, "
                                              "bowl, camera, can, laptop, mug)")


def parse_prediction(rec: Any, file: Path, record: str) -> dict[str, np.ndarray]:
    """One image's four prediction fields, checked (same count in each)."""
    if not isinstance(rec, dict):
        raise InputError(file, record, None, f"expected a dict of prediction fields, found {type(rec).__name__}")
    for f in PRED_FIELDS:
        if f not in rec:
            raise InputError(file, record, f, "missing")
    out = {"pred_class_ids": as_array(rec["pred_class_ids"], (), file, record, "pred_class_ids", integer=True),
           "pred_RTs": as_array(rec["pred_RTs"], (4, 4), file, record, "pred_RTs"),
           "pred_scales": as_array(rec["pred_scales"], (3,), file, record, "pred_scales"),
           "pred_scores": as_array(rec["pred_scores"], (), file, record, "pred_scores")}
    n = len(out["pred_class_ids"])
    for f in PRED_FIELDS[1:]:
        if len(out[f]) != n:
            raise InputError(file, record, f, f"expected {n} entries (one per pred_class_ids), found {len(out[f])}")
    check_classes(out["pred_class_ids"], file, record, "pred_class_ids")
    check_RTs(out["pred_RTs"], file, record, "pred_RTs")
    return out


def image_from_path(image_path: Any, file: Path, record: str) -> str:
    """``"<scene>/<image>"`` from NOCS's ``image_path`` (``data/real/test/scene_1/0000``)."""
    if not isinstance(image_path, str) or image_path.count("/") < 1:
        raise InputError(file, record, "image_path", f"expected a path ending in <scene>/<image>, found {image_path!r}")
    return "/".join(image_path.rstrip("/").split("/")[-2:])


def read_nocs_predictions(path: Path, image_of_file: Callable[[str], str | None]) -> dict[str, dict[str, np.ndarray]]:
    """``{image name: fields}`` from any accepted file or folder; ``image_of_file`` maps a per-image results
    file name to its image (None: not a results file)."""
    path = Path(path)
    out: dict[str, dict[str, np.ndarray]] = {}

    def add(image: str, rec: Any, record: str, file: Path) -> None:
        if image in out:
            raise InputError(file, record, None, f"image {image!r} is predicted twice")
        out[image] = parse_prediction(rec, file, record)

    if path.is_dir():
        files = sorted(p for p in path.iterdir() if image_of_file(p.name) is not None)
        if not files:
            raise InputError(path, None, None, "no per-image results_*.pkl files in this folder")
        for f in files:
            add(str(image_of_file(f.name)), load_pickle(f, encoding="latin1"), f.name, f)
        return out
    suffix = path.suffix.lower()
    if suffix == ".json":
        recs = load_json(path)
        if not isinstance(recs, list):
            raise InputError(path, None, None, f"expected a JSON list of per-image records, found {type(recs).__name__}")
        for i, r in enumerate(recs):
            where = f"index {i}"
            if not isinstance(r, dict):
                raise InputError(path, where, None, f"expected an object, found {type(r).__name__}")
            image = r.get("image")
            if image is None and "image_path" in r:
                image = image_from_path(r["image_path"], path, where)
            if not isinstance(image, str):
                raise InputError(path, where, "image", f"expected an image name like 'scene_1/0000', found {image!r}")
            add(image, r, where, path)
        return out
    if suffix == ".npz":
        arrays = load_npz(path, allow_pickle_objects=False)
        grouped: dict[str, dict[str, np.ndarray]] = {}
        for key, a in arrays.items():
            image, _, field = key.rpartition("/")
            if not image or field not in PRED_FIELDS:
                raise InputError(path, f"key {key}", None, "expected keys '<scene>/<image>/<field>' with field one of "
                                                           + ", ".join(PRED_FIELDS))
            grouped.setdefault(image, {})[field] = a
        for image, rec in sorted(grouped.items()):
            add(image, rec, f"key {image}/...", path)
        return out
    data = load_pickle(path, encoding="latin1")
    recs = data if isinstance(data, list) else [data]
    for i, r in enumerate(recs):
        where = f"index {i}"
        if not isinstance(r, dict):
            raise InputError(path, where, None, f"expected a per-image dict, found {type(r).__name__}")
        add(image_from_path(r.get("image_path"), path, where), r, where, path)
    return out

