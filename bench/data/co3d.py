"""CO3D v2 sparse-view camera pose (family ``camera``): one Sample per test sequence, a frame set of N views.

Layout under ``data_root`` (the official CO3D v2 release, per category)::

    <category>/frame_annotations.jgz                 gzipped JSON list of frames: sequence_name, frame_number,
                                                     image.path, viewpoint.R / .T (PyTorch3D convention)
    <category>/sequence_annotations.jgz              gzipped JSON list: sequence_name, viewpoint_quality_score
    <category>/set_lists/set_lists_fewview_dev.json  {"train" | "val" | "test": [[sequence, frame_number, path]]}

Which frames and sets are scored: RelPose++'s ``preprocess/preprocess_co3d.py`` (the annotation files that
PoseDiffusion's test reads) and PoseDiffusion @ b138198 ``pose_diffusion/test.py`` with ``cfgs/default_test.yaml``:

1. categories sorted (``seen``: the 41 training categories of ``datasets/co3d_v2.py``, test.py's default;
   ``unseen``: its 10 test categories; ``all``; ``debug``: apple and teddybear; or a list);
2. per category, the ``test`` entries of the set list in file order, of sequences whose
   ``viewpoint_quality_score > 0.5``; a sequence's frames in that order (sequences in order of first appearance);
3. sequences with fewer than ``min_num_images`` (50) frames, or with a frame whose ``T[0] + T[1] + T[2] > 1e5``,
   are dropped (``Co3dDataset``);
4. one numpy stream seeded once (``set_seed_and_print(0)``: ``np.random.seed(0)``) runs through the categories and
   sequences in that order: ``ids = np.random.choice(len(frames), num_frames, replace=False)`` per sequence
   (test.py draws nothing else from it when GGS is off; we did not check GGS's matcher); a sequence with fewer
   than ``num_frames`` frames is skipped without a draw;
5. the set's frames are sorted by file path (``sort_by_filename=True``): pairs ``i < j`` follow that order.

Not reproduced: the preprocessing drops frames whose mask is empty (it needs every mask PNG); such frames stay
here, so a sequence holding one can draw a different set. ``scale`` (RelPose++'s ``full_scene_scale``) is taken
over all frames of the sequence after step 3. Sample ids are positions in the draw order; predictions name the
sequence (bench/predictions/co3d.py) and the frame numbers of its set.
"""
from __future__ import annotations

import gzip
import json
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from bench.data.base import BenchmarkDataset, resolve_data_root
from bench.errors import InputError
from bench.predictions.co3d import read_co3d_predictions
from bench.registry import register_dataset
from bench.types import Prediction, Sample
from metrics.camera_pose import CAMERA_KEYS, CameraPoseAccuracy, scene_scale

# pose_diffusion/datasets/co3d_v2.py
TRAINING_CATEGORIES = (
    "apple", "backpack", "banana", "baseballbat", "baseballglove", "bench", "bicycle", "bottle", "bowl", "broccoli",
    "cake", "car", "carrot", "cellphone", "chair", "cup", "donut", "hairdryer", "handbag", "hydrant", "keyboard",
    "laptop", "microwave", "motorcycle", "mouse", "orange", "parkingmeter", "pizza", "plant", "stopsign",
    "teddybear", "toaster", "toilet", "toybus", "toyplane", "toytrain", "toytruck", "tv", "umbrella", "vase",
    "wineglass")
TEST_CATEGORIES = ("ball", "book", "couch", "frisbee", "hotdog", "kite", "remote", "sandwich", "skateboard", "suitcase")
CATEGORY_SETS = {"seen": TRAINING_CATEGORIES, "unseen": TEST_CATEGORIES, "debug": ("apple", "teddybear"),
                 "all": TRAINING_CATEGORIES + TEST_CATEGORIES}
FRAME_FILE = "frame_annotations.jgz"
SEQUENCE_FILE = "sequence_annotations.jgz"
SET_LIST = "set_lists/set_lists_fewview_dev.json"
NUM_FRAMES = 10  # cfgs/default_test.yaml
SEED = 0
MIN_NUM_IMAGES = 50
MIN_QUALITY = 0.5


def read_jgz(path: Path) -> object:
    """A gzipped JSON file (CO3D's ``.jgz``), every failure one InputError line."""
    try:
        with gzip.open(path, "rb") as f:
            return json.loads(f.read())
    except FileNotFoundError:
        raise InputError(path, None, None, "file not found (official CO3D v2 layout)") from None
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise InputError(path, None, None, f"not a readable gzipped JSON file ({e.__class__.__name__})") from None
    except json.JSONDecodeError as e:
        raise InputError(path, f"line {e.lineno}", None, f"not valid JSON ({e.msg})") from None


def _vector(value, shape: tuple, path: Path, record: str, field: str) -> np.ndarray:
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(path, record, field, "expected numbers") from None
    if a.shape != shape or not np.isfinite(a).all():
        raise InputError(path, record, field, f"expected finite numbers of shape {shape}, found {a.shape}")
    return a


class Sequence:
    """One test sequence after the filters: its frames (set-list order) with file paths and cameras."""

    def __init__(self, name: str, category: str):
        self.name, self.category = name, category
        self.frames: list[int] = []
        self.paths: list[str] = []
        self.R: list[np.ndarray] = []
        self.T: list[np.ndarray] = []


def read_category(root: Path, category: str, min_quality: float = MIN_QUALITY) -> list[Sequence]:
    """The test sequences of one category in set-list order (steps 2 of the module doc), unfiltered by length."""
    folder = root / category
    set_file = folder / SET_LIST
    try:
        sets = json.loads(set_file.read_text())
    except FileNotFoundError:
        raise InputError(set_file, None, None, "file not found (official CO3D v2 layout)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(set_file, None, None, f"not valid JSON ({e})") from None
    if not isinstance(sets, dict) or not isinstance(sets.get("test"), list):
        raise InputError(set_file, None, "test", "expected a list of [sequence, frame_number, path] entries")
    seq_path, frame_path = folder / SEQUENCE_FILE, folder / FRAME_FILE
    good = set()
    for i, s in enumerate(_records(read_jgz(seq_path), seq_path)):
        q = s.get("viewpoint_quality_score")
        if not isinstance(q, (int, float)) and q is not None:
            raise InputError(seq_path, f"index {i}", "viewpoint_quality_score", f"expected a number, found {q!r}")
        if q is not None and q > min_quality:
            good.add(s.get("sequence_name"))
    frames = {}
    for i, f in enumerate(_records(read_jgz(frame_path), frame_path)):
        frames[(f.get("sequence_name"), f.get("frame_number"))] = (i, f)
    out: dict[str, Sequence] = {}
    for k, entry in enumerate(sets["test"]):
        if not (isinstance(entry, list) and len(entry) == 3):
            raise InputError(set_file, f"test index {k}", None, "expected [sequence, frame_number, path]")
        name, number, path = entry
        if name not in good:
            continue
        hit = frames.get((name, number))
        if hit is None:
            raise InputError(frame_path, None, None, f"no frame {number!r} of sequence {name!r} (named by {set_file})")
        i, f = hit
        view = f.get("viewpoint")
        if not isinstance(view, dict):
            raise InputError(frame_path, f"index {i}", "viewpoint", "missing")
        seq = out.setdefault(name, Sequence(name, category))
        seq.frames.append(int(number))
        seq.paths.append(str(path))
        seq.R.append(_vector(view.get("R"), (3, 3), frame_path, f"index {i}", "viewpoint.R"))
        seq.T.append(_vector(view.get("T"), (3,), frame_path, f"index {i}", "viewpoint.T"))
    return list(out.values())


def _records(data, path: Path) -> list[dict]:
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise InputError(path, None, None, "expected a JSON list of objects")
    return data


def keep_sequence(seq: Sequence, min_num_images: int = MIN_NUM_IMAGES) -> bool:
    """Co3dDataset's filters: at least ``min_num_images`` frames, no frame with ``T[0] + T[1] + T[2] > 1e5``."""
    if len(seq.frames) < min_num_images:
        return False
    return not any(t[0] + t[1] + t[2] > 1e5 for t in seq.T)


def draw_frame_sets(sequences: list[Sequence], num_frames: int, seed: int = SEED) -> list[tuple[Sequence, list[int]]]:
    """test.py's draws: one seeded stream over the sequences in order; each set sorted by file path."""
    rng = np.random.RandomState(seed)
    out = []
    for seq in sequences:
        if len(seq.frames) < num_frames:
            continue
        ids = rng.choice(len(seq.frames), num_frames, replace=False)
        out.append((seq, sorted(ids.tolist(), key=lambda i: seq.paths[i])))
    return out


class Co3dDataset(BenchmarkDataset):
    """CO3D v2 test sequences, one frame set each, scored by :class:`metrics.camera_pose.CameraPoseAccuracy`."""

    family = "camera"
    metric_keys = CAMERA_KEYS
    bundled_note = "2 synthetic categories in the official layout (cameras on a sphere), not the benchmark"

    def __init__(self, root: Path, bundled: bool = False, categories: Iterable[str] = TRAINING_CATEGORIES,
                 num_frames: int = NUM_FRAMES, seed: int = SEED, min_num_images: int = MIN_NUM_IMAGES,
                 min_quality: float = MIN_QUALITY):
        super().__init__("co3d", root, bundled)
        self.categories = sorted(categories)
        self.num_frames, self.seed = int(num_frames), int(seed)
        self.variant = "" if (self.num_frames, self.seed) == (NUM_FRAMES, SEED) else f"N{self.num_frames}-seed{self.seed}"
        self.all_test: set[str] = set()
        kept = []
        for c in self.categories:
            seqs = read_category(self.root, c, min_quality)
            self.all_test.update(s.name for s in seqs)
            kept += [s for s in seqs if keep_sequence(s, min_num_images)]
        self.sets = draw_frame_sets(kept, self.num_frames, self.seed)
        if not self.sets:
            raise InputError(self.root, None, None, f"no test sequence with {max(min_num_images, self.num_frames)} "
                                                    f"frames in {', '.join(self.categories)}")
        self.ids = {seq.name: i for i, (seq, _) in enumerate(self.sets)}
        self._samples = []
        for i, (seq, idx) in enumerate(self.sets):
            R, T = np.stack(seq.R), np.stack(seq.T)
            scale = scene_scale(torch.from_numpy(R), torch.from_numpy(T))
            target = {"id": torch.tensor(i), "category": torch.tensor(self.categories.index(seq.category)),
                      "R": torch.from_numpy(R[idx]), "T": torch.from_numpy(T[idx]), "scale": scale}
            inputs = {"sequence": seq.name, "category": seq.category, "frames": [seq.frames[k] for k in idx],
                      "image_paths": [str(self.root / seq.paths[k]) for k in idx]}
            self._samples.append(Sample(sample_id=i, target=target, inputs=inputs))

    def __len__(self) -> int:
        return len(self._samples)

    def __getitem__(self, index: int) -> Sample:
        return self._samples[index]

    def gt_files(self) -> Iterable[Path]:
        return [self.root / c / f for c in self.categories for f in (FRAME_FILE, SEQUENCE_FILE, SET_LIST)]

    def build_metric(self) -> CameraPoseAccuracy:
        return CameraPoseAccuracy()

    def read_predictions(self, path: Path) -> dict[int, Prediction]:
        out, ignored = {}, 0
        for seq, p in read_co3d_predictions(path).items():
            sid = self.ids.get(seq)
            if sid is None:
                if seq in self.all_test:
                    ignored += 1
                    continue
                raise InputError(path, f"sequence {seq}", "sequence", f"not a test sequence of {', '.join(self.categories)}")
            want = self._samples[sid].inputs["frames"]
            if sorted(p.frames) != sorted(want):
                raise InputError(path, f"sequence {seq}", "frames", f"expected the protocol's frame set {sorted(want)} "
                                                                    f"(num_frames={self.num_frames}, seed {self.seed})")
            order = [p.frames.index(f) for f in want]
            out[sid] = Prediction(sid, {"id": torch.tensor(sid), "R": torch.from_numpy(p.R[order]),
                                        "T": torch.from_numpy(p.T[order])})
        if ignored:
            warnings.warn(f"{path}: {ignored} sequences the protocol does not score (too short, or a bad "
                          "translation) are ignored", stacklevel=2)
        return out


@register_dataset("co3d")
def build_co3d(cfg) -> Co3dDataset:
    """Builder for ``dataset=co3d`` (options: data_root, categories, num_frames, seed, min_num_images,
    min_quality)."""
    get = cfg.get if hasattr(cfg, "get") else (lambda k, d=None: getattr(cfg, k, d))
    cats = get("categories", None)
    if isinstance(cats, str):
        if cats not in CATEGORY_SETS:
            raise InputError(None, None, "dataset.categories", f"expected one of {', '.join(CATEGORY_SETS)} or a "
                                                               f"list, found {cats!r}")
        cats = CATEGORY_SETS[cats]
    elif cats is not None:
        cats = [str(c) for c in cats]
    required = [f"{c}/{FRAME_FILE}" for c in (cats or ("apple",))]
    root, bundled = resolve_data_root("co3d", get("data_root", None), required, "co3d")
    if cats is None:
        cats = CATEGORY_SETS["debug" if bundled else "seen"]
    n = int(get("num_frames", NUM_FRAMES))
    if n < 2:
        raise InputError(None, None, "dataset.num_frames", f"expected at least 2 views, found {n}")
    return Co3dDataset(root, bundled, cats, n, int(get("seed", SEED)), int(get("min_num_images", MIN_NUM_IMAGES)),
                       float(get("min_quality", MIN_QUALITY)))
