"""BOP 2022 2D detection / segmentation (``dataset.task=bbox|segm``) against the official toolkit's recorded scores.

The cases of tests/data/bop22_golden (an LM-O layout whose COCO GT the toolkit's calc_gt_coco.py made from the
masks, and a two-scene YCB-V layout with ignored and crowd GT; see its PROVENANCE.md) were scored by bop_toolkit
@ cea62d6 ``scripts/eval_bop22_coco.py`` with its pycocotools fork: all 12 stats and the time within 1e-9. The
results hold duplicates, detections matched to < 10 % visible GT, 120 detections of one object in an image,
objects absent from an image, an unknown id, equal scores, a non-target image, compressed and plain RLEs.
"""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from bench.data.bop import build
from bench.errors import InputError
from bench.predictions.bop_coco_json import decode_rle
from metrics.bop.coco_det import STAT_KEYS

GOLDEN = Path(__file__).parent / "bop22_golden"
REF = json.loads((GOLDEN / "reference.json").read_text())
KEYS = [*STAT_KEYS, "average_time_per_image"]


def _dataset(case: str, root: Path | None = None, **opts):
    root = root or GOLDEN / case
    return build(OmegaConf.create({"name": case, "data_root": str(root), **opts}))


def _score(ds, preds, batches):
    m = ds.build_metric()
    for idx in batches:
        samples = [ds[i] for i in idx]
        m.update([(preds.get(s.sample_id) or ds.empty_prediction(s)).output for s in samples],
                 [s.target for s in samples])
    return m


def _file(key: str) -> Path:
    return GOLDEN / "results" / f"{key.split(':')[0]}.json"


@pytest.mark.parametrize("key", sorted(REF))
def test_every_key_equals_the_toolkit(key):
    stem, ann, bbox_type = key.split(":")
    case = stem.split("_")[1].split("-")[0]
    ds = _dataset(case, task=ann, bbox_type=bbox_type)
    assert ds.name == f"{case}_{ann}" and list(ds.metric_keys) == KEYS
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        preds = ds.read_predictions(_file(key))
    text = " ".join(str(w.message) for w in caught)
    assert "not" in text and "test targets" in text and "category_id 99" in text
    n = len(ds)
    got = {k: float(v) for k, v in _score(ds, preds, [[i] for i in range(n)]).compute().items()}
    assert list(got) == KEYS
    for k in KEYS:
        assert got[k] == pytest.approx(REF[key][k], abs=1e-9), k
    # shuffled batches with repeated images (a DistributedSampler's padding) give the same numbers
    order = list(np.random.default_rng(0).permutation(n)) + [0, 1]
    again = _score(ds, preds, [order[i:i + 3] for i in range(0, len(order), 3)]).compute()
    assert {k: float(v) for k, v in again.items()} == got


def test_gt_from_masks_equals_calc_gt_coco(tmp_path):
    """Without scene_gt_coco.json the reader derives the GT from mask_visib/ as calc_gt_coco.py did (the
    committed file is that script's output): same boxes (amodal and modal), areas, ignore flags and RLEs."""
    root = tmp_path / "lmo"
    shutil.copytree(GOLDEN / "lmo", root)
    for bbox_type, name in (("amodal", "scene_gt_coco.json"), ("modal", "scene_gt_coco_modal.json")):
        (root / "test" / "000002" / name).unlink()
        for task in ("bbox", "segm"):
            if task == "segm" and bbox_type == "modal":
                continue
            ours = _dataset("lmo", root, task=task, bbox_type=bbox_type)
            theirs = _dataset("lmo", task=task, bbox_type=bbox_type)
            assert [i.im_id for i in ours.images] == [i.im_id for i in theirs.images]
            for a, b in zip(ours.images, theirs.images, strict=True):
                for k in b.target:
                    assert a.target[k].tolist() == b.target[k].tolist(), (task, bbox_type, k)
            assert any(int(i.target["gt_ignore"].sum()) for i in ours.images)  # < 10 % visible GT present


def test_rle_decoder_equals_pycocotools():
    """Our compressed-RLE reader gives pycocotools' own runs (its encode/decode of random masks)."""
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(3)
    for _ in range(20):
        h, w = (int(v) for v in rng.integers(1, 40, size=2))
        m = rng.random((h, w)) < rng.random()
        rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        runs, size = decode_rle(Path("x.json"), "index 0", "segmentation",
                                {"counts": rle["counts"].decode(), "size": [h, w]})
        assert size == (h, w) and int(runs.sum()) == h * w
        flat = np.repeat(np.arange(runs.size) % 2, runs).astype(bool)
        assert np.array_equal(flat.reshape(w, h).T, mask_utils.decode(rle).astype(bool))


@pytest.mark.parametrize("task, edit, field", [
    ("segm", lambda r: r[2]["segmentation"].update(counts="0@@@@@"), "segmentation.counts"),
    ("segm", lambda r: r[4]["segmentation"].update(counts=[5, 5]), "segmentation.counts"),
    ("segm", lambda r: r[1].pop("segmentation"), "segmentation"),
    ("bbox", lambda r: r[3].pop("bbox"), "bbox"),
    ("bbox", lambda r: r[3].update(bbox=[1.0, 2.0, float("nan"), 4.0]), "bbox"),
    ("bbox", lambda r: r[5].update(score=float("nan")), "score"),
    ("bbox", lambda r: r[5].update(image_id="3"), "image_id"),
    ("bbox", lambda r: r[6].update(time=r[6]["time"] + 1), "time"),
])
def test_bad_results_are_refused_naming_record_and_field(tmp_path, task, edit, field):
    prefix = "synthsegm" if task == "segm" else "synth"
    recs = json.loads((GOLDEN / "results" / f"{prefix}_ycbv-test.json").read_text())
    edit(recs)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(recs))
    ds = _dataset("ycbv", task=task)
    with pytest.raises(InputError) as e:
        ds.read_predictions(bad)
    line = e.value.line() if callable(getattr(e.value, "line", None)) else str(e.value)
    assert "bad.json" in line and "index" in line and field in line, line


def test_hot3d_is_refused_and_new_datasets_are_registered():
    from bench.registry import DATASETS, load_all

    load_all()
    for name in ("lm", "tyol", "ruapc", "icmi", "hbs", "hope", "hopev2", "handal", "ipd", "xyzibd", "itoddmv"):
        assert name in DATASETS
    with pytest.raises(InputError, match="fisheye"):
        build(OmegaConf.create({"name": "hot3d"}))
    with pytest.raises(InputError, match="VSD delta"):
        build(OmegaConf.create({"name": "handal", "task": "localization"}))


def test_ap_c_is_the_mean_ap_over_the_seven_core_datasets(tmp_path):
    from bench import leaderboard
    from bench.data.bop import update_coco_core

    board = tmp_path / "object6d"
    board.mkdir()
    aps = {}
    for k, ds in enumerate(leaderboard.BOP_CORE):
        aps[ds] = 0.1 * (k + 1)
        rows = f"mine,,{aps[ds]}\n" + ("other,,0.5\n" if ds != "hb" else "")  # 'other' lacks hb: no AP_C row
        (board / f"{ds}_bbox.csv").write_text("method,variant,AP\n" + rows)
    header, *rows = update_coco_core(tmp_path, "bbox").read_text().splitlines()
    assert header.split(",")[:3] == ["method", "variant", "AP_C"] and len(rows) == 1
    cells = rows[0].split(",")
    assert cells[0] == "mine" and float(cells[2]) == pytest.approx(sum(aps.values()) / 7, abs=1e-4)
