"""``python -m bench evaluate method=NAME dataset=NAME [key=value ...]`` (shared/CONTRACT.md).

The config is composed with Hydra's compose API inside this entry point (not ``@hydra.main``), so Lightning's
DDP launcher can re-run this same command line for the other ranks without creating output folders or
re-parsing anything differently.
"""
from __future__ import annotations

import atexit
import os
import sys
import threading
import traceback
import warnings

from bench.errors import EXIT_INPUT_ERROR, InputError

USAGE = """usage: python -m bench evaluate method=NAME dataset=NAME [data_root=DIR] [predictions=FILE] [weights=FILE]
                          [devices=N] [out=DIR] [leaderboard_dir=DIR] [other Hydra overrides]
       python -m bench list          # registered datasets and methods
       python -m bench leaderboards  # regenerate leaderboards/ from leaderboards/manifest.yaml
       python -m bench regression    # recompute the committed rows and fail on any difference
       python -m bench compare a=DATASET/METHOD[/VARIANT] b=... [key=METRIC] [samples=1000] [seed=0]
                                     # paired bootstrap test of two manifest rows (bench/compare.py)
       python -m bench report [out=DIR] [leaderboard_dir=DIR]
                                     # static HTML leaderboard page (default build/leaderboard/index.html)"""


def cmd_evaluate(overrides: list[str]) -> int:
    from rich.console import Console

    from bench.config import compose
    from bench.console import print_result
    from bench.run import evaluate

    cfg = compose(overrides)
    console = Console(stderr=False)
    done = evaluate(cfg, console=console)
    if done is not None:
        print_result(console, *done)
    return 0


def cmd_list() -> int:
    """Names from the configs (bench/conf), plus what plugins register: no dataset or method module is imported
    unless ``$POSEARENA_PLUGINS`` names one, so this answers at once."""
    from bench.config import conf_names

    datasets, methods = conf_names("dataset"), conf_names("method") - {"predictions"}
    if os.environ.get("POSEARENA_PLUGINS"):
        from bench.registry import DATASETS, METHODS, load_all

        load_all()
        datasets, methods = datasets | set(DATASETS), methods | set(METHODS)
    print("datasets:", " ".join(sorted(datasets)))
    print("methods: ", " ".join(sorted(methods)))
    return 0


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings as one line each: ours say ``posearena: warning:``, others keep their category."""
    text = " ".join(str(message).split())
    ours = "/bench/" in filename.replace(os.sep, "/") or "/metrics/" in filename.replace(os.sep, "/")
    return f"posearena: warning: {text}\n" if ours else f"{category.__name__}: {text}\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    warnings.formatwarning = _one_line_warning
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else EXIT_INPUT_ERROR
    command, rest = argv[0], argv[1:]
    debug = os.environ.get("POSEARENA_DEBUG") == "1" or any(a in ("debug=true", "debug=True", "debug=1") for a in rest)
    if command in ("evaluate", "leaderboards", "regression", "compare"):
        from bench import lazy_torchmetrics

        lazy_torchmetrics.install()  # scoring needs torchmetrics' Metric, not its 100 metric modules
    try:
        if command == "evaluate":
            return cmd_evaluate(rest)
        if command == "list":
            return cmd_list()
        if command == "leaderboards":
            from bench.manifest import regenerate

            regenerate()
            return 0
        if command == "regression":
            from bench.manifest import regression

            return regression()
        if command == "compare":
            from bench.compare import cmd_compare

            return cmd_compare(rest)
        if command == "report":
            from bench.page import cmd_report

            return cmd_report(rest)
        print(f"posearena: unknown command {command!r}\n{USAGE}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except InputError as e:
        if debug:
            traceback.print_exc()
        print(f"posearena: error: {e.line()}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except KeyboardInterrupt:
        print("posearena: interrupted; nothing written", file=sys.stderr)
        return 130


def _single_process() -> bool:
    """True when nothing else waits on this process's teardown: not a rank of a multi-process run, and no
    live non-daemon Python thread."""
    if "WORLD_SIZE" in os.environ or "LOCAL_RANK" in os.environ:
        return False
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return False
    return all(t.daemon or t is threading.main_thread() for t in threading.enumerate())


def leave(code: int) -> None:
    """Exit with ``code``. A single process runs Python's exit handlers (logging, temporary files), flushes
    its streams and leaves without the interpreter's teardown: every output is written and closed by then,
    and the teardown only runs the C++ destructors of torch's and CUDA's libraries, which page in about
    120 MB of library memory that the run never used and take 0.5 s (measured on the 5,000-image COCO case:
    peak RSS 951 -> 841 MB, issue 15)."""
    if not _single_process():
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can be said on it
            pass
    os._exit(code)


if __name__ == "__main__":
    leave(main())
