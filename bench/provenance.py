"""Where a number came from: code version, data fingerprint, predictions hash, package versions."""
from __future__ import annotations

import hashlib
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCE_PACKAGES = ("bench", "metrics", "methods")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_tree(folder: Path) -> str:
    """sha256 over a folder's files (relative path and content, in sorted order): a predictions folder's hash."""
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(f.relative_to(folder).as_posix().encode() + b"\0" + sha256_file(f).encode())
    return h.hexdigest()


@lru_cache(maxsize=1)
def source_hash() -> str:
    """Hash of the suite's Python sources: the code version a leaderboard row records.

    Unlike a git sha it does not move when only docs or leaderboards are committed, so regenerating the
    leaderboards twice leaves them byte-identical.
    """
    h = hashlib.sha256()
    for pkg in SOURCE_PACKAGES:
        for f in sorted((REPO / pkg).rglob("*.py")):
            h.update(f.relative_to(REPO).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]


def code_version() -> str:
    return f"{package_version('posearena')}+{source_hash()}"


@lru_cache(maxsize=1)
def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10, check=False)
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


def versions() -> dict[str, str]:
    import platform

    pkgs = ("posearena", "torch", "lightning", "torchmetrics", "numpy", "pycocotools", "timm", "smplx")
    return {"python": platform.python_version(), **{p: package_version(p) for p in pkgs}}
