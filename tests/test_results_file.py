"""The official results file of a model run (bench/results_file.py): what the BOP reader reads back."""
from __future__ import annotations

import torch

from bench.predictions.bop_csv import read_bop19_csv
from bench.results_file import BopResultsRecorder, bop_results_name
from bench.types import Prediction

LIMIT = 1_000_000


def _pred(scene: int, im: int, objs: list[int], seed: int, time: float) -> Prediction:
    g = torch.Generator().manual_seed(seed)
    n = len(objs)
    R = torch.linalg.qr(torch.randn(n, 3, 3, generator=g, dtype=torch.float64))[0]
    return Prediction(scene * LIMIT + im, {
        "obj_id": torch.tensor(objs, dtype=torch.int64), "R": R,
        "t": torch.randn(n, 3, generator=g, dtype=torch.float64) * 300, "score": torch.rand(n, generator=g,
                                                                                           dtype=torch.float64),
        "time": torch.tensor(time, dtype=torch.float64)})


def test_rows_read_back_bit_for_bit_sorted_and_deduplicated(tmp_path):
    """Images in any order, one repeated (sampler padding), one without estimates: the file holds each image's
    rows once, images by (scene, image), rows in the method's order, the same floats after reading."""
    a, b, empty = _pred(48, 7, [3, 1, 3], 0, 0.25), _pred(2, 10, [5], 1, 1.5), _pred(48, 1, [], 2, 0.1)
    rec = BopResultsRecorder(LIMIT)
    rec.update([a, empty])
    rec.update([b, a])
    path = tmp_path / "x_ycbv-test.csv"
    path.write_bytes(rec.compute())
    lines = path.read_text().splitlines()
    assert lines[0] == "scene_id,im_id,obj_id,score,R,t,time" and len(lines) == 1 + 4
    assert [ln.split(",")[:3] for ln in lines[1:]] == [["2", "10", "5"], ["48", "7", "3"], ["48", "7", "1"],
                                                      ["48", "7", "3"]]
    back = read_bop19_csv(path)
    assert sorted(back) == sorted([a.sample_id, b.sample_id])
    for p in (a, b):
        for k in ("obj_id", "R", "t", "score", "time"):
            assert torch.equal(back[p.sample_id].output[k], p.output[k]), k


def test_nothing_recorded_gives_the_header_only():
    assert BopResultsRecorder(LIMIT).compute() == b"scene_id,im_id,obj_id,score,R,t,time\n"


def test_file_name_keeps_the_toolkit_parse():
    """The toolkit splits ``METHOD_DATASET-SPLIT`` at the first ``_``: a method's underscores become hyphens."""
    assert bop_results_name("gdrnpp", "ycbv", "test") == "gdrnpp_ycbv-test.csv"
    assert bop_results_name("my_method", "tless", "test") == "my-method_tless-test.csv"
