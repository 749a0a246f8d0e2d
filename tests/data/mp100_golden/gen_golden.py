"""Recompute golden.json and the two episode files by running the MP-100 reference code itself.

Runs in the project's environment with three checkouts (nothing of them is copied here; their mmcv, mmpose
registry, ``Compose``, cv2, json_tricks and ``xtcocotools.mask`` imports are stubbed, none is used on this
path; json_tricks becomes the standard ``json``)::

    G=/work/.mirror
    git --git-dir=$G/orhir+PoseAnything/repo archive 7f1253f8c6a9066e59bc63abb79fef11c4022bc6 \
        | tar -x -C /tmp/provenance/PoseAnything
    git --git-dir=$G/open-mmlab+mmpose/repo archive v0.29.0 | tar -x -C /tmp/provenance/mmpose-v0.29.0
    git --git-dir=$G/jin-s13+xtcocoapi/repo archive d74033ff1635e9002133b2380862bc2b728584d2 \
        | tar -x -C /tmp/provenance/xtcocoapi-d74033f
    P=/tmp/provenance
    .nox/posearena/bin/python tests/data/mp100_golden/gen_golden.py --pose-anything $P/PoseAnything \
        --mmpose $P/mmpose-v0.29.0 --xtcocoapi $P/xtcocoapi-d74033f --out $P/mp100

The predictions are ``synthetic_prediction`` of tests/metrics/test_pck.py (imported, so both sides share it).
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.util
import json
import sys
import tempfile
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
ANN_DIR = REPO / "bench" / "data" / "samples" / "mp100" / "annotations"
PCK_VARIANTS = ("split1-test-1shot", "split1-test-5shot", "split4-val-5shot", "split5-test-1shot")
EPISODE_FILES = ("split1-test-1shot", "split1-test-5shot")
FORMAT = "[category_id, [support annotation ids], [query annotation ids]] per episode"
# data_cfg of PoseAnything's configs (1shot-swin/base_split1_config.py); only num_joints etc. must exist
DATA_CFG = {"image_size": [256, 256], "heatmap_size": [64, 64], "num_output_channels": 1, "num_joints": 1,
            "dataset_channel": [[0]], "inference_channel": [0]}


def _module(name: str, path: Path | None = None, **attrs) -> types.ModuleType:
    """A stub module with ``attrs``, or the module at ``path`` loaded under ``name``."""
    if path is None:
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
        sys.modules[name] = mod
        return mod
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def load_reference(pose_anything: Path, mmpose: Path, xtcocoapi: Path) -> types.ModuleType:
    """PoseAnything's ``test_dataset`` module wired to mmpose 0.29's top_down_eval and xtcocoapi's COCO."""
    registry = types.SimpleNamespace(register_module=lambda *a, **k: (lambda cls: cls))
    _module("cv2")
    # as the first run: the standard json, without the indentation (numbers are unchanged, the file 4x smaller)
    _module("json_tricks", load=json.load, dump=lambda obj, fp, indent=None, **kw: json.dump(obj, fp, **kw))
    _module("mmcv")
    _module("mmcv.parallel", DataContainer=lambda data, **k: data)
    _module("mmpose")
    _module("mmpose.datasets", DATASETS=registry)
    _module("mmpose.datasets.pipelines", Compose=lambda pipeline: pipeline)
    _module("mmpose.core")
    _module("mmpose.core.post_processing", transform_preds=None)
    _module("mmpose.core.evaluation")
    _module("mmpose.core.evaluation.top_down_eval", mmpose / "mmpose/core/evaluation/top_down_eval.py")
    _module("xtcocotools").__path__ = []
    _module("xtcocotools.mask")
    _module("xtcocotools.coco", xtcocoapi / "xtcocotools/coco.py")
    pkg = _module("mp100ref")
    pkg.__path__ = [str(pose_anything / "models/datasets/datasets/mp100")]
    return importlib.import_module("mp100ref.test_dataset")


def build(ref: types.ModuleType, variant: str):
    split, subset, shots = variant.split("-")
    return ref.TestPoseDataset(str(ANN_DIR / f"mp100_{split}_{subset}.json"), "IMG/", DATA_CFG, [],
                               valid_class_ids=None, max_kpt_num=100, num_shots=int(shots[0]), num_queries=15,
                               num_episodes=200 if subset == "test" else 100, test_mode=True)


def annotation_ids(ds) -> list[int]:
    """db index -> annotation id: the one annotation of the record's image with its category and keypoints."""
    import numpy as np

    out = []
    for rec in ds.db:
        img = ds.name2id[rec["image_file"][len(ds.img_prefix):]]
        k = rec["cat_kpt_num"]
        hits = [a["id"] for a in ds.coco.imgToAnns[img] if a["category_id"] == rec["category_id"]
                and np.array_equal(np.array(a["keypoints"], np.float32).reshape(-1, 3)[:, :2],
                                   rec["joints_3d"][:k, :2])]
        assert len(hits) == 1, rec["image_file"]
        out.append(hits[0])
    return out


def episodes(ds) -> list:
    ids = annotation_ids(ds)
    rows = [[ids[int(i)] for i in row] for row in ds.paired_samples]
    s = ds.num_shots
    return [[ds.db[int(ds.paired_samples[e][0])]["category_id"], rows[e][:s], [r[s] for r in rows[e:e + 15]]]
            for e in range(0, len(rows), 15)]


def pck(ref: types.ModuleType, ds, per_query: dict | None) -> dict[str, float]:
    """``evaluate(outputs, dir, metric='PCK')`` on the synthetic predictions, in batches of 64."""
    import numpy as np

    sys.path.insert(0, str(REPO))
    from tests.metrics.test_pck import synthetic_prediction

    outputs = []
    for b in range(0, len(ds.paired_samples), 64):
        ns = range(b, min(b + 64, len(ds.paired_samples)))
        preds = np.zeros((len(ns), 100, 3), np.float32)
        paths = []
        for i, n in enumerate(ns):
            q = ds.db[int(ds.paired_samples[n][-1])]
            k = q["cat_kpt_num"]
            preds[i, :k, :2] = synthetic_prediction(n, q["joints_3d"][:k, :2], float(np.max(q["bbox"][2:])))
            paths.append(q["image_file"])
        outputs.append({"preds": preds, "boxes": np.zeros((len(ns), 6)), "image_paths": paths,
                        "bbox_ids": list(ns)})
    base = sys.modules["mp100ref.test_base_dataset"]
    original = base.keypoint_pck_accuracy
    calls = []

    def recording(*args):
        result = original(*args)
        calls.append(result[1])
        return result

    base.keypoint_pck_accuracy = recording
    try:
        with tempfile.TemporaryDirectory() as tmp:
            res = ds.evaluate(outputs, tmp, metric="PCK")
    finally:
        base.keypoint_pck_accuracy = original
    if per_query is not None:  # calls run pair by pair, the 5 thresholds each
        per_query.update({str(n): calls[5 * n:5 * n + 5] for n in range(0, len(ds.paired_samples), 20)})
    return {k: float(v) for k, v in res.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pose-anything", type=Path, required=True, help="orhir/PoseAnything @ 7f1253f8")
    ap.add_argument("--mmpose", type=Path, required=True, help="open-mmlab/mmpose @ v0.29.0")
    ap.add_argument("--xtcocoapi", type=Path, required=True, help="jin-s13/xtcocoapi @ d74033f")
    ap.add_argument("--out", type=Path, required=True, help="folder for golden.json and the episode files")
    args = ap.parse_args()
    ref = load_reference(args.pose_anything, args.mmpose, args.xtcocoapi)
    args.out.mkdir(parents=True, exist_ok=True)
    golden = {"episode_sha256": {}, "num_annotations_kept": {}, "pck": {}, "per_query_split1-test-1shot": {}}
    variants = [f"split{s}-{sub}-{k}shot" for s in range(1, 6) for sub in ("test", "val") for k in (1, 5)]
    for variant in variants:
        ds = build(ref, variant)
        eps = episodes(ds)
        digest = hashlib.sha256(json.dumps(eps, separators=(",", ":")).encode()).hexdigest()
        golden["episode_sha256"][variant] = digest
        golden["num_annotations_kept"][variant] = len(ds.db)
        if variant in EPISODE_FILES:
            write_episodes(args.out, variant, eps)
        if variant in PCK_VARIANTS:
            pq = golden["per_query_split1-test-1shot"] if variant == "split1-test-1shot" else None
            golden["pck"][variant] = pck(ref, ds, pq)
        print(variant, len(ds.db), file=sys.stderr)
    (args.out / "golden.json").write_text(json.dumps(golden, indent=1))
    return report(args.out)


def write_episodes(out: Path, variant: str, eps: list) -> None:
    """Episode file as committed: ``json.dump`` into a text-mode gzip stream (its 8 KiB writes shape the
    deflate bytes); the header keeps the committed file's time stamp so that the bytes compare."""
    import io

    name = f"episodes_{variant}.json.gz"
    mtime = int.from_bytes((HERE / name).read_bytes()[4:8], "little")
    with open(out / name, "wb") as raw, gzip.GzipFile(name[:-3], "wb", fileobj=raw, mtime=mtime) as f:
        text = io.TextIOWrapper(f, encoding="utf-8")
        json.dump({"variant": variant, "format": FORMAT, "episodes": eps}, text, separators=(",", ":"))
        text.flush()
        text.detach()


def report(out: Path) -> int:
    differ = []
    for p in sorted(out.iterdir()):
        if p.read_bytes() != (HERE / p.name).read_bytes():
            same_content = p.suffix == ".gz" and gzip.decompress(p.read_bytes()) == gzip.decompress(
                (HERE / p.name).read_bytes())
            differ.append(p.name + (" (same JSON inside)" if same_content else ""))
    print(f"differ from the committed files: {differ or 'none'}", file=sys.stderr)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
