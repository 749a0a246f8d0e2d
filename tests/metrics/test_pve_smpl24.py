"""3DPW mesh metrics with ``joints="smpl24"`` (metrics/pve.py) against HybrIK's and TokenHMR's own code.

``tests/data/threedpw_smpl24_golden/metrics_golden.json`` holds what Jeff-sjtu/HybrIK's
``PW3D.evaluate_xyz_24`` (MPJPE, PA-MPJPE on the 24 SMPL joints, pelvis = joint 0) and saidwivedi/TokenHMR's
``Evaluator`` (all 24 joints, ``pelvis_ind=0``: MPJPE, pelvis-aligned PVE) returned on the meshes of
``golden_meshes()``, the joints regressed with the synthetic neutral SMPL ``J_regressor``
(tests/smpl_synthetic.py); the PROVENANCE.md there has the command and commits.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from metrics.pve import JOINT_SETS, MeshError, mesh_errors
from tests.data.threedpw_golden.inputs import golden_meshes
from tests.smpl_synthetic import synthetic_smpl

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[2]
GOLDEN = json.loads((REPO / "tests" / "data" / "threedpw_smpl24_golden" / "metrics_golden.json").read_text())
J_REG_H36M = torch.from_numpy(np.load(REPO / "bench" / "data" / "smpl" / "J_regressor_h36m.npy"))


@pytest.fixture(scope="module")
def case():
    gt, pred, off = golden_meshes()
    j24 = torch.from_numpy(synthetic_smpl("neutral", sparse_regressor=False)["J_regressor"])
    return torch.from_numpy(gt), torch.from_numpy(pred), torch.from_numpy(off), j24


def test_joint_sets():
    assert JOINT_SETS["smpl24"] == (24, tuple(range(24)), 0)
    assert JOINT_SETS["h36m14"] == (17, (6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10), 0)


def test_per_frame_errors_match_references(case):
    gt, pred, _, j24 = case
    e = mesh_errors(pred, gt, j24, "pelvis", joints="smpl24").numpy() * 1000
    g = GOLDEN["per_frame_mm"]
    for ref in ("MPJPE_hybrik", "MPJPE_tokenhmr"):  # the two references agree; both are checked
        np.testing.assert_allclose(e[:, 0], g[ref], rtol=0, atol=1e-9)
    np.testing.assert_allclose(e[:, 1], g["PA-MPJPE_hybrik"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(e[:, 2], g["PVE_tokenhmr"], rtol=0, atol=1e-9)
    # PA-PVE does not depend on the joints; the joint set changes the other three (a real difference)
    h36m = mesh_errors(pred, gt, J_REG_H36M, "pelvis").numpy() * 1000
    assert np.array_equal(e[:, 3], h36m[:, 3])
    assert np.abs(e[:, :3] - h36m[:, :3]).min() > 0.1


def test_metric_means_any_batching(case):
    gt, pred, off, j24 = case
    results = []
    for order, batch in (([0, 1, 2, 3, 4, 5], 6), ([5, 3, 1, 0, 2, 4, 0, 5], 3)):
        m = MeshError(j24, joints="smpl24")
        for s in range(0, len(order), batch):
            idx = order[s:s + batch]
            m.update([{"vertices": pred[i]} for i in idx],
                     [{"vertices": gt[i], "offset": off[i], "sample_id": torch.tensor(i)} for i in idx])
        results.append(m.compute())
    ref = GOLDEN["mean_mm"]
    for key, name in (("MPJPE", "MPJPE_hybrik"), ("PA-MPJPE", "PA-MPJPE_hybrik"), ("PVE", "PVE_tokenhmr")):
        assert float(results[0][key]) == pytest.approx(ref[name], abs=1e-9)
    assert all(torch.equal(results[1][k], results[0][k]) for k in results[0])


def test_regressor_must_fit_the_joint_set(case):
    _, _, _, j24 = case
    with pytest.raises(ValueError, match="24-row regressor"):
        MeshError(J_REG_H36M, joints="smpl24")
    with pytest.raises(ValueError, match="17-row regressor"):
        MeshError(j24)
    with pytest.raises(ValueError, match="joints must be one of"):
        MeshError(j24, joints="smpl29")
