"""NOCS REAL275 / CAMERA25 (``category6d``) against the evaluation GIVEPose runs.

Golden numbers (tests/data/nocs_golden/, made by ``gen_golden.py`` there; command and commit in its
PROVENANCE.md): ziqin-h/GIVEPose @ 7dd5f65 ``evaluation/eval_utils_cass.compute_degree_cm_mAP`` called as
``evaluation/evaluate.py`` calls it (metric pass, scale-normalised pass) on ten cases: perfect predictions
(every key 1.0), 40 images of jittered poses with misses, duplicates, false positives, symmetric objects turned
about y and flipped mugs (twice: ``real_iou`` true and false; and ``use_matches_for_pose`` false), equal scores,
a category never predicted, and the two bundled samples scored with the box prior's predictions.
"""
from __future__ import annotations

import json
import math
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.data.nocs import NocsDataset, read_gt_file
from bench.errors import InputError
from bench.registry import DATASETS
from metrics.category_pose import CATEGORIES, HEADLINE, MEAN_KEYS, NOCS_KEYS, Image, NocsMAP, nocs_map
from tests.conftest import run_cli

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "bench" / "data" / "samples"
GOLD = Path(__file__).parent / "nocs_golden"
CASES = json.loads((GOLD / "cases.json").read_text())
GOLDEN = json.loads((GOLD / "golden.json").read_text())["cases"]
TOL = 1e-9


def case_images(name: str) -> list[dict]:
    c = CASES[name]
    return CASES[c["same_images_as"]]["images"] if "same_images_as" in c else c["images"]


def as_image(im: dict) -> Image:
    f = lambda k, shape: np.array(im[k], dtype=np.float64).reshape(shape)
    return Image(np.array(im["gt_class_ids"], dtype=np.int64), f("gt_RTs", (-1, 4, 4)), f("gt_scales", (-1, 3)),
                 f("gt_handle_visibility", (-1,)), np.array(im["pred_class_ids"], dtype=np.int64),
                 f("pred_RTs", (-1, 4, 4)), f("pred_scales", (-1, 3)), f("pred_scores", (-1,)))


def assert_golden(values: dict[str, float], name: str) -> None:
    gold = GOLDEN[name]
    assert set(gold) == set(NOCS_KEYS)
    bad = {k: (values[k], gold[k]) for k in NOCS_KEYS if not abs(values[k] - gold[k]) <= TOL}
    assert not bad, f"{len(bad)} keys differ from the reference, e.g. {list(bad.items())[:3]}"


KERNEL_CASES = [n for n in CASES if not n.endswith("/sample")]


@pytest.mark.parametrize("name", KERNEL_CASES)
def test_kernel_matches_reference(name):
    c = CASES[name]
    values = nocs_map([as_image(im) for im in case_images(name)], c["real_iou"], c["use_matches_for_pose"])
    assert_golden(values, name)


def test_perfect_predictions_score_one_and_missing_category_scores_zero():
    assert all(GOLDEN["real275/perfect"][k] == 1.0 for k in NOCS_KEYS)
    assert all(GOLDEN["real275/no_mug_predictions"][f"{k}/mug"] == 0.0 for k in MEAN_KEYS)


def _metric_inputs(name: str):
    preds, targets = [], []
    for n, im in enumerate(case_images(name)):
        x = as_image(im)
        targets.append({"image_id": torch.tensor(n), "gt_class": torch.from_numpy(x.gt_class),
                        "gt_RT": torch.from_numpy(x.gt_RT), "gt_scales": torch.from_numpy(x.gt_scales),
                        "gt_handle": torch.from_numpy(x.gt_handle)})
        preds.append({"image_id": torch.tensor(n), "pred_class": torch.from_numpy(x.pred_class),
                      "pred_RT": torch.from_numpy(x.pred_RT), "pred_scales": torch.from_numpy(x.pred_scales),
                      "pred_score": torch.from_numpy(x.pred_score)})
    return preds, targets


def test_metric_is_order_batch_and_padding_invariant():
    """Shuffled images in batches of 3, with sampler-style duplicates, give the reference's numbers."""
    name = "real275/ties"  # equal scores: the order of the images must not leak into the tie order
    preds, targets = _metric_inputs(name)
    order = list(np.random.default_rng(0).permutation(len(preds))) + [0, 1]
    m = NocsMAP()
    for s in range(0, len(order), 3):
        idx = order[s:s + 3]
        m.update([preds[i] for i in idx], [targets[i] for i in idx])
    assert_golden({k: float(v) for k, v in m.compute().items()}, name)


def test_bootstrap_all_ones_replicate_equals_values_and_curves_agree():
    preds, targets = _metric_inputs("camera25/mixed")
    m = NocsMAP()
    m.update(preds, targets)
    v = m.compute()
    stats = m.bootstrap_stats()
    assert stats.keys == HEADLINE and stats.unit == "image" and stats.ids.tolist() == list(range(len(preds)))
    ones = stats.statistic(torch.ones(1, len(preds), dtype=torch.float64))[0]
    for j, k in enumerate(HEADLINE):
        assert abs(float(ones[j]) - float(v[k])) <= 1e-12, k
    # dropping images changes the replicate (the weights reach the AP)
    w = torch.ones(1, len(preds), dtype=torch.float64)
    w[0, :20] = 0
    assert not torch.allclose(stats.statistic(w)[0], ones)
    iou, rot, shift = m.curves()
    assert set(iou["series"]) == {"mean", *CATEGORIES}
    assert iou["series"]["mean"][iou["x"].index(0.25)] == round(float(v["IoU25"]), 6)
    assert rot["series"]["mean"][rot["x"].index(10.0)] == round(float(v["10deg"]), 6)
    assert shift["series"]["mean"][shift["x"].index(10.0)] == round(float(v["10cm"]), 6)


# ------------------------------------------------------------------------------------------------ the CLI
def _main(*args: str) -> int:
    """The CLI entry point in this process (``python -m bench`` spends most of its time importing)."""
    from bench.__main__ import main

    return main(["evaluate", "progress=false", *args])


@pytest.mark.parametrize("dataset", ["real275", "camera25"])
def test_cli_bundled_sample_matches_reference(tmp_path, dataset, capsys, monkeypatch):
    monkeypatch.delenv("POSEARENA_DATA", raising=False)
    preds = SAMPLES / dataset / "box_prior.json"
    code = _main("method=box-prior", f"dataset={dataset}", f"predictions={preds}", f"out={tmp_path / 'out'}",
                 f"leaderboard_dir={tmp_path / 'lb'}")
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "BUNDLED SAMPLE" in out.out + out.err
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["num_samples"] == 6 and list(m["metrics"])[:len(NOCS_KEYS)] == list(NOCS_KEYS)
    assert_golden(m["metrics"], f"{dataset}/sample")
    assert m["metrics"]["IoU50_ci_low"] <= m["metrics"]["IoU50"] <= m["metrics"]["IoU50_ci_high"]
    csv = (tmp_path / "lb" / "category6d" / f"{dataset}.csv").read_text().splitlines()
    assert csv[0].startswith("method,variant,IoU25,IoU50") and csv[1].startswith("box-prior,,")


@pytest.mark.slow
def test_cli_two_processes_give_identical_metrics_and_csv_bytes(tmp_path, capsys, monkeypatch):
    """devices=1 in this process, devices=2 (two DDP processes on gloo, one image per batch) through the CLI."""
    monkeypatch.delenv("POSEARENA_DATA", raising=False)
    preds = SAMPLES / "real275" / "box_prior.json"
    args = ("method=box-prior", "dataset=real275", f"predictions={preds}")
    assert _main(*args, "batch_size=4", f"out={tmp_path / 'out1'}", f"leaderboard_dir={tmp_path / 'lb1'}") == 0
    r = run_cli("evaluate", *args, "devices=2", "batch_size=1", "progress=false", f"out={tmp_path / 'out2'}",
                f"leaderboard_dir={tmp_path / 'lb2'}", env={"POSEARENA_DATA": ""})
    assert r.returncode == 0, r.stderr[-3000:]
    outs = {}
    for d in (1, 2):
        m = json.loads((tmp_path / f"out{d}" / "metrics.json").read_text())
        assert m["provenance"]["world_size"] == d
        outs[d] = (m["metrics"], (tmp_path / f"lb{d}" / "category6d" / "real275.csv").read_bytes())
    assert outs[1] == outs[2]


def test_cli_bad_predictions_one_line_exit_2_nothing_written(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("POSEARENA_DATA", raising=False)
    recs = json.loads((SAMPLES / "real275" / "box_prior.json").read_text())
    recs[2]["pred_RTs"][1][3] = [0.0, 0.0, 0.1, 1.0]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(recs))
    code = _main("method=mine", "dataset=real275", f"predictions={bad}", f"out={tmp_path / 'out'}",
                 f"leaderboard_dir={tmp_path / 'lb'}")
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert str(bad) in lines[0] and "index 2" in lines[0] and "pred_RTs" in lines[0] and "0 0 0 1" in lines[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "lb").exists()


# ------------------------------------------------------------------------------------------------ the reader
@pytest.fixture(scope="module")
def real275() -> NocsDataset:
    return DATASETS["real275"]({"name": "real275", "data_root": str(SAMPLES / "real275")})


def _sample_records() -> list[dict]:
    return json.loads((SAMPLES / "real275" / "box_prior.json").read_text())


def _outputs(preds) -> dict:
    return {sid: {k: v.tolist() for k, v in p.output.items()} for sid, p in preds.items()}


def test_reader_sample_ids_options_and_variant():
    ds = DATASETS["real275"]({"name": "real275", "data_root": str(SAMPLES / "real275"), "real_iou": False,
                              "use_matches_for_pose": False})
    assert [s.sample_id for s in ds] == [10000, 10001, 10002, 20000, 20001, 20002]
    assert ds[3].inputs["image"] == "scene_2/0000" and ds.family == "category6d"
    assert ds.variant == "nocs-iou-pose-all-preds"
    m = ds.build_metric()
    assert not m.real_iou and not m.use_matches_for_pose
    cam = DATASETS["camera25"]({"name": "camera25", "data_root": str(SAMPLES / "camera25")})
    assert DATASETS["camera25"] is DATASETS["real275"]  # one builder (tests/test_intervals.py's SHARED_BUILDER)
    assert [s.sample_id for s in cam][:2] == [0, 1] and cam[3].inputs["image"] == "00001/0000"


def test_all_prediction_forms_read_the_same(tmp_path, real275):
    recs = _sample_records()
    ref = _outputs(real275.read_predictions(SAMPLES / "real275" / "box_prior.json"))
    as_np = {r["image"]: {k: np.array(r[k]) for k in ("pred_class_ids", "pred_RTs", "pred_scales", "pred_scores")}
             for r in recs}
    # GIVEPose's pred_result.pkl: a list of per-image dicts named by image_path, gt_* fields ignored
    pkl = tmp_path / "pred_result.pkl"
    pkl.write_bytes(pickle.dumps([{"image_path": f"data/real/test/{im}", "gt_RTs": np.eye(4)[None], **a}
                                  for im, a in as_np.items()]))
    # a folder of per-image results files (NOCS / SPD)
    folder = tmp_path / "results"
    folder.mkdir()
    for im, a in as_np.items():
        scene, i = im.split("/")
        (folder / f"results_test_{scene}_{i}.pkl").write_bytes(pickle.dumps(a))
    npz = tmp_path / "preds.npz"
    np.savez(npz, **{f"{im}/{k}": v for im, a in as_np.items() for k, v in a.items()})
    for path in (pkl, folder, npz):
        assert _outputs(real275.read_predictions(path)) == ref, path


def test_cli_scores_a_folder_of_result_files(tmp_path, capsys, monkeypatch):
    """``predictions=DIR`` (NOCS's per-image ``results_*.pkl``) scores as the JSON form; the provenance hashes
    the folder's files."""
    monkeypatch.delenv("POSEARENA_DATA", raising=False)
    folder = tmp_path / "results"
    folder.mkdir()
    for r in _sample_records():
        scene, i = r["image"].split("/")
        arrays = {k: np.array(r[k]) for k in ("pred_class_ids", "pred_RTs", "pred_scales", "pred_scores")}
        (folder / f"results_test_{scene}_{i}.pkl").write_bytes(pickle.dumps(arrays))
    runs = {}
    for tag, preds in (("dir", folder), ("json", SAMPLES / "real275" / "box_prior.json")):
        code = _main("method=box-prior", "dataset=real275", f"predictions={preds}", "bootstrap.samples=0",
                     f"out={tmp_path / tag}", f"leaderboard_dir={tmp_path / f'lb{tag}'}")
        assert code == 0, capsys.readouterr().err
        runs[tag] = json.loads((tmp_path / tag / "metrics.json").read_text())
    assert runs["dir"]["metrics"] == runs["json"]["metrics"]
    digest = runs["dir"]["provenance"]["predictions"]
    assert len(digest) == 64 and digest != runs["json"]["provenance"]["predictions"]


def test_missing_image_is_an_image_without_detections(tmp_path, real275):
    recs = _sample_records()[1:]
    p = tmp_path / "some.json"
    p.write_text(json.dumps(recs))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        preds = real275.read_predictions(p)
    assert "1 of 6 images have no prediction record" in str(w[0].message)
    assert 10000 not in preds
    empty = real275.empty_prediction(real275[0]).output
    assert empty["pred_RT"].shape == (0, 4, 4) and empty["pred_class"].numel() == 0


BAD = {
    "missing_field": (lambda r: r[0].pop("pred_scales"), "index 0", "pred_scales", "missing"),
    "wrong_shape": (lambda r: r[1].__setitem__("pred_RTs", [[1.0, 0.0, 0.0]]), "index 1", "pred_RTs", "shape"),
    "count_mismatch": (lambda r: r[0]["pred_scores"].append(0.5), "index 0", "pred_scores", "entries"),
    "class_id": (lambda r: r[0]["pred_class_ids"].__setitem__(0, 7), "index 0", "pred_class_ids", "1..6"),
    "unknown_image": (lambda r: r[0].__setitem__("image", "scene_9/0000"), "image scene_9/0000", None, "not an image"),
    "twice": (lambda r: r[1].__setitem__("image", r[0]["image"]), "index 1", None, "twice"),
    "nan": (lambda r: r[0]["pred_scales"][0].__setitem__(0, float("nan")), "index 0", "pred_scales", "finite"),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_prediction_records_name_file_record_and_field(tmp_path, real275, kind):
    change, record, field, problem = BAD[kind]
    recs = _sample_records()
    change(recs)
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(recs))
    with pytest.raises(InputError) as e:
        real275.read_predictions(p)
    line = e.value.line()
    assert str(p) in line and record in line and problem in line and "\n" not in line
    assert field is None or f"field '{field}'" in line


class Boom:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickles_go_through_the_restricted_unpickler(tmp_path, real275):
    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps([{"image_path": "x/scene_1/0000", "pred_class_ids": Boom()}]))
    with pytest.raises(InputError, match="refused to unpickle builtins.print"):
        real275.read_predictions(p)


def test_bad_gt_file_is_one_line(tmp_path):
    src = SAMPLES / "real275" / "REAL275" / "results_test_scene_1_0000.pkl"
    gt = read_gt_file(src)
    gt["gt_RTs"][0, 3, 3] = 2.0
    (tmp_path / "REAL275").mkdir()
    bad = tmp_path / "REAL275" / "results_test_scene_1_0000.pkl"
    bad.write_bytes(pickle.dumps(gt))
    with pytest.raises(InputError) as e:
        DATASETS["real275"]({"name": "real275", "data_root": str(tmp_path)})
    assert str(bad) in e.value.line() and "field 'gt_RTs'" in e.value.line() and "0 0 0 1" in e.value.line()
    with pytest.raises(InputError, match="needs REAL275"):
        DATASETS["real275"]({"name": "real275", "data_root": str(tmp_path / "nowhere")})


def test_golden_values_are_finite():
    assert all(math.isfinite(v) for case in GOLDEN.values() for v in case.values())
