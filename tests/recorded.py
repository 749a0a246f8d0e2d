"""Comparisons with recorded official outputs: the one rule every such test follows, and why.

A golden file holds float32 numbers that the official code produced on one machine. Float32 results move from
CPU to CPU (SIMD width, oneDNN/MKL code paths, thread count; batch size and memory layout change summation
orders), and so does ``torch.randn``, which makes the seeded weights and inputs of these tests: its AVX2/AVX-512
path and its scalar path (CPUs without AVX2, e.g. ARM) differ by one ulp in 38% of the elements. A fixed
``rtol=atol=1e-4`` ignores the output's magnitude: issue 13 saw SimCC fail on another CPU (80 of 6528 elements
off by 0.0146 at values near 85, in an output whose largest value is ~2.6e4: 5 float32 ulps of that value).
Re-running tests/data/tokenhmr_golden/gen_golden.py (the official code) here does not reproduce its own file
either: up to 16.5 ulps apart.

The rule:

1. Compute our side in float64 (``.double()`` on the model and on the inputs, which are made in float32 exactly
   as the reference made them). float64 is within ~1e-16 of the exact value on any CPU, so the only float32
   noise left is the one frozen in the recorded file, and the result no longer depends on the CPU that runs
   the test, except through ``torch.randn`` (measured below, column "randn").
2. :func:`assert_matches_recorded`: ``|ours - recorded| <= ulps * eps32 * scale`` everywhere. ``scale`` is the
   largest ``|recorded|`` of the compared tensor (float32 rounding errors follow the magnitude of what is
   accumulated, not each element's own value), or an accumulation bound where the compared value is a sum
   (``sum |x|`` for ``sum x``).
3. ``ulps = ULPS = 64``: at least 2.5 times the worst figure measured below for every comparison but one.
   A comparison whose measured worst exceeds ``ULPS / 2`` passes twice that, rounded up to a power of two, and
   says why at the call: SimCC (56.5 under the scalar ``torch.randn``) uses 128. A short float32 computation
   (a few roundings, no accumulation) may pass fewer, also saying why: UDP decoding's last affine map, 4.
4. Anything decided by a comparison (an arg-max, a threshold) is checked for its margin first: a decision is
   safe when its margin exceeds twice the tolerance (:func:`argmax_margin`). A refinement after an arg-max
   (DARK's Newton step) is compared within its first-order sensitivity to the tolerance, which the test
   computes (``extra=``), never with a constant loosened until it passes. The same holds where the official
   code works in float32 and ours mirrors it (the UDP decoding's blur): its rounding is the tolerance there.
5. Where our inputs differ from the recorded run's for another reason than float32 rounding (ViTPose's
   predict_step test crops with our bilinear sampler, not OpenCV's fixed-point one), the test is not one of
   these comparisons and states its own criterion; it still runs in float64, so it does not depend on the CPU.

Measured on an AMD EPYC (AVX-512), torch 2.14.1, in float32 ulps of the compared tensor's largest value
(``eps32 * scale``), each variant in a fresh process (a scratch script, not kept). "rec": our float64 output
against the recorded file. "spread": the largest change of our float32 output under 1 vs 2 threads, mkldnn
off, the sample inside a batch of 3, channels_last, ``ATEN_CPU_CAPABILITY=avx2`` (with
``ONEDNN_MAX_CPU_ISA=AVX2``, ``MKL_ENABLE_INSTRUCTIONS=AVX2``) and ``ATEN_CPU_CAPABILITY=default`` (no SIMD;
SSE4.1 / SSE4_2 for oneDNN / MKL; this one also changes ``torch.randn``). "randn": our float64 output with the
weights and inputs of the scalar ``torch.randn`` path (``ATEN_CPU_CAPABILITY=default``), against the recorded
file.

    comparison                                rec    spread   randn
    ViTPose-S heatmaps, classic decoder       4.5     6.7      5.6
    ViTPose-S heatmaps, simple decoder       23.9    18.3     21.9
    SimCC HRNet-W32 x / y                     6.3    55.6     56.5   -> ulps=128
    GDRNPP rotation / translation             4.0     6.1      4.5
    VideoPose3D, 2 sequences x flip test      4.2     4.7      4.2   (weights stored in the file)
    GLA-GCN, 2 sequences x flip test          3.2     3.8      3.2   (weights stored in the file)
    TokenHMR features / token_probs           8.1    12.4      9.0
    TokenHMR rotations, betas, cam, cam_t    22.8    22.5     25.0
    TokenHMR SMPL vertices / tokenizer        12.5    12.8     14.4
    Pose Anything keypoints / feature sums    3.0     7.2      3.1

What the tolerance still catches (float64, one weight tensor of the converted checkpoint x (1 + 1e-3)): ViTPose
qkv of block 6: 1635 ulps; SimCC a stage-3 conv: 617; VideoPose3D a middle conv: 5054; TokenHMR the token
classifier: 1222 (token_probs); Pose Anything the largest stem weight alone: 292. Some single weights move the
outputs by less than the recorded file's own noise (the largest patch-embedding weight of ViTPose-S: 1.9 ulps;
any ConvNeXt weight before a LayerNorm in GDRNPP: < 17): no comparison with float32 numbers can see those.
"""
from __future__ import annotations

import numpy as np
import torch

EPS32 = float(torch.finfo(torch.float32).eps)
ULPS = 64.0


def _f64(x) -> torch.Tensor:
    return (x.detach().cpu() if torch.is_tensor(x) else torch.as_tensor(np.asarray(x))).to(torch.float64)


def _is_float64(x) -> bool:
    return x.dtype == torch.float64 if torch.is_tensor(x) else np.asarray(x).dtype == np.float64


def tolerance(expected, *, scale: float | None = None, ulps: float = ULPS) -> float:
    """``ulps * eps32 * scale``, with ``scale`` = max ``|expected|`` unless given."""
    s = float(_f64(expected).abs().max()) if scale is None else float(scale)
    return ulps * EPS32 * s


def assert_matches_recorded(actual, expected, *, what: str, scale: float | None = None, ulps: float = ULPS,
                            extra=None) -> None:
    """Our float64 ``actual`` against the recorded float32 ``expected`` (see the module docstring):
    ``|actual - expected| <= ulps * eps32 * scale (+ extra)`` everywhere.

    ``extra`` (broadcast to ``expected``) adds a per-element allowance that a test derives from the tolerance,
    e.g. the first-order sensitivity of a decoding step to it. A float32 ``actual`` is refused.

    The tolerance follows the largest recorded value, not each element's own (here 64 * eps32 * 1000 = 7.6e-3):

    >>> rec = np.array([1000.0, 0.5], dtype=np.float32)
    >>> assert_matches_recorded(torch.tensor([1000.0, 0.507], dtype=torch.float64), rec, what="x")
    >>> assert_matches_recorded(torch.tensor([1000.0, 0.508], dtype=torch.float64), rec, what="x")
    Traceback (most recent call last):
    AssertionError: x: 1 of 2 elements differ by more than the tolerance 64 eps32 x scale 1e+03 = 0.00763; ...
    >>> assert_matches_recorded(torch.tensor([1000.0, 0.5]), rec, what="x")
    Traceback (most recent call last):
    TypeError: x: compute our side in float64 (tests/recorded.py), got torch.float32
    """
    if not _is_float64(actual):
        raise TypeError(f"{what}: compute our side in float64 (tests/recorded.py), got {actual.dtype}")
    a, e = _f64(actual), _f64(expected)
    assert a.shape == e.shape, f"{what}: shape {tuple(a.shape)} != recorded {tuple(e.shape)}"
    base = tolerance(e, scale=scale, ulps=ulps)
    tol = base + (_f64(extra) if extra is not None else torch.zeros(()))
    err = (a - e).abs()
    over = err > tol
    if over.any():
        idx = np.unravel_index(int((err - tol).argmax()), tuple(err.shape))
        s = base / (ulps * EPS32)
        raise AssertionError(
            f"{what}: {int(over.sum())} of {err.numel()} elements differ by more than the tolerance "
            f"{ulps:g} eps32 x scale {s:.3g} = {base:.3g}" + (" (+ extra)" if extra is not None else "") +
            f"; worst at {tuple(int(i) for i in idx)}: ours {float(a[idx]):.9g}, recorded {float(e[idx]):.9g}, "
            f"|diff| {float(err[idx]):.3g} ({float(err[idx]) / (EPS32 * s):.1f} eps32 x scale) > {float(tol.expand_as(err)[idx]):.3g}")


def argmax_margin(values: torch.Tensor) -> torch.Tensor:
    """Top value minus the runner-up along the last dimension: an arg-max is decided when this exceeds twice the
    tolerance of ``values`` (ours and the recorded side are each within one tolerance of the exact values)."""
    top2 = values.topk(2, dim=-1).values
    return top2[..., 0] - top2[..., 1]
