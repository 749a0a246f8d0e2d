"""Speed of the BOP errors and of BOPAR: ``python -m bench.benchmarks.bop [--estimates 500] [--device cpu]``.

A generated workload: the golden case1 scene (tests/data/bop_golden/case1: 6 images, 24 GT instances, 21 object
models: boxes, cylinders with 630 symmetries, L shapes) with ``--estimates`` noisy estimates spread over its GT
instances (translation noise ~ N(0, 15 mm), rotation noise ~ 10 deg, a few far-off ones), the images repeated
as needed. Prints the time per (estimate, GT) pair of VSD, MSSD and MSPD computed in one batch, and the time
of a full BOPAR update + compute with its AR, each the best and the median of ``--repeat`` runs. The toolkit (one process, vispy) takes about 11 ms (VSD), 5 ms
(MSSD) and 9 ms (MSPD) per pair.

``--whole-process`` times what a user waits for: ``python -m bench evaluate method=mine dataset=ycbv
data_root=CASE predictions=CSV`` as a fresh process (median of ``--runs`` (5), peak RSS), on a generated case in
the official BOP layout: scripts/make_ycbv_sample.py with 6 scenes of 10 images (60 images, depth rendered by
our rasteriser) and a BOP19 CSV of noisy estimates (``--per-gt`` per GT instance). The toolkit itself does not
install here (its renderer needs OpenGL), so its time is estimated from its per-pair figures above.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time


class _Clock:
    """Wall and process CPU time (the CPU time is what a loaded shared machine cannot distort)."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stop(self):
        return time.perf_counter() - self.wall, time.process_time() - self.cpu
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]


def _random_rotation(n: int, max_deg: float, g: torch.Generator) -> torch.Tensor:
    axis = torch.randn(n, 3, generator=g, dtype=torch.float64)
    axis = axis / axis.norm(dim=1, keepdim=True)
    ang = torch.rand(n, generator=g, dtype=torch.float64) * max_deg * torch.pi / 180
    Kx = torch.zeros(n, 3, 3, dtype=torch.float64)
    Kx[:, 0, 1], Kx[:, 0, 2], Kx[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    Kx = Kx - Kx.transpose(1, 2)
    s, c = torch.sin(ang)[:, None, None], torch.cos(ang)[:, None, None]
    return torch.eye(3, dtype=torch.float64) + s * Kx + (1 - c) * (Kx @ Kx)


def workload(n_est: int, seed: int = 0):
    """(models, targets, preds): images of case1 repeated (new sample ids) until n_est estimates exist."""
    sys.path.insert(0, str(REPO / "tests" / "metrics" / "bop"))
    from bop_golden_io import load_models, load_targets  # the test-local golden readers

    models = load_models("case1")
    base = load_targets("case1")
    g = torch.Generator().manual_seed(seed)
    targets, preds, made, rep = [], [], 0, 0
    while made < n_est:
        for t in base:
            if made >= n_est:
                break
            t = copy.copy(t)
            t["sample_id"] = torch.tensor(int(t["sample_id"]) + rep * 1000, dtype=torch.int64)
            G = t["gt_obj_id"].shape[0]
            k = min(G * 2, n_est - made)  # two estimates per GT instance
            gi = torch.arange(k) % G
            R = _random_rotation(k, 10.0, g) @ t["gt_R"][gi]
            tt = t["gt_t"][gi] + torch.randn(k, 3, generator=g, dtype=torch.float64) * 15.0
            far = torch.rand(k, generator=g) < 0.1
            tt[far] += 300.0
            preds.append({"obj_id": t["gt_obj_id"][gi].clone(), "R": R, "t": tt,
                          "score": torch.rand(k, generator=g, dtype=torch.float64)})
            # every GT object is a target with all its instances, so every estimate is evaluated
            objs, counts = torch.unique(t["gt_obj_id"], return_counts=True)
            t["target_obj_id"], t["target_inst_count"] = objs, counts
            targets.append(t)
            made += k
        rep += 1
    return models, targets, preds


def _sync(dev: str) -> None:
    if dev.startswith("cuda"):
        torch.cuda.synchronize()


def _repeat(fn, dev: str, n: int):
    """``max(1, n)`` runs of ``fn``: (best wall s, median wall s, best CPU s), and the last run's result."""
    walls, cpus, out = [], [], None
    for _ in range(max(1, n)):
        _sync(dev)
        clock = _Clock()
        out = fn()
        _sync(dev)
        w, c = clock.stop()
        walls.append(w)
        cpus.append(c)
    return (min(walls), statistics.median(walls), min(cpus)), out


TOOLKIT_MS_PER_PAIR = 11.0 + 5.0 + 9.0  # VSD + MSSD + MSPD, one process (see the module docstring)


def make_case(out: Path, per_gt: float = 2.2, seed: int = 0) -> tuple[Path, Path, int, int]:
    """A 60-image YCB-V-layout case and a results CSV: (data root, CSV, estimates, (estimate, GT) pairs)."""
    import importlib.util

    import numpy as np

    spec = importlib.util.spec_from_file_location("make_ycbv_sample", REPO / "scripts" / "make_ycbv_sample.py")
    sample = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sample)
    sample.SCENES = {sid: [1 + 4 * k for k in range(10)] for sid in (48, 50, 51, 53, 55, 58)}
    root = out / "ycbv"
    sample.main(root)
    rng = np.random.default_rng(seed)
    rows, pairs = ["scene_id,im_id,obj_id,score,R,t,time"], 0
    for sdir in sorted((root / "test").iterdir()):
        for im, gts in json.loads((sdir / "scene_gt.json").read_text()).items():
            objs = [g["obj_id"] for g in gts]
            for g in gts:
                for _ in range(int(per_gt) + int(rng.random() < per_gt % 1)):
                    a = rng.normal(0, 0.15, 3)
                    ax = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
                    th = np.linalg.norm(a) + 1e-12
                    dR = np.eye(3) + np.sin(th) / th * ax + (1 - np.cos(th)) / th**2 * ax @ ax
                    R = dR @ np.array(g["cam_R_m2c"]).reshape(3, 3)
                    t = np.array(g["cam_t_m2c"]) + rng.normal(0, 12, 3)
                    rows.append(f"{int(sdir.name)},{im},{g['obj_id']},{rng.random():.4f},"
                                f"{' '.join(f'{x:.8f}' for x in R.ravel())},{' '.join(f'{x:.4f}' for x in t)},0.1")
                    pairs += objs.count(g["obj_id"])
    csv = out / "mine_ycbv-test.csv"
    csv.write_text("\n".join(rows) + "\n")
    return root, csv, len(rows) - 1, pairs


def whole_process(runs: int, per_gt: float) -> None:
    import os
    import tempfile

    from bench.benchmarks.whole_process import alternate

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        root, csv, n_est, pairs = make_case(Path(tmp), per_gt)
        n_img = sum(len(list((d / "depth").iterdir())) for d in (root / "test").iterdir())
        print(f"case: {n_img} images, {n_est} estimates, {pairs} (estimate, GT) pairs "
              f"(made in {time.perf_counter() - t0:.0f} s)")
        cli = [sys.executable, "-m", "bench", "evaluate", "method=mine", "dataset=ycbv", f"data_root={root}",
               f"predictions={csv}", f"out={Path(tmp) / 'out'}", f"leaderboard_dir={Path(tmp) / 'lb'}",
               "progress=false"]
        t = alternate({"posearena CLI": cli}, runs=runs, env={**os.environ, "PYTHONPATH": str(REPO)})["posearena CLI"]
        m = json.loads((Path(tmp) / "out" / "metrics.json").read_text())["metrics"]
    est = pairs * TOOLKIT_MS_PER_PAIR / 1e3
    print(f"AR {m['AR']:.4f} (VSD {m['AR_VSD']:.4f}, MSSD {m['AR_MSSD']:.4f}, MSPD {m['AR_MSPD']:.4f})")
    print(f"posearena CLI, whole process: median {t.median:.2f} s of {runs} ({min(t.walls):.2f}..{max(t.walls):.2f}), "
          f"peak {t.peak_mb:.0f} MB")
    print(f"the toolkit at its per-pair times ({TOOLKIT_MS_PER_PAIR:g} ms per pair, errors alone): {est:.1f} s, "
          f"{est / t.median:.1f}x ours")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--estimates", type=int, default=500)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--skip-parts", action="store_true", help="only time the full metric")
    ap.add_argument("--repeat", type=int, default=5,
                    help="timed runs of each part; the best and the median are printed (a shared machine's load "
                         "only ever adds time)")
    ap.add_argument("--whole-process", action="store_true", help="time the CLI as a fresh process (see above)")
    ap.add_argument("--runs", type=int, default=5, help="--whole-process: runs (the median is shown)")
    ap.add_argument("--per-gt", type=float, default=2.2, help="--whole-process: estimates per GT instance")
    args = ap.parse_args(argv)
    if args.whole_process:
        whole_process(args.runs, args.per_gt)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    from metrics.bop.ar import BOPAR

    dev = args.device
    models, targets, preds = workload(args.estimates)
    targets = [{k: v.to(dev) for k, v in t.items()} for t in targets]
    preds = [{k: v.to(dev) for k, v in p.items()} for p in preds]
    n_est = sum(int(p["obj_id"].numel()) for p in preds)
    print(f"device {dev}, torch threads {torch.get_num_threads()}, {len(targets)} images, {n_est} estimates")

    metric = BOPAR(models).to(dev)
    if not args.skip_parts:
        from metrics.bop import pose_error
        from metrics.common import one_cpu_thread

        with one_cpu_thread(dev):  # as BOPAR runs them

            # Time each error alone on all (estimate, GT of the same object) pairs.
            pairs = []
            for i, (p, t) in enumerate(zip(preds, targets)):
                for e in range(p["obj_id"].numel()):
                    for gi in torch.nonzero(t["gt_obj_id"] == p["obj_id"][e]).flatten().tolist():
                        pairs.append((i, e, gi))
            P = len(pairs)
            R_e = torch.stack([preds[i]["R"][e] for i, e, _ in pairs]).double()
            t_e = torch.stack([preds[i]["t"][e] for i, e, _ in pairs]).double()
            R_g = torch.stack([targets[i]["gt_R"][g] for i, _, g in pairs]).double()
            t_g = torch.stack([targets[i]["gt_t"][g] for i, _, g in pairs]).double()
            K = torch.stack([targets[i]["K"] for i, _, _ in pairs]).double()
            obj = torch.tensor([int(preds[i]["obj_id"][e]) for i, e, _ in pairs], device=dev)
            diam = torch.tensor([models[int(o)].diameter for o in obj.tolist()], dtype=torch.float64, device=dev)
            image = torch.tensor([i for i, _, _ in pairs], device=dev)
            depths = [t["depth"].reshape(-1).to(torch.float32) for t in targets]  # BOPAR holds float32 depth
            hw = torch.tensor([list(t["depth"].shape) for t in targets], device=dev)
            sizes = hw[:, 0] * hw[:, 1]
            offs = torch.cumsum(sizes, 0) - sizes
            _sync(dev)
            time.perf_counter()
            metric._errors(obj[:8], R_e[:8], t_e[:8], R_g[:8], t_g[:8], K[:8], diam[:8], image[:8],
                           depths, [tuple(x) for x in hw.tolist()])  # warm-up
            _sync(dev)
            mesh = torch.tensor([metric._mesh_index[o] for o in obj.tolist()], device=dev)
            bank, depth_flat = metric._bank(torch.device(dev)), torch.cat(depths)
            taus = metric.vsd_taus.to(dev)

            def run_vsd():
                pose_error.vsd_batch(bank, mesh, R_e, t_e, R_g, t_g, K, image, depth_flat, offs, hw, diam, 15.0, taus)

            objects = []
            for o in torch.unique(obj).tolist():
                sel = torch.nonzero(obj == o).squeeze(1)
                m = models[o]
                sR, st = (x.to(dev) for x in metric._pose_errors.syms[o])
                pts, sub = m.vertices.to(dev), metric._pose_errors.subsets[o].to(dev)
                sp = pose_error.symmetric_points(pts.double(), sR, st)  # per object, once (as BOPAR caches it)
                objects.append((sel, m, sR, st, pts, sub, sp))

            def run_mssd():
                for sel, m, sR, st, pts, sub, sp in objects:
                    oi = sel[pose_error.spheres_overlap(t_e[sel], t_g[sel], m.diameter)]
                    pose_error.mssd(R_e[oi], t_e[oi], R_g[oi], t_g[oi], pts, sR, st, sub=sub, sym_pts=sp)

            def run_mspd():
                for sel, m, sR, st, pts, sub, sp in objects:
                    pose_error.mspd(R_e[sel], t_e[sel], R_g[sel], t_g[sel], K[sel], pts, sR, st, sub=sub, sym_pts=sp)

            print(f"{P} (estimate, GT) pairs, {args.repeat} runs each; ms per pair, wall best / median (CPU best); "
                  "speed-up of the best and the median vs the toolkit's per-pair time")
            for name, fn, ref_ms in (("VSD", run_vsd, 11.0), ("MSSD", run_mssd, 5.0), ("MSPD", run_mspd, 9.0)):
                best, med, cpu = (1e3 * x / P for x in _repeat(fn, dev, args.repeat)[0])
                print(f"  {name:<5} {best:.3f} / {med:.3f} ({cpu:.3f}) ms   vs toolkit {ref_ms:g} ms: "
                      f"x{ref_ms / best:.1f} / x{ref_ms / med:.1f}")

    def run_bopar():
        metric.reset()
        for i in range(0, len(targets), 16):
            metric.update(preds[i:i + 16], targets[i:i + 16])
        return metric.compute()

    (dt, med, ct), out = _repeat(run_bopar, dev, args.repeat)
    print(f"BOPAR update+compute, {n_est} estimates: best {dt:.2f} s / median {med:.2f} s wall ({ct:.2f} s CPU); "
          f"extrapolated to 50,000 estimates: {50_000 * dt / n_est:.0f} s / {50_000 * med / n_est:.0f} s wall")
    print("  " + ", ".join(f"{k} {float(v):.4f}" for k, v in out.items()))


if __name__ == "__main__":
    main()
