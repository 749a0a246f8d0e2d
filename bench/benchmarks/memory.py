"""Peak memory of scoring a 1,000,000-detection COCO keypoint results file (issue 7: bounded memory).

Run: ``python -m bench.benchmarks.memory [--images 20000] [--detections 1000000] [--seed 0] [--keep DIR]``

Writes a deterministic synthetic case to a temporary folder (a COCO-format GT with ``--images`` images of
640x480, 0-4 people each, and a results file of ``--detections`` detections: 60% jittered copies of a GT
person, the rest random; keypoints with 2 decimals, scores on a 0.001 grid), then scores it in a CHILD
process through the code path of ``python -m bench evaluate predictions=...``: the dataset reader
(``CocoKeypoints``), ``read_predictions`` (the results reader), then ``KeypointAP.update`` batch by batch
(batches of ``--batch-size`` images, as the Trainer feeds them) and ``compute``, with a progress bar.

Peak RSS is the child's ``ru_maxrss`` (``resource.getrusage(RUSAGE_CHILDREN)`` after it exits), so neither
the generator nor the parent's own imports count; the child also prints its ``VmHWM`` after each stage, to
show which stage sets the peak. Goal (issue 7): below 4 GiB for 1M detections.

Measured (2-core machine, 20,000 images, 1,000,000 detections, 436 MiB file, ``--bootstrap-samples 1000``):
peak RSS 1.78 GiB, 12.9 s for the child with its imports (read results 3.1 s, update 1.2 s, compute 1.5 s,
bootstrap 1.0 s). Issue 7 measured 3.38 GiB and about 100 s without the bootstrap; the results file is now
parsed in pieces (bench/predictions/coco_json.py), the per-image views are kept without copies, and the
bootstrap sums integer draw counts (metrics/keypoint_ap.py).

``--bootstrap-samples B`` adds the bootstrap confidence intervals that ``bench/run.py`` computes after
``compute`` (B = 1000 there). Off by default, to time the scoring alone. Like the plain loop, the child gives
freed heap back (bench/heap.py) after reading the results and before the bootstrap.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

K = 17
GOAL_GIB = 4.0


# ------------------------------------------------------------------------------------------ the case


def make_gt(n_images: int, rng: np.random.Generator) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """GT dict, and for the detection generator: per-annotation image index, (G, K, 2) keypoint positions,
    image ids and per-annotation sqrt(area)."""
    W, H = 640, 480
    n_people = rng.choice([0, 1, 1, 2, 2, 3, 4], n_images)
    img_idx = np.repeat(np.arange(n_images), n_people)
    G = img_idx.size
    w, h = rng.uniform(16, 320, G), rng.uniform(16, 420, G)
    x, y = rng.uniform(0, W - w), rng.uniform(0, H - h)
    kx = x[:, None] + rng.uniform(0, 1, (G, K)) * w[:, None]
    ky = y[:, None] + rng.uniform(0, 1, (G, K)) * h[:, None]
    v = rng.choice([0, 1, 2], (G, K), p=[0.3, 0.2, 0.5])
    area = np.round(w * h * rng.uniform(0.4, 0.8, G), 2)
    kp = np.stack([np.where(v > 0, np.round(kx), 0), np.where(v > 0, np.round(ky), 0), v], -1).astype(int)
    ids = 100_000 + 7 * np.arange(n_images)
    images = [{"id": int(i), "file_name": f"{int(i):012d}.jpg", "width": W, "height": H} for i in ids]
    crowd = rng.random(G) < 0.03
    anns = [
        {"id": g + 1, "image_id": int(ids[img_idx[g]]), "category_id": 1, "iscrowd": int(crowd[g]),
         "area": float(area[g]), "bbox": [round(float(x[g]), 2), round(float(y[g]), 2), round(float(w[g]), 2),
                                          round(float(h[g]), 2)],
         "num_keypoints": int((v[g] > 0).sum()), "keypoints": kp[g].ravel().tolist()}
        for g in range(G)
    ]
    gt = {"images": images, "annotations": anns,
          "categories": [{"id": 1, "name": "person", "supercategory": "person",
                          "keypoints": [f"kp{k}" for k in range(K)], "skeleton": []}]}
    return gt, img_idx, np.stack([kx, ky], -1), ids, np.sqrt(area)


def write_results(path: Path, n_images: int, n_det: int, img_idx: np.ndarray, kxy: np.ndarray, ids: np.ndarray,
                  scale: np.ndarray, rng: np.random.Generator, chunk: int = 50_000) -> None:
    """Write ``n_det`` detections as a COCO keypoint results JSON, generated and formatted in chunks."""
    per_person = [[] for _ in range(n_images)]
    for g, i in enumerate(img_idx.tolist()):
        per_person[i].append(g)
    first = np.searchsorted(img_idx, np.arange(n_images))  # img_idx is sorted
    count = np.bincount(img_idx, minlength=n_images)
    row = '{"image_id": %d, "category_id": 1, "keypoints": [' + ", ".join(["%.2f, %.2f, %.3f"] * K) + '], "score": %.3f}'
    with open(path, "w") as f:
        f.write("[")
        done = 0
        while done < n_det:
            n = min(chunk, n_det - done)
            img = rng.integers(0, n_images, n)
            has = count[img] > 0
            near = has & (rng.random(n) < 0.6)
            g = first[img] + (rng.random(n) * np.maximum(count[img], 1)).astype(int)
            g = np.where(near, g, 0)
            s = scale[g] * rng.uniform(0.005, 0.1, n)
            xy = np.where(near[:, None, None], kxy[g] + rng.normal(0, 1, (n, K, 2)) * s[:, None, None],
                          rng.uniform(0, 1, (n, K, 2)) * [640, 480])
            vals = np.concatenate([xy, rng.uniform(0, 1, (n, K, 1))], -1).reshape(n, 3 * K)
            table = np.column_stack([ids[img], vals, np.round(rng.uniform(0, 1, n), 3)])
            lines = [row % tuple(r) for r in table.tolist()]
            f.write(("," if done else "") + ",\n".join(lines))
            done += n
        f.write("]\n")


def make_case(folder: Path, n_images: int, n_det: int, seed: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    gt, img_idx, kxy, ids, scale = make_gt(n_images, rng)
    (folder / "annotations").mkdir(parents=True, exist_ok=True)
    gt_path = folder / "annotations" / "person_keypoints_val2017.json"
    gt_path.write_text(json.dumps(gt))
    res = folder / "results.json"
    write_results(res, n_images, n_det, img_idx, kxy, ids, scale, rng)
    return gt_path, res


# ------------------------------------------------------------------------------------------ the child


def vm_hwm_mib() -> float:
    """This process's peak resident set so far (``VmHWM``), MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")  # pragma: no cover - not Linux


def score(root: Path, results: Path, batch_size: int, bootstrap_samples: int = 0) -> dict:
    """The CLI's scoring path without the Trainer: dataset reader -> read_predictions -> KeypointAP."""
    from rich.progress import Progress

    from bench.data.coco import CocoKeypoints
    from bench.heap import release_free_memory
    from bench.replay import PredictionsFile

    stages = {}
    t0 = time.perf_counter()
    ds = CocoKeypoints(root)
    stages["read GT"] = (time.perf_counter() - t0, vm_hwm_mib())
    t1 = time.perf_counter()
    method = PredictionsFile(ds.read_predictions(results), ds)
    stages["read results"] = (time.perf_counter() - t1, vm_hwm_mib())
    release_free_memory()  # as bench/run.py's plain loop does before the first batch
    t2 = time.perf_counter()
    metric = ds.build_metric()
    n = len(ds)
    with Progress(transient=False) as bar:
        task = bar.add_task("KeypointAP.update", total=n)
        for start in range(0, n, batch_size):
            batch = [ds[i] for i in range(start, min(n, start + batch_size))]
            preds = method.predict_step(batch)
            metric.update([p.output for p in preds], [s.target for s in batch])
            bar.advance(task, len(batch))
    stages["update"] = (time.perf_counter() - t2, vm_hwm_mib())
    t3 = time.perf_counter()
    stats = {k: float(v) for k, v in metric.compute().items()}
    stages["compute"] = (time.perf_counter() - t3, vm_hwm_mib())
    if bootstrap_samples > 0:  # what bench/run.py adds after compute (its default: 1000 replicates)
        from metrics import bootstrap

        release_free_memory()  # as bench/run.py's plain loop does before the bootstrap
        t4 = time.perf_counter()
        stats.update(bootstrap.confidence_intervals(metric.bootstrap_stats(), bootstrap_samples))
        stages["bootstrap"] = (time.perf_counter() - t4, vm_hwm_mib())
    return {"stats": stats, "stages": stages, "num_detections": sum(len(p.output["scores"]) for p in
                                                                       method.predictions.values())}


def child_main(args: argparse.Namespace) -> int:
    out = score(Path(args.root), Path(args.results), args.batch_size, args.bootstrap_samples)
    print(json.dumps(out), flush=True)
    return 0


# ------------------------------------------------------------------------------------------ the parent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=20_000)
    p.add_argument("--detections", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--bootstrap-samples", type=int, default=0,
                   help="also run the CLI's bootstrap CIs with this many replicates (0: off; see the docstring)")
    p.add_argument("--keep", default=None, help="write the case here and keep it (default: a temporary folder)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--root", help=argparse.SUPPRESS)
    p.add_argument("--results", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child_main(args)

    with tempfile.TemporaryDirectory(prefix="posearena-memory-") as tmp:
        folder = Path(args.keep) if args.keep else Path(tmp)
        t0 = time.perf_counter()
        _, res = make_case(folder, args.images, args.detections, args.seed)
        gen_s = time.perf_counter() - t0
        print(f"case: {args.images} images, {args.detections} detections, results file "
              f"{res.stat().st_size / 2**20:.0f} MiB (generated in {gen_s:.1f} s) in {folder}", flush=True)
        t1 = time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        proc = subprocess.run(
            [sys.executable, "-m", "bench.benchmarks.memory", "--child", "--root", str(folder), "--results", str(res),
             "--batch-size", str(args.batch_size), "--bootstrap-samples", str(args.bootstrap_samples)],
            stdout=subprocess.PIPE, text=True, check=False, env={**os.environ},
        )
        wall = time.perf_counter() - t1
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if proc.returncode != 0:
            print(f"scoring failed (exit {proc.returncode})", file=sys.stderr)
            return 1
        out = json.loads(proc.stdout.strip().splitlines()[-1])
    if before > peak_kib:  # pragma: no cover - an earlier child had a bigger peak (not here: one child)
        print("warning: ru_maxrss is the max over all children", file=sys.stderr)
    peak_gib = peak_kib / 2**20
    print(f"scored {out['num_detections']} detections in {wall:.1f} s (child wall time, imports included)")
    for name, (secs, hwm) in out["stages"].items():
        print(f"  {name:<13} {secs:7.1f} s   peak RSS so far {hwm / 1024:6.2f} GiB")
    print("  stats: " + ", ".join(f"{k} {v:.4f}" for k, v in out["stats"].items()))
    ok = peak_gib < GOAL_GIB
    print(f"peak RSS (child ru_maxrss): {peak_gib:.2f} GiB  goal < {GOAL_GIB:g} GiB: {'OK' if ok else 'OVER'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
