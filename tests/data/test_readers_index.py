"""bench/data/__init__.py's index of readers: scoring imports only the requested dataset's module, so the
index must name, for every registered dataset, the module that registers it."""
from __future__ import annotations

import subprocess
import sys

import bench.data
from bench.registry import DATASETS, load_all
from tests.conftest import REPO


def test_every_registered_dataset_is_indexed_by_the_module_that_registers_it():
    load_all()
    for name, builder in DATASETS.items():
        if builder.__module__.startswith("bench.data."):
            assert name in bench.data.READERS, f"{name}: add it to bench/data/__init__.py READERS"
            assert builder.__module__ == f"bench.data.{bench.data.READERS[name]}", name


def test_loading_one_dataset_imports_only_its_reader():
    code = ("import sys\nfrom bench.registry import DATASETS, load_datasets\nload_datasets('coco')\n"
            "readers = sorted(m for m in sys.modules if m.startswith('bench.data.') and m.count('.') == 2)\n"
            "assert 'coco' in DATASETS and 'ycbv' not in DATASETS, sorted(DATASETS)\n"
            "assert readers == ['bench.data.base', 'bench.data.coco'], readers\n")
    r = subprocess.run([sys.executable, "-c", code], check=False, cwd=REPO, capture_output=True, text=True,
                       timeout=120, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr[-2000:]


def test_every_indexed_name_is_registered_by_its_module():
    load_all()
    missing = sorted(n for n in bench.data.READERS if n not in DATASETS)
    assert not missing, f"listed in bench/data/__init__.py READERS but registered by no reader: {missing}"
