"""Shared fixtures: running the CLI in a subprocess, small COCO cases built from the bundled sample, a hostile
pickle payload and one torch thread for the tiny-GEMM tests."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
COCO_SAMPLE = REPO / "bench" / "data" / "samples" / "coco"
COCO_GT = COCO_SAMPLE / "annotations" / "person_keypoints_val2017.json"


class ShellPayload:
    """Pickles to ``os.system(cmd)``: what a hostile data file holds (loaders must refuse it, never run it)."""

    def __init__(self, cmd: str):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


@pytest.fixture
def one_torch_thread():
    """Tiny GEMMs on a shared, loaded 2-core machine are ~100x slower with 2 threads (results do not change)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def output_lines(capsys) -> list[str]:
    """The non-blank lines a run printed (stdout, then stderr) since the last read of ``capsys``."""
    cap = capsys.readouterr()
    return [ln for ln in (cap.out + cap.err).splitlines() if ln.strip()]


def run_cli(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python -m bench <args>`` in a subprocess, from the repo root."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    full_env.pop("POSEARENA_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=REPO, env=full_env, capture_output=True, check=False,
                          text=True, timeout=timeout)


def perturbed_results(gt: dict, seed: int, drop: float = 0.1, extra: int = 2) -> list[dict]:
    """COCO keypoint results made from the GT: jittered keypoints, dropped people, false positives."""
    rng = np.random.default_rng(seed)
    out = []
    for a in gt["annotations"]:
        if a.get("num_keypoints", 0) == 0 or rng.random() < drop:
            continue
        k = np.array(a["keypoints"], dtype=float).reshape(-1, 3)
        k[:, :2] += rng.normal(0, 2 + 0.05 * np.sqrt(a["area"]), size=(len(k), 2))
        k[:, 2] = rng.random(len(k))
        out.append({"image_id": a["image_id"], "category_id": 1, "keypoints": k.ravel().round(3).tolist(),
                    "score": round(float(rng.random()), 4)})
    for img in gt["images"]:
        for _ in range(extra):
            k = np.column_stack([rng.random(17) * img["width"], rng.random(17) * img["height"], rng.random(17)])
            out.append({"image_id": img["id"], "category_id": 1, "keypoints": k.ravel().round(3).tolist(),
                        "score": round(float(rng.random()) * 0.5, 4)})
    return out


@pytest.fixture(scope="session")
def coco_gt() -> dict:
    return json.loads(COCO_GT.read_text())


@pytest.fixture(scope="session")
def coco7(tmp_path_factory, coco_gt) -> tuple[Path, Path]:
    """A 7-image COCO-layout data_root (the 4 real images' GT plus 3 shifted copies) and a results file."""
    root = tmp_path_factory.mktemp("coco7")
    gt = json.loads(json.dumps(coco_gt))
    images, anns = list(gt["images"]), list(gt["annotations"])
    for j, img in enumerate(coco_gt["images"][:3]):
        new_id = 900000 + j
        images.append({**img, "id": new_id, "file_name": f"{new_id:012d}.jpg"})
        for a in coco_gt["annotations"]:
            if a["image_id"] == img["id"]:
                anns.append({**a, "id": 9000000 + len(anns), "image_id": new_id})
    gt["images"], gt["annotations"] = images, anns
    (root / "annotations").mkdir()
    (root / "annotations" / "person_keypoints_val2017.json").write_text(json.dumps(gt))
    preds = root / "results.json"
    preds.write_text(json.dumps(perturbed_results(gt, seed=7)))
    return root, preds


def mp100_records(ds, sigma: float, seed: int) -> list[dict]:
    """MP-100 predictions for every episode-query of ``ds``: the GT keypoints plus Gaussian noise (pixels)."""
    rng = np.random.default_rng(seed)
    recs = []
    for e, ep in enumerate(ds.episodes):
        for qid in ep.query_ids:
            k = np.asarray(ds.by_id[qid].keypoints, dtype=float)
            recs.append({"episode": e, "query_id": qid,
                         "keypoints": (k + rng.normal(0, sigma, k.shape)).round(2).tolist()})
    return recs
