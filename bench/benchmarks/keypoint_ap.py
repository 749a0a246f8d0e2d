"""Load + evaluate speed of COCO keypoint AP: posearena vs pycocotools vs faster-coco-eval.

Run: ``python -m bench.benchmarks.keypoint_ap [--images 5000] [--seed 0] [--repeat 1]``

Builds a deterministic synthetic COCO keypoints case (5,000 images, ~11k GT of which ~3% crowd and ~8%
without labelled keypoints, ~110k detections, scores on a 0.001 grid so many tie, also across images),
writes the GT and the results JSON to a temporary folder, then times for each tool the whole path a user
waits for: read the GT file, read the results file, evaluate, accumulate, summarize. All three must give the
same 10 stats (to 1e-12), else the script fails. Wall time and process CPU time are both printed: on a shared
machine the CPU time is the steadier comparison (all three tools run single-threaded). posearena is timed twice: through the dataset reader,
``read_predictions`` and ``KeypointAP.update`` per image as the harness does (``posearena``), and on flat
arrays straight into the kernel (``posearena-flat``).

``--whole-process`` times what a user waits for instead: each tool as its own fresh process, imports included
(bench/benchmarks/whole_process.py: alternating runs, median of ``--runs`` (5), peak RSS per process). The CLI
is ``python -m bench evaluate method=mine dataset=coco data_root=CASE predictions=RESULTS`` with its default
1000-replicate bootstrap interval; faster-coco-eval and pycocotools load, evaluate, accumulate and summarize.
The 10 stats of all three must agree (to 1e-12), else the script fails.

``--bootstrap`` times, in one process through the harness path, the evaluation (matching, accumulation,
summary) against the 1000-replicate bootstrap interval (per-image statistics, draws, replicates, percentiles):
minimum of ``--repeat`` runs each, and the share; the first bootstrap call, which loads the compiled kernel
(numba's one-time start in a process), is printed on its own.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.data.coco import ANN_FILE, CocoKeypoints, read_coco_keypoint_gt
from bench.predictions.coco_json import read_coco_keypoint_results
from metrics.keypoint_ap import STAT_KEYS, keypoint_ap_stats

K = 17


def make_case(n_images: int = 5000, seed: int = 0) -> tuple[dict, list[dict]]:
    """A deterministic COCO-format GT dict and results list (see the module docstring)."""
    rng = np.random.default_rng(seed)
    images, anns, dets = [], [], []
    for i in range(n_images):
        iid = 100_000 + 7 * i
        W, H = 640, 480
        images.append({"id": iid, "file_name": f"{iid:012d}.jpg", "width": W, "height": H})
        people = []
        for _ in range(int(rng.choice([0, 1, 1, 2, 2, 2, 3, 3, 4, 5]))):
            w, h = rng.uniform(8, 320), rng.uniform(8, 420)
            x, y = rng.uniform(0, W - w), rng.uniform(0, H - h)
            kx, ky = rng.uniform(x, x + w, K), rng.uniform(y, y + h, K)
            v = rng.choice([0, 1, 2], K, p=[0.3, 0.2, 0.5])
            if rng.random() < 0.08:
                v[:] = 0
            area = float(np.round(w * h * rng.uniform(0.4, 0.8), 2))
            if rng.random() < 0.01:
                area = float(rng.choice([32.0**2, 96.0**2]))
            kp = np.stack([np.where(v > 0, np.round(kx), 0), np.where(v > 0, np.round(ky), 0), v], 1)
            anns.append({"id": len(anns) + 1, "image_id": iid, "category_id": 1, "iscrowd": int(rng.random() < 0.03),
                         "area": area, "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)],
                         "num_keypoints": int((v > 0).sum()), "keypoints": [int(t) for t in kp.ravel()]})
            people.append((kx, ky, area))
        n_dt = int(rng.integers(0, 50)) if rng.random() < 0.9 else 0
        for _ in range(n_dt):
            if people and rng.random() < 0.6:
                kx, ky, area = people[int(rng.integers(len(people)))]
                s = np.sqrt(area) * rng.uniform(0.005, 0.1)
                dx, dy = kx + rng.normal(0, s, K), ky + rng.normal(0, s, K)
            else:
                w, h = rng.uniform(5, 300), rng.uniform(5, 400)
                x, y = rng.uniform(0, W - w), rng.uniform(0, H - h)
                dx, dy = rng.uniform(x, x + w, K), rng.uniform(y, y + h, K)
            kp = np.round(np.stack([dx, dy, rng.uniform(0, 1, K)], 1), 3).ravel().tolist()
            dets.append({"image_id": iid, "category_id": 1, "keypoints": kp, "score": round(float(rng.uniform()), 3)})
    gt = {"images": images, "annotations": anns,
          "categories": [{"id": 1, "name": "person", "supercategory": "person",
                          "keypoints": [f"kp{k}" for k in range(K)], "skeleton": []}]}
    return gt, dets


def run_posearena(root: Path, results: Path) -> np.ndarray:
    """The harness path: dataset reader, read_predictions, KeypointAP.update per image, compute."""
    ds = CocoKeypoints(root)
    preds = ds.read_predictions(results)
    metric = ds.build_metric()
    outs, tgts = [], []
    for i in range(len(ds)):
        s = ds[i]
        p = preds.get(s.sample_id) or ds.empty_prediction(s)
        outs.append(p.output)
        tgts.append(s.target)
    metric.update(outs, tgts)
    out = metric.compute()
    return np.array([float(out[k]) for k in STAT_KEYS])


STAGES: dict[str, float] = {}  # CPU seconds of the last posearena-flat run, per stage


def run_posearena_flat(gt_path: Path, results: Path) -> np.ndarray:
    """GT reader + results reader + the functional kernel on flat arrays (no per-image objects)."""
    c0 = time.process_time()
    gt = read_coco_keypoint_gt(gt_path)
    c1 = time.process_time()
    res = read_coco_keypoint_results(results, [im["id"] for im in gt.images], gt.num_keypoints, gt.category_id)
    c2 = time.process_time()
    t = torch.from_numpy
    r = keypoint_ap_stats(t(res.image_id), t(res.keypoints), t(res.score), t(gt.ann_image), t(gt.keypoints),
                          t(gt.area), t(gt.bbox), t(gt.iscrowd), t(gt.num_kpts), t(gt.ann_id))
    c3 = time.process_time()
    STAGES.update({"read GT": c1 - c0, "read results": c2 - c1, "evaluate": c3 - c2})
    return np.array([float(r.stats[k]) for k in STAT_KEYS])


def run_pycocotools(gt_path: Path, results: Path) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        dt = gt.loadRes(str(results))
        ev = COCOeval(gt, dt, "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats, dtype=np.float64)


def run_faster_coco_eval(gt_path: Path, results: Path) -> np.ndarray:
    from faster_coco_eval import COCO, COCOeval_faster

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        dt = gt.loadRes(str(results))
        ev = COCOeval_faster(gt, dt, "keypoints", print_function=lambda *a, **k: None)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats[:10], dtype=np.float64)


_REFERENCE_PROCESS = """
import contextlib, io, json, sys
if sys.argv[1] == "faster-coco-eval":
    from faster_coco_eval import COCO, COCOeval_faster as COCOeval
else:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO(sys.argv[2])
    ev = COCOeval(gt, gt.loadRes(sys.argv[3]), "keypoints")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
print(json.dumps([float(x) for x in ev.stats[:10]]))
"""


def bootstrap_share(root: Path, results: Path, repeat: int) -> int:
    """Evaluation vs bootstrap interval in one process (see the module docstring); prints and returns 0."""
    from metrics.bootstrap import confidence_intervals

    ds = CocoKeypoints(root)
    preds = ds.read_predictions(results)
    metric = ds.build_metric()
    samples = [ds[i] for i in range(len(ds))]
    metric.update([(preds.get(s.sample_id) or ds.empty_prediction(s)).output for s in samples],
                  [s.target for s in samples])
    res = metric.evaluate()
    t0 = time.perf_counter()
    first = confidence_intervals(metric.bootstrap(res), 1000, 0)
    first_s = time.perf_counter() - t0
    ev, bs = [], []
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        metric._evaluate()
        ev.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ci = confidence_intervals(metric.bootstrap(res), 1000, 0)
        bs.append(time.perf_counter() - t0)
        assert ci == first
    print(f"evaluation {min(ev):.3f} s, bootstrap interval (1000 replicates) {min(bs):.3f} s: "
          f"{min(bs) / min(ev):.1%} of the evaluation (minimum of {len(ev)}); first call, loading the compiled "
          f"kernel: {first_s:.3f} s; AP interval [{first['AP_ci_low']:.6f}, {first['AP_ci_high']:.6f}]")
    return 0


def whole_process(root: Path, gt_path: Path, res_path: Path, runs: int) -> int:
    """Each tool as a fresh process (see the module docstring); prints the table and returns 0."""
    import os
    import sys

    from bench.benchmarks.whole_process import alternate, table

    repo = Path(__file__).resolve().parents[2]
    out = root / "cli"
    tools = {
        "posearena CLI": [sys.executable, "-m", "bench", "evaluate", "method=mine", "dataset=coco",
                          f"data_root={root}", f"predictions={res_path}", f"out={out}",
                          f"leaderboard_dir={root / 'lb'}", "progress=false"],
        "faster-coco-eval": [sys.executable, "-c", _REFERENCE_PROCESS, "faster-coco-eval", str(gt_path), str(res_path)],
        "pycocotools": [sys.executable, "-c", _REFERENCE_PROCESS, "pycocotools", str(gt_path), str(res_path)],
    }
    env = {**os.environ, "PYTHONPATH": str(repo)}
    timings = alternate(tools, runs=runs, env=env)
    ours = json.loads((out / "metrics.json").read_text())["metrics"]
    stats = {"posearena CLI": np.array([ours[k] for k in STAT_KEYS])}
    stats |= {name: np.array(json.loads(timings[name].stdout)) for name in ("faster-coco-eval", "pycocotools")}
    for name, st in stats.items():
        if not np.allclose(st, stats["pycocotools"], rtol=0, atol=1e-12):
            raise SystemExit(f"stats differ: {name} {st.tolist()} vs pycocotools {stats['pycocotools'].tolist()}")
    print("stats (identical across tools): " + " ".join(f"{k}={v:.6f}" for k, v in zip(STAT_KEYS, stats["pycocotools"])))
    print(f"CLI interval: AP_ci_low={ours['AP_ci_low']:.6f} AP_ci_high={ours['AP_ci_high']:.6f} (1000 replicates)")
    print(f"whole process, median of {runs} alternating runs:")
    print(table(timings, "faster-coco-eval"))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=1, help="time each tool this many times, report the best")
    ap.add_argument("--skip", nargs="*", default=[], help="tools to leave out")
    ap.add_argument("--whole-process", action="store_true", help="time each tool as a fresh process (see above)")
    ap.add_argument("--runs", type=int, default=5, help="--whole-process: alternating rounds (the median is shown)")
    ap.add_argument("--bootstrap", action="store_true", help="evaluation vs bootstrap interval, in process")
    args = ap.parse_args(argv)

    gt, dets = make_case(args.images, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        gt_path = root / ANN_FILE
        gt_path.parent.mkdir(parents=True)
        gt_path.write_text(json.dumps(gt))
        res_path = root / "results.json"
        res_path.write_text(json.dumps(dets))
        print(f"case: {len(gt['images'])} images, {len(gt['annotations'])} GT "
              f"({sum(a['iscrowd'] for a in gt['annotations'])} crowd, "
              f"{sum(a['num_keypoints'] == 0 for a in gt['annotations'])} without keypoints), {len(dets)} detections, "
              f"results file {res_path.stat().st_size / 1e6:.1f} MB")
        del gt, dets
        if args.whole_process:
            return whole_process(root, gt_path, res_path, args.runs)
        if args.bootstrap:
            return bootstrap_share(root, res_path, max(args.repeat, 7))
        tools = {
            "posearena": lambda: run_posearena(root, res_path),
            "posearena-flat": lambda: run_posearena_flat(gt_path, res_path),
            "faster-coco-eval": lambda: run_faster_coco_eval(gt_path, res_path),
            "pycocotools": lambda: run_pycocotools(gt_path, res_path),
        }
        times, cpu, stats = {}, {}, {}
        for name, fn in tools.items():
            if name in args.skip:
                continue
            best, best_cpu = float("inf"), float("inf")
            for _ in range(args.repeat):
                t0, c0 = time.perf_counter(), time.process_time()
                stats[name] = fn()
                best = min(best, time.perf_counter() - t0)
                best_cpu = min(best_cpu, time.process_time() - c0)
            times[name], cpu[name] = best, best_cpu
    ref_name = "pycocotools" if "pycocotools" in stats else next(iter(stats))
    for name, s in stats.items():
        if not np.allclose(s, stats[ref_name], rtol=0, atol=1e-12):
            raise SystemExit(f"stats differ: {name} {s.tolist()} vs {ref_name} {stats[ref_name].tolist()}")
    print("stats (identical across tools): " + " ".join(f"{k}={v:.6f}" for k, v in zip(STAT_KEYS, stats[ref_name])))
    print(f"{'tool':<18}{'wall s':>9}{'x posearena':>13}{'cpu s':>9}{'x posearena':>13}")
    base = times.get("posearena", next(iter(times.values())))
    base_cpu = cpu.get("posearena", next(iter(cpu.values())))
    for name, t in times.items():
        print(f"{name:<18}{t:>9.3f}{t / base:>12.1f}x{cpu[name]:>9.3f}{cpu[name] / base_cpu:>12.1f}x")
    if STAGES:
        print("posearena-flat CPU s by stage (last run): " + ", ".join(f"{k} {v:.3f}" for k, v in STAGES.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
