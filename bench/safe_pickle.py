"""Load pickles and .npz files from users without running their code.

``pickle`` (and ``np.load(allow_pickle=True)``) calls whatever callable a file names: a crafted file can run
``os.system``. Dataset files of the 3D families are pickles or .npz files with pickled object arrays
(VideoPose3D's ``data_3d_h36m.npz`` holds a dict inside a 0-d object array; 3DPW sequence files are pickles),
so they go through :class:`RestrictedUnpickler`, which resolves only numpy's array machinery and a few
harmless builtins and refuses every other global with an :class:`~bench.errors.InputError`.

:func:`load_npz` parses the npz zip and each member's .npy header itself (``numpy.lib.format`` header
reading uses a literal parser, not ``eval``), reads plain arrays straight from the bytes and sends only
object arrays through the restricted unpickler.
"""
from __future__ import annotations

import io
import pickle
import zipfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from numpy.lib import format as npy_format

from bench.errors import InputError

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]

import _codecs
import collections

# What a pickle of numpy arrays, numpy scalars and plain containers needs, by the (module, name) the pickle
# writes (numpy 1.x writes numpy.core.*, numpy 2 writes numpy._core.*). Nothing here can reach the OS.
_NUMPY_NAMES = {
    "_reconstruct": _multiarray._reconstruct,
    "scalar": _multiarray.scalar,
}
_ALLOWED: dict[tuple[str, str], Any] = {
    **{(m, n): f for m in ("numpy.core.multiarray", "numpy._core.multiarray") for n, f in _NUMPY_NAMES.items()},
    # protocol 5 pickles rebuild arrays from an in-band buffer
    ("numpy.core.numeric", "_frombuffer"): _numeric._frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _numeric._frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _codecs.encode,  # protocol-2 pickles store array bytes as latin1 text
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "complex"): complex,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "bytearray"): bytearray,
}

# Opt-in (``allow_sparse=True``), for SMPL model files only: real SMPL pickles hold ``J_regressor`` as a
# scipy.sparse CSC matrix (CSR in some conversions). Exactly these two classes, under the module names old
# (``scipy.sparse.csc``) and new (``scipy.sparse._csc``) scipy versions write; they are rebuilt by
# ``cls.__new__`` plus a ``__dict__`` update of arrays, which runs no code of the file's choosing.
_SPARSE_MODULES = {"csc_matrix": ("scipy.sparse.csc", "scipy.sparse._csc"),
                   "csr_matrix": ("scipy.sparse.csr", "scipy.sparse._csr")}


def _sparse_classes() -> dict[tuple[str, str], type]:
    import scipy.sparse as sp

    return {(m, n): getattr(sp, n) for n, mods in _SPARSE_MODULES.items() for m in mods}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds only numpy arrays/dtypes/scalars, dicts, lists, tuples, strings, numbers,
    None and bools; any other global (``os.system``, ``builtins.eval``, a class) is refused."""

    def __init__(self, file: BinaryIO, *, source: str | Path | None = None, encoding: str = "ASCII",
                 allow_sparse: bool = False):
        super().__init__(file, encoding=encoding)
        self.source = source
        self.allow_sparse = allow_sparse

    def find_class(self, module: str, name: str) -> Any:
        if module == "__builtin__":  # protocol 0-2 pickles name Python 2's module
            module = "builtins"
        allowed = _ALLOWED.get((module, name))
        if allowed is not None:
            return allowed
        if self.allow_sparse:
            sparse = _sparse_classes()
            if (module, name) in sparse:
                return sparse[(module, name)]
            if (module, name) in (("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor")):
                return self._sparse_reconstructor  # protocol 0/1 pickles build objects through it
            if (module, name) == ("builtins", "object"):  # its second argument
                return object
        # numpy >= 1.25 writes dtypes of some kinds as numpy.dtypes.<Kind>DType classes
        if module == "numpy.dtypes" and name.endswith("DType") and isinstance(getattr(np.dtypes, name, None), type):
            return getattr(np.dtypes, name)
        raise InputError(self.source, None, None, f"refused to unpickle {module}.{name}: only numpy arrays and "
                                                  "plain Python containers/values are allowed in data files")

    def _sparse_reconstructor(self, cls: Any, base: Any, state: Any) -> Any:
        """``copyreg._reconstructor`` limited to ``object.__new__`` of the allowed sparse classes."""
        if cls not in set(_sparse_classes().values()) or base is not object or state is not None:
            raise InputError(self.source, None, None, "refused to unpickle copyreg._reconstructor of "
                                                      f"{getattr(cls, '__name__', cls)!r}: only scipy sparse "
                                                      "matrices are allowed")
        return object.__new__(cls)

    def persistent_load(self, pid: Any) -> Any:
        raise InputError(self.source, None, None, "refused to unpickle a persistent id: not a plain data pickle")


def loads(data: bytes, *, source: str | Path | None = None, encoding: str = "ASCII",
          allow_sparse: bool = False) -> Any:
    """Unpickle ``data`` through :class:`RestrictedUnpickler`; any failure is an :class:`InputError`."""
    return load_pickle(io.BytesIO(data), source=source, encoding=encoding, allow_sparse=allow_sparse)


def load_pickle(file: str | Path | BinaryIO, *, source: str | Path | None = None, encoding: str = "ASCII",
                allow_sparse: bool = False) -> Any:
    """Unpickle a file (path or binary stream) safely. Use ``encoding="latin1"`` for Python-2 pickles (3DPW).

    ``allow_sparse=True`` additionally admits scipy's CSC/CSR matrix classes (SMPL model files only)."""
    if isinstance(file, (str, Path)):
        source = file if source is None else source
        try:
            with open(file, "rb") as fh:
                return load_pickle(fh, source=source, encoding=encoding, allow_sparse=allow_sparse)
        except OSError as e:
            raise InputError(source, None, None, f"cannot read: {e.strerror or e}") from None
    try:
        return RestrictedUnpickler(file, source=source, encoding=encoding, allow_sparse=allow_sparse).load()
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - truncated/corrupt streams raise many types
        raise InputError(source, None, None, f"not a valid pickle: {type(e).__name__}: {e}") from None


def _read_exact(fh: BinaryIO, n: int, source: Path, member: str) -> bytes:
    buf = fh.read(n)
    if len(buf) != n:
        raise InputError(source, f"member {member}", None, f"truncated array data: expected {n} bytes, got {len(buf)}")
    return buf


def _read_npy(fh: BinaryIO, source: Path, member: str, allow_pickle_objects: bool) -> np.ndarray:
    """One .npy stream: header via numpy's literal header parser, data from bytes or the safe unpickler."""
    try:
        version = npy_format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(fh)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = npy_format.read_array_header_2_0(fh)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except Exception as e:  # noqa: BLE001 - numpy's literal parser raises ValueError, SyntaxError, TokenError ...
        msg = " ".join(str(e).split())  # numpy's messages span several lines; the CLI prints one
        raise InputError(source, f"member {member}", None, f"not a valid .npy array: {msg}") from None
    if dtype.hasobject:
        if not allow_pickle_objects:
            raise InputError(source, f"member {member}", None, "holds a pickled object array (not allowed here)")
        arr = load_pickle(fh, source=f"{source} (member {member})")
        if not isinstance(arr, np.ndarray):
            raise InputError(source, f"member {member}", None, f"object array expected, got {type(arr).__name__}")
        return arr
    count = int(np.prod(shape, dtype=np.int64))
    buf = _read_exact(fh, count * dtype.itemsize, source, member)
    arr = np.frombuffer(buf, dtype=dtype, count=count)
    return arr.reshape(shape[::-1]).transpose() if fortran else arr.reshape(shape)


def load_npz(path: str | Path, allow_pickle_objects: bool = True) -> dict[str, np.ndarray]:
    """Read every array of an .npz (or a single .npy) file without unsafe unpickling.

    Object arrays are unpickled by :class:`RestrictedUnpickler` (refused entirely when
    ``allow_pickle_objects`` is False). Plain arrays come back writable copies of the file bytes.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(6)
            if head == b"\x93NUMPY":
                fh.seek(0)
                return {"arr_0": np.array(_read_npy(fh, path, "arr_0", allow_pickle_objects))}
    except OSError as e:
        raise InputError(path, None, None, f"cannot read: {e.strerror or e}") from None
    out: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                name = info.filename
                key = name.removesuffix(".npy")
                with zf.open(info) as member:
                    out[key] = np.array(_read_npy(member, path, key, allow_pickle_objects))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, zlib.error) as e:
        raise InputError(path, None, None, f"not a valid .npz file: {e}") from None
    return out
