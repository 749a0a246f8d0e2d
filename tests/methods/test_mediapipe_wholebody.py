"""mediapipe-wholebody (methods/wholebody/mediapipe_wholebody.py): the 133-point mapping, the crops, the real models.

The mapping and builder tests run everywhere. The model tests need mediapipe (numpy<2, protobuf<5): they are
skipped elsewhere and run in the ``blazepose`` nox session, which sets ``POSEARENA_BLAZEPOSE_ENV=1`` so that a
missing mediapipe fails them.

Oracles. Names: mediapipe's own ``PoseLandmark`` / ``HandLandmark`` enums and its Face Mesh region sets
(``FACEMESH_*``), and the COCO-WholeBody keypoint names of mmpose's ``configs/_base_/datasets/coco_wholebody.py``
(written out below). Face table sides: MediaPipe's canonical face (bundled for mediapipe-headpose), whose x axis
points to the person's left. Body: the blazepose method itself on the same boxes (the body part must be its
output, bit for bit). Face and hands: the human GT labels of the bundled COCO-WholeBody sample.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import methods.wholebody.mediapipe_wholebody as mw
from bench.errors import InputError
from bench.registry import METHODS
from methods.headpose.mediapipe_pnp import read_obj

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "bench" / "conf" / "method" / "mediapipe-wholebody.yaml"
IN_BLAZEPOSE_ENV = os.environ.get("POSEARENA_BLAZEPOSE_ENV") == "1"
NO_MEDIAPIPE = "mediapipe (numpy<2, protobuf<5) is not installed here: `nox -s tests` runs these in the blazepose environment"

#: COCO-WholeBody's foot and hand keypoint names (mmpose configs/_base_/datasets/coco_wholebody.py, ids 17-22
#: and 91-111 without the ``left_`` prefix).
FOOT_NAMES = ("left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel")
HAND_NAMES = ("hand_root",) + tuple(f"{f}{k}" for f in ("thumb", "forefinger", "middle_finger", "ring_finger",
                                                        "pinky_finger") for k in range(1, 5))
#: mediapipe's finger of each COCO-WholeBody finger name.
FINGER = {"thumb": "THUMB", "forefinger": "INDEX_FINGER", "middle_finger": "MIDDLE_FINGER",
          "ring_finger": "RING_FINGER", "pinky_finger": "PINKY"}


class _Dataset:
    def __init__(self, name: str):
        self.name = name


# ------------------------------------------------------------------------------------------------ everywhere


def test_registered_under_its_cli_name_with_its_config():
    assert METHODS["mediapipe-wholebody"] is mw.build
    cfg = OmegaConf.load(CONF)
    d = mw.WholeBodyConfig()
    assert cfg.name == "mediapipe-wholebody"
    assert {k: cfg[k] for k in cfg if k != "name"} == {k: getattr(d, k) for k in d.__dataclass_fields__}


def test_face_table_sides_on_the_canonical_face():
    """iBUG's right side (contour 1-8, right brow and eye, nostrils 32-33, right lip corners and halves) is the person's right: x < 0 on
    MediaPipe's canonical face; the mirrored points x > 0; the midline points (chin 9, nose 28-31 and 34, lip
    centres 52, 58, 63, 67) on x ~ 0; mirror pairs (contour 1-8 and 17-10) at mirrored x."""
    v = read_obj()[0]
    x = np.array([v[list(ix), 0].mean() for ix in mw.IBUG68_FROM_FACEMESH])  # iBUG point k+1 at x[k]
    right = [*range(8), *range(17, 22), 31, 32, *range(36, 42), 48, 49, 50, 58, 59, 60, 61, 67]
    left = [*range(9, 17), *range(22, 27), 34, 35, *range(42, 48), 52, 53, 54, 55, 56, 63, 64, 65]
    mid = [8, 27, 28, 29, 30, 33, 51, 57, 62, 66]
    assert len(mw.IBUG68_FROM_FACEMESH) == 68 and len(set(right + left + mid)) == 68
    assert (x[right] < -0.5).all() and (x[left] > 0.5).all() and (np.abs(x[mid]) < 0.05).all()
    assert np.allclose(x[right[:8]], -x[left[:8][::-1]], atol=0.3)


def test_assemble_maps_body_feet_and_marks_missing_parts():
    rng = np.random.default_rng(0)
    px, vis = rng.uniform(0, 500, (33, 2)), rng.uniform(0.1, 1.0, 33)
    face, left = rng.uniform(0, 500, (68, 2)), rng.uniform(0, 500, (21, 2))
    kp = mw.assemble(px, vis, {"left": left, "right": None}, face)
    assert kp.shape == (133, 3) and kp.dtype == np.float64
    body = [0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28]
    assert np.array_equal(kp[:17, :2], px[body]) and np.array_equal(kp[:17, 2], vis[body])
    # feet: big toe = foot index (31/32), heel = heel (29/30), small toe: no counterpart, confidence 0
    assert np.array_equal(kp[17:23, :2], px[[31, 31, 29, 32, 32, 30]])
    assert np.array_equal(kp[17:23, 2], [vis[31], 0.0, vis[29], vis[32], 0.0, vis[30]])
    assert np.array_equal(kp[23:91, :2], face) and (kp[23:91, 2] == vis[0]).all()
    assert np.array_equal(kp[91:112, :2], left) and (kp[91:112, 2] == vis[15]).all()
    assert (kp[112:133, :2] == px[16]).all() and (kp[112:133, 2] == 0).all()  # no right hand: on its wrist
    none = mw.assemble(px, vis, {"left": None, "right": None}, None)
    assert (none[23:91, :2] == px[0]).all() and (none[23:, 2] == 0).all()


def test_pick_hand_takes_the_one_at_this_wrist():
    here, there = np.array([10.0, 10.0]), np.array([100.0, 10.0])
    near, far = np.full((21, 2), 12.0), np.full((21, 2), 95.0)
    assert mw.pick_hand([far, near], here, there) is near
    assert mw.pick_hand([far], here, there) is None  # the other hand: none for this side
    assert mw.pick_hand([], here, there) is None


def test_crops_are_centred_on_the_part():
    px = np.zeros((33, 2))
    px[13], px[15], px[17], px[19], px[21] = (0, 0), (0, 40), (-4, 50), (4, 50), (2, 46)  # left forearm 40 px
    c = mw.hand_crop(px, "left", 1.5)
    assert c == mw.Crop(x0=-30, y0=16, side=60)  # centre (0.5, 46.5), side 1.5 x 40
    px[:11] = [(100 + 3 * k, 50 + (k % 3)) for k in range(11)]  # face landmarks: 30 px wide
    assert mw.face_crop(px, 2.0) == mw.Crop(x0=85, y0=20, side=60)  # centre (115, 50.9), side 2 x 30


def test_build_rejects_weights_and_foreign_datasets():
    cfg = OmegaConf.create({"name": "mediapipe-wholebody"})
    with pytest.raises(InputError) as e:
        mw.build(cfg, _Dataset("coco_wholebody"), "model.pth")
    assert e.value.field == "weights" and e.value.file == "model.pth"
    with pytest.raises(InputError) as e:
        mw.build(cfg, _Dataset("coco"), None)
    assert e.value.field == "dataset" and "'coco'" in e.value.problem


def test_missing_mediapipe_is_a_one_line_input_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # makes `import mediapipe` raise ImportError
    with pytest.raises(InputError) as e:
        mw.build(OmegaConf.create({"name": "mediapipe-wholebody"}), _Dataset("coco_wholebody"), None)
    assert e.value.field == "method" and "mediapipe" in e.value.problem and "\n" not in e.value.line()


@pytest.mark.slow  # a fresh interpreter imports torch and Lightning: ~10 s
def test_cli_weights_is_one_line_exit_2(tmp_path):
    run = subprocess.run([sys.executable, "-m", "bench", "evaluate", "method=mediapipe-wholebody",
                          "dataset=coco_wholebody", "weights=model.pth", f"out={tmp_path / 'out'}",
                          f"leaderboard_dir={tmp_path / 'lb'}"],
                         cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 2, run.stderr[-2000:]
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "model.pth" in lines[0] and "weights" in lines[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "lb").exists()


# ---------------------------------------------------------------------------------------------- with mediapipe


@pytest.fixture(scope="module")
def mediapipe():
    """mediapipe, or a skip outside its environment; inside it (``POSEARENA_BLAZEPOSE_ENV=1``) a failure."""
    if not IN_BLAZEPOSE_ENV:
        return pytest.importorskip("mediapipe", reason=NO_MEDIAPIPE)
    try:
        import mediapipe
    except ImportError as e:
        pytest.fail(f"POSEARENA_BLAZEPOSE_ENV=1 but mediapipe does not import: {e}", pytrace=False)
    return mediapipe


@pytest.fixture(scope="module")
def wholebody(mediapipe):
    """The bundled COCO-WholeBody sample (4 images, GT person boxes) and the method's predictions on it."""
    from bench.data.coco_wholebody import build_coco_wholebody

    ds = build_coco_wholebody(OmegaConf.create({}))
    samples = [ds[i] for i in range(len(ds))]
    return ds, samples, mw.build(OmegaConf.load(CONF), ds, None).predict_step(samples)


def test_mapping_tables_match_mediapipe_s_names(mediapipe):
    from mediapipe.python.solutions import face_mesh_connections as fm
    from mediapipe.python.solutions.hands import HandLandmark
    from mediapipe.python.solutions.pose import PoseLandmark

    pose = PoseLandmark
    for name, src in zip(FOOT_NAMES, mw.FOOT_FROM_BLAZEPOSE):
        side, part = name.split("_", 1)
        want = {"big_toe": "FOOT_INDEX", "heel": "HEEL", "small_toe": None}[part]
        assert (src is None) == (want is None) and (src is None or pose(src).name == f"{side.upper()}_{want}")
    for (side, (wrist, elbow, pinky, index, thumb)) in mw.HAND_ANCHORS.items():
        s = side.upper()
        assert [pose(i).name for i in (wrist, elbow, pinky, index, thumb)] == [
            f"{s}_WRIST", f"{s}_ELBOW", f"{s}_PINKY", f"{s}_INDEX", f"{s}_THUMB"]
    assert all(n == "NOSE" or any(w in n for w in ("_EYE", "_EAR", "MOUTH_")) for n in map(str, (pose(i).name
                                                                                                  for i in mw.FACE_ANCHORS)))
    # hands: COCO-WholeBody's root + 4 joints per finger, base to tip, are mediapipe's WRIST + CMC/MCP.., _TIP
    for name, src in zip(HAND_NAMES, mw.HAND_FROM_MEDIAPIPE):
        got = HandLandmark(src).name
        if name == "hand_root":
            assert got == "WRIST"
            continue
        finger, k = name[:-1], int(name[-1])
        assert got.startswith(FINGER[finger] + "_"), (name, got)
        order = ["CMC", "MCP", "IP", "TIP"] if finger == "thumb" else ["MCP", "PIP", "DIP", "TIP"]
        assert got.endswith("_" + order[k - 1]), (name, got)

    # face: each iBUG group's landmarks lie in Face Mesh's own region of that name
    def region(c):
        return {i for e in c for i in e}

    groups = ((0, 17, fm.FACEMESH_FACE_OVAL), (17, 22, fm.FACEMESH_RIGHT_EYEBROW), (22, 27, fm.FACEMESH_LEFT_EYEBROW),
              (36, 42, fm.FACEMESH_RIGHT_EYE), (42, 48, fm.FACEMESH_LEFT_EYE), (48, 68, fm.FACEMESH_LIPS))
    for lo, hi, c in groups:
        assert {i for ix in mw.IBUG68_FROM_FACEMESH[lo:hi] for i in ix} <= region(c), (lo, hi)
    nose = {i for ix in mw.IBUG68_FROM_FACEMESH[27:36] for i in ix}
    assert nose - region(fm.FACEMESH_NOSE) == {75, 305}  # the nostril wings (32, 36) lie outside that set


def test_model_files_come_from_the_wheel(mediapipe):
    root = mw.mediapipe_model_dir()
    assert root == Path(mediapipe.__file__).parent
    assert all((root / f).stat().st_size > 100_000 for f in mw.MODEL_FILES)


def test_body_is_blazepose_s_own_output(wholebody):
    from methods.human2d.blazepose import BlazePose

    _, samples, preds = wholebody
    for s, p in zip(samples, preds):
        ref = BlazePose().predict_image(s)
        assert torch.equal(p.output["keypoints"][:, :17], ref["keypoints"]), s.sample_id
        assert torch.equal(p.output["scores"], ref["scores"]), s.sample_id
        assert torch.equal(p.output["part_scores"], p.output["scores"][:, None].expand(-1, 6))
        xy = ref["keypoints"][:, :, :2]
        ext = xy.amax(1) - xy.amin(1)
        assert torch.equal(p.output["area"], ext[:, 0] * ext[:, 1])


def _nearest_gt(kp: torch.Tensor, gt: torch.Tensor) -> int:
    """The GT person whose labelled body keypoints are nearest on average to the prediction's."""
    d = [float(((g[:17, :2] - kp[:17, :2]).norm(dim=1)[g[:17, 2] > 0]).mean()) if (g[:17, 2] > 0).any()
         else float("inf") for g in gt]
    return int(np.argmin(d))


def test_face_and_hands_on_the_bundled_sample(wholebody):
    """Found faces land on the annotators' 68 points (median error under 20% of the labelled face's size; measured
    3-15%, the 15% on a 20-pixel face), each eye on its own side;
    missing parts and the small toes have confidence 0; every confidence is in [0, 1]."""
    _, samples, preds = wholebody
    faces = 0
    for s, p in zip(samples, preds):
        kps, gt = p.output["keypoints"], s.target["keypoints"]
        assert kps.shape[1:] == (133, 3) and kps.dtype == torch.float64
        assert ((kps[..., 2] >= 0) & (kps[..., 2] <= 1)).all() and (kps[:, [18, 21], 2] == 0).all()
        for kp in kps:
            g = gt[_nearest_gt(kp, gt)]
            if kp[23, 2] > 0 and (g[23:91, 2] > 0).all():
                size = float((g[23:91, :2].amax(0) - g[23:91, :2].amin(0)).max())
                err = (kp[23:91, :2] - g[23:91, :2]).norm(dim=1).median()
                assert err < 0.2 * size, (s.sample_id, float(err), size)
                f, t = kp[23:91, :2], g[23:91, :2]  # sides: each eye's outer corner (37, 46) is nearer its own
                assert (f[36] - t[36]).norm() < (f[36] - t[45]).norm() and (f[45] - t[45]).norm() < (f[45] - t[36]).norm()
                faces += 1
            for lo in (91, 112):
                if kp[lo, 2] == 0:
                    assert (kp[lo:lo + 21, 2] == 0).all() and (kp[lo:lo + 21, :2] == kp[9 if lo == 91 else 10, :2]).all()
    assert faces >= 3  # measured: 4 labelled faces of the 4 images are found


def test_same_bits_in_any_order_and_instance(wholebody):
    ds, samples, preds = wholebody
    again = mw.build(OmegaConf.load(CONF), ds, None).predict_step(samples[::-1])[::-1]
    for x, y in zip(preds, again):
        assert x.sample_id == y.sample_id
        assert all(torch.equal(x.output[k], y.output[k]) for k in x.output)
