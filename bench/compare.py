"""``python -m bench compare a=ROW b=ROW [key=METRIC] [samples=1000] [seed=0] [manifest=FILE]``.

A paired bootstrap test of two leaderboard rows on the same samples. ``ROW`` names a manifest entry
(leaderboards/manifest.yaml) as ``DATASET/METHOD``, or ``DATASET/METHOD/VARIANT`` when the manifest has
several entries of that method on that dataset (VARIANT is the leaderboard's ``variant`` column, e.g.
``coco/blazepose`` or ``h36m/videopose3d/frame``). Both rows are recomputed here, in-process and
single-process, exactly as the manifest says (predictions file, data_root, overrides); each metric gives its
per-unit sufficient statistics (``bootstrap_stats``, metrics/bootstrap.py) and both are re-weighted with the same
resample draws, so the test is paired: the difference ``a - b``, its percentile 95% CI and a two-sided
p-value (``2 * min(share of replicate differences <= 0, share >= 0)``, +1 corrected) are printed.
``key`` defaults to the headline metric (the first key the metric bootstraps: AP, AR, MPJPE, PCK@0.2, ...).
"""
from __future__ import annotations

from pathlib import Path

from bench.errors import InputError
from bench.manifest import MANIFEST, Entry, load_manifest
from metrics import bootstrap


def find_entry(row: str, entries: list[Entry], manifest: Path) -> tuple[list[Entry], str | None]:
    """The manifest entries named by ``DATASET/METHOD[/VARIANT]`` and the variant asked for (None: the one).
    DATASET is the leaderboard's name: ``ycbv_detection/ppf`` is ppf's row of the BOP24 detection task."""
    parts = row.split("/")
    if len(parts) not in (2, 3) or not all(parts[:2]):
        raise InputError(None, None, "row", f"{row!r}: expected DATASET/METHOD or DATASET/METHOD/VARIANT")
    dataset, method = parts[0], parts[1]
    variant = parts[2] if len(parts) == 3 else None
    hits = [e for e in entries if e.board == dataset and e.method == method]
    if not hits:
        known = ", ".join(sorted({f"{e.board}/{e.method}" for e in entries}))
        raise InputError(manifest, None, "row", f"no manifest entry {dataset}/{method}; entries: {known}")
    if variant is None and len(hits) > 1:
        raise InputError(manifest, None, "row", f"{len(hits)} entries of {dataset}/{method}: name the variant "
                         "as DATASET/METHOD/VARIANT")
    return hits, variant


def score(entry: Entry):
    """Recompute one manifest row in this process through the runner's own ``score`` (no interval drawn here:
    the paired bootstrap below draws its own); returns its :class:`bench.run.Scores`."""
    from bench.config import compose
    from bench.run import score as run_score

    return run_score(compose([*entry.args(), "bootstrap.samples=0"]))


def resolve(row: str, entries: list[Entry], manifest: Path):
    """Score the row; with a variant, the entry whose dataset reports that variant."""
    found, variant = find_entry(row, entries, manifest)
    if variant is None:
        return score(found[0])
    for e in found:
        scores = score(e)
        if scores.variant == variant:
            return scores
    raise InputError(manifest, None, "row", f"no entry of {row.rsplit('/', 1)[0]} has variant {variant!r}")


def compare(a: str, b: str, key: str | None = None, samples: int = bootstrap.DEFAULT_SAMPLES,
            seed: int = bootstrap.DEFAULT_SEED, manifest: Path = MANIFEST) -> bootstrap.PairedResult:
    entries = load_manifest(manifest)
    s_a, s_b = resolve(a, entries, manifest), resolve(b, entries, manifest)
    if s_a.dataset != s_b.dataset:
        raise InputError(None, None, "b", f"{a} is on {s_a.dataset} and {b} on {s_b.dataset}: compare rows of one "
                         "dataset")
    for row, s in ((a, s_a), (b, s_b)):
        if s.bootstrap is None:
            raise InputError(None, None, "row", f"{row}: the {s.dataset} metric has no bootstrap")
    sa, sb = s_a.bootstrap, s_b.bootstrap
    key = key or sa.keys[0]
    if key not in sa.keys or key not in sb.keys:
        raise InputError(None, None, "key", f"{key!r} is not bootstrapped; choose one of {', '.join(sa.keys)}")
    try:
        return bootstrap.paired_bootstrap(sa, sb, key, samples, seed)
    except ValueError as e:
        raise InputError(None, None, "b", str(e)) from e


def cmd_compare(args: list[str]) -> int:
    opts = {}
    for a in args:
        if "=" not in a:
            raise InputError(None, None, a, "expected key=value")
        k, v = a.split("=", 1)
        if k not in ("a", "b", "key", "samples", "seed", "manifest"):
            raise InputError(None, None, k, "unknown option; expected a, b, key, samples, seed, manifest")
        opts[k] = v
    if "a" not in opts or "b" not in opts:
        raise InputError(None, None, "a" if "a" not in opts else "b", "compare needs a=ROW and b=ROW")
    try:
        samples, seed = int(opts.get("samples", bootstrap.DEFAULT_SAMPLES)), int(opts.get("seed", bootstrap.DEFAULT_SEED))
    except ValueError as e:
        raise InputError(None, None, "samples", f"not an integer: {e}") from e
    r = compare(opts["a"], opts["b"], opts.get("key"), samples, seed, Path(opts.get("manifest", MANIFEST)))
    print(f"{r.key}: a={opts['a']} {r.a:.6g}  b={opts['b']} {r.b:.6g}")
    print(f"difference a - b = {r.diff:.6g}  95% CI [{r.ci_low:.6g}, {r.ci_high:.6g}]  p = {r.p_value:.4g}"
          f"  (paired bootstrap, {r.samples} resamples of {r.units} units)")
    return 0
