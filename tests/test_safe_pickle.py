"""The restricted unpickler and the safe .npz reader (bench/safe_pickle.py).

Crafted files whose pickles call ``os.system`` (or ``builtins.eval``) are shown to be live first (plain
``pickle`` / ``np.load(allow_pickle=True)`` runs them and creates a marker file), then shown to be refused by
ours with an InputError naming the refused global, without the marker appearing.
"""
from __future__ import annotations

import collections
import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from bench.errors import InputError
from bench.safe_pickle import load_joblib, load_npz, load_pickle, loads
from tests.conftest import ShellPayload


class _Eval:
    def __reduce__(self):
        return (eval, ("1+1",))


def _vp3d_tree() -> dict:
    rng = np.random.default_rng(0)
    return {"S9": {"Walking 1": rng.random((4, 32, 3)).astype(np.float32),
                   "Eating": rng.random((3, 32, 3)).astype(np.float32)},
            "S11": {"Posing": rng.random((2, 32, 3))}}


def _assert_same_tree(a, b):
    assert a.keys() == b.keys()
    for s in a:
        assert a[s].keys() == b[s].keys()
        for k in a[s]:
            assert a[s][k].dtype == b[s][k].dtype and np.array_equal(a[s][k], b[s][k])


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_plain_data_round_trips(protocol):
    obj = {"tree": _vp3d_tree(), "list": [1, 2.5, None, True, False, "s", b"b", (1, "x")],
           "scalar": np.float64(3.25), "int": np.int32(-4), "big": 2**70, "c": 1 + 2j, "set": {1, 2},
           "od": collections.OrderedDict(a=1), "obj": np.array([np.zeros(2), "a", None], dtype=object),
           "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)), "bool": np.array([True, False])}
    out = loads(pickle.dumps(obj, protocol=protocol))
    _assert_same_tree(out["tree"], obj["tree"])
    assert out["list"] == obj["list"] and out["big"] == 2**70 and out["c"] == 1 + 2j and out["set"] == {1, 2}
    assert out["scalar"] == 3.25 and out["scalar"].dtype == np.float64 and out["int"].dtype == np.int32
    assert out["od"] == {"a": 1} and np.array_equal(out["fortran"], obj["fortran"])
    assert out["obj"][1] == "a" and out["obj"][2] is None and np.array_equal(out["bool"], [True, False])


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_os_system_pickle_is_refused(tmp_path, protocol):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"x": [1, ShellPayload(f"touch {marker}")]}, protocol=protocol)
    pickle.loads(payload)  # the crafted pickle is live: plain pickle runs the command
    assert marker.exists()
    marker.unlink()
    with pytest.raises(InputError, match=r"refused to unpickle (posix|os|nt)\.system") as e:
        loads(payload, source="evil.pkl")
    assert not marker.exists()
    assert e.value.file == "evil.pkl"


def test_other_globals_are_refused():
    with pytest.raises(InputError, match=r"refused to unpickle builtins\.eval"):
        loads(pickle.dumps(_Eval()))
    with pytest.raises(InputError, match=r"refused to unpickle builtins\.getattr"):
        loads(b"cbuiltins\ngetattr\n(cbuiltins\nobject\nS'__subclasses__'\ntR.")
    # a class (not an allowed callable) is refused even when harmless
    with pytest.raises(InputError, match=r"refused to unpickle collections\.Counter"):
        loads(pickle.dumps(collections.Counter("ab")))


def test_corrupt_pickle_is_input_error(tmp_path):
    with pytest.raises(InputError, match="not a valid pickle"):
        loads(pickle.dumps({"a": 1})[:-3])
    f = tmp_path / "seq.pkl"
    f.write_bytes(pickle.dumps({"poses": np.zeros((2, 72))}, protocol=2))
    assert load_pickle(f, encoding="latin1")["poses"].shape == (2, 72)
    with pytest.raises(InputError, match="cannot read"):
        load_pickle(tmp_path / "missing.pkl")


def test_videopose3d_layout_npz_matches_numpy(tmp_path):
    f = tmp_path / "data_3d_h36m.npz"
    tree = _vp3d_tree()
    np.savez_compressed(f, positions_3d=tree, plain=np.arange(12, dtype=np.int16).reshape(3, 4),
                        fortran=np.asfortranarray(np.arange(6.0).reshape(2, 3)), empty=np.zeros((0, 3)))
    ours = load_npz(f)
    ref = np.load(f, allow_pickle=True)  # trusted file written here: the reference reader
    assert set(ours) == set(ref.files)
    _assert_same_tree(ours["positions_3d"].item(), ref["positions_3d"].item())
    for k in ("plain", "fortran", "empty"):
        assert ours[k].dtype == ref[k].dtype and ours[k].shape == ref[k].shape and np.array_equal(ours[k], ref[k])
    ours["plain"][0, 0] = 7  # a writable copy
    np.savez(f2 := tmp_path / "u.npz", a=np.ones(3))  # uncompressed too
    assert np.array_equal(load_npz(f2)["a"], np.ones(3))
    np.save(f3 := tmp_path / "x.npy", np.arange(3))
    assert np.array_equal(load_npz(f3)["arr_0"], np.arange(3))


def test_evil_npz_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    f = tmp_path / "data_3d_h36m.npz"
    evil = np.empty((), dtype=object)
    evil[()] = {"S9": ShellPayload(f"touch {marker}")}
    np.savez(f, positions_3d=evil)
    np.load(f, allow_pickle=True)["positions_3d"]  # live: numpy's unsafe loader runs the command
    assert marker.exists()
    marker.unlink()
    with pytest.raises(InputError, match=r"refused to unpickle (posix|os|nt)\.system") as e:
        load_npz(f)
    assert not marker.exists()
    assert str(f) in e.value.line()
    with pytest.raises(InputError, match="pickled object array"):
        load_npz(f, allow_pickle_objects=False)


def test_malformed_npz_is_input_error(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(InputError, match="not a valid .npz"):
        load_npz(bad)
    # truncated member data
    buf = io.BytesIO()
    np.save(buf, np.arange(100, dtype=np.float64))
    with zipfile.ZipFile(trunc := tmp_path / "trunc.npz", "w") as zf:
        zf.writestr("a.npy", buf.getvalue()[:-16])
    with pytest.raises(InputError, match="member a.*truncated"):
        load_npz(trunc)
    # a member that is not .npy
    with zipfile.ZipFile(junk := tmp_path / "junk.npz", "w") as zf:
        zf.writestr("a.npy", b"hello")
    with pytest.raises(InputError, match="member a.*not a valid .npy"):
        load_npz(junk)
    with pytest.raises(InputError, match="cannot read"):
        load_npz(tmp_path / "missing.npz")


# --- joblib files and torch tensors (load_joblib: WHAM's label files) -------------------------------------------

JOBLIB_DIR = Path(__file__).resolve().parent / "data" / "joblib_files"


@pytest.mark.parametrize("name", ["arrays.joblib", "arrays_zlib.joblib", "arrays_gzip.joblib"])
def test_joblib_files_read_without_joblib(name):
    """Files written by joblib 1.6.0 itself (tests/data/joblib_files/gen_files.py): uncompressed, zlib, gzip."""
    from tests.data.joblib_files.gen_files import joblib_arrays

    out, want = load_joblib(JOBLIB_DIR / name), joblib_arrays()
    for k in ("matrix", "fortran", "mask", "scalar", "empty"):
        assert out[k].dtype == want[k].dtype and out[k].shape == want[k].shape and np.array_equal(out[k], want[k]), k
    assert np.array_equal(out["nested"][0], want["nested"][0]) and out["nested"][1] == {"name": "x", "n": 3}
    assert out["fortran"].flags.f_contiguous and out["matrix"].flags.writeable


def test_joblib_refuses_code_and_bad_records(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.joblib"
    evil.write_bytes(pickle.dumps({"x": ShellPayload(f"touch {marker}")}))
    with pytest.raises(InputError, match=r"refused to unpickle (posix|os|nt)\.system"):
        load_joblib(evil)
    assert not marker.exists()
    raw = (JOBLIB_DIR / "arrays.joblib").read_bytes()
    (trunc := tmp_path / "trunc.joblib").write_bytes(raw[:-40])
    with pytest.raises(InputError, match="not a valid joblib file"):
        load_joblib(trunc)
    (sub := tmp_path / "sub.joblib").write_bytes(raw.replace(b"\x8c\x07ndarray", b"\x8c\x07ndarrax"))
    with pytest.raises(InputError, match="numpy.ndarrax"):
        load_joblib(sub)
    with pytest.raises(InputError, match="cannot read"):
        load_joblib(tmp_path / "missing.joblib")


class _StorageFromBytes:
    """Pickles to ``torch.storage._load_from_bytes(data)``, as a tensor's storage does."""

    def __init__(self, data: bytes):
        self.data = data

    def __reduce__(self):
        import torch

        return (torch.storage._load_from_bytes, (self.data,))


class _Tensor:
    """Pickles to ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, hooks)``."""

    def __init__(self, storage, offset, size, stride, hooks=None):
        self.args = (storage, offset, size, stride, False, hooks if hooks is not None else collections.OrderedDict())

    def __reduce__(self):
        import torch

        return (torch._utils._rebuild_tensor_v2, self.args)


def test_torch_tensors_only_when_allowed(tmp_path):
    import torch

    t = {"pose": [torch.arange(12.0).reshape(3, 4)[:, 1:], torch.zeros(2, dtype=torch.int64)], "vid": ["a"]}
    f = tmp_path / "labels.pth"
    f.write_bytes(pickle.dumps(t))
    out = load_joblib(f, allow_torch=True)
    assert torch.equal(out["pose"][0], t["pose"][0]) and out["pose"][1].dtype == torch.int64 and out["vid"] == ["a"]
    with pytest.raises(InputError, match=r"refused to unpickle torch\._utils\._rebuild_tensor_v2"):
        load_joblib(f)
    with pytest.raises(InputError, match=r"refused to unpickle torch\._utils\._rebuild_tensor_v2"):
        loads(f.read_bytes())


def test_torch_storage_bytes_go_through_weights_only(tmp_path):
    import torch

    marker = tmp_path / "pwned"
    inner = pickle.dumps(ShellPayload(f"touch {marker}"))
    (evil := tmp_path / "evil.pth").write_bytes(pickle.dumps({"x": _StorageFromBytes(inner)}))
    with pytest.raises(InputError, match="not a valid joblib file"):
        load_joblib(evil, allow_torch=True)
    assert not marker.exists()
    storage = torch.arange(4.0).storage()
    cases = {"past the end": _Tensor(storage, 0, (100,), (1,)), "hooks": _Tensor(storage, 0, (4,), (1,), {"h": 1}),
             "not a storage": _Tensor(np.zeros(4), 0, (4,), (1,)), "float size": _Tensor(storage, 0, (4.0,), (1,))}
    for why, record in cases.items():
        (bad := tmp_path / "bad.pth").write_bytes(pickle.dumps(record))
        with pytest.raises(InputError, match="not a valid joblib file"):
            load_joblib(bad, allow_torch=True)
        assert why
