"""COCO keypoint results reader: every malformed-file kind names the record and the field; the fast path
(simdjson) and the slow path (standard json) give the same arrays; pycocotools' bbox-area quirk is kept."""
from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import bench.predictions.coco_json as cj
from bench.errors import InputError
from bench.predictions.coco_json import read_coco_keypoint_results, results_to_predictions
from metrics.keypoint_ap import STAT_KEYS, keypoint_ap_stats

K = 17
IDS = [785, 40083, 196141, 197388]
SAMPLE = Path(__file__).resolve().parents[2] / "bench" / "data" / "samples" / "coco"


def rec(i=785, k=None, s=0.5, **extra):
    return {"image_id": i, "category_id": 1, "keypoints": k if k is not None else [1.0, 2.0, 0.5] * K,
            "score": s, **extra}


def write(tmp_path: Path, obj, name="res.json", raw: str | None = None) -> Path:
    p = tmp_path / name
    p.write_text(raw if raw is not None else json.dumps(obj))
    return p


def read(p: Path):
    return read_coco_keypoint_results(p, IDS, K)


@pytest.fixture(params=["fast", "slow"])
def path_kind(request, monkeypatch):
    if request.param == "slow":
        monkeypatch.setattr(cj, "_simdjson", None)
    return request.param


# ------------------------------------------------------------------ valid files

def test_fast_and_slow_path_agree_bit_for_bit(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    recs = []
    for n in range(300):
        kp = rng.uniform(-50, 700, (K, 3))
        kp[:, 2] = rng.uniform(0, 1, K)
        vals = kp.ravel().tolist()
        vals[0] = float(np.float32(vals[0]))  # mmpose writes float32 values: 17-digit reprs
        vals[1] = int(rng.integers(0, 600))  # ints are numbers too
        vals[2] = float(f"{rng.uniform():.3e}")  # exponent form
        recs.append(rec(int(rng.choice(IDS)), vals, float(rng.uniform()), extra_field={"x": [1]}))
    p = write(tmp_path, recs)
    fast = read(p)
    monkeypatch.setattr(cj, "_simdjson", None)
    slow = read(p)
    for f in ("image_id", "keypoints", "score"):
        assert np.array_equal(getattr(fast, f), getattr(slow, f)), f
    assert np.array_equal(fast.keypoints.reshape(300, -1), np.array([r["keypoints"] for r in recs], dtype=np.float64))
    assert fast.area is None and slow.area is None


def test_predictions_keep_file_order_per_image(tmp_path, path_kind):
    recs = [rec(197388, s=0.1), rec(785, s=0.9), rec(197388, s=0.9), rec(785, s=0.2)]
    recs[2]["keypoints"] = [3.0, 4.0, 1.0] * K
    preds = results_to_predictions(read(write(tmp_path, recs)))
    assert sorted(preds) == [785, 197388]
    assert preds[197388].output["scores"].tolist() == [0.1, 0.9]
    assert preds[197388].output["keypoints"][1, 0].tolist() == [3.0, 4.0, 1.0]
    assert preds[785].output["scores"].tolist() == [0.9, 0.2]
    assert int(preds[785].output["image_id"]) == 785


def test_empty_list_is_no_detections(tmp_path, path_kind):
    res = read(write(tmp_path, []))
    assert len(res) == 0 and res.keypoints.shape == (0, K, 3)
    assert results_to_predictions(res) == {}


def test_bbox_in_first_record_sets_area_like_pycocotools(tmp_path, path_kind):
    """pycocotools' loadRes takes the area from a results 'bbox' when the first record has one."""
    gt = json.loads((SAMPLE / "annotations" / "person_keypoints_val2017.json").read_text())
    rng = np.random.default_rng(1)
    recs = []
    for a in gt["annotations"]:
        kp = np.asarray(a["keypoints"], dtype=np.float64).reshape(K, 3)
        kp[:, :2] += rng.normal(0, 4, (K, 2))
        kp[:, 2] = 1
        x, y, w, h = a["bbox"]
        # small boxes: the area decides medium/large and ignoring of unmatched detections
        recs.append(rec(a["image_id"], kp.ravel().tolist(), float(rng.uniform()),
                        bbox=[x, y, float(rng.choice([w, 20.0, 200.0])), float(rng.choice([h, 30.0, 150.0]))]))
        recs.append(rec(a["image_id"], (kp + 60).ravel().tolist(), float(rng.uniform()), bbox=[x, y, 40.0, 40.0]))
    res = read(write(tmp_path, recs))
    assert np.array_equal(res.area, np.array([r["bbox"][2] * r["bbox"][3] for r in recs]))

    with contextlib.redirect_stdout(io.StringIO()):
        c = COCO()
        c.dataset = copy.deepcopy(gt)
        c.createIndex()
        ev = COCOeval(c, c.loadRes(copy.deepcopy(recs)), "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    A = gt["annotations"]
    t = torch.tensor
    out = keypoint_ap_stats(
        t(res.image_id), t(res.keypoints), t(res.score), t([a["image_id"] for a in A]),
        t([a["keypoints"] for a in A], dtype=torch.float64).reshape(-1, K, 3), t([a["area"] for a in A]),
        t([a["bbox"] for a in A]), t([a["iscrowd"] for a in A]), t([a["num_keypoints"] for a in A]),
        t([a["id"] for a in A]), dt_area=t(res.area))
    np.testing.assert_allclose([float(out.stats[k]) for k in STAT_KEYS], ev.stats, rtol=0, atol=1e-12)


# ------------------------------------------------------------------ malformed files

BAD = {
    "missing image_id": ([rec(), {"category_id": 1, "keypoints": [0.0] * 51, "score": 1.0}], "index 1", "image_id"),
    "missing keypoints": ([rec(), rec(), {"image_id": 785, "category_id": 1, "score": 1.0}], "index 2", "keypoints"),
    "missing score": ([{"image_id": 785, "category_id": 1, "keypoints": [0.0] * 51}], "index 0", "score"),
    "missing category": ([rec(), {"image_id": 785, "keypoints": [0.0] * 51, "score": 1.0}], "index 1", "category_id"),
    "string image_id": ([rec(), rec(i="785")], "index 1", "image_id"),
    "bool image_id": ([rec(i=True)], "index 0", "image_id"),
    "float image_id": ([rec(), rec(), rec(i=785.0)], "index 2", "image_id"),
    "unknown image": ([rec(), rec(i=12345)], "index 1", "image_id"),
    "other category": ([rec(), {**rec(), "category_id": 2}], "index 1", "category_id"),
    "string score": ([rec(), rec(s="0.5")], "index 1", "score"),
    "null score": ([rec(s=None)], "index 0", "score"),
    "keypoints not a list": ([rec(k="1,2,3")], "index 0", "keypoints"),
    "too few keypoints": ([rec(), rec(k=[1.0, 2.0, 1.0] * 16)], "index 1", "keypoints"),
    "too many keypoints": ([rec(k=[1.0] * 52)], "index 0", "keypoints"),
    "nested keypoints": ([rec(), rec(k=[[1.0, 2.0, 1.0]] * 17)], "index 1", "keypoints"),
    "string in keypoints": ([rec(), rec(k=[1.0] * 50 + ["x"])], "index 1", "keypoints"),
    "null in keypoints": ([rec(k=[None] + [1.0] * 50)], "index 0", "keypoints"),
    "bool in keypoints": ([rec(), rec(), rec(k=[True] + [1.0] * 50)], "index 2", "keypoints"),
    "record not an object": ([rec(), [785, 1]], "index 1", None),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_records_name_index_and_field(tmp_path, path_kind, case):
    recs, where, field = BAD[case]
    p = write(tmp_path, recs)
    with pytest.raises(InputError) as e:
        read(p)
    assert e.value.file == str(p)
    assert e.value.record == where
    assert e.value.field == field
    assert where in str(e.value)


@pytest.mark.parametrize("token,field", [("NaN", "keypoints"), ("Infinity", "keypoints"), ("-Infinity", "score"),
                                         ("1e999", "score")])
def test_non_finite_numbers(tmp_path, path_kind, token, field):
    good = json.dumps(rec())
    bad = json.dumps(rec(k=[1.0] * 50 + [12345.5], s=0.25))
    bad = bad.replace("12345.5", token) if field == "keypoints" else bad.replace("0.25", token)
    p = write(tmp_path, None, raw=f"[{good}, {good}, {bad}]")
    with pytest.raises(InputError) as e:
        read(p)
    assert (e.value.record, e.value.field) == ("index 2", field)
    assert "finite" in e.value.problem


@pytest.mark.parametrize("raw,problem", [("[{\"image_id\": 785,", "not valid JSON"), ("{\"a\": 1}", "expected a JSON list"),
                                         ("", "not valid JSON"), ("\xff\xfe", "not")])
def test_not_json_or_not_a_list(tmp_path, path_kind, raw, problem):
    p = tmp_path / "res.json"
    p.write_bytes(raw.encode("latin-1"))
    with pytest.raises(InputError) as e:
        read(p)
    assert problem in e.value.problem
    assert e.value.file == str(p)


def test_missing_file(tmp_path):
    with pytest.raises(InputError) as e:
        read(tmp_path / "nope.json")
    assert "cannot read" in e.value.problem


# ------------------------------------------------------------------ reading in pieces (issue 15: memory)

def _varied_file(tmp_path: Path, n: int = 120, bbox: bool = False) -> tuple[Path, list[dict]]:
    """Records with every kind of whitespace between them, so that piece edges fall on all of it."""
    rng = np.random.default_rng(4)
    recs = [rec(int(rng.choice(IDS)), np.round(rng.uniform(0, 600, 3 * K), 2).tolist(), float(rng.uniform()),
                **({"bbox": [1.0, 2.0, float(j + 1), 3.5]} if bbox else {})) for j in range(n)]
    gaps = [",", ", ", ",\n", "\n,\n  ", " \t,\r\n"]
    raw = "[\n" + "".join(json.dumps(r) + (gaps[j % len(gaps)] if j < n - 1 else "") for j, r in enumerate(recs)) + "\n]\n"
    return write(tmp_path, None, raw=raw), recs


@pytest.mark.parametrize("piece", [16, 256, 4096, 1 << 22])
def test_pieces_are_whole_records_and_the_fast_path_reads_them_all(tmp_path, monkeypatch, piece):
    """A piece shorter than one record (16 bytes) reads on to the next record edge; every piece is a JSON
    array of whole records and together they are the file's records; the fast path (not the slow one) takes
    the file and gives the slow path's arrays, bbox areas included."""
    monkeypatch.setattr(cj, "PIECE_BYTES", piece)
    for bbox in (False, True):
        p, recs = _varied_file(tmp_path, bbox=bbox)
        pieces = [json.loads(x) for x in cj._pieces(p)]
        assert [r for x in pieces for r in x] == recs
        assert (len(pieces) == 1) == (piece >= p.stat().st_size)
        assert cj._count_records_bound(p) == len(recs)  # a "keypoints" key cut by a block edge counts once
        fast = cj._fast_path(p, K)
        assert fast is not None
        with monkeypatch.context() as mp:
            mp.setattr(cj, "_simdjson", None)
            slow = read(p)
        for f in ("image_id", "keypoints", "score", "area"):
            assert np.array_equal(getattr(fast.results, f), getattr(slow, f)), (f, bbox)
        assert fast.results.keypoints.shape == (len(recs), K, 3)


def test_record_gaps_inside_strings_and_nested_values_give_the_same_arrays(tmp_path, monkeypatch):
    """'},{' inside a string or a nested list of objects is not a record edge: a piece cut there is not valid
    JSON, so the file goes to the slow path, which reads it right."""
    monkeypatch.setattr(cj, "PIECE_BYTES", 64)
    for extra in ({"note": "a},{b" * 30}, {"parts": [{"x": 1}, {"y": 2}] * 10}):
        recs = [rec(IDS[j % 4], [float(j)] * (3 * K), s=j / 10, **extra) for j in range(10)]
        p = write(tmp_path, recs)
        assert cj._fast_path(p, K) is None
        got = read(p)
        assert got.image_id.tolist() == [IDS[j % 4] for j in range(10)]
        assert got.score.tolist() == [j / 10 for j in range(10)]
        assert got.keypoints[:, 0, 0].tolist() == [float(j) for j in range(10)]
