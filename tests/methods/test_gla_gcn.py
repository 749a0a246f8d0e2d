"""GLA-GCN: official checkpoint layout, the official per-frame windowing and flip test, the CLI.

Golden data (``tests/data/human3d_lifting/``, see PROVENANCE.md there) were produced by running the official
code, outside the repo: ``python /tmp/ref_p3/make_golden.py`` with bruceyo/GLA-GCN @ fd72990c ``common/`` on
the path (``torch.Tensor.cuda`` patched to a no-op, since the official forward calls ``.cuda(x.get_device())``).
``official_keys.json``: keys and shapes of the official ``S_AGCN(17, 2, 17, filter_widths=[3,3,3,3,3],
channels=96, dataset='h36m')``. ``golden.npz``: a seeded random state dict of a tiny official
``S_AGCN(..., filter_widths=[3,3,3], channels=8)`` (``gla_sd/*``, weights N(0, 0.1), ``PA`` and BatchNorm statistics randomised,
eval mode) and the predictions of ``run_s-agcn.py``'s evaluation on the normalised sequences ``seq{0,1}_norm``
(9 and 40 frames): ``Evaluate_Generator(batch_size=7, chunk_length=1, pad=13, augment=...)`` + ``model_pos``
+ the test-time-augmentation lines of ``evaluate`` (``gla_seq*_plain`` / ``gla_seq*_flip``), and the
generator's ``(start, end)`` chunk bounds (``gla_seq*_pairs``). Comparisons with these recorded float32 outputs
follow tests/recorded.py: our network runs in float64.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import methods.human3d.gla_gcn  # noqa: F401  (registers gla-gcn before the lead wires it)
from bench.errors import InputError
from methods.human3d.gla_gcn import GLAGCN, SAGCN, checkpoint_filter_fn, window_bounds
from methods.human3d.lifting import JOINTS_LEFT, JOINTS_RIGHT, mirror
from tests.recorded import assert_matches_recorded

DATA = Path(__file__).resolve().parents[1] / "data" / "human3d_lifting"
GOLD = np.load(DATA / "golden.npz")
OFFICIAL = json.loads((DATA / "official_keys.json").read_text())["gla-gcn"]
TINY = {"filter_widths": [3, 3, 3], "channels": 8}


def official_checkpoint(tmp_path: Path, name: str = "gla.bin") -> Path:
    """An official-style file: run_s-agcn.py's dict with a numpy RandomState and DataParallel ``module.`` keys."""
    sd = {"module." + k[len("gla_sd/"):]: torch.from_numpy(GOLD[k]) for k in GOLD.files if k.startswith("gla_sd/")}
    path = tmp_path / name
    torch.save({"epoch": 96, "lr": 1e-3, "random_state": np.random.RandomState(7), "optimizer": {"state": {}},
                "model_pos": sd}, path)
    return path


def test_official_layout_loads_with_no_missing_or_unexpected_keys():
    with torch.device("meta"):
        net = SAGCN(filter_widths=[3, 3, 3, 3, 3], channels=96)
    assert net.receptive_field() == OFFICIAL["receptive_field_243"] == 243
    assert {k: list(v.shape) for k, v in net.state_dict().items()} == OFFICIAL["keys"]
    sd = {k: torch.empty(s, device="meta") for k, s in OFFICIAL["keys"].items()}
    res = net.load_state_dict(checkpoint_filter_fn(sd), strict=True, assign=True)
    assert res.missing_keys == [] and res.unexpected_keys == []


@pytest.mark.parametrize("flip", [False, True])
def test_per_frame_windows_match_official_run(tmp_path, flip):
    """Official checkpoint file -> our conversion, windowing and flip test == run_s-agcn.py's evaluate output."""
    model = GLAGCN.from_official_checkpoint(official_checkpoint(tmp_path), flip_test=flip, window_batch=5,
                                            **TINY).double()
    assert model.net.receptive_field() == OFFICIAL["receptive_field_tiny"] == 27
    for seq in (0, 1):
        with torch.no_grad():
            out = model.predict_sequence(torch.from_numpy(GOLD[f"seq{seq}_norm"]).double())
        name = f"gla_seq{seq}_{'flip' if flip else 'plain'}"
        assert_matches_recorded(out, GOLD[name], what=name)


@pytest.mark.parametrize("seq", [0, 1])
def test_window_bounds_are_the_official_generator_chunks(seq):
    t = GOLD[f"seq{seq}_norm"].shape[0]
    np.testing.assert_array_equal(window_bounds(t, 1), GOLD[f"gla_seq{seq}_pairs"])


@pytest.mark.parametrize("frames", [1, 2, 5, 40, 243, 500])
@pytest.mark.parametrize("chunk", [1, 3, 4, 27])
def test_windowing_scores_every_frame_exactly_once(frames, chunk):
    counts = np.zeros(frames, dtype=int)
    for start, end in window_bounds(frames, chunk):
        for f in range(start, end):
            if 0 <= f < frames:
                counts[f] += 1
    assert (counts == 1).all()
    if chunk == 1:
        np.testing.assert_array_equal(window_bounds(frames, 1), np.stack([np.arange(frames), np.arange(1, frames + 1)], 1))


@pytest.mark.parametrize("frames", [1, 3, 30])
def test_one_output_per_frame_and_batching_does_not_matter(frames):
    torch.manual_seed(0)
    model = GLAGCN(filter_widths=[3, 3], channels=4, window_batch=512).eval()
    x = torch.randn(frames, 17, 2)
    with torch.no_grad():
        a = model.predict_sequence(x)
        model.window_batch = 2
        b = model.predict_sequence(x)
    assert a.shape == (frames, 17, 3) and torch.isfinite(a).all()
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_each_window_is_the_edge_padded_neighbourhood():
    """Frame t's output is the network on frames t-pad..t+pad of the edge-replicated sequence."""
    torch.manual_seed(1)
    model = GLAGCN(filter_widths=[3, 3], channels=4, flip_test=False).eval()
    x = torch.randn(6, 17, 2)
    idx = np.clip(np.arange(2 - 4, 2 + 5), 0, 5)  # rf 9, pad 4, frame 2
    with torch.no_grad():
        full = model.predict_sequence(x)
        single = model.net(x[idx][None])[0, 0]
    torch.testing.assert_close(full[2], single, rtol=1e-5, atol=1e-5)


def test_flip_test_is_mirror_symmetric(tmp_path):
    model = GLAGCN.from_official_checkpoint(official_checkpoint(tmp_path), flip_test=True, **TINY)
    x = torch.from_numpy(GOLD["seq1_norm"])
    with torch.no_grad():
        a = model.predict_sequence(mirror(x, JOINTS_LEFT, JOINTS_RIGHT))
        b = mirror(model.predict_sequence(x), JOINTS_LEFT, JOINTS_RIGHT)
        model.flip_test = False
        c = model.predict_sequence(mirror(x, JOINTS_LEFT, JOINTS_RIGHT))
        d = mirror(model.predict_sequence(x), JOINTS_LEFT, JOINTS_RIGHT)
    scale = float(b.abs().max())
    torch.testing.assert_close(a, b, rtol=0, atol=2e-6 * scale)
    assert (c - d).abs().max() > 1e-2 * scale  # the network alone is not symmetric


def test_wrong_architecture_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="does not fit|missing|unknown"):
        GLAGCN.from_official_checkpoint(official_checkpoint(tmp_path), filter_widths=[3, 3, 3], channels=16)
    with pytest.raises(InputError, match="missing|unknown"):
        GLAGCN.from_official_checkpoint(official_checkpoint(tmp_path), filter_widths=[3, 3], channels=8)


def test_cli_gla_gcn_with_official_checkpoint_writes_a_row(tmp_path):
    """``python -m bench evaluate method=gla-gcn dataset=h36m weights=FILE`` on the bundled sample (synthetic 3D
    + 2D detections; ``dataset.keypoints_2d=gt``: the noise-free projections) writes metrics and a leaderboard
    row."""
    from tests.conftest import run_cli

    out, boards = tmp_path / "out", tmp_path / "boards"
    r = run_cli("evaluate", "method=gla-gcn", "dataset=h36m", f"weights={official_checkpoint(tmp_path)}",
                f"out={out}", f"leaderboard_dir={boards}", "method.channels=8", "method.filter_widths=[3,3,3]",
                "dataset.keypoints_2d=gt", "dataset.root_relative_pred=false", "batch_size=16",
                env={"POSEARENA_PLUGINS": "methods.human3d.gla_gcn", "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    payload = json.loads((out / "metrics.json").read_text())
    m = payload["metrics"]
    assert payload["num_samples"] == 240
    assert all(np.isfinite(m[k]) and m[k] > 0 for k in ("MPJPE", "P-MPJPE", "N-MPJPE", "MPJVE"))
    rows = (boards / "human3d" / "h36m.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith("gla-gcn,")
