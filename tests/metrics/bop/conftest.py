"""Session fixtures: the golden cases scored once by BOPAR (the expensive part is VSD in update())."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from bop_golden_io import Scored, scored


@pytest.fixture(scope="session", params=["case1", "case2"])
def golden(request) -> Scored:
    return scored(request.param)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One intra-op thread: these kernels are many small ops, and on a shared CPU OpenMP thread hand-offs cost
    more than they bring (measured: 14x slower with 2 threads on a loaded 2-core machine)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
