"""ViTPose-B predict throughput: the suite's ``predict_step`` against a bare forward of the same network.

Both sides do the same network work: every person crop of the batch and its mirror (flip test) in one
forward. ``predict_step`` adds what the suite does around it: JPEG decoding, box -> centre/scale, the affine
crops, normalisation, flip-back, DARK-UDP decoding, rescoring and OKS-NMS. The wrapper overhead is
``t_predict / t_forward - 1`` (goal: <= 5%); timings are the best of interleaved repeats, and the image
loading + cropping time is reported on its own (the part of the overhead that does not drown in noise). Random weights: the work does not depend on the values.

    python -m bench.benchmarks.vitpose [--arch b] [--images 4] [--boxes 4] [--repeats 3] [--threads N] [--device cpu]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.types import Sample
from methods.human2d.topdown import prepare_crops
from methods.human2d.vitpose import ViTPose


def synthetic_batch(folder: Path, images: int, boxes: int, seed: int = 0) -> list[Sample]:
    """COCO-like Samples: 640x480 JPEGs with ``boxes`` person boxes each."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(images):
        arr = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
        path = folder / f"{i:012d}.jpg"
        Image.fromarray(arr).save(path, quality=90)
        xy = rng.uniform(0, 400, (boxes, 2))
        wh = rng.uniform(60, 240, (boxes, 2))
        out.append(Sample(i, {}, {"image_path": str(path), "width": 640, "height": 480,
                                  "person_boxes": torch.from_numpy(np.concatenate([xy, wh], 1)),
                                  "person_scores": torch.from_numpy(rng.uniform(0.3, 1.0, boxes))}))
    return out


def timed(fn, sync) -> float:
    sync()
    t = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="b")
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--boxes", type=int, default=4, help="person boxes per image")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    model = ViTPose(args.arch).to(dev).eval()
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    with tempfile.TemporaryDirectory() as tmp:
        batch = synthetic_batch(Path(tmp), args.images, args.boxes)
        x, *_ = prepare_crops(batch, model.pipeline, dev)
        pair = torch.cat([x, x.flip(-1)])

        def bare():
            with torch.inference_mode():
                model.net(pair)

        def predict():
            model.predict_step(batch)

        def crops():
            prepare_crops(batch, model.pipeline, dev)

        bare(), predict()                                    # warm-up
        # interleaved, best of N: a shared machine's load drifts between runs
        t_fwd = t_pred = t_crop = float("inf")
        for _ in range(args.repeats):
            t_fwd = min(t_fwd, timed(bare, sync))
            t_pred = min(t_pred, timed(predict, sync))
            t_crop = min(t_crop, timed(crops, sync))
    res = {
        "arch": f"vitpose-{args.arch}", "device": str(dev), "threads": torch.get_num_threads(),
        "images": args.images, "crops": int(x.shape[0]), "forward_batch": int(pair.shape[0]),
        "bare_forward_s": round(t_fwd, 4), "predict_step_s": round(t_pred, 4),
        "bare_images_per_s": round(args.images / t_fwd, 3), "predict_images_per_s": round(args.images / t_pred, 3),
        "overhead_pct": round(100 * (t_pred / t_fwd - 1), 2),
        "image_load_and_crop_s": round(t_crop, 4),
        "crop_overhead_pct": round(100 * t_crop / t_fwd, 2),
    }
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
