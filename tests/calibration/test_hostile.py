"""Hostile calibration files (RELIABILITY.md, "Calibration data"): each one a one-line CalibrationError,
raised before anything large is allocated, with the input files left byte-for-byte unchanged."""

from __future__ import annotations

import io
import logging
import os
import struct
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from onnxtrim.calibration import InputSpec, open_data, safe_files
from onnxtrim.errors import CalibrationError

from .helpers import collect, rows_of, save_pb, untouched

MAGIC_1 = b"\x93NUMPY\x01\x00"


def npy_bytes(header: str | bytes, payload: bytes = b"", magic: bytes = MAGIC_1) -> bytes:
    """A .npy file with a hand-written header (padded like numpy's, but without numpy's checks)."""
    raw = header.encode("latin1") if isinstance(header, str) else header
    raw = raw + b" " * (-(len(magic) + 2 + len(raw) + 1) % 64) + b"\n"
    return magic + struct.pack("<H", len(raw)) + raw + payload


def read_all(path: Path, inputs: list[InputSpec]) -> None:
    """Open and read every batch, asserting the error (if any) is one line and names the path."""
    with untouched(path.parent if path.is_file() else path):
        try:
            collect(path, inputs)
        except CalibrationError as exc:
            assert "\n" not in str(exc)
            raise


class _Marker:
    """Unpickling this would create a file: proves pickles are never loaded."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_object_npy_is_refused_without_unpickling(tmp_path: Path, dyn: list[InputSpec]) -> None:
    marker = tmp_path.parent / f"{tmp_path.name}-pickle-ran"
    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "evil.npy", np.array([_Marker(str(marker))] * 3, dtype=object), allow_pickle=True)
    with pytest.raises(CalibrationError, match=r"evil.npy: stores Python objects \(dtype=object\)"):
        read_all(data, dyn)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        (b"", "not a valid .npy file"),
        (os.urandom(64), "not a valid .npy file"),
        (MAGIC_1 + b"\xff\xff" + b"{", "not a valid .npy file"),
        (
            npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }"[:-5]),
            "not a valid .npy file",
        ),
        (npy_bytes("[1, 2, 3]"), "not a valid .npy file"),
        (npy_bytes("{'descr': 'zz9', 'fortran_order': False, 'shape': (3,), }"), "not a valid .npy file"),
        (npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': 'abc', }"), "not a valid .npy file"),
        (npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 3), }"), "invalid shape"),
        (
            npy_bytes(
                "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", magic=b"\x93NUMPY\x09\x00"
            ),
            "unsupported .npy format version 9.0",
        ),
        (
            npy_bytes(b"{'descr': '<f4', 'fortran_order': False, 'shape': (3,), '\xe9': 1}"),
            "not a valid .npy file",
        ),
        (
            npy_bytes("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3,), }", b"\0" * 12),
            "unsupported array dtype",
        ),
        (
            npy_bytes("{'descr': '|V8', 'fortran_order': False, 'shape': (3,), }", b"\0" * 24),
            "unsupported array dtype",
        ),
        (
            npy_bytes(f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({10**12}, 3), }}", b"\0" * 12),
            (
                r"declares shape \(1000000000000, 3\) of float32 \(12000000000000 bytes\) "
                r"but the file holds only 12"
            ),
        ),
        (
            npy_bytes(
                f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({2**62}, {2**62}), }}", b"\0" * 12
            ),
            "declares shape",
        ),
    ],
    ids=[
        "empty",
        "random",
        "huge-header-len",
        "cut-header",
        "not-a-dict",
        "bad-descr",
        "bad-shape",
        "negative-shape",
        "version-9",
        "non-ascii-key",
        "structured",
        "void",
        "shape-beyond-file",
        "overflow",
    ],
)
def test_malformed_npy(tmp_path: Path, dyn: list[InputSpec], content: bytes, pattern: str) -> None:
    (tmp_path / "bad.npy").write_bytes(content)
    with pytest.raises(CalibrationError, match=pattern) as info:
        read_all(tmp_path, dyn)
    assert str(info.value).startswith(str(tmp_path / "bad.npy"))


def test_truncated_npy(tmp_path: Path, dyn: list[InputSpec]) -> None:
    buf = io.BytesIO()
    np.save(buf, np.ones((4, 3), np.float32))
    (tmp_path / "cut.npy").write_bytes(buf.getvalue()[:-10])
    with pytest.raises(CalibrationError, match=r"cut.npy: header declares shape \(4, 3\).*truncated"):
        read_all(tmp_path, dyn)


def _zip(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=array.dtype.hasobject)
    return buf.getvalue()


def test_zip_bomb_by_ratio(tmp_path: Path, dyn: list[InputSpec], monkeypatch) -> None:
    monkeypatch.setattr(safe_files, "ZIP_BOMB_MIN_BYTES", 1 << 16)
    monkeypatch.setattr(safe_files, "ZIP_BOMB_RATIO", 100)
    _zip(tmp_path / "bomb.npz", {"x.npy": _npy(np.zeros((1 << 16, 3), np.float32))}, zipfile.ZIP_DEFLATED)
    with pytest.raises(CalibrationError, match=r"bomb.npz: member 'x.npy' expands \d+x .*zip bomb"):
        read_all(tmp_path, dyn)


def test_zip_bomb_by_declared_size_with_default_limits(tmp_path: Path, dyn: list[InputSpec]) -> None:
    """A central directory claiming ~4 GiB for a tiny member: refused from the directory alone."""
    path = tmp_path / "liar.npz"
    _zip(path, {"x.npy": _npy(np.zeros((2, 3), np.float32))})
    data = bytearray(path.read_bytes())
    central = data.rfind(b"PK\x01\x02")
    data[central + 24 : central + 28] = struct.pack("<I", 0xFFFFFFF0)  # uncompressed size
    path.write_bytes(bytes(data))
    with pytest.raises(CalibrationError, match=r"liar.npz: archive declares 4294967280 uncompressed bytes"):
        read_all(tmp_path, dyn)


def test_npz_with_too_many_members(tmp_path: Path, dyn: list[InputSpec]) -> None:
    _zip(tmp_path / "many.npz", {f"m{k}.npy": b"" for k in range(safe_files.MAX_NPZ_MEMBERS + 1)})
    with pytest.raises(CalibrationError, match=r"many.npz: archive declares 1025 members \(limit 1024\)"):
        read_all(tmp_path, dyn)


def test_npz_member_limit_also_checked_after_parsing(
    tmp_path: Path, dyn: list[InputSpec], monkeypatch
) -> None:
    monkeypatch.setattr(safe_files, "_zip_declared_members", lambda fp, size: None)
    monkeypatch.setattr(safe_files, "MAX_NPZ_MEMBERS", 3)
    _zip(tmp_path / "many.npz", {f"m{k}.npy": b"" for k in range(4)})
    with pytest.raises(CalibrationError, match=r"many.npz: archive has 4 members \(limit 3\)"):
        read_all(tmp_path, dyn)


@pytest.mark.parametrize(
    ("members", "pattern"),
    [
        ({"x.npy": _npy(np.array([{"a": 1}], dtype=object))}, r"bad.npz\[x.npy\]: stores Python objects"),
        ({"x.txt": b"hello"}, "member 'x.txt' is not a .npy array"),
        (
            {"x.npy": _npy(np.zeros((4, 3), np.float32))[:-8]},
            r"bad.npz\[x.npy\]: header declares shape \(4, 3\)",
        ),
        ({"x.npy": b"\x93NUMPY garbage"}, r"bad.npz\[x.npy\]: unsupported .npy format version"),
        ({"x.npy": b"\x93NUMP"}, r"bad.npz\[x.npy\]: not a valid .npy file"),
    ],
    ids=["object", "not-npy", "short-member", "bad-version", "bad-magic"],
)
def test_bad_npz_members(tmp_path: Path, dyn: list[InputSpec], members, pattern: str) -> None:
    _zip(tmp_path / "bad.npz", members)
    with pytest.raises(CalibrationError, match=pattern):
        read_all(tmp_path, dyn)


def test_corrupt_and_truncated_npz(tmp_path: Path, dyn: list[InputSpec]) -> None:
    good = io.BytesIO()
    np.savez(good, x=np.arange(300, dtype=np.float32).reshape(100, 3))
    raw = good.getvalue()
    (tmp_path / "a.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CalibrationError, match=r"a.npz: not a valid .npz archive"):
        read_all(tmp_path, dyn)
    flipped = bytearray(raw)
    flipped[len(raw) // 2] ^= 0xFF  # inside the stored array data: CRC mismatch
    (tmp_path / "a.npz").write_bytes(bytes(flipped))
    with pytest.raises(CalibrationError, match=r"a.npz: not a valid .npz archive.*CRC"):
        read_all(tmp_path, dyn)
    (tmp_path / "a.npz").write_bytes(os.urandom(200))
    with pytest.raises(CalibrationError, match=r"a.npz: not a valid .npz archive"):
        read_all(tmp_path, dyn)


def _pb_case(tmp_path: Path, tensor: TensorProto | bytes) -> Path:
    case = tmp_path / "test_data_set_0"
    case.mkdir()
    data = tensor if isinstance(tensor, bytes) else tensor.SerializeToString()
    (case / "input_0.pb").write_bytes(data)
    return case / "input_0.pb"


def _external() -> TensorProto:
    tensor = helper.make_tensor("x", TensorProto.FLOAT, [1, 3], [0.0, 0.0, 0.0])
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="../../etc/passwd")
    return tensor


def _raw(dims: list[int], nbytes: int) -> TensorProto:
    """Built by hand: onnx.helper refuses (and the checker accepts) raw_data that disagrees with dims."""
    tensor = TensorProto(name="x", data_type=TensorProto.FLOAT, dims=dims)
    tensor.raw_data = b"\0" * nbytes
    return tensor


def _typed(dims: list[int], values: list[float]) -> TensorProto:
    return TensorProto(name="x", data_type=TensorProto.FLOAT, dims=dims, float_data=values)


@pytest.mark.parametrize(
    ("tensor", "pattern"),
    [
        (_external(), "input_0.pb: tensor uses external data"),
        (_raw([1, 3], 8), r"raw_data has 8 bytes but dims \[1, 3\] of float32 need 12"),
        (_raw([2**62, 8], 12), r"raw_data has 12 bytes but dims \[4611686018427387904, 8\]"),
        (_raw([-1, 3], 12), "negative dims"),
        (_typed([2, 3], [1.0] * 5), r"float_data has 5 values but dims \[2, 3\] need 6"),
        (b"\xff" * 40, "input_0.pb: not a serialized TensorProto"),
        (b"", "not a serialized TensorProto"),
    ],
    ids=["external", "short-raw", "overflow-dims", "negative-dims", "short-typed", "garbage", "empty"],
)
def test_hostile_pb(tmp_path: Path, dyn: list[InputSpec], tensor, pattern: str) -> None:
    path = _pb_case(tmp_path, tensor)
    with pytest.raises(CalibrationError, match=pattern) as info:
        read_all(tmp_path, dyn)
    assert str(info.value).startswith(str(path))


def test_pb_loader_never_reads_external_files(tmp_path: Path, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(onnx.numpy_helper, "to_array", lambda *a, **k: calls.append(a))
    with pytest.raises(CalibrationError):
        safe_files.tensor_to_array(_external(), "t")
    assert calls == []


def test_symlinks_are_skipped_not_followed(tmp_path: Path, dyn: list[InputSpec], caplog) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    np.save(outside / "secret.npy", np.full((1, 3), 99, np.float32))
    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "a.npy", np.zeros((1, 3), np.float32))
    os.symlink(outside / "secret.npy", data / "b.npy")
    os.symlink(outside, data / "test_data_set_0")
    os.symlink("loop.npy", data / "loop.npy")  # a link to itself
    with caplog.at_level(logging.WARNING), untouched(tmp_path):
        rows = rows_of(collect(data, dyn))
    assert rows.tolist() == [[0, 0, 0]]
    assert "skipping symbolic link b.npy" in caplog.text and "loop.npy" in caplog.text


def test_only_symlinks_is_an_error(tmp_path: Path, dyn: list[InputSpec]) -> None:
    np.save(tmp_path / "real.npy", np.zeros((1, 3), np.float32))
    data = tmp_path / "data"
    data.mkdir()
    os.symlink(tmp_path / "real.npy", data / "a.npy")
    with pytest.raises(CalibrationError, match=r"no calibration files \(1 symbolic links skipped\)"):
        open_data(data, dyn)


def test_link_swapped_in_after_scan_is_not_followed(tmp_path: Path, dyn: list[InputSpec]) -> None:
    np.save(tmp_path / "a.npy", np.zeros((1, 3), np.float32))
    np.save(tmp_path / "real.npy.bak", np.zeros((1, 3), np.float32))
    source = open_data(tmp_path / "a.npy", dyn)
    os.replace(tmp_path / "a.npy", tmp_path / "moved")
    os.symlink(tmp_path / "real.npy.bak", tmp_path / "a.npy")
    with pytest.raises(CalibrationError, match=r"a.npy: is a symbolic link; links are not followed"):
        list(source.batches())


def test_fifo_is_refused_without_blocking(tmp_path: Path, dyn: list[InputSpec]) -> None:
    os.mkfifo(tmp_path / "x.npy")
    with pytest.raises(CalibrationError, match=r"unsupported entries x.npy"):
        open_data(tmp_path, dyn)
    with pytest.raises(CalibrationError, match=r"x.npy: not a regular file"):
        safe_files.load_npy(str(tmp_path / "x.npy"), str(tmp_path / "x.npy"))


def test_unreadable_file(tmp_path: Path, dyn: list[InputSpec], monkeypatch) -> None:
    np.save(tmp_path / "a.npy", np.zeros((1, 3), np.float32))
    target = str(tmp_path / "a.npy")
    real_open = os.open

    def deny(path, flags, *args, **kwargs):
        if os.fspath(path) == target:
            raise PermissionError(13, "Permission denied", target)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(CalibrationError, match=r"a.npy: cannot read the file: permission denied"):
        read_all(tmp_path, dyn)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_by_mode(tmp_path: Path, dyn: list[InputSpec]) -> None:
    np.save(tmp_path / "a.npy", np.zeros((1, 3), np.float32))
    os.chmod(tmp_path / "a.npy", 0)
    try:
        with pytest.raises(CalibrationError, match=r"permission denied"):
            collect(tmp_path, dyn)
    finally:
        os.chmod(tmp_path / "a.npy", 0o600)


def test_valid_files_after_hostile_checks_still_load(tmp_path: Path, dyn: list[InputSpec]) -> None:
    """The guards must not refuse ordinary data: empty-row files, .pb with raw data, big-ish arrays."""
    np.save(tmp_path / "a.npy", np.zeros((0, 3), np.float32))
    np.save(tmp_path / "b.npy", np.ones((3000, 3), np.float32))
    assert len(rows_of(collect(tmp_path, dyn))) == 3000
    other = tmp_path / "pb"
    other.mkdir()
    save_pb(_pb_case(other, b"").parent / "input_0.pb", np.ones((2, 3), np.float32))
    assert rows_of(collect(other, dyn)).tolist() == [[1, 1, 1]] * 2


def test_unlistable_directory(tmp_path: Path, dyn: list[InputSpec], monkeypatch) -> None:
    def deny(path):
        raise PermissionError(13, "Permission denied", os.fspath(path))

    monkeypatch.setattr(os, "scandir", deny)
    with pytest.raises(CalibrationError, match="cannot list the directory: permission denied"):
        open_data(tmp_path, dyn)


def _valid_bytes(kind: str) -> bytes:
    array = np.arange(12, dtype=np.float32).reshape(4, 3)
    if kind == "npy":
        return _npy(array)
    if kind == "npz":
        buf = io.BytesIO()
        np.savez_compressed(buf, x=array)
        return buf.getvalue()
    return onnx.numpy_helper.from_array(array, name="x").SerializeToString()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kind=st.sampled_from(["npy", "npz", "pb"]),
    cut=st.integers(0, 400),
    flips=st.lists(st.tuples(st.integers(0, 400), st.integers(1, 255)), max_size=4),
    junk=st.binary(max_size=64),
)
def test_fuzzed_files_load_or_raise_calibration_error(
    tmp_path_factory, dyn: list[InputSpec], kind: str, cut: int, flips, junk: bytes
) -> None:
    """Any byte string as a data file: rows of the right shape, or a CalibrationError; nothing else."""
    data = bytearray(_valid_bytes(kind))
    for pos, mask in flips:
        if pos < len(data):
            data[pos] ^= mask
    data = data[: max(len(data) - cut, 0)] + junk if cut or junk else data
    root = tmp_path_factory.mktemp("fuzz")
    if kind == "pb":
        (root / "test_data_set_0").mkdir()
        (root / "test_data_set_0" / "input_0.pb").write_bytes(bytes(data))
    else:
        (root / f"x.{kind}").write_bytes(bytes(data))
    try:
        with untouched(root):
            rows = rows_of(collect(root, dyn))
    except CalibrationError as exc:
        assert "\n" not in str(exc)
    else:
        assert rows.dtype == np.float32 and rows.shape[1] == 3 and np.isfinite(rows).all()
