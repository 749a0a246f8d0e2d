"""Give freed heap memory back to the operating system between the phases of a run (issue 15: peak RSS).

glibc's ``malloc`` keeps freed blocks for reuse, and raises its mmap threshold after each large free, so the
megabyte-sized temporaries of one phase (parsing a results file, the matching) stay resident as free heap.
The next phase's own temporaries then stack on top of that garbage instead of reusing it. ``malloc_trim(0)``
returns every free page to the system. Measured on the 5,000-image COCO case: about 90 MB less resident at
the start of the bootstrap. Elsewhere than glibc it does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys


@functools.cache
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)  # the process's own C library, already loaded
        fn = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None
    fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return fn


def release_free_memory() -> None:
    """Return the free heap pages to the system (glibc ``malloc_trim(0)``); a no-op where it is missing."""
    fn = _malloc_trim()
    if fn is not None:
        fn(0)
