"""Load pickles and .npz files from users without running their code.

``pickle`` (and ``np.load(allow_pickle=True)``) calls whatever callable a file names: a crafted file can run
``os.system``. Dataset files of the 3D families are pickles or .npz files with pickled object arrays
(VideoPose3D's ``data_3d_h36m.npz`` holds a dict inside a 0-d object array; 3DPW sequence files are pickles),
so they go through :class:`RestrictedUnpickler`, which resolves only numpy's array machinery and a few
harmless builtins and refuses every other global with an :class:`~bench.errors.InputError`.

:func:`load_npz` parses the npz zip and each member's .npy header itself (``numpy.lib.format`` header
reading uses a literal parser, not ``eval``), reads plain arrays straight from the bytes and sends only
object arrays through the restricted unpickler.

:func:`load_joblib` reads ``joblib.dump`` files (WHAM's label files) without joblib: the same restricted
unpickler, joblib's array records read as raw bytes, and (``allow_torch=True``) torch tensors, whose pickles
rebuild their storage with ``torch.load(..., weights_only=True)`` on the bytes they carry.
"""
from __future__ import annotations

import gzip
import io
import pickle
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

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


def _storage_from_bytes(data: Any) -> Any:
    """``torch.storage._load_from_bytes`` limited to ``torch.load(weights_only=True)``: a pickled tensor carries its
    storage as the bytes of a legacy ``torch.save`` file, which torch's own restricted unpickler reads."""
    import torch

    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"storage bytes expected, got {type(data).__name__}")
    storage = torch.load(io.BytesIO(bytes(data)), map_location="cpu", weights_only=True)
    if not isinstance(storage, torch.TypedStorage):
        raise TypeError(f"a typed storage expected, got {type(storage).__name__}")
    return storage


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                    hooks: Any = None, *extra: Any) -> Any:
    """``torch._utils._rebuild_tensor_v2`` on checked arguments: a storage from :func:`_storage_from_bytes`,
    non-negative integer offset, size and stride inside the storage (``set_`` would grow it), no hooks."""
    import torch

    if (not isinstance(storage, torch.TypedStorage) or not isinstance(size, tuple) or not isinstance(stride, tuple)
            or len(size) != len(stride) or hooks or extra
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (offset, *size, *stride))):
        raise TypeError("malformed tensor record")
    end = offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1 if all(size) else 0
    with warnings.catch_warnings():  # torch warns on every TypedStorage call, its own unpickling included
        warnings.filterwarnings("ignore", "TypedStorage is deprecated")
        n_elements = storage.size()
    if end > n_elements:  # set_ would grow the storage instead of failing
        raise TypeError(f"tensor record reaches element {end - 1} of a storage of {n_elements}")
    return torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, collections.OrderedDict())


_TORCH: dict[tuple[str, str], Any] = {("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
                                      ("torch.storage", "_load_from_bytes"): _storage_from_bytes}


def _sparse_classes() -> dict[tuple[str, str], type]:
    import scipy.sparse as sp

    return {(m, n): getattr(sp, n) for n, mods in _SPARSE_MODULES.items() for m in mods}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds only numpy arrays/dtypes/scalars, dicts, lists, tuples, strings, numbers,
    None and bools; any other global (``os.system``, ``builtins.eval``, a class) is refused."""

    def __init__(self, file: BinaryIO, *, source: str | Path | None = None, encoding: str = "ASCII",
                 allow_sparse: bool = False, allow_torch: bool = False):
        super().__init__(file, encoding=encoding)
        self.source = source
        self.allow_sparse = allow_sparse
        self.allow_torch = allow_torch

    def find_class(self, module: str, name: str) -> Any:
        if module == "__builtin__":  # protocol 0-2 pickles name Python 2's module
            module = "builtins"
        allowed = _ALLOWED.get((module, name))
        if allowed is not None:
            return allowed
        if self.allow_torch and (module, name) in _TORCH:
            return _TORCH[(module, name)]
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


class _JoblibArray:
    """What a ``joblib.numpy_pickle.NumpyArrayWrapper`` record unpickles to: the array's dtype, shape and order
    (its bytes follow the record in the file, after an alignment pad in joblib >= 1.2)."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict) or not {"shape", "order", "dtype"} <= set(state):
            raise TypeError("malformed joblib array record")
        shape, dtype = state["shape"], state["dtype"]
        if (not isinstance(dtype, np.dtype) or dtype.hasobject or state["order"] not in ("C", "F")
                or not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape)):
            raise TypeError(f"unsupported joblib array record (dtype {dtype}, shape {shape})")
        if state.get("subclass", np.ndarray) is not np.ndarray:
            raise TypeError("joblib array record of an ndarray subclass")
        self.shape, self.dtype, self.order = shape, dtype, state["order"]
        self.aligned = state.get("numpy_array_alignment_bytes") is not None


class _JoblibUnpickler(pickle._Unpickler):  # type: ignore[name-defined]  # the Python one: BUILD is overridable
    """:class:`RestrictedUnpickler`'s rules plus joblib's array records, each replaced by the array read from the
    bytes that follow it (joblib's own ``load_build`` does the same)."""

    dispatch: ClassVar[dict] = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]

    def __init__(self, file: BinaryIO, *, source: str | Path | None, allow_sparse: bool, allow_torch: bool):
        super().__init__(file)
        self.fh, self.source, self.allow_sparse, self.allow_torch = file, source, allow_sparse, allow_torch

    _sparse_reconstructor = RestrictedUnpickler._sparse_reconstructor

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("joblib.numpy_pickle", "NumpyArrayWrapper"):
            return _JoblibArray
        return RestrictedUnpickler.find_class(self, module, name)  # type: ignore[arg-type]

    def persistent_load(self, pid: Any) -> Any:
        return RestrictedUnpickler.persistent_load(self, pid)  # type: ignore[arg-type]

    def load_build(self) -> None:
        pickle._Unpickler.load_build(self)  # type: ignore[attr-defined]
        record = self.stack[-1]
        if isinstance(record, _JoblibArray):
            if record.aligned:
                pad = self.fh.read(1)
                self.fh.read(int.from_bytes(pad, "little"))
            count = int(np.prod(record.shape, dtype=np.int64))
            size = count * record.dtype.itemsize
            data = self.fh.read(size)
            if len(data) != size:
                raise EOFError(f"truncated array data: expected {size} bytes, got {len(data)}")
            arr = np.frombuffer(data, dtype=record.dtype, count=count).copy()
            self.stack[-1] = arr.reshape(record.shape[::-1]).T if record.order == "F" else arr.reshape(record.shape)

    dispatch[pickle.BUILD[0]] = load_build


def load_joblib(path: str | Path, *, allow_sparse: bool = False, allow_torch: bool = False) -> Any:
    """Read a ``joblib.dump`` file (uncompressed, or whole-file zlib / gzip as ``compress=`` writes; a plain pickle
    too) without joblib and without running its code; ``allow_sparse`` as :func:`load_pickle`, ``allow_torch=True``
    also admits torch tensors (:func:`_rebuild_tensor`)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise InputError(path, None, None, f"cannot read: {e.strerror or e}") from None
    try:
        if raw[:1] == b"\x78":
            raw = zlib.decompress(raw)
        elif raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        return _JoblibUnpickler(io.BytesIO(raw), source=path, allow_sparse=allow_sparse,
                                allow_torch=allow_torch).load()
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - corrupt streams and refused records raise many types
        raise InputError(path, None, None, f"not a valid joblib file: {type(e).__name__}: {e}") from None


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
