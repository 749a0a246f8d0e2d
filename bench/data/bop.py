"""The seven BOP core datasets (YCB-V, LM-O, T-LESS, TUD-L, IC-BIN, ITODD, HB) in their official layout.

``data_root`` is the dataset folder itself (e.g. ``.../bop/ycbv``)::

    models_eval/models_info.json, models_eval/obj_XXXXXX.ply
    test_targets_bop19.json                      [{"scene_id", "im_id", "obj_id", "inst_count"}, ...]
    <test split>/<scene 6 digits>/scene_gt.json, scene_gt_info.json, scene_camera.json,
                                  depth/<im 6 digits>.png  (.tif for ITODD)

``dataset.task`` chooses the BOP task: ``localization`` (BOP19 AR, the default), ``detection`` (BOP 2024/2025
6D detection: ``test_targets_bop24.json``, one ``{"im_id", "scene_id"}`` per image, scored by
metrics/bop/detection.py; its leaderboard is ``object6d/<name>_detection.csv``), or ``bbox`` / ``segm`` (BOP 2022
2D detection / segmentation, ``eval_bop22_coco.py``: the target images of ``test_targets_bop19.json``, GT from
``<scene>/scene_gt_coco.json`` (``scene_gt_coco_modal.json`` for ``dataset.bbox_type=modal``), or, without it,
computed from ``mask_visib/`` (+ ``mask/`` for amodal boxes) and ``scene_gt_info.json`` as ``calc_gt_coco.py``
does; scored by metrics/bop/coco_det.py; leaderboards ``object6d/<name>_bbox.csv`` / ``<name>_segm.csv``). No
depth is read for them.

One ``Sample`` per test image listed in the targets file, sorted by (scene, image);
``sample_id = scene_id * 1_000_000 + im_id``. Per-dataset parameters follow bop_toolkit's
``dataset_params.py`` (image size, test split folder: T-LESS and HB evaluate ``test_primesense``) and
``eval_bop19_pose.py`` (VSD delta 15 mm, 5 mm for ITODD). As the toolkit's evaluation does, the depth is
``float32(png) * depth_scale`` in mm (0 = missing) and models come from ``models_eval``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from bench import leaderboard
from bench.data.base import BenchmarkDataset, resolve_data_root
from bench.errors import InputError
from bench.errors import load_json as _load_json
from bench.formats.ply import read_ply
from bench.predictions.bop_coco_json import CocoRecord, decode_rle, read_bop22_results
from bench.predictions.bop_csv import (
    IM_ID_LIMIT,
    empty_output,
    read_bop19_csv,
    read_bop19_rows,
    sample_id_of,
    to_predictions,
)
from bench.predictions.bop_detections import read_detections
from bench.registry import register_dataset
from bench.types import Detection, Prediction, Sample
from metrics.bop.model import ObjectModel

TARGETS_FILE = "test_targets_bop19.json"
TARGETS_FILES = {"localization": TARGETS_FILE, "detection": "test_targets_bop24.json",  # per dataset.task
                 "bbox": TARGETS_FILE, "segm": TARGETS_FILE}  # eval_bop22_coco.py's default targets file
COCO_TASKS = ("bbox", "segm")
BBOX_TYPES = ("amodal", "modal")
DETECTION_MAX_ESTIMATES = 100  # eval_bop24_pose.py's max_num_estimates_per_image (200 only for xyzibd)
COCO_KEYS = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR1", "AR10", "AR100", "AR_small",
             "AR_medium", "AR_large", "average_time_per_image")  # eval_bop22_coco.py's scores file
DETECTION_KEYS = ("mAP", "mAP_MSSD", "mAP_MSPD", "mAP_MSSD_mm", "bop25_mAP", "average_time_per_image")
MODELS_DIR = "models_eval"


@dataclass(frozen=True)
class BopParams:
    """What differs between the BOP datasets (bop_toolkit dataset_params.py, eval_bop19_pose.py)."""

    test_split: str
    width: int
    height: int
    vsd_delta: float | None  # None: not in eval_bop19_pose.py's vsd_deltas (no BOP19 localization there)
    obj_ids: tuple[int, ...]
    depth_exts: tuple[str, ...] = (".png",)
    image_dirs: tuple[tuple[str, str], ...] = (("rgb", ".png"), ("rgb", ".jpg"))
    sensor: str | None = None  # multi-sensor layouts (IPD, XYZ-IBD, ITODD-MV): scene_gt_<sensor>.json, depth_<sensor>/

    def file(self, base: str) -> str:
        """A per-scene JSON's name: ``scene_gt`` -> ``scene_gt.json`` (``scene_gt_<sensor>.json``)."""
        return f"{base}_{self.sensor}.json" if self.sensor else f"{base}.json"

    def folder(self, base: str) -> str:
        """A per-scene image folder's name: ``depth`` -> ``depth`` (``depth_<sensor>``)."""
        return f"{base}_{self.sensor}" if self.sensor else base


BOP_PARAMS: dict[str, BopParams] = {
    "ycbv": BopParams("test", 640, 480, 15.0, tuple(range(1, 22))),
    "lmo": BopParams("test", 640, 480, 15.0, (1, 5, 6, 8, 9, 10, 11, 12)),
    "tless": BopParams("test_primesense", 720, 540, 15.0, tuple(range(1, 31))),
    "tudl": BopParams("test", 640, 480, 15.0, (1, 2, 3)),
    "icbin": BopParams("test", 640, 480, 15.0, (1, 2)),
    # ITODD's test split has gray images and .tif depth (the toolkit falls back to .png when .tif is absent).
    "itodd": BopParams("test", 1280, 960, 5.0, tuple(range(1, 29)), (".tif", ".png"), (("gray", ".tif"),)),
    "hb": BopParams("test_primesense", 640, 480, 15.0, tuple(range(1, 34))),
    # the other datasets with a BOP test split (dataset_params.py @ cea62d6; VSD deltas of eval_bop19_pose.py)
    "lm": BopParams("test", 640, 480, 15.0, tuple(range(1, 16))),
    "tyol": BopParams("test", 640, 480, 15.0, tuple(range(1, 22))),
    "ruapc": BopParams("test", 640, 480, 15.0, tuple(range(1, 15))),
    "icmi": BopParams("test", 640, 480, 15.0, tuple(range(1, 7))),
    "hbs": BopParams("test_primesense", 640, 480, 15.0, (1, 3, 4, 8, 9, 10, 12, 15, 17, 18, 19, 22, 23, 29, 32, 33)),
    "hope": BopParams("test", 1920, 1080, 15.0, tuple(range(1, 29))),
    "hopev2": BopParams("test", 1920, 1080, None, tuple(range(1, 29))),
    "handal": BopParams("test", 1920, 1440, None, tuple(range(1, 41)), image_dirs=(("rgb", ".jpg"),)),
    "ipd": BopParams("test", 2064, 1544, None, (0, 1, 4, 8, 10, 11, 14, 18, 19, 20),
                     image_dirs=(("rgb_photoneo", ".png"),), sensor="photoneo"),
    "xyzibd": BopParams("test", 1440, 1080, None, (1, 2, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
                        image_dirs=(("gray_xyz", ".png"),), sensor="xyz"),
    "itoddmv": BopParams("test", 1280, 960, None, tuple(range(1, 29)), (".tif",), (("gray_3dlong", ".tif"),),
                         sensor="3dlong"),
}
# HOT3D's test images come from fisheye cameras (Aria, Quest 3) whose models the toolkit evaluates through
# hand_tracking_toolkit; the pinhole pipeline here would score them wrongly, so the name is refused.
REFUSED = {"hot3d": "hot3d needs fisheye camera models (bop_toolkit evaluates it through hand_tracking_toolkit), "
                    "which posearena does not support"}


# ---------------------------------------------------------------- small validated readers


def load_json(path: Path) -> Any:
    return _load_json(path, "file not found (official BOP layout expected)")


def _numbers(path: Path, record: str, field: str, value: Any, n: int | None = None) -> np.ndarray:
    """A flat list of finite numbers (``n`` of them when given), as float64."""
    ok = isinstance(value, (list, tuple)) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    )
    arr = np.asarray(value, dtype=np.float64) if ok else None
    if arr is None or (n is not None and arr.size != n) or not np.isfinite(arr).all():
        want = f"a list of {n} finite numbers" if n is not None else "a list of finite numbers"
        raise InputError(path, record, field, f"expected {want}, got {str(value)[:60]}")
    return arr


def _int(path: Path, record: str, field: str, value: Any, lo: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise InputError(path, record, field, f"expected an integer >= {lo}, got {value!r}")
    return value


def _field(path: Path, record: str, obj: Any, field: str) -> Any:
    if not isinstance(obj, dict) or field not in obj:
        raise InputError(path, record, field, "missing")
    return obj[field]


def read_targets(path: Path) -> list[tuple[int, int, int, int]]:
    """``test_targets_bop19.json`` -> [(scene_id, im_id, obj_id, inst_count)] in file order."""
    data = load_json(path)
    if not isinstance(data, list) or not data:
        raise InputError(path, None, None, "expected a non-empty JSON list of targets")
    out = []
    for i, rec in enumerate(data):
        r = f"index {i}"
        scene = _int(path, r, "scene_id", _field(path, r, rec, "scene_id"))
        im = _int(path, r, "im_id", _field(path, r, rec, "im_id"))
        if im >= IM_ID_LIMIT:
            raise InputError(path, r, "im_id", f"expected an integer < {IM_ID_LIMIT}, got {im}")
        obj = _int(path, r, "obj_id", _field(path, r, rec, "obj_id"))
        count = _int(path, r, "inst_count", _field(path, r, rec, "inst_count"), lo=1)
        out.append((scene, im, obj, count))
    return out


def read_image_targets(path: Path) -> list[tuple[int, int]]:
    """``test_targets_bop24.json`` -> [(scene_id, im_id)] in file order (one record per image)."""
    data = load_json(path)
    if not isinstance(data, list) or not data:
        raise InputError(path, None, None, "expected a non-empty JSON list of targets")
    out, seen = [], set()
    for i, rec in enumerate(data):
        r = f"index {i}"
        scene = _int(path, r, "scene_id", _field(path, r, rec, "scene_id"))
        im = _int(path, r, "im_id", _field(path, r, rec, "im_id"))
        if im >= IM_ID_LIMIT:
            raise InputError(path, r, "im_id", f"expected an integer < {IM_ID_LIMIT}, got {im}")
        if (scene, im) in seen:
            raise InputError(path, r, "im_id", f"scene {scene} image {im} is listed twice")
        seen.add((scene, im))
        out.append((scene, im))
    return out


def read_models(root: Path, obj_ids: Iterable[int]) -> dict[int, ObjectModel]:
    """models_eval meshes and their models_info entries (diameter, symmetries as stored)."""
    info_path = root / MODELS_DIR / "models_info.json"
    info = load_json(info_path)
    if not isinstance(info, dict):
        raise InputError(info_path, None, None, "expected a JSON object keyed by object id")
    models = {}
    for obj_id in sorted(set(obj_ids)):
        rec = info.get(str(obj_id))
        r = f"key '{obj_id}'"
        if rec is None:
            raise InputError(info_path, r, None, f"no entry for object {obj_id}, which the test targets use")
        diameter = _field(info_path, r, rec, "diameter")
        if isinstance(diameter, bool) or not isinstance(diameter, (int, float)) or not diameter > 0:
            raise InputError(info_path, r, "diameter", f"expected a positive number, got {diameter!r}")
        disc = rec.get("symmetries_discrete", [])
        if not isinstance(disc, list):
            raise InputError(info_path, r, "symmetries_discrete", "expected a list of 16-number lists")
        for j, s in enumerate(disc):
            _numbers(info_path, f"{r} index {j}", "symmetries_discrete", s, 16)
        cont = rec.get("symmetries_continuous", [])
        if not isinstance(cont, list):
            raise InputError(info_path, r, "symmetries_continuous", "expected a list of {axis, offset}")
        for j, s in enumerate(cont):
            axis = _numbers(
                info_path, f"{r} index {j}", "axis", _field(info_path, f"{r} index {j}", s, "axis"), 3
            )
            _numbers(
                info_path, f"{r} index {j}", "offset", _field(info_path, f"{r} index {j}", s, "offset"), 3
            )
            if not np.linalg.norm(axis) > 0:
                raise InputError(info_path, f"{r} index {j}", "axis", "zero-length symmetry axis")
        verts, faces = read_ply(root / MODELS_DIR / f"obj_{obj_id:06d}.ply")
        models[obj_id] = ObjectModel(obj_id, verts, faces, float(diameter), disc, cont)
    return models


def read_image_array(path: Path, what: str, missing: str = "") -> np.ndarray:
    """A depth or mask image as an array; a missing or unreadable file is one InputError line naming ``what``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im)
    except FileNotFoundError:
        raise InputError(path, None, None, f"{what} not found{missing}") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise InputError(path, None, None, f"not a readable {what} ({str(e)[:60]})") from None


def load_depth(path: Path, depth_scale: float, height: int, width: int) -> Tensor:
    """Depth in mm as the toolkit reads it: ``float32(image) * depth_scale`` (in float32); 0 = missing."""
    arr = read_image_array(path, "depth image")
    if arr.shape != (height, width):
        raise InputError(
            path, None, None, f"expected a {width}x{height} single-channel depth image, got shape {arr.shape}"
        )
    depth = arr.astype(np.float32) * np.float32(depth_scale)
    return torch.from_numpy(depth)


# ---------------------------------------------------------------- the dataset


@dataclass
class _Image:
    scene_id: int
    im_id: int
    depth_path: Path | None  # None: a task that reads no depth (bbox, segm)
    depth_scale: float
    rgb_path: Path | None
    target: dict[str, Tensor]


class BopDataset(BenchmarkDataset):
    """A BOP core dataset's test targets; each sample is one image with its GT and the objects to localise."""

    family = "object6d"
    metric_keys = ("AR", "AR_VSD", "AR_MSSD", "AR_MSPD")

    def __init__(
        self, name: str, root: Path, bundled: bool, params: BopParams, targets_file: str = TARGETS_FILE,
        detections: str | Path | None = None, task: str = "localization", bbox_type: str = "amodal",
    ):
        super().__init__(name, root, bundled)
        self.bop_name = name  # the toolkit's dataset name (``name`` gains the task for its own leaderboard)
        self.params = params
        self.task = task
        self.detections_path = Path(detections) if detections else None
        self._detections: dict[tuple[int, int], list[Detection]] | None = None
        self._extra_times: list[float] = []  # detection: the times of a results file's non-target images
        self.split_dir = self.root / params.test_split
        self.targets_path = self.root / targets_file
        self.bbox_type = bbox_type
        self._coco_files: list[Path] = []
        if task == "detection":
            self._init_detection()
            return
        if task in COCO_TASKS:
            self._init_coco()
            return
        targets = read_targets(self.targets_path)
        per_image: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for scene, im, obj, count in targets:
            objs = per_image.setdefault((scene, im), [])
            if any(o == obj for o, _ in objs):
                raise InputError(
                    self.targets_path,
                    f"scene {scene} image {im}",
                    "obj_id",
                    f"object {obj} is listed twice for this image",
                )
            objs.append((obj, count))
        self.target_obj_ids = sorted({obj for _, _, obj, _ in targets})
        self.scene_ids = sorted({s for s, _ in per_image})
        self.images: list[_Image] = []
        for scene in self.scene_ids:
            self.images.extend(
                self._read_scene(scene, sorted(im for s, im in per_image if s == scene), per_image)
            )
        self._models: dict[int, ObjectModel] | None = None

    def _init_detection(self) -> None:
        """BOP24 6D detection: every GT instance of a listed image is a target. Methods are told no per-image
        objects: each image's ``target_obj_id`` is every object with GT in the test images (count 1 each)."""
        self.name = f"{self.name}_detection"  # its own leaderboard CSV and curves (object6d/<name>_detection.csv)
        self.metric_keys = DETECTION_KEYS
        listed = read_image_targets(self.targets_path)
        per_image = {key: [] for key in listed}
        self.scene_ids = sorted({s for s, _ in listed})
        self.images = []
        for scene in self.scene_ids:
            self.images.extend(self._read_scene(scene, sorted(im for s, im in listed if s == scene), per_image))
        # the toolkit lists estimates by scene (first appearance in the targets file), then image: ties in score
        # keep that order
        scene_rank = {s: i for i, s in enumerate(dict.fromkeys(s for s, _ in listed))}
        pos = {key: i for i, key in enumerate(listed)}
        order = {key: i for i, key in enumerate(sorted(listed, key=lambda k: (scene_rank[k[0]], pos[k])))}
        self.target_obj_ids = sorted({int(o) for img in self.images for o in img.target["gt_obj_id"].tolist()})
        for img in self.images:
            img.target["target_order"] = torch.tensor(order[(img.scene_id, img.im_id)], dtype=torch.int64)
            img.target["target_obj_id"] = torch.tensor(self.target_obj_ids, dtype=torch.int64)
            img.target["target_inst_count"] = torch.ones(len(self.target_obj_ids), dtype=torch.int64)
        self._models = None

    def _init_coco(self) -> None:
        """BOP22 2D detection / segmentation: the target images of the targets file (only scene_id and im_id are
        read), each with its COCO GT; ``coco_order`` is the image's rank in eval_bop22_coco.py's merged image
        ids (scenes in order of first appearance in the targets file, offset one after another; images by id)."""
        self.name = f"{self.name}_{self.task}"
        self.metric_keys = COCO_KEYS
        data = load_json(self.targets_path)
        if not isinstance(data, list) or not data:
            raise InputError(self.targets_path, None, None, "expected a non-empty JSON list of targets")
        listed: dict[int, dict[int, None]] = {}
        for i, rec in enumerate(data):
            r = f"index {i}"
            scene = _int(self.targets_path, r, "scene_id", _field(self.targets_path, r, rec, "scene_id"))
            im = _int(self.targets_path, r, "im_id", _field(self.targets_path, r, rec, "im_id"))
            if im >= IM_ID_LIMIT:
                raise InputError(self.targets_path, r, "im_id", f"expected an integer < {IM_ID_LIMIT}, got {im}")
            listed.setdefault(scene, {})[im] = None
        self.scene_rank = {s: i for i, s in enumerate(listed)}
        self.scene_ids = sorted(listed)
        self.images = []
        for scene in self.scene_ids:
            gts = self._coco_scene(scene, sorted(listed[scene]))
            for im in sorted(listed[scene]):
                target = {"sample_id": torch.tensor(sample_id_of(scene, im), dtype=torch.int64),
                          "scene_id": torch.tensor(scene, dtype=torch.int64),
                          "im_id": torch.tensor(im, dtype=torch.int64), **gts[im]}
                rgb_path = None
                for folder, ext in self.params.image_dirs:
                    rgb_path = rgb_path or self._find(scene, folder, im, (ext,))
                self.images.append(_Image(scene, im, None, 1.0, rgb_path, target))
        ordered = sorted(self.images, key=lambda img: (self.scene_rank[img.scene_id], img.im_id))
        for k, img in enumerate(ordered):
            img.target["coco_order"] = torch.tensor(k, dtype=torch.int64)
        self.target_obj_ids = sorted({int(o) for img in self.images for o in img.target["gt_category_id"].tolist()})
        self._models = None

    def _coco_scene(self, scene: int, im_ids: list[int]) -> dict[int, dict[str, Tensor]]:
        """Per target image its GT tensors, from scene_gt_coco.json or, when the scene has none, from the masks."""
        name = "scene_gt_coco_modal" if self.task == "bbox" and self.bbox_type == "modal" else "scene_gt_coco"
        path = self.split_dir / f"{scene:06d}" / self.params.file(name)
        if path.is_file():
            self._coco_files.append(path)
            return read_coco_gt(path, im_ids, self.task == "segm", (self.params.height, self.params.width))
        return self._coco_from_masks(scene, im_ids)

    def _coco_from_masks(self, scene: int, im_ids: list[int]) -> dict[int, dict[str, Tensor]]:
        """calc_gt_coco.py's annotations: per GT instance with a non-empty visible mask (and, for amodal boxes, a
        non-empty full mask) the RLE and area of ``mask_visib``, the box of the full (amodal) or visible (modal)
        mask, ``ignore`` = visib_fract < 0.1, ``iscrowd`` 0, ids counted from 1 per scene."""
        gt_path, scene_gt = self._scene_file(scene, "scene_gt")
        info_path, scene_info = self._scene_file(scene, "scene_gt_info")
        self._coco_files += [gt_path, info_path]
        out, ann_id = {}, 1
        shape = (self.params.height, self.params.width)
        for im in im_ids:
            key = str(im)
            for path, data in ((gt_path, scene_gt), (info_path, scene_info)):
                if key not in data or not isinstance(data[key], list):
                    raise InputError(path, f"key '{key}'", None, f"image {im} is a test target but has no list of GT "
                                     "instances here (and the scene has no scene_gt_coco.json)")
            if len(scene_info[key]) != len(scene_gt[key]):
                raise InputError(info_path, f"key '{key}'", None, f"{len(scene_info[key])} entries but scene_gt has "
                                 f"{len(scene_gt[key])} GT instances")
            rows: dict[str, list] = {k: [] for k in ("cat", "bbox", "area", "ign", "id", "rle")}
            for j, (g, inf) in enumerate(zip(scene_gt[key], scene_info[key])):
                r = f"key '{key}' index {j}"
                obj = _int(gt_path, r, "obj_id", _field(gt_path, r, g, "obj_id"))
                v = _field(info_path, r, inf, "visib_fract")
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                    raise InputError(info_path, r, "visib_fract", f"expected a number in [0, 1], got {v!r}")
                visib = self._mask(scene, "mask_visib", im, j, shape)
                if not visib.any():
                    continue
                full = visib
                if self.bbox_type == "amodal":
                    full = self._mask(scene, "mask", im, j, shape)
                    if not full.any():
                        continue
                rows["cat"].append(obj)
                rows["bbox"].append(mask_box(full))
                rows["area"].append(float(visib.sum()))
                rows["ign"].append(int(v < 0.1))
                rows["id"].append(ann_id)
                rows["rle"].append(mask_to_rle(visib))
                ann_id += 1
            out[im] = _gt_tensors(rows, self.task == "segm")
        return out

    def _mask(self, scene: int, folder: str, im: int, gt: int, shape: tuple[int, int]) -> np.ndarray:
        path = self.split_dir / f"{scene:06d}" / self.params.folder(folder) / f"{im:06d}_{gt:06d}.png"
        arr = read_image_array(path, "mask image", missing=" (no scene_gt_coco.json either)")
        if arr.shape != shape:
            raise InputError(path, None, None, f"expected a {shape[1]}x{shape[0]} mask, got shape {arr.shape}")
        self._coco_files.append(path)
        return arr != 0

    # -- reading

    def _scene_file(self, scene: int, name: str) -> tuple[Path, dict]:
        path = self.split_dir / f"{scene:06d}" / self.params.file(name)
        data = load_json(path)
        if not isinstance(data, dict):
            raise InputError(path, None, None, "expected a JSON object keyed by image id")
        return path, data

    def _read_scene(self, scene: int, im_ids: list[int], per_image) -> list[_Image]:
        gt_path, scene_gt = self._scene_file(scene, "scene_gt")
        info_path, scene_info = self._scene_file(scene, "scene_gt_info")
        cam_path, scene_cam = self._scene_file(scene, "scene_camera")
        out = []
        for im in im_ids:
            key = str(im)
            for path, data in ((gt_path, scene_gt), (info_path, scene_info), (cam_path, scene_cam)):
                if key not in data:
                    raise InputError(
                        path, f"key '{key}'", None, f"image {im} is a test target but has no entry here"
                    )
            gts, infos, cam = scene_gt[key], scene_info[key], scene_cam[key]
            if not isinstance(gts, list) or not isinstance(infos, list):
                raise InputError(
                    gt_path if not isinstance(gts, list) else info_path,
                    f"key '{key}'",
                    None,
                    "expected a list of GT instances",
                )
            if len(infos) != len(gts):
                raise InputError(
                    info_path,
                    f"key '{key}'",
                    None,
                    f"{len(infos)} entries but scene_gt.json has {len(gts)} GT instances",
                )
            obj, R, t, vis = [], [], [], []
            for j, (g, inf) in enumerate(zip(gts, infos)):
                r = f"key '{key}' index {j}"
                obj.append(_int(gt_path, r, "obj_id", _field(gt_path, r, g, "obj_id")))
                R.append(_numbers(gt_path, r, "cam_R_m2c", _field(gt_path, r, g, "cam_R_m2c"), 9))
                t.append(_numbers(gt_path, r, "cam_t_m2c", _field(gt_path, r, g, "cam_t_m2c"), 3))
                v = _field(info_path, r, inf, "visib_fract")
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                    raise InputError(info_path, r, "visib_fract", f"expected a number in [0, 1], got {v!r}")
                vis.append(float(v))
            r = f"key '{key}'"
            K = _numbers(cam_path, r, "cam_K", _field(cam_path, r, cam, "cam_K"), 9).reshape(3, 3)
            scale = _field(cam_path, r, cam, "depth_scale")
            if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
                raise InputError(cam_path, r, "depth_scale", f"expected a positive number, got {scale!r}")
            depth_path = self._find(scene, self.params.folder("depth"), im, self.params.depth_exts)
            if depth_path is None:
                raise InputError(
                    self.split_dir / f"{scene:06d}" / self.params.folder("depth"),
                    f"image {im}",
                    None,
                    f"depth image {im:06d}{self.params.depth_exts[0]} not found",
                )
            rgb_path = None
            for folder, ext in self.params.image_dirs:
                rgb_path = rgb_path or self._find(scene, folder, im, (ext,))
            targets = per_image[(scene, im)]
            n = len(obj)
            target = {
                "sample_id": torch.tensor(sample_id_of(scene, im), dtype=torch.int64),
                "scene_id": torch.tensor(scene, dtype=torch.int64),
                "im_id": torch.tensor(im, dtype=torch.int64),
                "K": torch.from_numpy(K),
                "gt_obj_id": torch.tensor(obj, dtype=torch.int64),
                "gt_R": torch.from_numpy(np.stack(R).reshape(n, 3, 3) if n else np.zeros((0, 3, 3))),
                "gt_t": torch.from_numpy(np.stack(t) if n else np.zeros((0, 3))),
                "gt_visib_fract": torch.tensor(vis, dtype=torch.float64),
                "target_obj_id": torch.tensor([o for o, _ in targets], dtype=torch.int64),
                "target_inst_count": torch.tensor([c for _, c in targets], dtype=torch.int64),
            }
            out.append(_Image(scene, im, depth_path, float(scale), rgb_path, target))
        return out

    def _find(self, scene: int, folder: str, im: int, exts: Iterable[str]) -> Path | None:
        for ext in exts:
            p = self.split_dir / f"{scene:06d}" / folder / f"{im:06d}{ext}"
            if p.is_file():
                return p
        return None

    @property
    def max_estimates(self) -> int:
        """eval_bop24_pose.py's max_num_estimates_per_image: 200 for xyzibd, else 100."""
        return 200 if self.name.startswith("xyzibd") else DETECTION_MAX_ESTIMATES

    # -- BenchmarkDataset

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Sample:
        img = self.images[index]
        target = dict(img.target)
        if img.depth_path is None:  # bbox / segm: the image and its COCO GT only
            return Sample(int(target["sample_id"]), target, {"rgb_path": str(img.rgb_path)} if img.rgb_path else {})
        target["depth"] = load_depth(img.depth_path, img.depth_scale, self.params.height, self.params.width)
        inputs: dict[str, Any] = {"depth_path": str(img.depth_path), "K": target["K"]}
        if img.rgb_path is not None:
            inputs["rgb_path"] = str(img.rgb_path)
        if self.detections_path is not None:  # the upstream detector's boxes of this image (two-stage methods)
            inputs["detections"] = self.detections.get(divmod(int(target["sample_id"]), IM_ID_LIMIT), [])
        return Sample(int(target["sample_id"]), target, inputs)

    def annotations(self, index: int) -> dict[str, Tensor]:
        """The target of sample ``index`` without its depth image (cheap: nothing is read from disk)."""
        return dict(self.images[index].target)

    @property
    def sample_ids(self) -> list[int]:
        return [int(i.target["sample_id"]) for i in self.images]

    @property
    def models(self) -> dict[int, ObjectModel]:
        """The models_eval meshes of every object that the test targets name (read once)."""
        if self._models is None:
            self._models = read_models(self.root, self.target_obj_ids)
        return self._models

    def object_models(self, obj_ids: Iterable[int]) -> dict[int, ObjectModel]:
        """models_eval meshes of any objects of the dataset (a method's classes may be more than the targets)."""
        return read_models(self.root, obj_ids)

    @property
    def detections(self) -> dict[tuple[int, int], list[Detection]]:
        """The upstream detections of ``dataset.detections=FILE`` by (scene_id, im_id), read once ({} without)."""
        if self._detections is None:
            self._detections = read_detections(self.detections_path) if self.detections_path else {}
        return self._detections

    def gt_files(self) -> Iterable[Path]:
        if self.task in COCO_TASKS:
            return [self.targets_path, *self._coco_files]
        files = [self.targets_path, self.root / MODELS_DIR / "models_info.json"]
        files += [self.root / MODELS_DIR / f"obj_{o:06d}.ply" for o in self.target_obj_ids]
        for scene in self.scene_ids:
            files += [
                self.split_dir / f"{scene:06d}" / self.params.file(n)
                for n in ("scene_gt", "scene_gt_info", "scene_camera")
            ]
        files += [img.depth_path for img in self.images]
        return files

    def build_metric(self):
        if self.task in COCO_TASKS:
            from metrics.bop.coco_det import BOPCocoAP

            return BOPCocoAP(self.task, extra_image_times=self._extra_times)
        if self.task == "detection":
            from metrics.bop.detection import BOPDetectionAP

            return BOPDetectionAP(models=self.models, image_width=self.params.width,
                                  max_estimates=self.max_estimates, extra_image_times=self._extra_times)
        from metrics.bop.ar import BOPAR

        return BOPAR(models=self.models, vsd_delta=self.params.vsd_delta, image_width=self.params.width)

    def results_recorder(self, method: str):
        """6D tasks: the BOP19 results CSV of a model run (bench/results_file.py); 2D tasks: none yet."""
        if self.task in COCO_TASKS:
            return None
        from bench.results_file import BopResultsRecorder, bop_results_name

        split = self.params.test_split.split("_")[0]  # test_primesense -> test: the toolkit's split name
        return bop_results_name(method, self.bop_name, split), BopResultsRecorder(IM_ID_LIMIT)

    def read_predictions(self, path: Path) -> dict[int, Prediction]:
        """A BOP19 results CSV. Estimates for images that are not test targets are ignored (with a warning),
        as the toolkit's ``eval_calc_errors.py`` only visits the target images."""
        if self.task == "detection":
            return self._read_detection_predictions(path)
        if self.task in COCO_TASKS:
            return self._read_coco_predictions(path)
        preds = read_bop19_csv(path)
        keep = set(self.sample_ids)
        ignored = [s for s in preds if s not in keep]
        if ignored:
            n = sum(int(preds[s].output["obj_id"].numel()) for s in ignored)
            warnings.warn(
                f"{path}: {n} estimates on {len(ignored)} images that are not {self.name} test targets "
                f"are ignored (as the BOP toolkit does), e.g. scene {ignored[0] // IM_ID_LIMIT} "
                f"image {ignored[0] % IM_ID_LIMIT}",
                stacklevel=2,
            )
        return drop_unknown_objects({s: p for s, p in preds.items() if s in keep}, self.params.obj_ids, self.name,
                                    path)

    def _read_detection_predictions(self, path: Path) -> dict[int, Prediction]:
        """As eval_bop24_pose.py loads them: per image the ``DETECTION_MAX_ESTIMATES`` best rows (stable by score,
        estimates of unknown objects included), each row with its time (``row_time``). Non-target images are
        ignored with a warning, but their times count in ``average_time_per_image`` as in the toolkit."""
        from metrics.bop.detection import keep_top

        rows = read_bop19_rows(path)
        preds = to_predictions(rows)
        order = np.argsort(rows.sample_id, kind="stable")  # to_predictions' grouping: by image, file order inside
        bounds = np.append(np.unique(rows.sample_id[order], return_index=True)[1], len(order))
        keep = set(self.sample_ids)
        out: dict[int, Prediction] = {}
        self._extra_times = []
        for k, (s, p) in enumerate(sorted(preds.items())):
            row_time = torch.from_numpy(rows.time[order[bounds[k]:bounds[k + 1]]])
            top = keep_top(p.output["score"], self.max_estimates)
            tm = row_time[top]
            if s not in keep:
                known = tm[tm >= 0]
                self._extra_times.append(float(known[0]) if bool((tm >= 0).all()) else -1.0)
                continue
            o = {k: v[top] for k, v in p.output.items() if k != "time"}
            out[s] = Prediction(s, {**o, "time": p.output["time"], "row_time": tm})
        ignored = [s for s in preds if s not in keep]
        if ignored:
            warnings.warn(
                f"{path}: {len(ignored)} images that are not {self.name} test targets are ignored (as the BOP "
                f"toolkit does; their times still count in average_time_per_image), e.g. scene "
                f"{ignored[0] // IM_ID_LIMIT} image {ignored[0] % IM_ID_LIMIT}",
                stacklevel=2,
            )
        return drop_unknown_objects(out, self.params.obj_ids, self.name, path, drop=False)

    def _read_coco_predictions(self, path: Path) -> dict[int, Prediction]:
        """As eval_bop22_coco.py takes them: the records of target images (a ``bbox`` of ``[]`` skipped for bbox),
        in file order per image. For segm the detection area is the box's ``w * h`` when the first record of
        the merged list (first scene of the targets file with records, first record) has a non-empty ``bbox``
        (pycocotools' loadRes), else the mask's area. Records of other images are ignored with a warning; their
        times count in ``average_time_per_image`` as in the toolkit."""
        records = read_bop22_results(path, self.task)
        by_image: dict[int, list[CocoRecord]] = {}
        for rec in records:
            if self.task == "bbox" and rec.bbox is None:
                continue
            by_image.setdefault(sample_id_of(rec.scene_id, rec.image_id), []).append(rec)
        keep = {int(img.target["sample_id"]): img for img in self.images}
        ignored = [s for s in by_image if s not in keep]
        if ignored:
            warnings.warn(f"{path}: {sum(len(by_image[s]) for s in ignored)} results on {len(ignored)} images that "
                          f"are not {self.name} test targets are ignored (as the BOP toolkit does), e.g. scene "
                          f"{ignored[0] // IM_ID_LIMIT} image {ignored[0] % IM_ID_LIMIT}", stacklevel=2)
        scored = {s: recs for s, recs in by_image.items() if s in keep}
        first = min(scored.items(), key=lambda kv: (self.scene_rank[kv[0] // IM_ID_LIMIT], kv[1][0].index),
                    default=(None, [None]))[1][0]
        box_area = self.task == "bbox" or (first is not None and first.bbox is not None)
        shape = (self.params.height, self.params.width)
        times, self._extra_times = self._toolkit_times(records, set(scored))
        unknown = {}
        out = {}
        for s, recs in scored.items():
            for rec in recs:
                if rec.category_id not in self.params.obj_ids:
                    unknown[rec.category_id] = unknown.get(rec.category_id, 0) + 1
                if self.task == "segm":
                    if rec.size != shape:
                        raise InputError(path, f"index {rec.index}", "segmentation.size",
                                         f"expected the image size {list(shape)}, got {list(rec.size)}")
                    if box_area and rec.bbox is None:
                        raise InputError(path, f"index {rec.index}", "bbox", "missing, but the first result has one "
                                         "(pycocotools then takes every detection's area from its box)")
            time = times.get(s, float("nan"))
            out[s] = Prediction(s, coco_output(recs, self.task, box_area, time))
        if unknown:
            named = "; ".join(f"{n} result{'s' * (n > 1)} name{'s' * (n == 1)} category_id {c}"
                              for c, n in sorted(unknown.items()))
            warnings.warn(f"{path}: {named}, which {self.name} does not have: ignored", stacklevel=2)
        return out

    def _toolkit_times(self, records: list[CocoRecord], scored: set[int]) -> tuple[dict[int, float], list[float]]:
        """eval_bop22_coco.py's per-image times: it collects them after merging the scenes, and the merge has
        shifted the ``image_id`` of the scored records of every scene but the first by that scene's offset, so
        those records count under the shifted id (a target image whose skipped records keep the old id counts
        twice); a time differing by more than 0.001 s from an earlier one under the same id ends the collection
        there (the toolkit ignores the failed check). -> (time of each scored image's shifted id, the other
        ids' times); every time is -1 when any record before the stop has no time or a negative one."""
        offset, top = {}, -1
        for scene in sorted(self.scene_rank, key=self.scene_rank.get):
            ims = [img.im_id for img in self.images if img.scene_id == scene]
            offset[scene] = 0 if top < 0 else top + 1
            top = max(ims) + offset[scene]
        times: dict[tuple[int, int], float] = {}
        mine: dict[tuple[int, int], int] = {}
        available = True
        for rec in records:
            s = sample_id_of(rec.scene_id, rec.image_id)
            shifted = s in scored and (self.task == "segm" or rec.bbox is not None)
            key = (rec.scene_id, rec.image_id + (offset[rec.scene_id] if shifted else 0))
            if shifted:
                mine[key] = s
            if rec.time is None or rec.time < 0:
                available = False
                continue
            if key in times and abs(times[key] - rec.time) > 0.001:
                break
            times.setdefault(key, rec.time)
        if not available:
            return {s: -1.0 for s in scored}, [-1.0]
        return ({mine[k]: t for k, t in times.items() if k in mine},
                [t for k, t in times.items() if k not in mine])

    def empty_prediction(self, sample: Sample) -> Prediction:
        """An image the results file says nothing about: no estimates (its targets count as misses)."""
        if self.task in COCO_TASKS:
            return Prediction(sample.sample_id, coco_output([], self.task, True, float("nan")))
        return Prediction(sample.sample_id, empty_output())


def mask_box(mask: np.ndarray) -> list[float]:
    """pycoco_utils.bbox_from_binary_mask: [x, y, w, h] of the smallest box holding the mask (pixels inclusive)."""
    rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    return [float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)]


def mask_to_rle(mask: np.ndarray) -> np.ndarray:
    """Column-major run lengths of a boolean mask, starting with a background run (COCO's uncompressed RLE)."""
    flat = mask.ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds)
    return np.concatenate([[0], runs]) if flat.size and flat[0] else runs


def _gt_tensors(rows: dict[str, list], segm: bool) -> dict[str, Tensor]:
    n = len(rows["cat"])
    out = {
        "gt_category_id": torch.tensor(rows["cat"], dtype=torch.int64),
        "gt_bbox": torch.tensor(rows["bbox"], dtype=torch.float64).reshape(n, 4),
        "gt_area": torch.tensor(rows["area"], dtype=torch.float64),
        "gt_iscrowd": torch.tensor(rows.get("crowd", [0] * n), dtype=torch.int64),
        "gt_ignore": torch.tensor(rows["ign"], dtype=torch.int64),
        "gt_ann_id": torch.tensor(rows["id"], dtype=torch.int64),
    }
    if segm:
        out["gt_rle_counts"] = torch.from_numpy(np.concatenate(rows["rle"]).astype(np.int64)) if n \
            else torch.zeros(0, dtype=torch.int64)
        out["gt_rle_len"] = torch.tensor([len(r) for r in rows["rle"]], dtype=torch.int64)
    return out


def read_coco_gt(path: Path, im_ids: list[int], segm: bool, shape: tuple[int, int]) -> dict[int, dict[str, Tensor]]:
    """A scene's ``scene_gt_coco.json`` -> GT tensors of the target images (their annotations in file order).

    The fork of pycocotools keeps each annotation's own ``ignore`` (default 0); ``iscrowd`` defaults to 0; for
    segm the ``segmentation`` must be an RLE of the image size (calc_gt_coco.py writes uncompressed ones).
    """
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise InputError(path, None, None, "expected a COCO object with 'images' and 'annotations' lists")
    have = set()
    for i, img in enumerate(data["images"]):
        have.add(_int(path, f"images index {i}", "id", _field(path, f"images index {i}", img, "id")))
    missing = [im for im in im_ids if im not in have]
    if missing:
        raise InputError(path, "images", "id", f"test target image {missing[0]} is not listed")
    wanted = set(im_ids)
    rows = {im: {k: [] for k in ("cat", "bbox", "area", "ign", "id", "rle", "crowd")} for im in im_ids}
    for i, ann in enumerate(data["annotations"]):
        r = f"annotations index {i}"
        im = _int(path, r, "image_id", _field(path, r, ann, "image_id"))
        if im not in wanted:
            continue
        row = rows[im]
        row["cat"].append(_int(path, r, "category_id", _field(path, r, ann, "category_id")))
        row["id"].append(_int(path, r, "id", _field(path, r, ann, "id")))
        row["bbox"].append(_numbers(path, r, "bbox", _field(path, r, ann, "bbox"), 4).tolist())
        area = _field(path, r, ann, "area")
        if isinstance(area, bool) or not isinstance(area, (int, float)) or not math.isfinite(area) or area < 0:
            raise InputError(path, r, "area", f"expected a number >= 0, got {area!r}")
        row["area"].append(float(area))
        ign, crowd = ann.get("ignore", 0), ann.get("iscrowd", 0)
        for field, v in (("ignore", ign), ("iscrowd", crowd)):
            if not isinstance(v, (bool, int)):
                raise InputError(path, r, field, f"expected a flag (0/1, true/false), got {v!r}")
        row["ign"].append(int(bool(ign)))
        row["crowd"].append(int(bool(crowd)))
        if segm:
            row["rle"].append(decode_rle(path, r, "segmentation", _field(path, r, ann, "segmentation"), shape)[0])
    return {im: _gt_tensors(rows[im], segm) for im in im_ids}


def coco_output(recs: list[CocoRecord], task: str, box_area: bool, time: float) -> dict[str, Tensor]:
    """The Prediction output of one image's BOP22 COCO records (see metrics.bop.coco_det.BOPCocoAP.update)."""
    n = len(recs)
    box = np.array([r.bbox if r.bbox is not None else (np.nan,) * 4 for r in recs], dtype=np.float64).reshape(n, 4)
    out = {"category_id": torch.tensor([r.category_id for r in recs], dtype=torch.int64),
           "score": torch.tensor([r.score for r in recs], dtype=torch.float64),
           "bbox": torch.from_numpy(box), "time": torch.tensor(time, dtype=torch.float64)}
    if task == "segm":
        runs = [r.rle for r in recs]
        out["rle_counts"] = torch.from_numpy(np.concatenate(runs)) if n else torch.zeros(0, dtype=torch.int64)
        out["rle_len"] = torch.tensor([len(x) for x in runs], dtype=torch.int64)
        if box_area:
            out["area"] = torch.from_numpy(box[:, 2] * box[:, 3])
        else:
            out["area"] = torch.tensor([float(x[1::2].sum()) for x in runs], dtype=torch.float64)
    return out


def drop_unknown_objects(preds: dict[int, Prediction], obj_ids: Iterable[int], dataset: str,
                         path: Path, drop: bool = True) -> dict[int, Prediction]:
    """Drop estimates whose obj_id the dataset does not have, with a warning naming the ids.

    The toolkit ignores them silently (no GT ever matches them), but such a file is almost certainly
    mislabelled (another dataset's ids, or ids off by one), so the user is told. ``drop=False`` only warns
    (6D detection: they take places among an image's 100 best estimates, and its metric never scores them).
    """
    known = torch.tensor(sorted(set(obj_ids)), dtype=torch.int64)
    counts: dict[int, int] = {}
    out = {}
    for s, p in preds.items():
        ok = torch.isin(p.output["obj_id"], known)
        if bool(ok.all()):
            out[s] = p
            continue
        for o in p.output["obj_id"][~ok].tolist():
            counts[o] = counts.get(o, 0) + 1
        out[s] = Prediction(s, {k: (v[ok] if v.ndim and k != "time" else v) for k, v in p.output.items()})
    if counts:
        named = "; ".join(f"{n} estimate{'s' * (n > 1)} name{'s' * (n == 1)} obj_id {o}"
                          for o, n in sorted(counts.items()))
        warnings.warn(f"{path}: {named}, which {dataset} does not have: ignored", stacklevel=3)
    return out if drop else preds


def _opt(cfg: Any, key: str, default: Any) -> Any:
    v = cfg.get(key) if cfg is not None else None
    return default if v is None else v


@leaderboard.register_summary("object6d")
def bop_core_summary(leaderboard_dir: Path, dataset: str) -> None:
    """AR_C (object6d/bop_core.csv) whenever a core dataset's row changes."""
    if dataset in leaderboard.BOP_CORE:
        leaderboard.update_bop_core(leaderboard_dir)


def update_coco_core(leaderboard_dir: Path, task: str) -> Path:
    """Rewrite ``object6d/bop_core_<task>.csv``: AP_C, the mean AP over the 7 BOP core datasets' ``<name>_<task>``
    rows (as the BOP 2022 paper reports detection and segmentation); like AR_C, a method appears only with a
    row (same variant) in all 7, and the per-dataset APs are kept beside it."""
    folder = Path(leaderboard_dir) / "object6d"
    tables = {ds: {(r["method"], r.get("variant", "")): r for r in leaderboard.read_rows(folder / f"{ds}_{task}.csv")[1]}
              for ds in leaderboard.BOP_CORE}
    common = set.intersection(*(set(t) for t in tables.values()))
    rows = []
    for key in sorted(common):
        aps = [float(tables[ds][key]["AP"]) for ds in leaderboard.BOP_CORE]
        row = {"method": key[0], "variant": key[1], "AP_C": leaderboard.format_value(sum(aps) / len(aps))}
        row.update({f"AP_{ds}": tables[ds][key]["AP"] for ds in leaderboard.BOP_CORE})
        rows.append(row)
    path = folder / f"bop_core_{task}.csv"
    columns = ["method", "variant", "AP_C", *(f"AP_{ds}" for ds in leaderboard.BOP_CORE)]
    with leaderboard.locked(path):
        leaderboard.write_atomic(path, leaderboard.render_csv(columns, rows))
    return path


@leaderboard.register_summary("object6d")
def bop_coco_core_summary(leaderboard_dir: Path, dataset: str) -> None:
    """AP_C (object6d/bop_core_bbox.csv, bop_core_segm.csv) whenever a core dataset's bbox / segm row changes."""
    for task in COCO_TASKS:
        if dataset.endswith(f"_{task}") and dataset[: -len(task) - 1] in leaderboard.BOP_CORE:
            update_coco_core(leaderboard_dir, task)


@register_dataset(*BOP_PARAMS, *REFUSED)
def build(cfg: Any) -> BopDataset:
    """Hydra node ``dataset`` (bench/conf/dataset/<name>.yaml) -> BopDataset.

    Options (null = the official value): ``task`` (localization | detection), ``test_split``, ``vsd_delta``,
    ``width``, ``height``, ``targets_file`` (default: the task's file); ``detections``: an upstream detections
    JSON, handed to two-stage methods (GDRNPP) per image as ``Sample.inputs["detections"]``.
    """
    name = str(cfg.name)
    if name in REFUSED:
        raise InputError(None, None, "dataset", REFUSED[name])
    task = str(_opt(cfg, "task", "localization"))
    if task not in TARGETS_FILES:
        raise InputError(None, None, "dataset.task", f"expected one of {', '.join(TARGETS_FILES)}, got {task!r}")
    bbox_type = str(_opt(cfg, "bbox_type", "amodal"))
    if bbox_type not in BBOX_TYPES:
        raise InputError(None, None, "dataset.bbox_type", f"expected amodal or modal, got {bbox_type!r}")
    base = BOP_PARAMS[name]
    if task == "localization" and base.vsd_delta is None and _opt(cfg, "vsd_delta", None) is None:
        raise InputError(None, None, "dataset.task", f"{name} has no VSD delta in eval_bop19_pose.py (no BOP19 "
                         "localization there): use detection, bbox or segm")
    params = BopParams(
        test_split=str(_opt(cfg, "test_split", base.test_split)),
        width=int(_opt(cfg, "width", base.width)),
        height=int(_opt(cfg, "height", base.height)),
        vsd_delta=None if _opt(cfg, "vsd_delta", base.vsd_delta) is None else float(_opt(cfg, "vsd_delta", base.vsd_delta)),
        obj_ids=base.obj_ids,
        depth_exts=base.depth_exts,
        image_dirs=base.image_dirs,
        sensor=base.sensor,
    )
    targets_file = str(_opt(cfg, "targets_file", TARGETS_FILES[task]))
    required = [targets_file, params.test_split] if task in COCO_TASKS else \
        [targets_file, f"{MODELS_DIR}/models_info.json", params.test_split]
    root, bundled = resolve_data_root(
        name, _opt(cfg, "data_root", None), required, name if name == "ycbv" else None
    )
    return BopDataset(name, root, bundled, params, targets_file, _opt(cfg, "detections", None), task, bbox_type)
