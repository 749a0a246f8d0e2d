"""Time the 3D joint-error metrics on H36M-sized synthetic input (550,000 poses by default).

    python -m bench.benchmarks.mpjpe [--frames 550000] [--sequences 240] [--device cpu] [--threads N]

Reports the kernels alone (MPJPE, P-MPJPE, N-MPJPE, MPJVE over all frames at once), the full
``H36MPoseError`` metric fed one sequence at a time (as the harness does), and ``PCK3D``. The target on
CPU is under 5 s for the whole H36M metric. Process CPU time is printed beside wall time: on a shared
machine it shows what the run would take uncontended (divided by the threads actually busy).
"""
from __future__ import annotations

import argparse
import time

import torch

from metrics.mpjpe import H36MPoseError, mean_velocity_error, mpjpe, n_mpjpe, p_mpjpe
from metrics.pck3d import PCK3D


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


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(label: str, fn, device: str) -> float:
    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    _sync(device)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"{label:<44s} {dt:8.3f} s wall {cpu:8.3f} s process CPU")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=550_000)
    ap.add_argument("--sequences", type=int, default=240)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    gts, preds = synthetic(args.frames, args.sequences, args.device)
    g_all, p_all = torch.cat(gts), torch.cat(preds)
    print(f"{args.frames} poses in {args.sequences} sequences on {args.device} ({torch.get_num_threads()} threads)")
    timed("kernel mpjpe", lambda: mpjpe(p_all, g_all).mean(), args.device)
    timed("kernel p_mpjpe (Procrustes)", lambda: p_mpjpe(p_all, g_all).mean(), args.device)
    timed("kernel n_mpjpe", lambda: n_mpjpe(p_all, g_all).mean(), args.device)
    timed("kernel MPJVE (per sequence)", lambda: [mean_velocity_error(p, g) for p, g in zip(preds, gts)], args.device)

    def h36m():
        m = H36MPoseError().to(args.device)
        for i, (p, g) in enumerate(zip(preds, gts)):
            m.update([{"joints": p}], [{"joints": g, "sample_id": torch.tensor(i), "action": torch.tensor(i % 15)}])
        return m.compute()

    total = timed("H36MPoseError update+compute (all 4 metrics)", h36m, args.device)

    def pck():
        m = PCK3D().to(args.device)
        for i, (p, g) in enumerate(zip(preds, gts)):
            valid = torch.ones(g.shape[0], dtype=torch.bool, device=args.device)
            m.update([{"joints": p}], [{"joints_mm": g * 1000, "valid": valid, "sample_id": torch.tensor(i)}])
        return m.compute()

    timed("PCK3D update+compute", pck, args.device)
    print(f"H36M metric: {args.frames / total:,.0f} poses/s")


if __name__ == "__main__":
    main()
