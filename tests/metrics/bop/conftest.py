"""Session fixtures: the golden cases scored once by BOPAR (the expensive part is VSD in update())."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from bop_golden_io import Scored, scored  # noqa: E402


@pytest.fixture(scope="session", params=["case1", "case2"])
def golden(request) -> Scored:
    return scored(request.param)
