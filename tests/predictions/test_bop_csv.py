"""BOP19 results CSV import (bench/predictions/bop_csv.py).

Golden numbers: ``tests/data/bop_results/toolkit_load_bop_results.json`` was written by running the official
loader on the copied CSVs: thodan/bop_toolkit @ cea62d651c7e395b2e1962b9749e4e89693c6ac4,
``bop_toolkit_lib.inout.load_bop_results(f, version="bop19")`` and ``inout.check_consistent_timings(res,
"im_id")`` for every ``*.csv`` in that folder; per file it stores the row and image counts, ``math.fsum`` of
every score / R value / t value, the sum of obj ids, the average time per image
(``sum(times.values()) / len(times)`` over the toolkit's timings; its ``np.mean`` differs by 1-2 ulp) and the first and last parsed rows.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.errors import InputError
from bench.predictions.bop_csv import HEADER, read_bop19_csv, read_bop19_rows

DATA = Path(__file__).resolve().parents[1] / "data" / "bop_results"
GOLDEN = json.loads((DATA / "toolkit_load_bop_results.json").read_text())
FILES = sorted(GOLDEN)

ROW_R = "0.36 0.48 -0.8 -0.8 0.6 0 0.48 0.64 0.6"  # an exact rotation
GOOD = f"48,1,2,0.9,{ROW_R},10 20 800,0.5"


@pytest.mark.parametrize("name", FILES)
def test_real_submissions_parse_like_the_toolkit(name):
    gold = GOLDEN[name]
    est = read_bop19_rows(DATA / name)
    assert len(est.score) == gold["num_estimates"]
    assert len(np.unique(est.sample_id)) == gold["num_images"]
    # bit-identical values give bit-identical exact sums
    assert math.fsum(est.score.tolist()) == gold["sum_score"]
    assert math.fsum(est.R.ravel().tolist()) == gold["sum_R"]
    assert math.fsum(est.t.ravel().tolist()) == gold["sum_t"]
    assert int(est.obj_id.sum()) == gold["sum_obj_id"]
    for i, key in ((0, "first"), (-1, "last")):
        row = gold[key]
        assert (int(est.scene_id[i]), int(est.im_id[i]), int(est.obj_id[i])) == (
            row["scene_id"],
            row["im_id"],
            row["obj_id"],
        )
        assert float(est.score[i]) == row["score"] and float(est.time[i]) == row["time"]
        assert est.R[i].ravel().tolist() == row["R"] and est.t[i].tolist() == row["t"]

    preds = read_bop19_csv(DATA / name)
    assert len(preds) == gold["num_images"]
    times = [float(p.output["time"]) for p in preds.values()]
    assert np.mean(times) == pytest.approx(gold["average_time_per_image"], rel=1e-12)


def test_estimates_grouped_per_image_in_file_order():
    """Independent oracle: the stdlib csv module, grouping rows by (scene, im) in file order."""
    name = next(f for f in FILES if "ycbv" in f)
    rows: dict[int, list[list[str]]] = {}
    with open(DATA / name, newline="") as f:
        for r in list(csv.reader(f))[1:]:
            rows.setdefault(int(r[0]) * 1_000_000 + int(r[1]), []).append(r)
    preds = read_bop19_csv(DATA / name)
    assert sorted(preds) == sorted(rows)
    for sid, rs in rows.items():
        out = preds[sid].output
        assert preds[sid].sample_id == sid
        assert out["obj_id"].dtype == torch.int64 and out["obj_id"].shape == (len(rs),)
        assert out["R"].dtype == torch.float64 and out["R"].shape == (len(rs), 3, 3)
        assert out["t"].dtype == torch.float64 and out["t"].shape == (len(rs), 3)
        assert out["score"].dtype == torch.float64 and out["time"].shape == ()
        assert out["obj_id"].tolist() == [int(r[2]) for r in rs]
        assert out["score"].tolist() == [float(r[3]) for r in rs]
        assert out["R"].reshape(-1, 9).tolist() == [[float(x) for x in r[4].split()] for r in rs]
        assert out["t"].tolist() == [[float(x) for x in r[5].split()] for r in rs]
        assert float(out["time"]) == float(rs[0][6])


def write(tmp_path: Path, *lines: str, header: str = HEADER, name: str = "m_ycbv-test.csv") -> Path:
    p = tmp_path / name
    p.write_text("\n".join([header, *lines]) + "\n")
    return p


def error_of(path: Path) -> InputError:
    with pytest.raises(InputError) as e:
        read_bop19_csv(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg
    return e.value


@pytest.mark.parametrize(
    "lines, line, field, words",
    [
        ([GOOD, f"48,1,3,nan,{ROW_R},10 20 800,0.5"], "line 3", "score", "finite"),
        ([GOOD, f"48,1,3,0.5,{ROW_R},10 inf 800,0.5"], "line 3", "t", "value 2 of 3"),
        ([f"48,1,3,0.5,{ROW_R.rsplit(' ', 1)[0]},10 20 800,0.5"], "line 2", "R", "expected 9"),
        ([GOOD, GOOD, f"48,1,3,0.5,{ROW_R},10 20,0.5"], "line 4", "t", "expected 3"),
        ([GOOD, "48,1,3,0.5,1 0 0 0 1 0 0 0 1.2,10 20 800,0.5"], "line 3", "R", "R R^T"),
        ([GOOD, "48,1,3,0.5,1 0 0 0 1 0 0 0 -1,10 20 800,0.5"], "line 3", "R", "det"),
        ([GOOD, "48,1,3,0.5,1 0 0 0 1 0 0 0 abc,10 20 800,0.5"], "line 3", "R", "'abc'"),
        ([GOOD, f"48,1,3,0.5,{ROW_R},10 20 800,0.7"], "line 3", "time", "one time per image"),
        ([GOOD, f"48,1,3,0.5,{ROW_R},10 20 800"], "line 3", None, "7 comma-separated"),
        ([GOOD, f"48,1,3,0.5,{ROW_R},10 20 800,0.5,x"], "line 3", None, "found 8"),
        ([GOOD, "", GOOD], "line 3", None, "found 1"),
        ([f"48,1.5,3,0.5,{ROW_R},10 20 800,0.5"], "line 2", "im_id", "integer"),
        ([f"-1,1,3,0.5,{ROW_R},10 20 800,0.5"], "line 2", "scene_id", ">= 0"),
        ([GOOD, f"48,1000000,3,0.5,{ROW_R},10 20 800,0.5"], "line 3", "im_id", "< 1000000"),
        ([GOOD, f"48,2,x,0.5,{ROW_R},10 20 800,0.5"], "line 3", "obj_id", "'x'"),
    ],
)
def test_bad_rows_name_line_and_field(tmp_path, lines, line, field, words):
    err = error_of(write(tmp_path, *lines))
    assert err.record == line
    assert err.field == field
    assert words in str(err)


def test_bad_header_and_empty_files(tmp_path):
    err = error_of(write(tmp_path, GOOD, header="scene_id,im_id,obj_id,score,R,t"))
    assert (err.record, err.field) == ("line 1", "header")
    err = error_of(write(tmp_path, GOOD, header="48,1,2,0.9,1 0 0 0 1 0 0 0 1,1 2 3,0.5"))
    assert (err.record, err.field) == ("line 1", "header")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert error_of(empty).field == "header"
    assert "no estimates" in str(error_of(write(tmp_path)))
    assert "not found" in str(error_of(tmp_path / "missing.csv"))


def test_times_follow_the_toolkit(tmp_path):
    """Negative times mean "not reported" and are skipped by the consistency check; 0.001 s tolerance."""
    p = write(
        tmp_path,
        f"48,1,2,0.9,{ROW_R},10 20 800,-1",
        f"48,1,3,0.8,{ROW_R},10 20 800,0.5",
        f"48,1,4,0.7,{ROW_R},10 20 800,0.5009",
        f"48,2,4,0.7,{ROW_R},10 20 800,-1",
    )
    preds = read_bop19_csv(p)
    assert float(preds[48_000_001].output["time"]) == 0.5
    assert float(preds[48_000_002].output["time"]) == -1.0
    assert preds[48_000_001].output["obj_id"].tolist() == [2, 3, 4]


def test_tolerant_of_crlf_bom_and_trailing_blank_lines(tmp_path):
    p = tmp_path / "crlf.csv"
    p.write_bytes(("\ufeff" + HEADER + "\r\n" + GOOD + "\r\n\r\n\n").encode())
    preds = read_bop19_csv(p)
    assert list(preds) == [48_000_001]
    assert preds[48_000_001].output["R"][0].tolist() == [
        [0.36, 0.48, -0.8],
        [-0.8, 0.6, 0.0],
        [0.48, 0.64, 0.6],
    ]


def test_real_gt_submission_passes_the_rotation_check():
    """The official LM-O GT poses deviate from orthonormal by up to ~0.0096: the tolerance must admit them."""
    est = read_bop19_rows(DATA / "gt-pbrreal-rgb-mmodel_lmo-test_lmo.csv")
    dev = np.abs(est.R @ est.R.transpose(0, 2, 1) - np.eye(3)).max()
    assert 0.009 < dev < 0.05


def test_numbers_parse_bit_for_bit_like_python_float(tmp_path):
    """The toolkit parses with ``float()``: long and awkward literals must give the same doubles."""
    rng = np.random.default_rng(0)
    n = 3000
    t = rng.standard_normal((n, 3)) * 10.0 ** rng.integers(-8, 6, (n, 3))
    texts = [
        " ".join(f"{v:.25g}" if (i + j) % 2 else repr(float(v)) for j, v in enumerate(row))
        for i, row in enumerate(t)
    ]
    scores = [f"{v:.19e}" for v in rng.random(n)]
    lines = [f"{48 + i % 3},{i // 3},{1 + i % 21},{scores[i]},{ROW_R},{texts[i]},0.5" for i in range(n)]
    est = read_bop19_rows(write(tmp_path, *lines))
    assert est.t.tolist() == [[float(x) for x in s.split()] for s in texts]
    assert est.score.tolist() == [float(x) for x in scores]
