"""Fuzzing the readers with mutated real files: the only allowed outcomes are success or ``InputError``.

Seeds (real files): the bundled COCO GT and a results file on it, the first rows of CNOS+MegaPose's real
YCB-V BOP19 CSV (tests/data/bop_results), the bundled H36M ``data_3d_h36m.npz`` (VideoPose3D layout, a
pickled dict in an object array) and a predictions npz for it, and an MP-100 predictions file for a one-category
cut of the real split-1 test annotations. Mutations: byte flips, insertions, deletions and truncation of the
raw file; for JSON, field deletion, type swaps and odd numbers in the parsed records; for CSV, odd cells;
for npz, odd dtypes/shapes/keys and byte mutations of a member re-zipped with a valid CRC (so the .npy
header parser and the restricted unpickler see them, not just the zip checksum).

Besides "no other exception", a COCO results file that reads successfully must give exactly the arrays of
the stdlib-``json`` record-by-record path (the fast simdjson path must never answer a wrong number), and no
reader may emit a RuntimeWarning (it would print a second line beside the CLI's one-line error).
Hypothesis runs derandomized (the same examples in every run) with a bounded number of examples.
"""
from __future__ import annotations

import io
import json
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.data.base import SAMPLES_DIR
from bench.errors import InputError
from tests.conftest import COCO_GT, perturbed_results

REPO = Path(__file__).resolve().parents[2]
BOP_CSV = REPO / "tests/data/bop_results/cnos-fastsammegapose_ycbv-test_8fe0af14-16e3-431a-83e7-df00e93828a6.csv"
H36M_GT = SAMPLES_DIR / "h36m" / "data_3d_h36m.npz"
MP100_ANN = SAMPLES_DIR / "mp100" / "annotations" / "mp100_split1_test.json"

# a RuntimeWarning (overflow, invalid cast ...) would print a second line next to the CLI's one-line error
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")
FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None, print_blob=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
WORK = Path(tempfile.mkdtemp(prefix="posearena-fuzz-"))

# ---------------------------------------------------------------------------------------------- mutations

ODD_VALUES = [None, True, False, 0, -1, 2**70, -(2**63), 1e308, -1e-320, float("nan"), float("inf"), "", "1", "nan",
              [], [1.0], {}, {"a": 1}, [[1.0, 2.0]], 3.5]


@st.composite
def byte_mutation(draw, data: bytes) -> bytes:
    """Flip, insert, delete or truncate; a few of them at once."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        if not out:
            break
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "set"]))
        i = draw(st.integers(0, len(out) - 1))
        if op == "flip":
            out[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            out[i] = draw(st.sampled_from(b'[]{}",:0123456789-.eE \n\\\x00\xff'))
        elif op == "insert":
            out[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del out[i:i + draw(st.integers(1, 16))]
        else:
            del out[i:]
    return bytes(out)


def _containers(node, path=()):
    """Paths to every dict/list inside a parsed JSON document (the root included)."""
    yield path, node
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        if isinstance(v, (dict, list)):
            yield from _containers(v, (*path, k))


@st.composite
def json_mutation(draw, doc) -> str:
    """Delete a key or list item, swap a value's type, or duplicate an item, somewhere in the document."""
    doc = json.loads(json.dumps(doc))
    for _ in range(draw(st.integers(1, 3))):
        spots = [(p, n) for p, n in _containers(doc) if n]
        if not spots:
            break
        # favour shallow spots: records and their fields, not every keypoint
        _, node = spots[min(draw(st.integers(0, len(spots) - 1)), draw(st.integers(0, 40)))]
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        k = draw(st.sampled_from(keys))
        op = draw(st.sampled_from(["delete", "swap", "swap", "duplicate"]))
        if op == "delete":
            del node[k]
        elif op == "swap":
            node[k] = draw(st.sampled_from(ODD_VALUES))
        elif isinstance(node, list):
            node.insert(k, json.loads(json.dumps(node[k])))
    return json.dumps(doc, allow_nan=True)


def _write(name: str, data: bytes | str) -> Path:
    p = WORK / name
    p.write_bytes(data.encode() if isinstance(data, str) else data)
    return p


def _only_input_errors(fn, path: Path):
    try:
        return fn(path)
    except InputError as e:
        assert str(path) in e.line(), e.line()  # the message names the file
        assert "\n" not in e.line(), e.line()  # and is one line
        return None


# ---------------------------------------------------------------------------------------------- COCO


def _coco_gt_reader(p: Path):
    from bench.data.coco import read_coco_keypoint_gt

    return read_coco_keypoint_gt(p)


COCO_GT_DOC = json.loads(COCO_GT.read_text())
COCO_IDS = [im["id"] for im in COCO_GT_DOC["images"]]
COCO_RES_DOC = perturbed_results(COCO_GT_DOC, seed=5, extra=1)[:12]
COCO_RES_DOC[0]["bbox"] = [1.0, 2.0, 30.0, 40.0]  # exercise the bbox-area branch too
for r in COCO_RES_DOC[1:]:
    r["bbox"] = [0.0, 0.0, 10.0, 20.0]


def _coco_results(p: Path):
    from bench.predictions import coco_json

    res = coco_json.read_coco_keypoint_results(p, COCO_IDS, 17)
    slow = coco_json._slow_path(p, p.read_bytes(), 17, np.unique(COCO_IDS), (1,)).results
    for f in ("image_id", "keypoints", "score", "area"):
        a, b = getattr(res, f), getattr(slow, f)
        assert (a is None) == (b is None) and (a is None or (a.dtype == b.dtype and np.array_equal(a, b))), f
    return res


@FUZZ
@given(st.data())
def test_fuzz_coco_gt(data):
    raw = COCO_GT.read_bytes()
    mutated = data.draw(st.one_of(byte_mutation(raw), json_mutation(COCO_GT_DOC)))
    _only_input_errors(_coco_gt_reader, _write("gt.json", mutated))


@FUZZ
@given(st.data())
def test_fuzz_coco_results(data):
    raw = json.dumps(COCO_RES_DOC).encode()
    mutated = data.draw(st.one_of(byte_mutation(raw), json_mutation(COCO_RES_DOC)))
    _only_input_errors(_coco_results, _write("results.json", mutated))


# ---------------------------------------------------------------------------------------------- BOP

BOP_LINES = BOP_CSV.read_text().splitlines()[:25]
ODD_CELLS = ["", " ", "nan", "inf", "-1", "1e999", "0x10", "1 2", "1,2", "١", "9" * 30, "1.5", "-0", "+3", '"7"']


@st.composite
def csv_mutation(draw) -> str:
    lines = [ln.split(",") for ln in BOP_LINES]
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(lines) - 1))
        j = draw(st.integers(0, len(lines[i]) - 1))
        op = draw(st.sampled_from(["cell", "vector", "drop_field", "dup_line"]))
        if op == "cell":
            lines[i][j] = draw(st.sampled_from(ODD_CELLS))
        elif op == "vector" and j in (4, 5):
            vals = lines[i][j].split()
            k = draw(st.integers(0, len(vals) - 1))
            vals[k] = draw(st.sampled_from(ODD_CELLS))
            if draw(st.booleans()):
                del vals[k]
            lines[i][j] = " ".join(vals)
        elif op == "drop_field":
            del lines[i][j]
        else:
            lines.insert(i, list(lines[i]))
    return "\n".join(",".join(x) for x in lines) + "\n"


@FUZZ
@given(st.data())
def test_fuzz_bop_csv(data):
    from bench.predictions.bop_csv import read_bop19_csv

    raw = "\n".join(BOP_LINES).encode() + b"\n"
    mutated = data.draw(st.one_of(byte_mutation(raw), csv_mutation()))
    _only_input_errors(read_bop19_csv, _write("r.csv", mutated))


# ---------------------------------------------------------------------------------------------- H36M npz


def _zip_members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def _rezip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, b in members.items():
            zf.writestr(name, b)
    return buf.getvalue()


@st.composite
def npz_member_mutation(draw, members: dict[str, bytes]) -> bytes:
    """Mutate the bytes of one .npy member (header or payload) and re-zip with valid checksums."""
    name = draw(st.sampled_from(sorted(members)))
    return _rezip({**members, name: draw(byte_mutation(members[name]))})


def _h36m_gt(p: Path):
    from bench.data.h36m import load_positions_3d

    return load_positions_3d(p, ("S9", "S11"))


@FUZZ
@given(st.data())
def test_fuzz_h36m_gt_npz(data):
    raw = H36M_GT.read_bytes()
    mutated = data.draw(st.one_of(byte_mutation(raw), npz_member_mutation(_zip_members(H36M_GT))))
    _only_input_errors(_h36m_gt, _write("gt.npz", mutated))


@pytest.fixture(scope="module")
def h36m_expected():
    from bench.data.h36m import H36MDataset

    ds = H36MDataset(SAMPLES_DIR / "h36m", True)
    return {q.key: (ds.num_frames(i), 17, 3) for i, q in enumerate(ds.sequences)}


ODD_ARRAYS = [np.zeros(0), np.zeros((3, 17, 3), np.float32), np.full((2, 17, 3), np.nan), np.zeros((2, 17), int),
              np.array(["a", "b"]), np.zeros((2, 17, 3), complex), np.zeros((2, 17, 3), bool), np.float64(1.0),
              np.zeros((2, 17, 3), np.float16), np.zeros((2, 17, 3), np.longdouble)]


@st.composite
def npz_array_mutation(draw, expected: dict) -> bytes:
    arrays = {k: np.zeros(s) for k, s in expected.items()}
    keys = sorted(arrays)
    for _ in range(draw(st.integers(1, 3))):
        k = draw(st.sampled_from(keys))
        op = draw(st.sampled_from(["swap", "drop", "extra", "frames", "nan"]))
        if op == "swap":
            arrays[k] = draw(st.sampled_from(ODD_ARRAYS))
        elif op == "drop":
            arrays.pop(k, None)
        elif op == "extra":
            arrays[draw(st.sampled_from(["S1/Walking/0", "x", "S9/Walking 1/7"]))] = draw(st.sampled_from(ODD_ARRAYS))
        elif op == "frames" and k in arrays:
            arrays[k] = np.zeros((expected[k][0] + draw(st.sampled_from([-1, 1, 100])), 17, 3))
        elif k in arrays and np.ndim(arrays[k]) == 3 and arrays[k].size:
            arrays[k][0, 0, 0] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def test_fuzz_h36m_predictions_npz(h36m_expected):
    from bench.predictions.npz import read_pose_npz

    buf = io.BytesIO()
    np.savez(buf, **{k: np.zeros(s) for k, s in h36m_expected.items()})
    members = _zip_members(_write("seed.npz", buf.getvalue()))

    @settings(FUZZ, max_examples=100)  # each example writes and reads a 240-key npz
    @given(st.data())
    def run(data):
        mutated = data.draw(st.one_of(npz_array_mutation(h36m_expected), npz_member_mutation(members),
                                      byte_mutation(buf.getvalue())))
        _only_input_errors(lambda p: read_pose_npz(p, h36m_expected), _write("pred.npz", mutated))

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unscored keys are ignored with a warning, by design
        run()


# ---------------------------------------------------------------------------------------------- MP-100


@pytest.fixture(scope="module")
def mp100_small():
    """A one-category cut of the real split-1 test file (200 episodes x 15 queries) and a full predictions file."""
    from bench.data.mp100 import Mp100Dataset

    d = json.loads(MP100_ANN.read_text())
    cat = d["categories"][0]
    anns = [a for a in d["annotations"] if a["category_id"] == cat["id"]]
    imgs = {a["image_id"] for a in anns}
    root = WORK / "mp100"
    (root / "annotations").mkdir(parents=True)
    small = {**d, "categories": [cat], "annotations": anns, "images": [i for i in d["images"] if i["id"] in imgs]}
    (root / "annotations" / "mp100_split1_test.json").write_text(json.dumps(small))
    ds = Mp100Dataset(root)
    recs = []
    for e, ep in enumerate(ds.episodes):
        for q in ep.query_ids:
            kp = ds.by_id[q].keypoints
            recs.append({"episode": e, "query_id": q, "keypoints": [[float(x) + 1.5, float(y) - 0.5] for x, y in kp.tolist()]})
    return ds, recs


def test_fuzz_mp100_predictions(mp100_small):
    from bench.predictions.mp100_json import read_mp100_predictions

    ds, recs = mp100_small
    assert len(read_mp100_predictions(_write("mp.json", json.dumps(recs)), ds)) == len(ds)  # the seed is valid
    head = recs[:40]  # mutations near the start, followed by the untouched rest, so both paths are reached

    @settings(FUZZ, max_examples=40)  # each example reads 3,000 records
    @given(st.data())
    def run(data):
        if data.draw(st.booleans()):
            mutated = data.draw(json_mutation(head))
            text = mutated[:-1] + ("," if mutated != "[]" else "") + json.dumps(recs[40:])[1:]
        else:
            text = data.draw(byte_mutation(json.dumps(head).encode())).decode("utf-8", "replace")
        _only_input_errors(lambda p: read_mp100_predictions(p, ds), _write("mp.json", text))

    run()

