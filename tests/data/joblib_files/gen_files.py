"""Write the joblib files tests/test_safe_pickle.py reads (its ``joblib_arrays()``), with joblib itself.

Needs joblib (a scratch venv; the suite reads these files without it)::

    /tmp/rich/venv/bin/python tests/data/joblib_files/gen_files.py     # joblib 1.6.0, numpy 2.4.6
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: file name -> joblib.dump's compress argument
FILES = {"arrays.joblib": 0, "arrays_zlib.joblib": 3, "arrays_gzip.joblib": ("gzip", 3)}


def joblib_arrays() -> dict:
    """A dict of the array kinds joblib writes as NumpyArrayWrapper records, and plain values."""
    import numpy as np

    return {"matrix": np.arange(12, dtype=np.float32).reshape(3, 4) / 7,
            "fortran": np.asfortranarray(np.arange(6, dtype=np.int64).reshape(2, 3)),
            "mask": np.array([True, False, True]), "scalar": np.array(2.5), "empty": np.zeros((0, 3)),
            "nested": [np.linspace(0, 1, 5), {"name": "x", "n": 3}]}


def main() -> int:
    import joblib

    sys.path.insert(0, str(HERE))
    for name, compress in FILES.items():
        joblib.dump(joblib_arrays(), HERE / name, compress=compress)
        print(HERE / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
