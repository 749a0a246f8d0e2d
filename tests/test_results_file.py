"""The official results file of a model run (bench/results_file.py): what the BOP and COCO readers read back."""
from __future__ import annotations

import json

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


# ---------------------------------------------------------------- COCO keypoint results JSON

def _kp_pred(image_id: int, n: int, seed: int) -> Prediction:
    g = torch.Generator().manual_seed(seed)
    kp = torch.rand(n, 17, 3, generator=g, dtype=torch.float64) * torch.tensor([640.0, 480.0, 1.0])
    kp[:, :, :2] = kp[:, :, :2].to(torch.float32).to(torch.float64)  # float32 values, as the networks give
    return Prediction(image_id, {"image_id": torch.tensor(image_id), "keypoints": kp,
                                 "scores": torch.rand(n, generator=g, dtype=torch.float64)})


def test_coco_keypoint_results_read_back_bit_for_bit_and_load_in_pycocotools(tmp_path):
    """The bundled COCO sample's images in any order, one repeated (sampler padding), one without detections:
    the JSON holds each detection once, images ascending, the method's order inside an image; our reader gives
    the same floats back, and pycocotools' loadRes takes the file as it is."""
    import contextlib
    import io

    from omegaconf import OmegaConf
    from pycocotools.coco import COCO

    from bench.data.coco import build_coco
    from bench.results_file import CocoKeypointResultsRecorder, coco_results_name

    ds = build_coco(OmegaConf.create({"name": "coco", "data_root": None, "person_boxes": None, "sigmas": None}))
    name, rec = ds.results_recorder("my_net")
    assert name == coco_results_name("person_keypoints_val2017.json", "my_net") == \
        "person_keypoints_val2017_my-net_results.json"
    assert isinstance(rec, CocoKeypointResultsRecorder)
    ids = ds.image_ids
    a, b, empty = _kp_pred(ids[2], 3, 0), _kp_pred(ids[0], 1, 1), _kp_pred(ids[1], 0, 2)
    rec.update([a, empty])
    rec.update([b, a])
    path = tmp_path / name
    path.write_bytes(rec.compute())
    records = json.loads(path.read_text())
    assert [r["image_id"] for r in records] == [ids[0], ids[2], ids[2], ids[2]]
    assert {r["category_id"] for r in records} == {1}
    back = ds.read_predictions(path)
    assert sorted(back) == sorted([a.sample_id, b.sample_id])
    for p in (a, b):
        for k in ("keypoints", "scores"):
            assert torch.equal(back[p.sample_id].output[k], p.output[k]), k
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(ds.ann_path))
        res = coco.loadRes(str(path))
    assert len(res.anns) == 4


def test_coco_nothing_recorded_is_an_empty_list():
    from bench.results_file import CocoKeypointResultsRecorder

    assert CocoKeypointResultsRecorder(1, 17).compute() == b"[]\n"


def test_wholebody_results_read_back_and_score_as_the_run(tmp_path):
    """COCO-WholeBody: the record layout of mmpose's results2json (five part arrays, part scores only where they
    are not ``score``) reads back to the same keypoints and scores, and WholeBodyAP scores the read-back file
    exactly as the run's own predictions (whose area is the body extent, as ``loadRes`` sets it)."""
    from omegaconf import OmegaConf

    from bench.data.coco_wholebody import build_coco_wholebody
    from methods.human2d.dwpose import body_extent

    ds = build_coco_wholebody(OmegaConf.create({}))
    name, rec = ds.results_recorder("dw_pose")
    assert name == "coco_wholebody_val_v1.0_dw-pose_results.json"
    preds = []
    for n, s in enumerate(ds[i] for i in range(len(ds))):
        t = s.target
        g = torch.Generator().manual_seed(n)
        kp = t["keypoints"][: 1 + n % 2].clone()
        kp[..., :2] += torch.randn(kp.shape[:-1] + (2,), generator=g, dtype=torch.float64)
        kp[..., 2] = torch.rand(kp.shape[:-1], generator=g, dtype=torch.float64)
        sc = torch.rand(kp.shape[0], generator=g, dtype=torch.float64)
        parts = sc[:, None].expand(-1, 6).clone()
        if n == 1:
            parts[:, 2] = 0.25  # one part scored on its own: written as face_score
        preds.append(Prediction(s.sample_id, {"image_id": t["image_id"], "keypoints": kp, "scores": sc,
                                              "part_scores": parts, "area": body_extent(kp)}))
    rec.update(preds[::-1])
    path = tmp_path / name
    path.write_bytes(rec.compute())
    records = json.loads(path.read_text())
    assert [sorted(r) for r in records[:1]] == [sorted(["image_id", "category_id", "keypoints", "foot_kpts",
                                                        "face_kpts", "lefthand_kpts", "righthand_kpts", "score"])]
    assert sum("face_score" in r for r in records) == preds[1].output["keypoints"].shape[0]
    back = ds.read_predictions(path)
    for p in preds:
        for k in ("keypoints", "scores", "part_scores", "area"):
            assert torch.equal(back[p.sample_id].output[k], p.output[k]), k
    run, reread = ds.build_metric(), ds.build_metric()
    run.update([p.output for p in preds], [ds[i].target for i in range(len(ds))])
    reread.update([back[p.sample_id].output for p in preds], [ds[i].target for i in range(len(ds))])
    assert {k: float(v) for k, v in run.compute().items()} == {k: float(v) for k, v in reread.compute().items()}
