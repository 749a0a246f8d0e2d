"""VideoPose3D: official checkpoint layout, the official test-time pipeline, flip symmetry, the CLI.

Golden data (``tests/data/human3d_lifting/``, see PROVENANCE.md there) were produced by running the official
code, outside the repo: ``python /tmp/ref_p3/make_golden.py`` with facebookresearch/VideoPose3D @ 1afb1ca0
``common/`` on the path. ``official_keys.json``: the state dict keys and shapes of the official
``TemporalModel(17, 2, 17, filter_widths=[3,3,3,3,3], channels=1024)``. ``golden.npz``: a seeded random
state dict of a tiny official ``TemporalModel(17, 2, 17, filter_widths=[3,3,3], channels=16)`` (``vp3d_sd/*``,
BatchNorm statistics randomised, eval mode), two pixel sequences (``seq{0,1}_px``, 9 and 40 frames, camera
sizes ``seq*_wh``), their official ``normalize_screen_coordinates`` (``seq*_norm``) and the predictions of
``run.py``'s evaluation on them: ``UnchunkedGenerator(pad=13, augment=...)`` + ``model_pos`` + the
test-time-augmentation lines of ``evaluate`` (``vp3d_seq*_plain`` without, ``vp3d_seq*_flip`` with flipping).
Comparisons with these recorded float32 outputs follow tests/recorded.py: our network runs in float64.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import methods.human3d.videopose3d  # noqa: F401  (registers videopose3d before the lead wires it)
from bench.errors import InputError
from methods.human3d.lifting import JOINTS_LEFT, JOINTS_RIGHT, mirror, normalize_screen_coordinates
from methods.human3d.videopose3d import TemporalModel, VideoPose3D, checkpoint_filter_fn
from tests.recorded import assert_matches_recorded

DATA = Path(__file__).resolve().parents[1] / "data" / "human3d_lifting"
GOLD = np.load(DATA / "golden.npz")
OFFICIAL = json.loads((DATA / "official_keys.json").read_text())["videopose3d"]
TINY = {"filter_widths": [3, 3, 3], "channels": 16}


def official_checkpoint(tmp_path: Path, prefix: str = "vp3d_sd/", module: bool = True, name: str = "ckpt.bin") -> Path:
    """An official-style file: ``torch.save`` of run.py's dict (numpy RandomState, optimizer, DataParallel keys)."""
    sd = {("module." if module else "") + k[len(prefix):]: torch.from_numpy(GOLD[k]) for k in GOLD.files
          if k.startswith(prefix)}
    path = tmp_path / name
    torch.save({"epoch": 80, "lr": 1e-3, "random_state": np.random.RandomState(1234),
                "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3}]}, "model_pos": sd}, path)
    return path


def test_official_layout_loads_with_no_missing_or_unexpected_keys():
    """The official 243-frame, 1024-channel key list and shapes load into ours (meta device: no memory)."""
    with torch.device("meta"):
        net = TemporalModel(filter_widths=[3, 3, 3, 3, 3], channels=1024)
    assert net.receptive_field() == OFFICIAL["receptive_field_243"] == 243
    own = {k: list(v.shape) for k, v in net.state_dict().items()}
    assert own == OFFICIAL["keys"]
    sd = {k: torch.empty(s, device="meta") for k, s in OFFICIAL["keys"].items()}
    res = net.load_state_dict(checkpoint_filter_fn(sd), strict=True, assign=True)
    assert res.missing_keys == [] and res.unexpected_keys == []
    # a pre-0.4.1 file has no num_batches_tracked: the filter adds them
    old = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    assert len(old) < len(sd)
    res = net.load_state_dict(checkpoint_filter_fn(old), strict=True, assign=True)
    assert res.missing_keys == [] and res.unexpected_keys == []


def test_joint_symmetry_is_the_official_skeleton():
    assert list(JOINTS_LEFT) == OFFICIAL["joints_left"] and list(JOINTS_RIGHT) == OFFICIAL["joints_right"]


@pytest.mark.parametrize("seq", [0, 1])
def test_normalization_matches_official(seq):
    w, h = (int(v) for v in GOLD[f"seq{seq}_wh"])
    ours = normalize_screen_coordinates(GOLD[f"seq{seq}_px"], w, h).astype(np.float32)
    np.testing.assert_array_equal(ours, GOLD[f"seq{seq}_norm"])


@pytest.mark.parametrize("flip", [False, True])
def test_whole_sequence_pipeline_matches_official_run(tmp_path, flip):
    """Official checkpoint file -> our conversion -> edge padding + flip test == run.py's evaluate output,
    for a sequence shorter than the receptive field (9 < 27 frames) and a longer one."""
    model = VideoPose3D.from_official_checkpoint(official_checkpoint(tmp_path), flip_test=flip, **TINY).double()
    assert model.net.receptive_field() == OFFICIAL["receptive_field_tiny"] == 27
    for seq in (0, 1):
        with torch.no_grad():
            out = model.predict_sequence(torch.from_numpy(GOLD[f"seq{seq}_norm"]).double())
        name = f"vp3d_seq{seq}_{'flip' if flip else 'plain'}"
        assert_matches_recorded(out, GOLD[name], what=name)


@pytest.mark.parametrize("frames", [1, 2, 7, 121, 300])
def test_receptive_field_padding_gives_one_output_per_frame(frames):
    torch.manual_seed(0)
    model = VideoPose3D(filter_widths=[3, 3, 3, 3, 3], channels=8).eval()
    with torch.no_grad():
        out = model.predict_sequence(torch.randn(frames, 17, 2))
    assert out.shape == (frames, 17, 3) and torch.isfinite(out).all()


def test_flip_test_is_mirror_symmetric(tmp_path):
    """With the flip test the lifter commutes with mirroring: f(mirror(x)) == mirror(f(x))."""
    model = VideoPose3D.from_official_checkpoint(official_checkpoint(tmp_path), flip_test=True, **TINY)
    x = torch.from_numpy(GOLD["seq1_norm"])
    with torch.no_grad():
        a = model.predict_sequence(mirror(x, JOINTS_LEFT, JOINTS_RIGHT))
        b = mirror(model.predict_sequence(x), JOINTS_LEFT, JOINTS_RIGHT)
        plain = VideoPose3D.from_official_checkpoint(official_checkpoint(tmp_path), flip_test=False, **TINY)
        c = plain.predict_sequence(mirror(x, JOINTS_LEFT, JOINTS_RIGHT))
        d = mirror(plain.predict_sequence(x), JOINTS_LEFT, JOINTS_RIGHT)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert (c - d).abs().max() > 1e-2  # the network alone is not symmetric: the property comes from the flip test


def test_bad_checkpoints_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="model_pos"):
        torch.save({"model_pos": {"a": 1}}, tmp_path / "bad.bin")
        VideoPose3D.from_official_checkpoint(tmp_path / "bad.bin", **TINY)
    with pytest.raises(InputError, match="does not fit|missing|unknown"):
        VideoPose3D.from_official_checkpoint(official_checkpoint(tmp_path), filter_widths=[3, 3], channels=16)
    (tmp_path / "junk.bin").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot read"):
        VideoPose3D.from_official_checkpoint(tmp_path / "junk.bin", **TINY)


def test_missing_2d_detections_are_an_input_error(tmp_path):
    from omegaconf import OmegaConf

    from bench.data.h36m import build_h36m
    from methods.human3d.videopose3d import build

    # the 2D inputs are a dataset option, read when the dataset is built
    with pytest.raises(InputError, match="data_2d_h36m_nonexistent.npz"):
        build_h36m(OmegaConf.create({"name": "h36m", "data_root": None, "keypoints_2d": "nonexistent"}))
    # a dataset without them cannot feed a lifter: one line naming the option
    ds = build_h36m(OmegaConf.create({"name": "h36m", "data_root": None}))
    with pytest.raises(InputError, match="dataset.keypoints_2d=NAME"):
        build(OmegaConf.create({"name": "videopose3d", **TINY}), ds, official_checkpoint(tmp_path))


def test_cli_videopose3d_with_official_checkpoint_writes_a_row(tmp_path):
    """``python -m bench evaluate method=videopose3d dataset=h36m weights=FILE`` on the bundled sample (synthetic
    3D + 2D detections): the official-layout file goes through conversion, the test-time pipeline and the
    H36M metric, and a leaderboard row is written."""
    from tests.conftest import run_cli

    out, boards = tmp_path / "out", tmp_path / "boards"
    r = run_cli("evaluate", "method=videopose3d", "dataset=h36m", f"weights={official_checkpoint(tmp_path)}",
                f"out={out}", f"leaderboard_dir={boards}", "method.channels=16", "method.filter_widths=[3,3,3]",
                "dataset.root_relative_pred=false", "batch_size=16",
                env={"POSEARENA_PLUGINS": "methods.human3d.videopose3d", "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    payload = json.loads((out / "metrics.json").read_text())
    m = payload["metrics"]
    assert payload["num_samples"] == 240  # S9 + S11: 15 actions x 2 sub-actions x 4 cameras
    assert all(np.isfinite(m[k]) and m[k] > 0 for k in ("MPJPE", "P-MPJPE", "N-MPJPE", "MPJVE"))
    rows = (boards / "human3d" / "h36m.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith("videopose3d,")


def _bundled():
    from omegaconf import OmegaConf

    from bench.data.h36m import build_h36m
    return build_h36m(OmegaConf.create({"name": "h36m", "data_root": None}))


def test_2d_detections_are_cut_to_the_mocap_length_and_carry_the_file_symmetry():
    """The bundled cpn file has one extra frame per sequence (as real detection files may): run.py cuts it."""
    from bench.safe_pickle import load_npz
    ds = _bundled()
    kp = ds.keypoints_2d("cpn_ft_h36m_dbb")
    raw = load_npz(ds.root / "data_2d_h36m_cpn_ft_h36m_dbb.npz")["positions_2d"].item()
    assert set(kp.arrays) == {q.key for q in ds.sequences}
    for i, q in enumerate(ds.sequences):
        full = raw[q.subject][q.action][q.camera]
        assert full.shape[0] == ds.num_frames(i) + 1
        np.testing.assert_array_equal(kp.arrays[q.key], full[: ds.num_frames(i)])
    assert (kp.kps_left, kp.kps_right) == ((4, 5, 6, 11, 12, 13), (1, 2, 3, 14, 15, 16))


def test_bad_2d_detection_files_are_input_errors(tmp_path):
    from bench.data.h36m import H36MDataset
    from bench.safe_pickle import load_npz
    ds = _bundled()
    raw = load_npz(ds.root / "data_2d_h36m_gt.npz")
    tree, meta = raw["positions_2d"].item(), raw["metadata"].item()
    root = tmp_path / "h36m"
    root.mkdir()
    (root / "data_3d_h36m.npz").write_bytes((ds.root / "data_3d_h36m.npz").read_bytes())
    q = ds.sequences[0]
    tree[q.subject][q.action][q.camera] = tree[q.subject][q.action][q.camera][:-1]  # shorter than the mocap
    np.savez(root / "data_2d_h36m_short.npz", positions_2d=tree, metadata=meta)
    bad = H36MDataset(root, bundled=False)
    with pytest.raises(InputError, match=f"positions_2d/{q.subject}/{q.action}/{q.camera}.*fewer than"):
        bad.keypoints_2d("short")
    del tree[q.subject][q.action]
    np.savez(root / "data_2d_h36m_missing.npz", positions_2d=tree, metadata=meta)
    with pytest.raises(InputError, match=f"positions_2d/{q.subject}/{q.action}.*4 per-camera arrays"):
        bad.keypoints_2d("missing")


def test_the_2d_inputs_reach_the_lifter_through_the_sample(tmp_path):
    """``dataset.keypoints_2d``: each Sample carries its sequence's 2D keypoints, the file's symmetry and its
    camera's resolution (Human3.6M cameras 0 and 3 are 1000x1002, 1 and 2 1000x1000: VideoPose3D's
    h36m_cameras_intrinsic_params), and predict_step lifts
    exactly those (normalised as VideoPose3D's run.py does)."""
    from omegaconf import OmegaConf

    from bench.data.h36m import build_h36m
    from methods.human3d.lifting import normalize_screen_coordinates

    ds = build_h36m(OmegaConf.create({"name": "h36m", "data_root": None, "keypoints_2d": "cpn_ft_h36m_dbb"}))
    kp = ds.keypoints_2d("cpn_ft_h36m_dbb")
    model = VideoPose3D.from_official_checkpoint(official_checkpoint(tmp_path), **TINY)
    for i in (0, 1):
        s = ds[i]
        q = ds.sequences[i]
        assert s.inputs["image_size"] == ((1000, 1002) if q.camera in (0, 3) else (1000, 1000))
        np.testing.assert_array_equal(s.inputs["keypoints_2d"], kp.arrays[q.key])
        assert s.inputs["keypoints_symmetry"] == (kp.kps_left, kp.kps_right)
        w, h = s.inputs["image_size"]
        x = torch.from_numpy(normalize_screen_coordinates(kp.arrays[q.key], w, h).astype(np.float32))
        expected = model.predict_sequence(x, kp.kps_left, kp.kps_right).to(torch.float64)
        assert torch.equal(model.predict_step([s])[0].output["joints"], expected)
