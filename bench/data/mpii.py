"""MPII Human Pose validation set (single person) -> one Sample per annotated person, scored by PCKh.

Layout under ``data_root`` (mmpose's)::

    annotations/mpii_gt_val.mat   the official evaluation GT (required): dataset_joints (1, 16) joint names,
                                  pos_gt_src (16, 2, N) 1-based pixels, jnt_missing (16, N),
                                  headboxes_src (2, 2, N) [[x1, y1], [x2, y2]] per person
    annotations/mpii_val.json     optional, mmpose's list format ({"image", "center", "scale", "joints",
                                  "joints_vis"} per person, same order): image names and person boxes for model runs
    images/                       the images

``sample_id`` is the person's column ``n`` in the .mat (= its position in ``mpii_val.json``). Predictions file:
a JSON list of ``{"index": n, "keypoints": [[x, y], ... 16]}`` in 0-based pixels and MPII joint order
(mmpose's output frame; the metric adds 1 like mmpose), one record per person; extra fields are ignored. The
bundled 5-person sample (mmpose's test images and json) has a .mat derived from the json whose head boxes are
synthetic (see its PROVENANCE.md): it shows that the pipeline runs, its numbers mean nothing.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from bench.data.base import BenchmarkDataset, resolve_data_root
from bench.errors import InputError
from bench.registry import register_dataset
from bench.types import Prediction, Sample
from metrics.pckh import MPII_JOINTS, PCKH_KEYS, PCKh, head_sizes

GT_FILE = "annotations/mpii_gt_val.mat"
JSON_FILE = "annotations/mpii_val.json"
IMAGE_DIR = "images"


def read_mpii_gt(path: str | Path) -> dict[str, np.ndarray]:
    """Read ``mpii_gt_val.mat`` -> keypoints (N, 16, 2), visible (N, 16) bool, headboxes (N, 2, 2), in MPII joint order."""
    from scipy.io import loadmat

    path = Path(path)
    try:
        m = loadmat(path)
    except Exception as e:  # noqa: BLE001 - scipy raises many types for a bad file
        raise InputError(path, None, None, f"not a readable MATLAB .mat file ({e})") from None
    for k in ("dataset_joints", "jnt_missing", "pos_gt_src", "headboxes_src"):
        if k not in m:
            raise InputError(path, None, k, "missing")
    try:
        names = [str(np.asarray(x).reshape(-1)[0]) for x in np.asarray(m["dataset_joints"]).reshape(-1)]
    except (IndexError, TypeError):
        names = []
    if sorted(names) != sorted(MPII_JOINTS):
        raise InputError(path, None, "dataset_joints", f"expected the 16 MPII joint names, found {names}")
    order = [names.index(j) for j in MPII_JOINTS]
    pos, miss, hb = (np.asarray(m[k]) for k in ("pos_gt_src", "jnt_missing", "headboxes_src"))
    if pos.ndim != 3 or pos.shape[:2] != (16, 2):
        raise InputError(path, None, "pos_gt_src", f"expected shape (16, 2, N), found {pos.shape}")
    N = pos.shape[2]
    if miss.shape != (16, N):
        raise InputError(path, None, "jnt_missing", f"expected shape (16, {N}), found {miss.shape}")
    if hb.shape != (2, 2, N):
        raise InputError(path, None, "headboxes_src", f"expected shape (2, 2, {N}), found {hb.shape}")
    for k, a in (("pos_gt_src", pos), ("jnt_missing", miss), ("headboxes_src", hb)):
        if not np.issubdtype(a.dtype, np.number) or not np.isfinite(a.astype(np.float64)).all():
            raise InputError(path, None, k, "expected finite numbers")
    return {"keypoints": pos.transpose(2, 0, 1)[:, order].astype(np.float64),
            "visible": (1 - miss.astype(np.int64)).T[:, order] != 0,
            "headboxes": hb.transpose(2, 0, 1).astype(np.float64)}


def read_mpii_predictions(path: str | Path, num_samples: int) -> dict[int, np.ndarray]:
    """JSON list of ``{"index", "keypoints": [[x, y]] * 16}`` -> {index: (16, 2) float64}; InputError on bad records."""
    path = Path(path)
    try:
        recs = json.loads(path.read_bytes())
    except OSError as e:
        raise InputError(path, None, None, f"cannot read the predictions file ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise InputError(path, None, None, f"not a JSON file (not UTF-8 text at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise InputError(path, f"line {e.lineno} column {e.colno}", None, f"not valid JSON ({e.msg})") from None
    if not isinstance(recs, list):
        raise InputError(path, None, None, f"expected a JSON list of records, found {type(recs).__name__}")
    out: dict[int, np.ndarray] = {}
    for i, r in enumerate(recs):
        where = f"index {i}"
        if not isinstance(r, dict):
            raise InputError(path, where, None, f"expected an object, found {type(r).__name__}")
        n = r.get("index")
        if type(n) is not int:
            raise InputError(path, where, "index", f"expected an integer, found {n!r}")
        if not 0 <= n < num_samples:
            raise InputError(path, where, "index", f"person {n} is not in the ground truth (0..{num_samples - 1})")
        if n in out:
            raise InputError(path, where, "index", f"person {n} is predicted twice")
        k = r.get("keypoints")
        ok = (isinstance(k, list) and len(k) == 16
              and all(isinstance(p, list) and len(p) >= 2 for p in k)
              and all(type(x) in (int, float) and math.isfinite(x) for p in k for x in p[:2]))
        if not ok:
            raise InputError(path, where, "keypoints", "expected 16 [x, y] pairs of finite numbers")
        out[n] = np.array([p[:2] for p in k], dtype=np.float64)
    return out


class Mpii(BenchmarkDataset):
    """MPII validation persons, scored by PCKh@0.5 (mmpose 0.x ``evaluate``)."""

    family = "human2d"
    metric_keys = PCKH_KEYS

    def __init__(self, root: Path, bundled: bool = False, thr: float = 0.5, name: str = "mpii"):
        super().__init__(name, root, bundled)
        self.gt_path = self.root / GT_FILE
        gt = read_mpii_gt(self.gt_path)
        self.thr = float(thr)
        self.n = gt["keypoints"].shape[0]
        kp = torch.from_numpy(gt["keypoints"])
        vis = torch.from_numpy(gt["visible"])
        hs = head_sizes(torch.from_numpy(gt["headboxes"]))
        self._targets = [{"index": torch.tensor(i), "keypoints": kp[i], "visible": vis[i], "head_size": hs[i]}
                         for i in range(self.n)]
        self.json_path = self.root / JSON_FILE
        self._persons = None
        if self.json_path.exists():
            try:
                persons = json.loads(self.json_path.read_bytes())
            except (OSError, ValueError) as e:
                raise InputError(self.json_path, None, None, f"not a readable JSON file ({e})") from None
            if not isinstance(persons, list) or len(persons) != self.n:
                raise InputError(self.json_path, None, None, f"expected a list of {self.n} persons (one per column of the .mat)")
            self._persons = persons

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Sample:
        inputs = {}
        if self._persons is not None:
            p = self._persons[index]
            inputs = {"image_path": str(self.root / IMAGE_DIR / str(p.get("image", ""))),
                      "center": p.get("center"), "scale": p.get("scale")}
        return Sample(sample_id=index, target=self._targets[index], inputs=inputs)

    def gt_files(self) -> Iterable[Path]:
        return [self.gt_path]

    def build_metric(self) -> PCKh:
        return PCKh(thr=self.thr)

    def read_predictions(self, path: Path) -> dict[int, Prediction]:
        preds = read_mpii_predictions(path, self.n)
        return {n: Prediction(n, {"index": torch.tensor(n), "keypoints": torch.from_numpy(k)}) for n, k in preds.items()}


@register_dataset("mpii")
def build_mpii(cfg) -> Mpii:
    """Builder for ``dataset=mpii`` (options: data_root, thr)."""
    get = cfg.get if hasattr(cfg, "get") else (lambda k, d=None: getattr(cfg, k, d))
    root, bundled = resolve_data_root("mpii", get("data_root", None), [GT_FILE], "mpii")
    return Mpii(root, bundled, thr=get("thr", 0.5))
