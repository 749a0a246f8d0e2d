"""Bootstrap intervals follow each dataset's own rules: the replicate that draws every unit exactly once
(weights all 1) gives the headline value that the run reports (``compute()``).

Every dataset in ``bench.registry.DATASETS`` is covered: its own builder and config, its own results-file
reader and the harness's replay of the file (``PredictionsFile``), fed in shuffled batches with repeated
samples (as a DistributedSampler pads). Inputs are the bundled samples and golden cases other tests use, with
predictions that are neither perfect nor useless (each headline is checked to be strictly inside its range).
The datasets of one builder (the BOP ones) share a metric class; the case of one of them covers all.

CrowdPose replicates that resample images are also compared with xtcocotools itself (``XTC_REPLICATES``).

Tolerance: both sides sum up to ~1e4 float64 terms (AP: 10 x 101 precision values) in different orders
(e.g. the replicate sums left to right, ``compute`` pairwise like numpy); the textbook bound on that
difference is about ``n u`` relative (n terms, u = 2^-53), so ``1e-12 * |value|``. Measured: at most
1.2e-14 relative (CrowdPose AP 0.851, golden case sample_seed2); a replicate that follows another
protocol's rules is off by 0.03 to 0.57 here (the CrowdPose cases through the COCO evaluation, before the fix).

Provenance of ``XTC_REPLICATES``: AP (``stats[0]``) of xtcocotools 1.14.3 (the PyPI wheel, whose coco.py and
cocoeval.py are byte-identical to jin-s13/xtcocoapi @ 6edccc2e7d1de1dc1180167bbc2f136cd2bf0b2b, tag v1.14.3)
with numpy 1.26.4, ``COCOeval(gt, dt, 'keypoints_crowd', sigmas, use_area=False)`` on golden cases of
tests/data/crowdpose_golden re-evaluated on resampled images: image i drawn c times becomes c images
``i * 100 + k``, whose annotations keep the sign of their id (xtcocotools' "matched" test is ``id >= 0``;
fresh ids for k > 0) and whose detections follow in file order. Count rows (per ascending image id):
``np.random.default_rng(2024 + case index).multinomial(n, [1 / n] * n)``, 4 per case, repeats dropped.
Command (a scratch script, not in the repo, with the construction above)::

    python3.11 -m venv venv-xtc && venv-xtc/bin/pip install "numpy<2" xtcocotools==1.14.3
    venv-xtc/bin/python gen_replicates.py tests/data/crowdpose_golden/golden.json \
        bench/data/samples/crowdpose/annotations/crowdpose_test.json

Kept: 5 of the 12 golden cases where every row agrees with the weighted replicate (negative and zero ids,
crowd and ignored GT, detection areas from boxes). In the other 14 of the 26 cases some row differs (by up
to 0.042 AP): detections of equal score in one image are interleaved copy by copy when the
image is re-evaluated several times, but stay together in the weighted replicate (the tie rule named in
``metrics.keypoint_ap.image_ap_bootstrap``).
"""
from __future__ import annotations

import json
import math
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from bench.data.base import SAMPLES_DIR
from bench.data.crowdpose import ANN_FILE
from bench.registry import DATASETS, load_all
from bench.replay import PredictionsFile
from tests.conftest import COCO_GT, REPO, mp100_records, perturbed_results
from tests.data.ap10k_interval_cases import CASES as AP10K_CASES
from tests.data.keypoint_interval_cases import CASES as KEYPOINT_CASES

load_all()

CONF = REPO / "bench" / "conf" / "dataset"
CROWDPOSE_GOLDEN = json.loads((REPO / "tests" / "data" / "crowdpose_golden" / "golden.json").read_text())
REL_TOL = 1e-12
NO_BOOTSTRAP = {"3dpw": "MeshError's bootstrap_unit is None (no interval is reported for 3DPW)"}
SHARED_BUILDER = {**{n: "ycbv" for n in ("lmo", "tless", "tudl", "icbin", "itodd", "hb", "lm", "tyol", "ruapc", "icmi",
                                         "hbs", "hope", "hopev2", "handal", "ipd", "xyzibd", "itoddmv", "hot3d")},
                  "camera25": "real275"}


def _cfg(name: str, **over):
    c = OmegaConf.load(CONF / f"{name}.yaml")
    for k, v in over.items():
        c[k] = v
    return c


# ------------------------------------------------------------------ one case per dataset: (dataset, results file)


def _coco(tmp: Path):
    gt = json.loads(COCO_GT.read_text())
    res = tmp / "results.json"
    res.write_text(json.dumps(perturbed_results(gt, seed=3)))
    return DATASETS["coco"](_cfg("coco", data_root=str(SAMPLES_DIR / "coco"))), res


def _crowdpose_case(case: dict):
    def make(tmp: Path):
        (tmp / "annotations").mkdir()
        if case["gt"] == "sample":
            shutil.copy(SAMPLES_DIR / "crowdpose" / ANN_FILE, tmp / ANN_FILE)
        else:
            (tmp / ANN_FILE).write_text(json.dumps(case["gt"]))
        res = tmp / "results.json"
        res.write_text(json.dumps(case["dets"]))
        return DATASETS["crowdpose"](_cfg("crowdpose", data_root=str(tmp), sigmas=case.get("sigmas"))), res
    return make


def _mpii(tmp: Path):
    from bench.data.mpii import GT_FILE

    gold = REPO / "tests" / "data" / "mpii_golden"
    (tmp / "annotations").mkdir()
    shutil.copy(gold / "mpii_gt_val.mat", tmp / GT_FILE)
    case = next(c for c in json.loads((gold / "golden.json").read_text())["cases"] if c["name"] == "noise0.3_seed2")
    res = tmp / "pred.json"
    res.write_text(json.dumps(case["predictions"]))
    return DATASETS["mpii"](_cfg("mpii", data_root=str(tmp))), res


def _h36m(aggregation: str):
    def make(tmp: Path):
        ds = DATASETS["h36m"](_cfg("h36m", data_root=str(SAMPLES_DIR / "h36m"), aggregation=aggregation))
        return ds, REPO / "tests" / "data" / "h36m_golden" / "predictions_seed7.npz"
    return make


def _mpi_inf_3dhp(tmp: Path):
    ds = DATASETS["mpi_inf_3dhp"](_cfg("mpi_inf_3dhp", data_root=str(SAMPLES_DIR / "mpi_inf_3dhp")))
    rng = np.random.default_rng(12)
    arrays = {}
    for i, seq in enumerate(ds.sequences):
        gt = ds[i].target["joints_mm"].numpy()
        arrays[seq] = (gt + rng.normal(0, 90, gt.shape)) / 1000  # metres; many joints past 150 mm, many not
    res = tmp / "preds.npz"
    np.savez(res, **arrays)
    return ds, res


def _mp100(tmp: Path):
    data = json.loads((SAMPLES_DIR / "mp100" / "annotations" / "mp100_split1_test.json").read_text())
    cats = {c["id"] for c in data["categories"][:2]}
    data["categories"] = data["categories"][:2]
    data["annotations"] = [a for a in data["annotations"] if a["category_id"] in cats]
    keep = {a["image_id"] for a in data["annotations"]}
    data["images"] = [i for i in data["images"] if i["id"] in keep]
    (tmp / "annotations").mkdir()
    (tmp / "annotations" / "mp100_split1_test.json").write_text(json.dumps(data))
    ds = DATASETS["mp100"](_cfg("mp100", data_root=str(tmp)))
    recs = mp100_records(ds, sigma=12, seed=4)
    res = tmp / "preds.json"
    res.write_text(json.dumps(recs))
    return ds, res


def _ycbv(tmp: Path):
    case = REPO / "tests" / "data" / "bop_golden" / "case2"
    ds = DATASETS["ycbv"](_cfg("ycbv", data_root=str(case / "datasets" / "ycbv")))
    return ds, case / "results" / "goldcase2_ycbv-test.csv"


def _3dpw(tmp: Path):
    from bench.data.synthetic_3dpw import write_smpl_predictions, write_synthetic_3dpw
    from tests.smpl_synthetic import write_smpl_dir

    smpl = write_smpl_dir(tmp / "models")
    root = write_synthetic_3dpw(tmp / "3dpw")
    ds = DATASETS["3dpw"](_cfg("3dpw", data_root=str(root), smpl_dir=str(smpl)))
    return ds, write_smpl_predictions(root, smpl, tmp / "neutral.npz")


def _emdb(subset: str):
    """The bundled synthetic EMDB sample with a golden case's predictions (tests/data/emdb_reader_golden)."""
    def make(tmp: Path):
        from tests.data.emdb_reader_golden.inputs import predictions
        from tests.smpl_synthetic import write_smpl_dir

        res = tmp / "pred.npz"
        np.savez(res, **predictions("rotmat_good_frames"))
        return DATASETS["emdb"](_cfg("emdb", subset=subset, smpl_dir=str(write_smpl_dir(tmp / "models")))), res
    return make


def _rich(tmp: Path):
    """The bundled synthetic RICH label file with a golden case's predictions (tests/data/rich_golden)."""
    from tests.data.rich_golden.inputs import predictions
    from tests.smpl_synthetic import write_smpl_dir
    from tests.smplx_synthetic import write_smplx_dir

    res = tmp / "pred.npz"
    np.savez(res, **predictions("rotmat_scored_frames"))
    models = write_smplx_dir(write_smpl_dir(tmp / "models", ("neutral",)), ("male", "female"))
    return DATASETS["rich"](_cfg("rich", smpl_dir=str(models))), res


def _headpose(case_name: str):
    """A 6DRepNet golden case (tests/data/headpose_golden) in its official layout."""
    def make(tmp: Path):
        from tests.data.test_headpose import CASES as HP
        from tests.data.test_headpose import case_dataset

        case = HP[case_name]
        ds = case_dataset(case, tmp)
        res = tmp / "pred.json"
        res.write_text(json.dumps(case["predictions"]))
        return ds, res
    return make


def _landmarks(name: str):
    """The last mmpose golden case of a face or hand dataset (tests/data/landmarks_golden: the noisiest)."""
    def make(tmp: Path):
        from bench.data.landmarks import SPECS, LandmarkDataset
        from tests.data.test_landmarks import GOLDEN as LM
        from tests.data.test_landmarks import _root

        res = tmp / "pred.json"
        res.write_text(json.dumps(LM["datasets"][name]["cases"][-1]["predictions"]))
        return LandmarkDataset(SPECS[name], _root(tmp, name)), res
    return make


def _real275(tmp: Path):
    """The bundled synthetic REAL275 sample with its weight-free box-prior predictions."""
    return DATASETS["real275"](_cfg("real275")), SAMPLES_DIR / "real275" / "box_prior.json"


_NONTRIVIAL_CROWDPOSE = ("sample_seed2", "sample_ids_negative_zero_seed7", "random_seed0", "random_seed13",
                         "random_seed19")
CASES: dict[str, tuple[str, Callable[[Path], tuple]]] = {
    "coco": ("coco", _coco),
    **{f"crowdpose-{c['name']}": ("crowdpose", _crowdpose_case(c))
       for c in CROWDPOSE_GOLDEN["cases"] if c["name"] in _NONTRIVIAL_CROWDPOSE},
    "mpii": ("mpii", _mpii),
    "h36m-action": ("h36m", _h36m("action")),
    "h36m-frame": ("h36m", _h36m("frame")),
    "mpi_inf_3dhp": ("mpi_inf_3dhp", _mpi_inf_3dhp),
    "mp100": ("mp100", _mp100),
    "ycbv": ("ycbv", _ycbv),
    "3dpw": ("3dpw", _3dpw),
    "emdb-emdb1": ("emdb", _emdb("emdb1")),
    "emdb-emdb2": ("emdb", _emdb("emdb2")),
    "rich": ("rich", _rich),
    "real275": ("real275", _real275),
    "co3d": ("co3d", lambda tmp: (DATASETS["co3d"](_cfg("co3d")),  # bundled sample, official golden predictions
                                  REPO / "tests" / "data" / "co3d_golden" / "n10_noisy_predictions.json")),
    **KEYPOINT_CASES,  # coco_wholebody halpe keypoints: tests/data/keypoint_interval_cases.py
    **AP10K_CASES,  # ap10k (several species): tests/data/ap10k_interval_cases.py
    "aflw2000": ("aflw2000", _headpose("aflw2000_rotations")),
    "biwi": ("biwi", _headpose("biwi_rotations")),
    **{name: (name, _landmarks(name)) for name in ("300w", "wflw", "cofw", "aflw", "onehand10k", "rhd")},
}


# xtcocotools' AP on resampled images (see the module doc): case -> [(draws per ascending image id, AP)]
XTC_REPLICATES = {
    "sample_ids_negative_zero_seed7": [([2, 0], 0.6666666666666666), ([0, 2], 0.0), ([1, 1], 0.22772277227722773)],
    "random_seed0": [([1, 2, 1, 0], 0.25584158415841585), ([1, 0, 1, 2], 0.18015001500150016),
                     ([0, 0, 3, 1], 0.15148514851485145)],
    "random_seed3": [([0, 2, 1, 1], 0.003543512245961438), ([1, 2, 0, 1], 0.020198019801980195),
                     ([3, 0, 0, 1], 0.05016501650165017), ([0, 3, 0, 1], 0.0)],
    "random_seed7": [([2, 0, 1], 0.11435643564356435), ([1, 0, 2], 0.27772277227722775), ([1, 1, 1], 0.4613861386138614)],
    "random_seed14": [([1, 2, 0, 1, 2, 0], 0.2614144271570014), ([1, 1, 0, 2, 1, 1], 0.3308030803080308),
                      ([1, 0, 1, 0, 4, 0], 0.0), ([1, 1, 0, 1, 0, 3], 0.36806930693069306)],
}


def _scored_metric(ds, results: Path):
    """The dataset's metric after the harness's replay of ``results``: shuffled batches of 3, 2 repeats."""
    method = PredictionsFile(ds.read_predictions(results), ds)
    m = ds.build_metric()
    order = list(range(len(ds)))
    random.Random(0).shuffle(order)
    order += order[:2]
    for s in range(0, len(order), 3):
        batch = [ds[i] for i in order[s:s + 3]]
        m.update([p.output for p in method.predict_step(batch)], [x.target for x in batch])
    return m


# ------------------------------------------------------------------ the tests


def test_every_registered_dataset_has_a_case():
    covered = {name for name, _ in CASES.values()}
    for name, builder in DATASETS.items():
        if name in SHARED_BUILDER:
            assert builder is DATASETS[SHARED_BUILDER[name]], name  # same builder, same metric class
        else:
            assert name in covered, f"{name}: add a case to tests/test_intervals.py"


@pytest.mark.parametrize("case", list(CASES))
def test_identity_replicate_is_the_reported_headline(case, tmp_path):
    name, make = CASES[case]
    ds, results = make(tmp_path)
    if name in NO_BOOTSTRAP:
        assert ds.build_metric().bootstrap_stats() is None, f"{name} has a bootstrap: drop it from NO_BOOTSTRAP"
        return
    m = _scored_metric(ds, results)
    values = {k: float(v) for k, v in m.compute().items()}
    bs = m.bootstrap_stats()
    n = int(bs.ids.numel())
    assert n > 1 and torch.all(bs.ids[1:] > bs.ids[:-1])  # units ascending and unique, padding repeats dropped
    ones = bs.statistic(torch.ones(1, n, dtype=torch.float64))[0]
    assert ones.dtype == torch.float64 and ones.shape == (len(bs.keys),)
    for j, key in enumerate(bs.keys):
        v = values[key]
        assert math.isfinite(v) and v not in (0.0, 1.0), (key, v)  # the headline is not a trivial value
        assert float(ones[j]) == pytest.approx(v, rel=REL_TOL, abs=0), key


@pytest.mark.parametrize("name", list(XTC_REPLICATES))
def test_crowdpose_replicates_equal_xtcocotools_on_the_resampled_images(name, tmp_path):
    case = next(c for c in CROWDPOSE_GOLDEN["cases"] if c["name"] == name)
    bs = _scored_metric(*_crowdpose_case(case)(tmp_path)).bootstrap_stats()
    rows = XTC_REPLICATES[name]
    gt = json.loads((SAMPLES_DIR / "crowdpose" / ANN_FILE).read_text()) if case["gt"] == "sample" else case["gt"]
    assert bs.ids.tolist() == sorted(im["id"] for im in gt["images"])  # the order the draw counts follow
    got = bs.statistic(torch.tensor([r[0] for r in rows], dtype=torch.float64))[:, 0].tolist()
    for (counts, want), g in zip(rows, got, strict=True):
        assert g == pytest.approx(want, rel=REL_TOL, abs=1e-15), counts
