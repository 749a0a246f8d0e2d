"""MP-100 reader (bench/data/mp100.py) and predictions reader (bench/predictions/mp100_json.py).

Golden episodes (tests/data/mp100_golden/): produced by the reference itself, orhir/PoseAnything @ 7f1253f8
``models/datasets/datasets/mp100/test_dataset.py`` ``TestPoseDataset`` (its ``_get_db`` filtering and
``make_paired_samples``), with ``COCO`` from jin-s13/xtcocoapi @ d74033f and the mmcv/mmpose imports stubbed
(nothing they provide is used by the sampling), run on the bundled annotation files with
``TestPoseDataset(ann_file, 'IMG/', data_cfg, [], valid_class_ids=None, max_kpt_num=100, num_shots=S,
num_queries=15, num_episodes=200 (test) / 100 (val), test_mode=True)`` under Python 3.11.7. Its
``paired_samples`` (rows = support db indices + query db index, 15 rows per episode) were mapped to
annotation ids by matching each ``db`` record to the one annotation of its image with the same category and
float32 keypoints, and written per episode as ``[category_id, [support ids], [query ids]]``:
``episodes_split1-test-{1,5}shot.json.gz`` in full, and for all 20 (split, subset, shots) variants the
sha256 of ``json.dumps(episodes, separators=(",", ":"))`` plus the number of db records kept after filtering
(``golden.json``). Reproduced by ``tests/data/mp100_golden/gen_golden.py``; command and commit in
``tests/data/mp100_golden/PROVENANCE.md``.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import math
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from bench.data.mp100 import Mp100Dataset, build_mp100
from bench.errors import InputError
from bench.predictions.mp100_json import read_mp100_predictions
from bench.registry import DATASETS

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "bench" / "data" / "samples" / "mp100"
GOLDEN_DIR = REPO / "tests" / "data" / "mp100_golden"
GOLDEN = json.loads((GOLDEN_DIR / "golden.json").read_text())


def _episodes(ds: Mp100Dataset) -> list:
    return [[e.category_id, list(e.support_ids), list(e.query_ids)] for e in ds.episodes]


@pytest.fixture(scope="module")
def ds() -> Mp100Dataset:
    return Mp100Dataset(SAMPLE, split=1, subset="test", shots=1, bundled=True)


@pytest.mark.parametrize("shots", [1, 5])
def test_episodes_match_reference_exactly(shots, ds):
    d = ds if shots == 1 else Mp100Dataset(SAMPLE, split=1, subset="test", shots=5, bundled=True)
    with gzip.open(GOLDEN_DIR / f"episodes_split1-test-{shots}shot.json.gz", "rt") as f:
        want = json.load(f)["episodes"]
    assert len(want) == 20 * 200
    assert _episodes(d) == want


@pytest.mark.slow
def test_all_variants_match_reference_digests():
    """All splits, subsets and shots; includes the filtered annotations (split 4 val, split 5 test)."""
    for variant, digest in GOLDEN["episode_sha256"].items():
        split, subset, shots = variant.split("-")
        d = Mp100Dataset(SAMPLE, split=int(split[5:]), subset=subset, shots=int(shots[0]), bundled=True)
        assert d.variant == variant
        assert len(d.annotations) == GOLDEN["num_annotations_kept"][variant], variant
        got = hashlib.sha256(json.dumps(_episodes(d), separators=(",", ":")).encode()).hexdigest()
        assert got == digest, variant


def test_filtering_drops_what_the_reference_drops():
    """Split 5 test has 2 annotations of category 18 the reference drops (all-zero keypoints)."""
    d = Mp100Dataset(SAMPLE, split=5, subset="test", shots=1, bundled=True)
    assert len(d.annotations) == GOLDEN["num_annotations_kept"]["split5-test-1shot"] == 1998
    assert sum(a.category_id == 18 for a in d.annotations) == 98
    assert d.category_by_id[18].num_keypoints == 19  # empty name list: count from the annotations


def test_bundled_split1_test_builds_quickly(monkeypatch):
    monkeypatch.delenv("POSEARENA_DATA", raising=False)
    t0 = time.perf_counter()
    d = DATASETS["mp100"](OmegaConf.create({"name": "mp100", "data_root": None, "split": 1, "subset": "test", "shots": 1}))
    assert time.perf_counter() - t0 < 5.0
    assert d.bundled and d.variant == "split1-test-1shot" and len(d) == 60000
    assert d.family == "cape" and d.metric_keys == ("PCK@0.05", "PCK@0.1", "PCK@0.15", "PCK@0.2", "PCK@0.25", "mPCK")


def test_sample_targets_follow_the_protocol(ds):
    """Checked against the raw JSON: query keypoints, visibility AND over supports, cleaned-box norm."""
    raw = json.loads((SAMPLE / "annotations" / "mp100_split1_test.json").read_text())
    anns = {a["id"]: a for a in raw["annotations"]}
    imgs = {i["id"]: i for i in raw["images"]}
    d5 = Mp100Dataset(SAMPLE, split=1, subset="test", shots=5, bundled=True)
    for d in (ds, d5):
        for n in range(0, len(d), 997):
            s = d[n]
            e, q = divmod(n, 15)
            assert s.sample_id == e * 100 + q == int(s.target["sample_id"])
            assert s.inputs["support_ids"] == list(d.episodes[e].support_ids)
            a = anns[s.inputs["query_id"]]
            kp = torch.tensor(a["keypoints"]).reshape(-1, 3)
            assert torch.equal(s.target["keypoints"], kp[:, :2].float())
            vis = kp[:, 2] > 0
            for sid in s.inputs["support_ids"]:
                vis &= torch.tensor(anns[sid]["keypoints"]).reshape(-1, 3)[:, 2] > 0
            assert torch.equal(s.target["visible"], vis)
            img = imgs[a["image_id"]]
            x, y, w, h = a["bbox"]
            x1, y1 = max(0, x), max(0, y)
            x2, y2 = min(img["width"] - 1, x1 + max(0, w - 1)), min(img["height"] - 1, y1 + max(0, h - 1))
            assert s.target["norm"].item() == max(x2 - x1, y2 - y1)
            assert s.inputs["query_image"] == SAMPLE / "images" / img["file_name"]


def test_dump_episodes_round_trip(ds, tmp_path):
    ds.dump_episodes(tmp_path / "ep.json")
    back = json.loads((tmp_path / "ep.json").read_text())
    assert back["variant"] == "split1-test-1shot"
    assert [[e["category_id"], e["support_ids"], e["query_ids"]] for e in back["episodes"]] == _episodes(ds)
    assert [e["episode"] for e in back["episodes"]] == list(range(4000))


@pytest.mark.parametrize("field,value", [("split", 6), ("subset", "train"), ("shots", 3)])
def test_bad_options_are_input_errors(field, value):
    cfg = {"name": "mp100", "data_root": None, "split": 1, "subset": "test", "shots": 1, field: value}
    with pytest.raises(InputError) as e:
        build_mp100(OmegaConf.create(cfg))
    assert e.value.field == f"dataset.{field}"


def test_data_root_without_the_annotation_file(tmp_path):
    with pytest.raises(InputError, match="annotations/mp100_split2_val.json"):
        build_mp100(OmegaConf.create({"data_root": str(tmp_path), "split": 2, "subset": "val", "shots": 1}))


def _write_gt(tmp_path: Path, mutate) -> Path:
    raw = json.loads((SAMPLE / "annotations" / "mp100_split1_test.json").read_text())
    mutate(raw)
    (tmp_path / "annotations").mkdir(exist_ok=True)
    (tmp_path / "annotations" / "mp100_split1_test.json").write_text(json.dumps(raw))
    return tmp_path


def test_malformed_annotation_files_name_record_and_field(tmp_path):
    def dup(raw):
        raw["annotations"][5]["id"] = raw["annotations"][3]["id"]

    with pytest.raises(InputError) as e:
        Mp100Dataset(_write_gt(tmp_path, dup))
    assert (e.value.record, e.value.field) == ("annotations[5]", "id")

    def bad_kp(raw):
        raw["annotations"][7]["keypoints"] = raw["annotations"][7]["keypoints"][:-1]

    with pytest.raises(InputError) as e:
        Mp100Dataset(_write_gt(tmp_path, bad_kp))
    assert (e.value.record, e.value.field) == ("annotations[7]", "keypoints")

    def too_few(raw):
        cid = raw["categories"][3]["id"]
        keep = [a for a in raw["annotations"] if a["category_id"] == cid][:10]
        raw["annotations"] = [a for a in raw["annotations"] if a["category_id"] != cid] + keep

    with pytest.raises(InputError, match="10 usable annotations, an episode needs 16"):
        Mp100Dataset(_write_gt(tmp_path, too_few))


# --- predictions files -------------------------------------------------------------------------


def _valid_records(d: Mp100Dataset, episodes: range | None = None) -> list[dict]:
    out = []
    for e in episodes if episodes is not None else range(len(d.episodes)):
        for qid in d.episodes[e].query_ids:
            k = d.by_id[qid].keypoints
            out.append({"episode": e, "query_id": qid, "keypoints": (k + 1.5).tolist()})
    return out


@pytest.fixture(scope="module")
def val_ds() -> Mp100Dataset:
    """Split 1 val, 1-shot: 1,500 episodes x 15 queries (a quarter of test, for whole-file reader tests)."""
    return Mp100Dataset(SAMPLE, split=1, subset="val", shots=1, bundled=True)


def test_reader_returns_every_pair(val_ds, tmp_path):
    recs = _valid_records(val_ds)
    p = tmp_path / "p.json"
    p.write_text(json.dumps(recs))
    preds = read_mp100_predictions(p, val_ds)
    assert len(preds) == len(val_ds) == 15000
    s = val_ds[12345]
    out = preds[s.sample_id].output["keypoints"]
    assert out.dtype == torch.float64 and torch.equal(out, s.target["keypoints"].double() + 1.5)
    assert val_ds.read_predictions(p).keys() == preds.keys()


def _bad(ds, tmp_path, mutate, full: bool = False):
    """A file whose first three episodes are valid but for ``mutate``: the reader stops at the bad record."""
    recs = _valid_records(ds, None if full else range(3))
    mutate(recs)
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(recs))
    with pytest.raises(InputError) as e:
        read_mp100_predictions(p, ds)
    assert e.value.file == str(p)
    return e.value


@pytest.mark.parametrize(
    "mutate,record,field",
    [
        (lambda r: r[3].update(episode=4000), "index 3", "episode"),
        (lambda r: r[3].update(episode=-1), "index 3", "episode"),
        (lambda r: r[3].update(episode=True), "index 3", "episode"),
        (lambda r: r[3].update(episode="0"), "index 3", "episode"),
        (lambda r: r[20].update(query_id=r[-1]["query_id"]), "index 20", "query_id"),  # another category's
        (lambda r: r[20].update(query_id=1.5), "index 20", "query_id"),
        (lambda r: r[4].update(keypoints=r[4]["keypoints"][:-1]), "index 4", "keypoints"),
        (lambda r: r[4].update(keypoints=r[4]["keypoints"] + [[1.0, 2.0]]), "index 4", "keypoints"),
        (lambda r: r[4]["keypoints"][2].__setitem__(1, float("nan")), "index 4", "keypoints"),
        (lambda r: r[4]["keypoints"][2].__setitem__(0, float("inf")), "index 4", "keypoints"),
        (lambda r: r[4]["keypoints"][2].append(0.5), "index 4", "keypoints"),
        (lambda r: r[4]["keypoints"].__setitem__(0, "x"), "index 4", "keypoints"),
        (lambda r: r[6].pop("keypoints"), "index 6", "keypoints"),
        (lambda r: r.insert(9, [1, 2, 3]), "index 9", None),
        (lambda r: r.insert(18, dict(r[17])), "index 18", "query_id"),
    ],
)
def test_reader_errors_name_record_and_field(ds, tmp_path, mutate, record, field):
    err = _bad(ds, tmp_path, mutate)
    assert (err.record, err.field) == (record, field)


def test_duplicate_message_points_at_the_first(ds, tmp_path):
    err = _bad(ds, tmp_path, lambda r: r.insert(18, dict(r[17])))
    assert "also at index 17" in err.problem


def test_missing_pairs_are_an_error(val_ds, tmp_path):
    err = _bad(val_ds, tmp_path, lambda r: r.pop(31), full=True)
    assert err.field == "episode" and "episode 2 query_id" in err.problem and "1 of 15000" in err.problem


@pytest.mark.parametrize("text", ["{not json", '{"episode": 0}', "", "[1, 2"])
def test_unreadable_files(ds, tmp_path, text):
    p = tmp_path / "x.json"
    p.write_text(text)
    with pytest.raises(InputError) as e:
        read_mp100_predictions(p, ds)
    assert e.value.file == str(p)


def test_nan_literal_in_json_is_rejected(ds, tmp_path):
    recs = _valid_records(ds, range(2))
    text = json.dumps(recs).replace(str(recs[0]["keypoints"][0][0]), "NaN", 1)
    assert "NaN" in text and not math.isnan(recs[0]["keypoints"][0][0])
    p = tmp_path / "n.json"
    p.write_text(text)
    with pytest.raises(InputError) as e:
        read_mp100_predictions(p, ds)
    assert (e.value.record, e.value.field) == ("index 0", "keypoints")
