"""Mesh metrics of the 3DPW protocol (metrics/pve.py) against the reference implementations.

Golden numbers ``tests/data/threedpw_golden/metrics_golden.json`` were produced by running the reference
functions themselves on the fixed meshes of ``tests/data/threedpw_golden/inputs.py`` (``golden_meshes()``)
with the bundled ``bench/data/smpl/J_regressor_h36m.npy``, outside the repo::

    # /tmp/ref_3dpw: files extracted with `git show HEAD:<path>` from the fetched mirrors
    #   spin/utils/pose_utils.py, spin/constants.py      <- nkolot/SPIN @ 2476c436013055be5cb3905e4e4ecfa86966fac3
    #   thmr/pose_utils.py, thmr/rotation_utils.py        <- saidwivedi/TokenHMR @ 198645f7784a27a4df0eac32478b1e7bc3e13574
    #                                                        (tokenhmr/lib/utils/; stubs/cv2.py an empty module)
    #   mmh_eval_utils.py: vertice_pve                    <- open-mmlab/mmhuman3d @ 96322dff,
    #                                                        mmhuman3d/core/evaluation/eval_utils.py
    /tmp/venv/bin/python /tmp/ref_3dpw/run_golden.py tests/data/threedpw_golden/metrics_golden.json

``run_golden.py`` does SPIN ``eval.py``'s 3DPW steps in float64 (``J_regressor @ vertices``, pelvis = joint 0,
``constants.H36M_TO_J14``, minus pelvis, ``sqrt(sum sq).mean``) and calls SPIN's
``utils.pose_utils.reconstruction_error(..., reduction=None)`` on the 14 joints (PA-MPJPE) and on the 6890
vertices (PA-PVE); TokenHMR's ``Evaluator`` (``pelvis_ind=0``, ``keypoint_list=H36M_TO_J14``, fed the
regressed H36M joints) gives ``mode_mpjpe`` and ``mode_pve`` (pelvis-aligned PVE); mmhuman3d's
``vertice_pve(alignment='none')`` per frame against the GT moved by its camera offset gives the unaligned PVE.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from metrics.pve import H36M_TO_J14, MeshError, mesh_errors
from tests.data.threedpw_golden.inputs import golden_meshes

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[2]
GOLDEN = json.loads((REPO / "tests" / "data" / "threedpw_golden" / "metrics_golden.json").read_text())
J_REG = torch.from_numpy(np.load(REPO / "bench" / "data" / "smpl" / "J_regressor_h36m.npy"))


@pytest.fixture(scope="module")
def meshes():
    gt, pred, off = golden_meshes()
    return torch.from_numpy(gt), torch.from_numpy(pred), torch.from_numpy(off)


def test_j14_mapping_is_spins():
    assert H36M_TO_J14 == (6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10)
    assert J_REG.shape == (17, 6890) and J_REG.dtype == torch.float64


def test_per_frame_errors_match_references(meshes):
    gt, pred, off = meshes
    pelvis = mesh_errors(pred, gt, J_REG, "pelvis") * 1000
    raw = mesh_errors(pred, gt, J_REG, "none", off) * 1000
    g = GOLDEN["per_frame_mm"]
    # SPIN's eval.py steps and TokenHMR's eval_pose agree on MPJPE; both are checked
    for ref in ("MPJPE_spin", "MPJPE_tokenhmr"):
        np.testing.assert_allclose(pelvis[:, 0].numpy(), g[ref], rtol=0, atol=1e-6)
    np.testing.assert_allclose(pelvis[:, 1].numpy(), g["PA-MPJPE_spin"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(pelvis[:, 2].numpy(), g["PVE_tokenhmr"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(pelvis[:, 3].numpy(), g["PA-PVE_spin"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(raw[:, 2].numpy(), g["PVE_none_mmhuman3d"], rtol=0, atol=1e-6)
    # only PVE depends on the alignment option
    assert torch.equal(raw[:, [0, 1, 3]], pelvis[:, [0, 1, 3]])


@pytest.mark.parametrize("alignment,key", [("pelvis", "PVE_tokenhmr"), ("none", "PVE_none_mmhuman3d")])
def test_metric_means_any_batching_and_padding(meshes, alignment, key):
    gt, pred, off = meshes
    ref = GOLDEN["mean_mm"]
    results = []
    for order, batch in (([0, 1, 2, 3, 4, 5], 6), ([5, 3, 1, 0, 2, 4, 0, 5], 3), ([2, 2, 0, 1, 3, 4, 5], 1)):
        m = MeshError(J_REG, pve_alignment=alignment)
        for s in range(0, len(order), batch):
            idx = order[s:s + batch]
            m.update([{"vertices": pred[i].float() if i % 2 else pred[i]} for i in idx],
                     [{"vertices": gt[i], "offset": off[i], "sample_id": torch.tensor(i)} for i in idx])
        results.append(m.compute())
    # float32 input rounding of half the predictions moves values by < 1e-4 mm; the ids dedupe the padding
    for r in results:
        assert set(r) == {"MPJPE", "PA-MPJPE", "PVE", "PA-PVE"}
        assert float(r["MPJPE"]) == pytest.approx(ref["MPJPE_spin"], abs=1e-3)
        assert float(r["PA-MPJPE"]) == pytest.approx(ref["PA-MPJPE_spin"], abs=1e-3)
        assert float(r["PVE"]) == pytest.approx(ref[key], abs=1e-3)
        assert float(r["PA-PVE"]) == pytest.approx(ref["PA-PVE_spin"], abs=1e-3)
    for r in results[1:]:
        assert all(torch.equal(r[k], results[0][k]) for k in r)


def test_metric_float64_means_match_golden(meshes):
    gt, pred, off = meshes
    m = MeshError(J_REG, pve_alignment="none")
    m.update([{"vertices": p} for p in pred], [{"vertices": g, "offset": o, "sample_id": torch.tensor(i)}
                                               for i, (g, o) in enumerate(zip(gt, off))])
    r = m.compute()
    assert float(r["MPJPE"]) == pytest.approx(GOLDEN["mean_mm"]["MPJPE_spin"], abs=1e-6)
    assert float(r["PVE"]) == pytest.approx(GOLDEN["mean_mm"]["PVE_none_mmhuman3d"], abs=1e-6)
    assert float(r["PA-PVE"]) == pytest.approx(GOLDEN["mean_mm"]["PA-PVE_spin"], abs=1e-6)


def test_translation_only_error(meshes):
    """A pure shift ``d``: J_regressor_h36m rows sum to ``s_k`` != 1, so joint k moves by ``s_k d`` and the
    pelvis-relative error of joint k is ``|s_k - s_0| |d|``; the pelvis-aligned PVE is ``|1 - s_0| |d|``."""
    gt, _, off = meshes
    d = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)
    e = mesh_errors(gt + d, gt, J_REG, "pelvis")
    s = J_REG.sum(1).numpy()
    np.testing.assert_allclose(e[:, 0].numpy(), np.abs(s[list(H36M_TO_J14)] - s[0]).mean() * 0.14 ** 0.5,
                               rtol=1e-6)
    np.testing.assert_allclose(e[:, 2].numpy(), abs(1 - s[0]) * 0.14 ** 0.5, rtol=1e-6)
    assert float(e[:, 3].abs().max()) < 1e-12
    # unaligned: the GT offset is applied, and a shift counts with its full length
    e = mesh_errors(gt + off[:, None], gt, J_REG, "none", off)
    assert float(e[:, 2].abs().max()) < 1e-12
    e = mesh_errors(gt + d, gt, J_REG, "none")
    np.testing.assert_allclose(e[:, 2].numpy(), 0.14 ** 0.5, rtol=1e-12)


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric MeshError was called before")
def test_bad_options_and_empty():
    with pytest.raises(ValueError, match="pve_alignment"):
        MeshError(J_REG, pve_alignment="procrustes")
    with pytest.raises(ValueError, match="no frames"):
        MeshError(J_REG).compute()
