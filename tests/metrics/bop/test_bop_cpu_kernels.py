"""The compiled CPU kernels (metrics/bop/cpu_kernels.py) against the batched torch path that CUDA runs.

Both must give the same VSD pixel for pixel (so the same errors bit for bit) and the same symmetric min-max for
MSSD/MSPD; the golden tests (test_bop_golden.py) check the default CPU path against the toolkit itself. The
workload: the golden case1 scene with noisy estimates (bench/benchmarks/bop.py), including far-off ones, so
pairs with disjoint boxes, partial overlap and the sphere shortcut all occur.
"""
from __future__ import annotations

import torch

from bench.benchmarks.bop import workload
from metrics.bop import cpu_kernels, pose_error
from metrics.bop.ar import BOPAR


def _pairs(n_est: int = 48):
    models, targets, preds = workload(n_est, seed=3)
    metric = BOPAR(models)
    rows = [(i, e, g) for i, (p, t) in enumerate(zip(preds, targets)) for e in range(p["obj_id"].numel())
            for g in torch.nonzero(t["gt_obj_id"] == p["obj_id"][e]).flatten().tolist()]
    st = lambda f: torch.stack([f(i, e, g) for i, e, g in rows]).double()
    pairs = {
        "R_e": st(lambda i, e, g: preds[i]["R"][e]), "t_e": st(lambda i, e, g: preds[i]["t"][e]),
        "R_g": st(lambda i, e, g: targets[i]["gt_R"][g]), "t_g": st(lambda i, e, g: targets[i]["gt_t"][g]),
        "K": st(lambda i, e, g: targets[i]["K"]),
        "obj": torch.tensor([int(preds[i]["obj_id"][e]) for i, e, _ in rows]),
        "image": torch.tensor([i for i, _, _ in rows]),
    }
    return models, targets, metric, pairs


def test_numba_is_available_so_cpu_runs_use_the_kernels():
    assert cpu_kernels.available()


def test_vsd_kernel_equals_torch_rasteriser_path():
    models, targets, metric, p = _pairs()
    hw = torch.tensor([list(t["depth"].shape) for t in targets])
    sizes = hw[:, 0] * hw[:, 1]
    depth = torch.cat([t["depth"].reshape(-1) for t in targets])
    mesh = torch.tensor([metric._mesh_index[o] for o in p["obj"].tolist()])
    diam = torch.tensor([models[o].diameter for o in p["obj"].tolist()], dtype=torch.float64)
    args = (metric._bank(torch.device("cpu")), mesh, p["R_e"], p["t_e"], p["R_g"], p["t_g"], p["K"], p["image"], depth,
            torch.cumsum(sizes, 0) - sizes, hw, diam, 15.0, metric.vsd_taus)
    fast = pose_error.vsd_batch(*args)
    ref = pose_error.vsd_batch(*args, backend="torch")
    assert fast.shape == ref.shape == (p["obj"].numel(), 10)
    assert ((ref > 0) & (ref < 1)).any() and (ref == 1).any()  # a mix of partial and no overlap
    assert torch.equal(fast, ref)


def test_mssd_mspd_kernels_equal_torch_min_over_symmetries():
    models, _, metric, p = _pairs()
    checked, sym_helped = 0, False
    for o in torch.unique(p["obj"]).tolist():
        sel = torch.nonzero(p["obj"] == o).squeeze(1)
        pts = models[o].vertices.double()
        sR, st = metric._pose_errors.syms[o]
        a = (p["R_e"][sel], p["t_e"][sel], p["R_g"][sel], p["t_g"][sel])
        for fn, extra in ((pose_error.mssd, ()), (pose_error.mspd, (p["K"][sel],))):
            fast = fn(*a, *extra, pts, sR, st)
            ref = fn(*a, *extra, pts, sR, st, backend="torch")
            torch.testing.assert_close(fast, ref, rtol=1e-12, atol=1e-9)
            checked += sel.numel()
            if sR.shape[0] > 1:
                sym_helped |= bool((fast < fn(*a, *extra, pts, sR[:1], st[:1])).any())
    assert checked > 40 and sym_helped  # the symmetric minimum was exercised


def test_vsd_kernel_equals_torch_path_at_image_borders_with_missing_depth():
    """Objects cut by every image border (boxes clipped on both the GT and the estimate side), GT groups whose
    estimates fall left, right, above and below, and test depth with holes and a zero block."""
    models, targets, metric, p = _pairs()
    hw = torch.tensor([list(t["depth"].shape) for t in targets])
    sizes = hw[:, 0] * hw[:, 1]
    depth = torch.cat([t["depth"].reshape(-1) for t in targets]).clone()
    g = torch.Generator().manual_seed(5)
    depth[torch.rand(depth.shape, generator=g) < 0.05] = 0.0  # scattered missing depth
    depth[: 200 * int(hw[0, 1])] = 0.0  # the top of the first image: missing
    P = p["obj"].numel()
    fx = p["K"][:, 0, 0]
    W = hw[p["image"], 1].double()
    H = hw[p["image"], 0].double()
    # push estimates (and every third GT) towards the four borders: centre at +-0.5 of the image size
    side = torch.arange(P) % 4
    t_e, t_g = p["t_e"].clone(), p["t_g"].clone()
    for t, which in ((t_e, torch.ones(P, dtype=torch.bool)), (t_g, torch.arange(P) % 3 == 0)):
        z = t[:, 2]
        dx = torch.where(side == 0, -0.5, torch.where(side == 1, 0.5, 0.0)) * W * z / fx
        dy = torch.where(side == 2, -0.5, torch.where(side == 3, 0.5, 0.0)) * H * z / fx
        t[:, 0] = torch.where(which, t[:, 0] + dx, t[:, 0])
        t[:, 1] = torch.where(which, t[:, 1] + dy, t[:, 1])
    mesh = torch.tensor([metric._mesh_index[o] for o in p["obj"].tolist()])
    diam = torch.tensor([models[o].diameter for o in p["obj"].tolist()], dtype=torch.float64)
    args = (metric._bank(torch.device("cpu")), mesh, p["R_e"], t_e, p["R_g"], t_g, p["K"], p["image"], depth,
            torch.cumsum(sizes, 0) - sizes, hw, diam, 15.0, metric.vsd_taus)
    fast = pose_error.vsd_batch(*args)
    ref = pose_error.vsd_batch(*args, backend="torch")
    assert ((ref > 0) & (ref < 1)).any()
    assert torch.equal(fast, ref)
