"""Time the 3D joint-error metrics on H36M-sized synthetic input (550,000 poses by default).

    python -m bench.benchmarks.mpjpe [--frames 550000] [--sequences 240] [--repeat 5] [--device cpu]
                                     [--threads N] [--vp3d DIR] [--no-cold]

One table, median of ``--repeat`` runs (wall and process CPU seconds): the P-MPJPE kernel over all frames, the
four errors per frame, and the whole ``H36MPoseError`` fed one sequence at a time (as the harness does), each
beside a numpy restatement of VideoPose3D's ``common/loss.py`` (batched ``np.linalg.svd``; ``--vp3d DIR`` times
that file itself from a checkout instead) and the ratio; then ``PCK3D``. The target on a 2-core CPU is 1.0 s
for the whole H36M metric. Process CPU beside wall shows what a run takes uncontended on a shared machine.

The compiled kernels (metrics/mpjpe_cpu.py) are cached by numba after the first process; ``--no-cold`` skips
the two fresh processes that time import + first update with an empty cache (compiling) and with the cache.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from metrics.mpjpe import H36MPoseError, p_mpjpe, sequence_errors
from metrics.pck3d import PCK3D

REPO = Path(__file__).resolve().parents[2]


def synthetic(frames: int, sequences: int, device: str, seed: int = 0) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.full((sequences,), frames // sequences)
    lengths[: frames - int(lengths.sum())] += 1
    gts, preds = [], []
    for t in lengths.tolist():
        g = torch.randn(t, 17, 3, dtype=torch.float64, generator=gen) * 0.25
        g = g - g[:, :1]
        p = 1.05 * g + 0.04 * torch.randn(t, 17, 3, dtype=torch.float64, generator=gen)
        gts.append(g.to(device))
        preds.append(p.to(device))
    return gts, preds


# ------------------------------------------------------------------ the reference, restated in numpy (the baseline)

def numpy_p_mpjpe(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-frame P-MPJPE by batched SVD, the formula of VideoPose3D's ``p_mpjpe`` (restated for timing)."""
    mu_x, mu_y = target.mean(axis=1, keepdims=True), pred.mean(axis=1, keepdims=True)
    x0, y0 = target - mu_x, pred - mu_y
    n_x = np.sqrt((x0**2).sum(axis=(1, 2), keepdims=True))
    n_y = np.sqrt((y0**2).sum(axis=(1, 2), keepdims=True))
    u, s, vt = np.linalg.svd((x0 / n_x).transpose(0, 2, 1) @ (y0 / n_y))
    v = vt.transpose(0, 2, 1)
    flip = np.sign(np.linalg.det(v @ u.transpose(0, 2, 1)))
    v[:, :, -1] *= flip[:, None]
    s[:, -1] *= flip
    r = v @ u.transpose(0, 2, 1)
    scale = s.sum(axis=1)[:, None, None] * n_x / n_y
    aligned = scale * (pred @ r) + (mu_x - scale * (mu_y @ r))
    return np.linalg.norm(aligned - target, axis=-1).mean(axis=-1)


def numpy_errors(pred: np.ndarray, target: np.ndarray, pa: Callable) -> np.ndarray:
    """The four errors of one sequence as run.py's ``evaluate`` computes them (numpy for all four here)."""
    scale = (target * pred).sum(axis=(1, 2)) / (pred * pred).sum(axis=(1, 2))
    vel = np.linalg.norm(np.diff(pred, axis=0) - np.diff(target, axis=0), axis=-1).mean()
    return np.array([np.linalg.norm(pred - target, axis=-1).mean(), pa(pred, target).mean(),
                     np.linalg.norm(scale[:, None, None] * pred - target, axis=-1).mean(), vel])


def vp3d_p_mpjpe(ref: Path) -> Callable:
    """VideoPose3D's own ``p_mpjpe`` from a checkout, as a per-frame function (its value is the mean)."""
    sys.path.insert(0, str(ref))
    from common.loss import p_mpjpe as reference

    def per_frame(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
        return np.full(len(pred), reference(pred.copy(), target.copy()))

    return per_frame


# ------------------------------------------------------------------ timing

def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable, device: str, repeat: int) -> tuple[float, float]:
    """Median wall and median process CPU seconds of ``repeat`` calls."""
    walls, cpus = [], []
    for _ in range(repeat):
        _sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        _sync(device)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


COLD = """
import time
t0, c0 = time.perf_counter(), time.process_time()
import numba, torch, torchmetrics
t1, c1 = time.perf_counter(), time.process_time()
from metrics.mpjpe import H36MPoseError
m = H36MPoseError()
g = torch.zeros(100, 17, 3, dtype=torch.float64); g[:, 1:] = 0.1
m.update([{"joints": g * 1.1}], [{"joints": g, "sample_id": 0, "action": 0}])
t2, c2 = time.perf_counter(), time.process_time()
print(t1 - t0, c1 - c0, t2 - t1, c2 - c1)
"""


def cold_process(cache: str) -> list[float]:
    """A fresh process with numba's cache in ``cache``: wall and CPU seconds of importing torch, torchmetrics
    and numba, then of importing the metric and its first update (compiling, or loading the cache)."""
    env = {**os.environ, "NUMBA_CACHE_DIR": cache}
    out = subprocess.run([sys.executable, "-c", COLD], cwd=REPO, env=env, check=True, capture_output=True, text=True)
    return [float(x) for x in out.stdout.split()[-4:]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=550_000)
    ap.add_argument("--sequences", type=int, default=240)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--vp3d", type=Path, help="a VideoPose3D checkout: time its p_mpjpe as the reference")
    ap.add_argument("--no-cold", action="store_true", help="skip the fresh-process timings")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    gts, preds = synthetic(args.frames, args.sequences, args.device)
    g_all, p_all = torch.cat(gts), torch.cat(preds)
    gn, pn = [g.cpu().numpy() for g in gts], [p.cpu().numpy() for p in preds]
    gn_all, pn_all = g_all.cpu().numpy(), p_all.cpu().numpy()
    pa_ref = vp3d_p_mpjpe(args.vp3d) if args.vp3d else numpy_p_mpjpe
    ref_name = "VideoPose3D p_mpjpe" if args.vp3d else "numpy SVD (VideoPose3D formula)"
    print(f"{args.frames} poses in {args.sequences} sequences on {args.device} ({torch.get_num_threads()} torch "
          f"threads), median of {args.repeat}; reference: {ref_name}")

    def metric():
        m = H36MPoseError().to(args.device)
        for i, (p, g) in enumerate(zip(preds, gts)):
            m.update([{"joints": p}], [{"joints": g, "sample_id": torch.tensor(i), "action": torch.tensor(i % 15)}])
        return m.compute()

    def reference_metric():  # run.py's evaluate: per sequence the four errors, weighted by T, per action
        sums = np.zeros((15, 4))
        frames = np.zeros(15)
        for i, (p, g) in enumerate(zip(pn, gn)):
            p = p.copy()
            p[:, 0] = 0  # dataset.root_relative_pred=true, the default
            sums[i % 15] += len(g) * numpy_errors(p, g, pa_ref)
            frames[i % 15] += len(g)
        return (sums / frames[:, None]).mean(axis=0) * 1000

    rows = [
        ("P-MPJPE kernel, all frames at once", lambda: p_mpjpe(p_all, g_all).mean(),
         lambda: pa_ref(pn_all, gn_all).mean()),
        ("4 errors per sequence (kernels only)", lambda: [sequence_errors(p, g) for p, g in zip(preds, gts)],
         lambda: [numpy_errors(p, g, pa_ref) for p, g in zip(pn, gn)]),
        ("H36MPoseError update+compute", metric, reference_metric),
    ]
    print(f"{'':40s} {'ours wall':>10s} {'ours CPU':>9s} {'ref wall':>9s} {'ref CPU':>8s} {'ref/ours':>9s}")
    total = 0.0
    for label, ours, ref in rows:
        w, c = timed(ours, args.device, args.repeat)
        rw, rc = timed(ref, "cpu", args.repeat)
        print(f"{label:40s} {w:9.3f}s {c:8.3f}s {rw:8.3f}s {rc:7.3f}s {rw / w:8.1f}x")
        total = w

    def pck():
        m = PCK3D().to(args.device)
        for i, (p, g) in enumerate(zip(preds, gts)):
            valid = torch.ones(g.shape[0], dtype=torch.bool, device=args.device)
            m.update([{"joints": p}], [{"joints_mm": g * 1000, "valid": valid, "sample_id": torch.tensor(i)}])
        return m.compute()

    w, c = timed(pck, args.device, args.repeat)
    print(f"{'PCK3D update+compute':40s} {w:9.3f}s {c:8.3f}s")
    verdict = "meets" if total <= 1.0 else "misses"
    print(f"H36M metric: {args.frames / total:,.0f} poses/s; {total:.3f} s {verdict} the 1.0 s target")
    if not args.no_cold and args.device == "cpu":
        with tempfile.TemporaryDirectory() as cache:
            for label in ("empty numba cache (compiles)", "numba cache filled"):
                lib_w, lib_c, w, c = cold_process(cache)
                print(f"fresh process, {label}: import + first update {w:.2f} s wall {c:.2f} s CPU "
                      f"(after torch, torchmetrics, numba imports: {lib_w:.2f} s wall {lib_c:.2f} s CPU)")

if __name__ == "__main__":
    main()
