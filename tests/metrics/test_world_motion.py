"""EMDB motion kernels (metrics/world_motion.py) against WHAM's and EMDB's own evaluation functions.

``tests/data/emdb_golden/metrics_golden.json`` holds what yohanshin/WHAM's ``lib/eval/eval_utils.py`` functions
(in the per-sequence steps of its ``evaluate_emdb.py``) and eth-ait/emdb's ``compute_positional_errors`` returned
on the sequences of ``tests/data/emdb_golden/inputs.py``; its PROVENANCE.md has the command and commits.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from metrics import world_motion as wm
from tests.data.emdb_golden.inputs import golden_sequences

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[2]
GOLDEN = json.loads((REPO / "tests" / "data" / "emdb_golden" / "metrics_golden.json").read_text())
TOL = 1e-9  # mm (and % for RTE, 10 m/s^3 for jitter)


@pytest.fixture(scope="module")
def sequences():
    return [{k: torch.from_numpy(v) for k, v in s.items()} for s in golden_sequences()]


def ours(s: dict) -> dict[str, np.ndarray]:
    cam = wm.camera_errors(s["pred_cam_joints"], s["gt_cam_joints"], s["pred_cam_verts"], s["gt_cam_verts"]) * 1000
    pj, gj = wm.align_by_hips(s["pred_cam_joints"])[0], wm.align_by_hips(s["gt_cam_joints"])[0]
    w, wa = wm.world_mpjpe(s["pred_joints"], s["gt_joints"])
    return {"MPJPE": cam[:, 0], "PA-MPJPE": cam[:, 1], "PVE": cam[:, 2], "ACCEL": wm.accel_error(pj, gj),
            "W-MPJPE100": w * 1000, "WA-MPJPE100": wa * 1000, "RTE": wm.rte_percent(s["pred_transl"], s["gt_transl"]),
            "JITTER": wm.jitter(s["pred_joints"]), "FS": wm.foot_sliding(s["pred_verts"], s["gt_verts"]) * 1000}


def test_per_frame_values_match_wham_and_emdb(sequences):
    for s, ref in zip(sequences, GOLDEN["per_sequence"]):
        got = {k: v.numpy() for k, v in ours(s).items()}
        for key, value in got.items():
            assert value.shape == (len(ref[key]),), key
            np.testing.assert_allclose(value, ref[key], rtol=0, atol=TOL, err_msg=key)
        for key in ("MPJPE", "PA-MPJPE", "PVE"):  # EMDB's own code agrees with WHAM's
            np.testing.assert_allclose(got[key], ref[f"{key}_emdb"], rtol=0, atol=TOL, err_msg=key)


def test_values_are_not_trivial(sequences):
    """Every golden value is a real error (contacts found, chunks of 100 and a short one, W > WA)."""
    m = GOLDEN["mean"]
    assert all(m[k] > 1 for k in ("MPJPE", "PA-MPJPE", "PVE", "W-MPJPE100", "WA-MPJPE100", "FS", "RTE"))
    assert m["W-MPJPE100"] > m["WA-MPJPE100"]
    assert len(GOLDEN["per_sequence"][0]["W-MPJPE100"]) == 157 and 0 < len(GOLDEN["per_sequence"][1]["FS"]) < 4 * 42


def test_chunks_are_aligned_separately(sequences):
    """A prediction moved by a different similarity per 100-frame chunk has zero WA-MPJPE100."""
    g = sequences[0]["gt_joints"]
    p = g.clone()
    p[100:] = 1.3 * p[100:] @ torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=g.dtype).T + 2.0
    w, wa = wm.world_mpjpe(p, g)
    assert float(wa.max()) < 1e-12 and float(w.max()) < 1e-12
    _, wa_one = wm.world_mpjpe(p, g, chunk=len(g))
    assert float(wa_one.mean()) > 0.1


def _sequence_dicts(s: dict) -> tuple[dict, dict]:
    feet = list(wm.FOOT_VERTICES)
    side = {"pred": {}, "gt": {}}
    for who in side:
        side[who] = {"joints_cam": s[f"{who}_cam_joints"], "verts_cam": s[f"{who}_cam_verts"],
                     "joints_world": s[f"{who}_joints"], "transl_world": s[f"{who}_transl"],
                     "feet_world": s[f"{who}_verts"][:, feet]}
    return side["pred"], side["gt"]


def test_metric_pools_sequences_and_drops_padding(sequences):
    pairs = [_sequence_dicts(s) for s in sequences]
    results = []
    for order in ([0, 1], [1, 0, 1]):  # the second: reversed, with a padded duplicate
        m = wm.WorldMotionError()
        for i in order:
            m.update([pairs[i][0]], [{**pairs[i][1], "sample_id": torch.tensor(i)}])
        results.append(m.compute())
    assert set(results[0]) == set(wm.MOTION_METRICS) - {"MPJAE"}  # the default groups: camera and world
    for k in results[0]:
        assert float(results[0][k]) == pytest.approx(GOLDEN["mean"][k], abs=TOL), k
        assert torch.equal(results[0][k], results[1][k]), k


def _about_z(angle: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(angle), torch.sin(angle)
    z, o = torch.zeros_like(c), torch.ones_like(c)
    return torch.stack([torch.stack([c, -s, z], -1), torch.stack([s, c, z], -1), torch.stack([z, z, o], -1)], -2)


def test_rotation_angles_follow_opencv_rodrigues():
    """The angle of known rotations; below OpenCV's ``s < 1e-5`` (with a positive cosine) it is 0, and a half turn
    (``s = 0``, cosine -1) is pi."""
    from scipy.spatial.transform import Rotation

    axis = np.array([0.48, -0.6, 0.64])
    angles = np.array([0.3, 2.5, np.pi - 1e-3, 3e-5, 1e-5, 0.0, np.pi])
    r = torch.from_numpy(Rotation.from_rotvec(angles[:, None] * axis).as_matrix())
    got = wm.rotation_angles(r).numpy()
    np.testing.assert_allclose(got, [0.3, 2.5, np.pi - 1e-3, 3e-5, 0.0, 0.0, np.pi], rtol=0, atol=1e-11)


def test_mpjae_composes_the_kinematic_chain():
    """Every local joint turned 0.1 rad about z: joint j's global orientation is off by 0.1 x (its depth + 1); MPJAE
    averages EMDB's 9 joints (depths 0, 1, 1, 2, 2, 5, 5, 6, 6)."""
    from tests.smpl_synthetic import SMPL_PARENTS

    local = _about_z(torch.full((2, 24), 0.1, dtype=torch.float64))
    rest = torch.eye(3, dtype=torch.float64).expand(2, 24, 3, 3)
    pred = wm.global_orientations(local, SMPL_PARENTS)[:, list(wm.ANGLE_JOINTS)]
    target = wm.global_orientations(rest, SMPL_PARENTS)[:, list(wm.ANGLE_JOINTS)]
    want = np.degrees(0.1) * np.mean([1, 2, 2, 3, 3, 6, 6, 7, 7])
    np.testing.assert_allclose(wm.joint_angle_error(pred, target).numpy(), [want, want], rtol=1e-12)
    m = wm.WorldMotionError(frames=("angles",))
    m.update([{"orients_cam": pred}], [{"orients_cam": target, "sample_id": torch.tensor(0)}])
    assert set(m.compute()) == {"MPJAE"} and float(m.compute()["MPJAE"]) == pytest.approx(want, rel=1e-12)
