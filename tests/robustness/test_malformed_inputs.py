"""Malformed inputs, one per kind, for every reader: a one-line error, exit code 2, nothing written.

Each kind builds one bad file (COCO results JSON, BOP19 CSV, H36M predictions/GT npz, MP-100 predictions
JSON, checkpoints) and runs ``python -m bench evaluate`` on the bundled samples with ``out=`` and
``leaderboard_dir=`` in a tmp folder; the leaderboard tree is pre-seeded with a CSV per family. Every kind
must answer: exit code 2, exactly one line on stderr, naming the file and (where there is one) the record
and field, the leaderboard bytes unchanged, no metrics.json. Most kinds call the CLI's ``main()`` in this
process (the same catch and print as the console script; a subprocess costs ~10 s of imports here); a
subset with at least one kind per reader runs the real subprocess CLI (``run_cli``), where any stray
warning or traceback would also land on stderr.

Untrusted files additionally prove that nothing ran: the evil pickles would create a marker file.
Documented rules that are not errors are checked against the reference: duplicate COCO detections are kept
(pycocotools counts each record), BOP estimates for images that are not test targets are ignored with a
warning (as bop_toolkit's ``eval_calc_errors`` only visits target images).
"""
from __future__ import annotations

import contextlib
import io
import json
import pickle
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.__main__ import main as cli_main
from bench.data.base import SAMPLES_DIR
from tests.conftest import run_cli

LB_SEED = {  # family/dataset.csv -> bytes that must survive every failed run
    "human2d/coco.csv": b"method,variant,AP\nold,,0.5\n",
    "object6d/ycbv.csv": b"method,variant,AR\nold,,0.25\n",
    "human3d/h36m.csv": b"method,variant,MPJPE\nold,,50\n",
    "cape/mp100.csv": b"method,variant,PCK@0.2\nold,split1-test-1shot,0.75\n",
}

COCO_IMAGE = 785  # an image of the bundled COCO sample
R_OK = "0.36 0.48 -0.8 -0.8 0.6 0 0.48 0.64 0.6"  # an exact rotation
BOP_HEADER = "scene_id,im_id,obj_id,score,R,t,time"
BOP_OK = f"48,1,1,0.9,{R_OK},10 20 800,0.5"  # scene 48 image 1 object 1 is a target of the bundled YCB-V


class Evil:
    """Unpickling this calls ``open(marker, "w")``: a file that runs code leaves the marker behind."""

    marker = ""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def coco_rec(**kw) -> dict:
    rec = {"image_id": COCO_IMAGE, "category_id": 1, "keypoints": [10.0, 20.0, 0.9] * 17, "score": 0.5}
    rec.update(kw)
    return rec


def dump(obj) -> str:
    return json.dumps(obj, allow_nan=True)


@dataclass
class Ctx:
    tmp: Path
    marker: Path


@dataclass
class Case:
    dataset: str
    build: Callable[[Ctx], list[str]]  # writes the bad file(s); returns the CLI arguments that use them
    expect: tuple[str, ...]  # substrings of the error line (record, field, problem) besides the file


def _write(ctx: Ctx, name: str, content: str | bytes) -> Path:
    p = ctx.tmp / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return p


def pred(name: str, content) -> Callable[[Ctx], list[str]]:
    def build(ctx: Ctx) -> list[str]:
        return [f"predictions={_write(ctx, name, content if not callable(content) else content(ctx))}"]

    return build


# ---------------------------------------------------------------------------------------------- H36M


def h36m_expected() -> dict[str, tuple[int, int, int]]:
    from bench.data.h36m import H36MDataset

    ds = H36MDataset(SAMPLES_DIR / "h36m", True)
    return {q.key: (ds.num_frames(i), 17, 3) for i, q in enumerate(ds.sequences)}


def h36m_npz(mutate: Callable[[dict, Ctx], None]) -> Callable[[Ctx], list[str]]:
    def build(ctx: Ctx) -> list[str]:
        arrays = {k: np.zeros(s) for k, s in h36m_expected().items()}
        mutate(arrays, ctx)
        path = ctx.tmp / "h36m_pred.npz"
        np.savez(path, **arrays)
        return [f"predictions={path}"]

    return build


FIRST_H36M = "S11/Directions 1/0"  # first key of the bundled sample (sorted)


def _h36m_evil_gt(ctx: Ctx) -> list[str]:
    root = ctx.tmp / "h36m_root"
    root.mkdir()
    tree = {"S9": {"Walking": Evil(str(ctx.marker))}, "S11": {}}
    np.savez(root / "data_3d_h36m.npz", positions_3d=np.array(tree, dtype=object))
    good = ctx.tmp / "unused.npz"
    np.savez(good, x=np.zeros(1))
    return [f"data_root={root}", f"predictions={good}"]


def _npz_with_huge_header(ctx: Ctx) -> bytes:
    """A .npy member whose header is 30 kB long (numpy refuses it, with a three-line message)."""
    import zipfile

    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }".ljust(30000) + "\n"
    npy = b"\x93NUMPY\x02\x00" + len(header).to_bytes(4, "little") + header.encode() + b"\0" * 8
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("x.npy", npy)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------- MP-100


def mp100_first() -> tuple[int, int]:
    """Episode 0's first query id and its category's keypoint count (bundled split 1 test, 1 shot)."""
    from bench.data.mp100 import Mp100Dataset

    ds = Mp100Dataset(SAMPLES_DIR / "mp100")
    qid = ds.episodes[0].query_ids[0]
    return qid, int(ds.by_id[qid].keypoints.shape[0])


def mp100_file(make: Callable[[int, int], list]) -> Callable[[Ctx], list[str]]:
    def build(ctx: Ctx) -> list[str]:
        qid, k = mp100_first()
        return [f"predictions={_write(ctx, 'mp100.json', dump(make(qid, k)))}"]

    return build


# ---------------------------------------------------------------------------------------------- checkpoints


def ckpt(kind: str) -> Callable[[Ctx], list[str]]:
    def build(ctx: Ctx) -> list[str]:
        path = ctx.tmp / f"{kind}.pth"
        if kind == "garbage":
            path.write_bytes(b"not a checkpoint\n" * 20)
        elif kind == "code_zip":  # torch's zip format, the pickle inside calls open()
            torch.save({"state_dict": Evil(str(ctx.marker))}, path)
        elif kind == "code_plain":  # a legacy (non-zip) pickle that calls open()
            path.write_bytes(pickle.dumps({"state_dict": Evil(str(ctx.marker))}, protocol=2))
        elif kind == "wrong_keys":
            torch.save({"state_dict": {"foo.weight": torch.zeros(3)}}, path)
        return ["method=vitpose-s", f"weights={path}"]

    return build


CASES: dict[str, Case] = {
    # COCO keypoint results JSON (bench/predictions/coco_json.py)
    "coco_not_json": Case("coco", pred("r.json", "[{not json"), ("line 1 column 3", "not valid JSON")),
    "coco_not_utf8": Case("coco", pred("r.json", b"[1, \xff]"), ("not UTF-8 text at byte 4",)),
    "coco_not_a_list": Case("coco", pred("r.json", dump(coco_rec())), ("expected a JSON list", "found dict")),
    "coco_record_not_object": Case("coco", pred("r.json", dump([coco_rec(), 7])), ("index 1", "expected an object")),
    "coco_missing_key": Case("coco", pred("r.json", dump([{k: v for k, v in coco_rec().items() if k != "keypoints"}])),
                             ("index 0", "field 'keypoints'", "missing")),
    "coco_wrong_keypoint_count": Case("coco", pred("r.json", dump([coco_rec(), coco_rec(keypoints=[1.0] * 48)])),
                                      ("index 1", "field 'keypoints'", "expected 51 numbers", "found 48")),
    "coco_nan_keypoint": Case("coco", pred("r.json", dump([coco_rec(), coco_rec(keypoints=[float("nan")] + [1.0] * 50)])),
                              ("index 1", "field 'keypoints'", "value 0", "finite")),
    "coco_inf_keypoint": Case("coco", pred("r.json", dump([coco_rec(keypoints=[1.0] * 50 + [float("inf")])])),
                              ("index 0", "field 'keypoints'", "value 50", "finite")),
    "coco_string_keypoint": Case("coco", pred("r.json", dump([coco_rec(keypoints=["1"] + [1.0] * 50)])),
                                 ("index 0", "field 'keypoints'", "expected a number")),
    "coco_unknown_image": Case("coco", pred("r.json", dump([coco_rec(), coco_rec(image_id=1)])),
                               ("index 1", "field 'image_id'", "not in the ground truth")),
    "coco_float_image_id": Case("coco", pred("r.json", dump([coco_rec(image_id=785.0)])),
                                ("index 0", "field 'image_id'", "expected an integer")),
    "coco_wrong_category": Case("coco", pred("r.json", dump([coco_rec(category_id=2)])),
                                ("index 0", "field 'category_id'", "expected 1")),
    "coco_nonfinite_score": Case("coco", pred("r.json", dump([coco_rec(score=float("nan"))])),
                                 ("index 0", "field 'score'", "finite")),
    "coco_bad_bbox": Case("coco", pred("r.json", dump([coco_rec(bbox=[0, 0, 10, 10]), coco_rec(bbox=[0, 0, 10])])),
                          ("index 1", "field 'bbox'")),
    # BOP19 CSV (bench/predictions/bop_csv.py)
    "bop_bad_header": Case("ycbv", pred("r.csv", f"scene_id,im_id,obj_id,score,R,t\n{BOP_OK}\n"),
                           ("line 1", "field 'header'")),
    "bop_8_rotation_values": Case("ycbv", pred("r.csv", f"{BOP_HEADER}\n{BOP_OK}\n48,1,2,0.9,1 0 0 0 1 0 0 0,0 0 1,0.5\n"),
                                  ("line 3", "field 'R'", "expected 9", "found 8")),
    "bop_not_orthonormal": Case("ycbv", pred("r.csv", f"{BOP_HEADER}\n{BOP_OK}\n48,1,2,0.9,2 0 0 0 1 0 0 0 1,0 0 1,0.5\n"),
                                ("line 3", "field 'R'", "not a rotation")),
    "bop_reflection": Case("ycbv", pred("r.csv", f"{BOP_HEADER}\n48,1,2,0.9,-1 0 0 0 1 0 0 0 1,0 0 1,0.5\n"),
                           ("line 2", "field 'R'", "det(R)")),
    "bop_nan_score": Case("ycbv", pred("r.csv", f"{BOP_HEADER}\n{BOP_OK}\n48,1,2,nan,{R_OK},0 0 1,0.5\n"),
                          ("line 3", "field 'score'", "finite")),
    "bop_nan_translation": Case("ycbv", pred("r.csv", f"{BOP_HEADER}\n48,1,2,0.9,{R_OK},0 NaN 1,0.5\n"),
                                ("line 2", "field 't'", "value 2 of 3")),
    "bop_times_differ": Case("ycbv", pred("r.csv", f"{BOP_HEADER}\n{BOP_OK}\n48,1,2,0.9,{R_OK},0 0 1,0.9\n"),
                             ("line 3", "field 'time'", "scene 48 image 1")),
    "bop_negative_scene": Case("ycbv", pred("r.csv", f"{BOP_HEADER}\n-48,1,2,0.9,{R_OK},0 0 1,0.5\n"),
                               ("line 2", "field 'scene_id'", ">= 0")),
    "bop_image_id_out_of_range": Case("ycbv", pred("r.csv", f"{BOP_HEADER}\n48,1000001,2,0.9,{R_OK},0 0 1,0.5\n"),
                                      ("line 2", "field 'im_id'", "< 1000000")),
    "bop_field_count": Case("ycbv", pred("r.csv", f"{BOP_HEADER}\n48,1,2,0.9,{R_OK},0 0 1\n"),
                            ("line 2", "expected 7 comma-separated fields")),
    # H36M predictions npz (bench/predictions/npz.py) and GT npz (bench/safe_pickle.py)
    "h36m_wrong_shape": Case("h36m", h36m_npz(lambda a, c: a.__setitem__(FIRST_H36M, np.zeros((9, 16, 3)))),
                             (f"key '{FIRST_H36M}'", "field 'shape'", "expected (9, 17, 3)")),
    "h36m_missing_key": Case("h36m", h36m_npz(lambda a, c: a.pop(FIRST_H36M)),
                             (f"key '{FIRST_H36M}'", "missing")),
    "h36m_nan": Case("h36m", h36m_npz(lambda a, c: a[FIRST_H36M].__setitem__((2, 3, 1), np.nan)),
                     (f"key '{FIRST_H36M}'", "field 'values'", "non-finite value at index [2, 3, 1]")),
    "h36m_object_array_predictions": Case(
        "h36m", h36m_npz(lambda a, c: a.__setitem__(FIRST_H36M, np.array([Evil(str(c.marker))], dtype=object))),
        (f"member {FIRST_H36M}", "pickled object array")),
    "h36m_not_npz": Case("h36m", pred("p.npz", b"PK\x03\x04 truncated zip"), ("not a valid .npz",)),
    "h36m_evil_pickle_gt": Case("h36m", _h36m_evil_gt, ("member positions_3d", "refused to unpickle io.open")),
    "h36m_huge_npy_header": Case("h36m", pred("p.npz", _npz_with_huge_header),
                                 ("member x", "not a valid .npy array", "Header info length (30001) is large")),
    # MP-100 predictions JSON (bench/predictions/mp100_json.py)
    "mp100_unknown_episode": Case("mp100", mp100_file(lambda q, k: [{"episode": 99999, "query_id": q,
                                                                      "keypoints": [[1.0, 2.0]] * k}]),
                                  ("index 0", "field 'episode'", "out of range")),
    "mp100_unknown_query": Case("mp100", mp100_file(lambda q, k: [{"episode": 0, "query_id": 12345,
                                                                    "keypoints": [[1.0, 2.0]] * k}]),
                                ("index 0", "field 'query_id'", "12345 is not a query of episode 0")),
    "mp100_wrong_keypoint_count": Case("mp100", mp100_file(lambda q, k: [{"episode": 0, "query_id": q,
                                                                           "keypoints": [[1.0, 2.0]] * (k + 1)}]),
                                       ("index 0", "field 'keypoints'", "pairs for category")),
    "mp100_nan_keypoint": Case("mp100", mp100_file(lambda q, k: [{"episode": 0, "query_id": q,
                                                                   "keypoints": [[float("nan"), 2.0]] * k}]),
                               ("index 0", "field 'keypoints'", "keypoint 0", "finite")),
    "mp100_duplicate": Case("mp100", mp100_file(lambda q, k: [{"episode": 0, "query_id": q, "keypoints": [[1.0, 2.0]] * k}]
                                                * 2),
                            ("index 1", "field 'query_id'", "duplicate")),
    # checkpoints (methods/human2d/topdown.py load_state_dict, torch.load(weights_only=True))
    "ckpt_not_a_checkpoint": Case("coco", ckpt("garbage"), ("field 'weights'", "cannot read the checkpoint")),
    "ckpt_pickle_code_zip": Case("coco", ckpt("code_zip"), ("field 'state_dict'", "expected a tensor")),
    "ckpt_pickle_code_plain": Case("coco", ckpt("code_plain"), ("field 'weights'", "cannot read the checkpoint")),
    "ckpt_wrong_keys": Case("coco", ckpt("wrong_keys"), ("key 'foo.weight'", "field 'state_dict'",
                                                          "not a ViTPose checkpoint")),
}

# one or more per reader through the real subprocess CLI
CLI_KINDS = ["coco_nan_keypoint", "coco_not_json", "bop_not_orthonormal", "h36m_evil_pickle_gt", "mp100_unknown_query",
             "ckpt_pickle_code_zip"]


def _setup(tmp: Path, kind: str) -> tuple[list[str], Path, Path, Path]:
    """Build the case; returns (CLI args, the bad file, out dir, leaderboard dir)."""
    tmp.mkdir(parents=True, exist_ok=True)
    ctx = Ctx(tmp, tmp / "MARKER")
    case = CASES[kind]
    args = case.build(ctx)
    lb = tmp / "lb"
    for rel, content in LB_SEED.items():
        (lb / rel).parent.mkdir(parents=True, exist_ok=True)
        (lb / rel).write_bytes(content)
    if not any(a.startswith("method=") for a in args):
        args = ["method=mine", *args]
    named = next(a.split("=", 1)[1] for a in args if a.startswith(("weights=", "data_root=", "predictions=")))
    full = ["evaluate", *args, f"dataset={case.dataset}", f"out={tmp / 'out'}", f"leaderboard_dir={lb}"]
    return full, Path(named), tmp / "out", lb


def _check(kind: str, rc: int, stderr: str, bad: Path, out: Path, lb: Path) -> None:
    assert rc == 2, (kind, rc, stderr[-2000:])
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, (kind, stderr[-2000:])
    line = lines[0]
    assert line.startswith("posearena: error: ") and str(bad) in line, (kind, line)
    for s in CASES[kind].expect:
        assert s in line, (kind, s, line)
    snapshot = {p.relative_to(lb).as_posix(): p.read_bytes() for p in lb.rglob("*") if p.is_file()}
    assert snapshot == LB_SEED, kind
    assert not out.exists(), kind
    assert not (bad.parent / "MARKER").exists(), f"{kind}: the file ran code"


def test_at_least_15_kinds_across_all_readers():
    assert len(CASES) >= 15 and len(CLI_KINDS) >= 6
    assert {CASES[k].dataset for k in CASES} >= {"coco", "ycbv", "h36m", "mp100"}
    assert {k.split("_")[0] for k in CLI_KINDS} == {"coco", "bop", "h36m", "mp100", "ckpt"}


# Known defect in a file this test does not own: torch's UnpicklingError text spans several lines (with ANSI
# colour codes) and methods/human2d/topdown.py load_state_dict puts it into the InputError verbatim. Fix (there,
# or once for all in bench/errors.py InputError.line()): collapse whitespace, " ".join(text.split()), and drop
# ESC[...m. strict: this turns red once fixed, so the marker gets removed.


@pytest.mark.parametrize("kind", sorted(CASES))
def test_malformed_input_in_process(kind, tmp_path, capsys):
    args, bad, out, lb = _setup(tmp_path, kind)
    with contextlib.redirect_stdout(io.StringIO()):
        rc = cli_main(args)
    _check(kind, rc, capsys.readouterr().err, bad, out, lb)


@pytest.mark.slow
def test_malformed_input_through_the_subprocess_cli(tmp_path):
    """The real console entry point, several processes at a time (each costs ~10 s of imports)."""
    setups = {k: _setup(tmp_path / k, k) for k in CLI_KINDS}
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = dict(zip(setups, pool.map(lambda k: run_cli(*setups[k][0], timeout=300), setups)))
    for kind, r in results.items():
        _, bad, out, lb = setups[kind]
        _check(kind, r.returncode, r.stderr, bad, out, lb)


# ---------------------------------------------------------------------------------------------- documented rules


def test_duplicate_coco_detections_are_kept_as_pycocotools_counts_them(tmp_path, coco_gt):
    """Rule: every record is one detection, an exact copy included (pycocotools ``loadRes`` keeps both; the
    copy is then usually a false positive). Golden: pycocotools' COCOeval on the same files, in-process."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from bench.data.coco import CocoKeypoints
    from metrics.keypoint_ap import STAT_KEYS
    from tests.conftest import COCO_GT, perturbed_results

    recs = perturbed_results(coco_gt, seed=11, extra=0)
    recs = recs + [dict(r) for r in recs[:3]]  # exact duplicates
    path = tmp_path / "dup.json"
    path.write_text(json.dumps(recs))
    ds = CocoKeypoints(SAMPLES_DIR / "coco")
    preds = ds.read_predictions(path)
    assert sum(len(p.output["scores"]) for p in preds.values()) == len(recs)
    m = ds.build_metric()
    samples = [ds[i] for i in range(len(ds))]
    m.update([(preds.get(s.sample_id) or ds.empty_prediction(s)).output for s in samples], [s.target for s in samples])
    ours = {k: float(v) for k, v in m.compute().items()}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(COCO_GT))
        ev = COCOeval(gt, gt.loadRes(str(path)), "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert [ours[k] for k in STAT_KEYS] == pytest.approx(list(ev.stats), abs=1e-12)
    assert ours["AP"] < 1.0


def test_bop_estimates_for_images_that_are_not_targets_are_ignored_with_a_warning(tmp_path):
    """Rule (bop_toolkit ``eval_calc_errors`` visits only target images): an estimate for scene 48 image 2
    (not a target of the bundled sample) is dropped with a warning; the target image's estimates stay."""
    from omegaconf import OmegaConf

    from bench.data.bop import BopDataset, build

    ds: BopDataset = build(OmegaConf.create({"name": "ycbv", "data_root": None}))
    path = tmp_path / "r.csv"
    path.write_text(f"{BOP_HEADER}\n{BOP_OK}\n48,2,1,0.9,{R_OK},0 0 1,0.5\n")
    with pytest.warns(UserWarning, match=r"1 estimates on 1 images that are not ycbv test targets.*scene 48 image 2"):
        preds = ds.read_predictions(path)
    assert list(preds) == [48_000_001]
    assert preds[48_000_001].output["obj_id"].tolist() == [1]
