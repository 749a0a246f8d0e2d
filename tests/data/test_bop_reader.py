"""BOP dataset reader (bench/data/bop.py) on the golden cases and the bundled sample.

The golden cases (tests/data/bop_golden/case{1,2}, copied by the metrics engineer from shared/data/bop-golden)
were scored by the official toolkit (thodan/bop_toolkit @ cea62d651c7e395b2e1962b9749e4e89693c6ac4,
``scripts/eval_bop19_pose.py``); their ``reference.json`` holds what the toolkit counted (targets, target
instances, CSV rows), its ``average_time_per_image`` and its per-estimate error records, each naming
(scene, im, obj, est_id, gt_id, score, gt_visib_fract, csv_line). The reader must present exactly those
images, GT instances (in scene_gt order: the toolkit's gt_id), visibilities and estimates (est_id = position
among the rows of that (scene, im, obj) in file order).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from bench.data.bop import BOP_PARAMS, BopDataset, build
from bench.errors import InputError
from bench.formats.ply import read_ply
from bench.registry import DATASETS

GOLDEN = Path(__file__).resolve().parent / "bop_golden"
CASES = ["case1", "case2"]


def dataset(root: Path | None, name: str = "ycbv") -> BopDataset:
    return build(OmegaConf.create({"name": name, "data_root": None if root is None else str(root)}))


@pytest.fixture(scope="module", params=CASES)
def case(request):
    root = GOLDEN / request.param
    return dataset(root / "datasets" / "ycbv"), json.loads((root / "reference.json").read_text()), root


def test_registered_names_and_official_parameters():
    for name in ("ycbv", "lmo", "tless", "tudl", "icbin", "itodd", "hb"):
        assert name in DATASETS
    # bop_toolkit dataset_params.py (im_size, test split type) and eval_bop19_pose.py (vsd_deltas)
    assert (BOP_PARAMS["ycbv"].width, BOP_PARAMS["ycbv"].height) == (640, 480)
    assert (BOP_PARAMS["tless"].width, BOP_PARAMS["tless"].height, BOP_PARAMS["tless"].test_split) == (
        720,
        540,
        "test_primesense",
    )
    assert BOP_PARAMS["hb"].test_split == "test_primesense"
    assert (BOP_PARAMS["itodd"].width, BOP_PARAMS["itodd"].height, BOP_PARAMS["itodd"].vsd_delta) == (
        1280,
        960,
        5.0,
    )
    assert BOP_PARAMS["itodd"].depth_exts[0] == ".tif"
    assert all(BOP_PARAMS[n].vsd_delta == 15.0 for n in ("ycbv", "lmo", "tless", "tudl", "icbin", "hb"))
    assert BOP_PARAMS["lmo"].obj_ids == (1, 5, 6, 8, 9, 10, 11, 12)


def test_golden_samples_match_the_toolkit_counts(case):
    ds, ref, root = case
    targets = json.loads((root / "datasets" / "ycbv" / "test_targets_bop19.json").read_text())
    images = sorted({(t["scene_id"], t["im_id"]) for t in targets})
    assert ds.sample_ids == [s * 1_000_000 + i for s, i in images]
    ann = [ds.annotations(i) for i in range(len(ds))]
    assert [int(a["sample_id"]) for a in ann] == ds.sample_ids
    assert sum(int(a["target_obj_id"].numel()) for a in ann) == ref["counts"]["targets"]
    assert sum(int(a["target_inst_count"].sum()) for a in ann) == ref["counts"]["target_instances"]
    assert ds.family == "object6d" and ds.metric_keys == ("AR", "AR_VSD", "AR_MSSD", "AR_MSPD")


def test_golden_target_tensors(case):
    ds, _, root = case
    base = root / "datasets" / "ycbv" / "test"
    for i in range(len(ds)):
        s = ds[i]
        t = s.target
        assert set(t) == {
            "sample_id",
            "scene_id",
            "im_id",
            "K",
            "depth",
            "gt_obj_id",
            "gt_R",
            "gt_t",
            "gt_visib_fract",
            "target_obj_id",
            "target_inst_count",
        }
        scene, im = int(t["scene_id"]), int(t["im_id"])
        assert int(t["sample_id"]) == scene * 1_000_000 + im == s.sample_id
        sdir = base / f"{scene:06d}"
        gt = json.loads((sdir / "scene_gt.json").read_text())[str(im)]
        info = json.loads((sdir / "scene_gt_info.json").read_text())[str(im)]
        cam = json.loads((sdir / "scene_camera.json").read_text())[str(im)]
        assert t["gt_obj_id"].tolist() == [g["obj_id"] for g in gt]
        assert t["gt_R"].dtype == torch.float64 and t["gt_R"].reshape(-1, 9).tolist() == [
            g["cam_R_m2c"] for g in gt
        ]
        assert t["gt_t"].tolist() == [g["cam_t_m2c"] for g in gt]
        assert t["gt_visib_fract"].tolist() == [g["visib_fract"] for g in info]
        assert t["K"].dtype == torch.float64 and t["K"].reshape(-1).tolist() == cam["cam_K"]
        # the toolkit: inout.load_depth (imageio -> float32) then *= depth_scale, in float32
        png = np.asarray(Image.open(sdir / "depth" / f"{im:06d}.png"))
        assert png.dtype == np.uint16
        expect = png.astype(np.float32)
        expect *= cam["depth_scale"]
        assert t["depth"].dtype == torch.float32 and t["depth"].shape == (480, 640)
        assert np.array_equal(t["depth"].numpy(), expect)
        assert s.inputs["depth_path"].endswith(f"{scene:06d}/depth/{im:06d}.png")
        assert torch.equal(s.inputs["K"], t["K"])


def test_golden_visibilities_and_estimate_numbering_match_the_toolkit_records(case):
    """Every per-estimate record of the toolkit: its gt_visib_fract at gt_id and its estimate at est_id."""
    ds, ref, root = case
    by_id = {sid: ds.annotations(i) for i, sid in enumerate(ds.sample_ids)}
    preds = ds.read_predictions(next((root / "results").glob("*.csv")))
    records = ref["per_estimate_errors"]["mssd"]
    assert records
    for r in records:
        sid = r["scene_id"] * 1_000_000 + r["im_id"]
        t = by_id[sid]
        assert int(t["gt_obj_id"][r["gt_id"]]) == r["obj_id"]
        assert float(t["gt_visib_fract"][r["gt_id"]]) == r["gt_visib_fract"]
        out = preds[sid].output
        rows = torch.nonzero(out["obj_id"] == r["obj_id"]).squeeze(1)
        assert float(out["score"][rows[r["est_id"]]]) == r["score"]
    # the toolkit's average over images of the per-image time (every image of the CSV is a target image here)
    times = [float(p.output["time"]) for p in preds.values()]
    assert np.mean(times) == pytest.approx(ref["average_time_per_image"], rel=1e-12)
    assert sum(int(p.output["obj_id"].numel()) for p in preds.values()) == ref["counts"]["csv_rows"]


def test_golden_models(case):
    ds, _, root = case
    info = json.loads((root / "datasets" / "ycbv" / "models_eval" / "models_info.json").read_text())
    models = ds.models
    assert sorted(models) == sorted(
        {int(o) for i in range(len(ds)) for o in ds.annotations(i)["target_obj_id"]}
    )
    for o, m in models.items():
        assert m.diameter == info[str(o)]["diameter"]
        assert m.symmetries_discrete == info[str(o)].get("symmetries_discrete", [])
        assert m.symmetries_continuous == info[str(o)].get("symmetries_continuous", [])
        assert m.vertices.dtype == torch.float64 and m.faces.dtype == torch.int64 and m.faces.shape[1] == 3
        # the PLY header's counts
        head = (
            (root / "datasets" / "ycbv" / "models_eval" / f"obj_{o:06d}.ply")
            .read_text()
            .split("end_header")[0]
        )
        nv = int(head.split("element vertex ")[1].split()[0])
        nf = int(head.split("element face ")[1].split()[0])
        assert m.vertices.shape == (nv, 3) and m.faces.shape == (nf, 3)


def test_predictions_for_non_target_images_are_ignored(tmp_path):
    ds = dataset(GOLDEN / "case1" / "datasets" / "ycbv")
    csv = tmp_path / "x_ycbv-test.csv"
    r = "1 0 0 0 1 0 0 0 1"
    csv.write_text(
        f"scene_id,im_id,obj_id,score,R,t,time\n48,1,1,0.5,{r},0 0 800,1.0\n48,7,1,0.5,{r},0 0 800,1.0\n"
    )
    with pytest.warns(UserWarning, match="not ycbv test targets are ignored"):
        preds = ds.read_predictions(csv)
    assert list(preds) == [48_000_001]
    empty = ds.empty_prediction(ds[1]).output
    assert (
        empty["obj_id"].shape == (0,)
        and empty["R"].shape == (0, 3, 3)
        and empty["score"].dtype == torch.float64
    )


def test_bundled_sample_is_used_without_data_root(monkeypatch):
    monkeypatch.delenv("POSEARENA_DATA", raising=False)
    ds = dataset(None)
    assert ds.bundled and ds.root.name == "ycbv" and len(ds) == 9
    scenes = {int(ds.annotations(i)["scene_id"]) for i in range(len(ds))}
    assert scenes <= set(range(48, 60))
    s = ds[0]
    assert s.target["depth"].shape == (480, 640) and (s.target["depth"] == 0).any()
    assert len(ds.fingerprint()) == 16
    # both PLY encodings occur in the sample: the reader must agree with the header counts for each
    kinds = {(ds.root / "models_eval" / f"obj_{o:06d}.ply").read_bytes().split(b"\n")[1] for o in (1, 2)}
    assert kinds == {b"format ascii 1.0", b"format binary_little_endian 1.0"}
    for o in ds.models:
        assert ds.models[o].vertices.shape[0] > 50


def test_detections_option_hands_each_image_its_detections(tmp_path, monkeypatch):
    """``dataset.detections=FILE``: the upstream detections reach the method through ``Sample.inputs`` (the
    method reads no file); an image the file says nothing about gets an empty list, and without the option
    the samples carry no detections at all."""
    monkeypatch.delenv("POSEARENA_DATA", raising=False)
    plain = dataset(None)
    first, second = (int(plain.annotations(i)["sample_id"]) for i in (0, 1))
    scene, im = divmod(first, 1_000_000)
    dets = tmp_path / "yolox.json"
    dets.write_text(json.dumps({f"{scene}/{im}": [{"obj_id": 2, "bbox_est": [10, 20, 30, 40], "score": 0.9},
                                                  {"obj_id": 5, "bbox_est": [1, 2, 3, 4], "score": 0.4}]}))
    ds = build(OmegaConf.create({"name": "ycbv", "data_root": None, "detections": str(dets)}))
    got = ds[0].inputs["detections"]
    assert [(d.obj_id, d.bbox_xywh, d.score) for d in got] == [(2, (10.0, 20.0, 30.0, 40.0), 0.9),
                                                                 (5, (1.0, 2.0, 3.0, 4.0), 0.4)]
    assert int(ds[1].target["sample_id"]) == second and ds[1].inputs["detections"] == []
    assert "detections" not in plain[0].inputs


def test_binary_and_ascii_ply_agree(tmp_path):
    from plyfile import PlyData, PlyElement

    v = np.array([(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1)], dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    f = np.array(
        [([0, 1, 2],), ([0, 1, 3],), ([0, 2, 3],), ([1, 2, 3],)], dtype=[("vertex_indices", "i4", (3,))]
    )
    for text in (True, False):
        p = tmp_path / f"m_{text}.ply"
        PlyData([PlyElement.describe(v, "vertex"), PlyElement.describe(f, "face")], text=text).write(str(p))
        verts, faces = read_ply(p)
        assert verts.tolist() == [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]
        assert faces.tolist() == [[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]]


def copy_case(tmp_path: Path) -> Path:
    import shutil

    dst = tmp_path / "ycbv"
    shutil.copytree(GOLDEN / "case1" / "datasets" / "ycbv", dst)
    return dst


def test_malformed_files_give_one_line_errors(tmp_path):
    root = copy_case(tmp_path)
    gt_path = root / "test" / "000048" / "scene_gt.json"
    gt = json.loads(gt_path.read_text())
    gt["2"][1]["cam_R_m2c"] = gt["2"][1]["cam_R_m2c"][:8]
    gt_path.write_text(json.dumps(gt))
    with pytest.raises(InputError) as e:
        dataset(root)
    assert (
        e.value.record == "key '2' index 1" and e.value.field == "cam_R_m2c" and str(gt_path) in str(e.value)
    )

    root = copy_case(tmp_path / "b")
    tp = root / "test_targets_bop19.json"
    targets = json.loads(tp.read_text())
    del targets[3]["inst_count"]
    tp.write_text(json.dumps(targets))
    with pytest.raises(InputError) as e:
        dataset(root)
    assert (e.value.record, e.value.field) == ("index 3", "inst_count")

    root = copy_case(tmp_path / "c")
    (root / "test" / "000049" / "scene_camera.json").write_text('{"1": {"cam_K": [1, 2]')
    with pytest.raises(InputError, match="not valid JSON"):
        dataset(root)

    root = copy_case(tmp_path / "d")
    info_path = root / "models_eval" / "models_info.json"
    info = json.loads(info_path.read_text())
    info["3"]["diameter"] = -1
    info_path.write_text(json.dumps(info))
    with pytest.raises(InputError) as e:
        _ = dataset(root).models
    assert (e.value.record, e.value.field) == ("key '3'", "diameter")

    root = copy_case(tmp_path / "e")
    (root / "test" / "000048" / "depth" / "000002.png").unlink()
    with pytest.raises(InputError, match="depth image 000002.png not found"):
        dataset(root)

    root = copy_case(tmp_path / "f")
    Image.fromarray(np.zeros((10, 10), np.uint16)).save(root / "test" / "000048" / "depth" / "000001.png")
    ds = dataset(root)
    with pytest.raises(InputError, match="640x480"):
        ds[0]

    with pytest.raises(InputError, match="needs test_targets_bop19.json"):
        dataset(tmp_path / "nowhere")
