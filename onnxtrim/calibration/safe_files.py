"""Reading `.npy`, `.npz` and TensorProto `.pb` calibration files without trusting them.

Calibration data comes from users and pipelines we do not control, so every reader here assumes the
bytes may be hostile (see RELIABILITY.md, "Calibration data"):

- files are opened with ``O_NOFOLLOW`` and must be regular files: a symlink swapped in after the
  directory scan, a FIFO (which would block ``open`` forever) or a device is refused;
- pickles are never loaded (no ``allow_pickle``), and the `.npy` header is parsed and checked against
  the file size *before* anything is allocated, so a header declaring terabytes costs nothing;
- `.npz` archives are read member by member with our own header check, after refusing archives whose
  central directory declares too many members or a suspicious uncompressed size (zip bombs);
- `.pb` tensors with external data are refused (that would read files named by the data), and the
  payload length must match the dims before numpy sees it.

Whatever goes wrong, the caller gets a one-line :class:`CalibrationError` naming the file. Files are
only ever opened read-only.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import stat
import zipfile
from collections.abc import Iterator
from typing import BinaryIO, Literal

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .. import errors
from ..errors import CalibrationError

log = logging.getLogger(__name__)

#: More members than this in one `.npz` is refused: a model has a handful of inputs.
MAX_NPZ_MEMBERS = 1024
#: Total declared uncompressed size of one `.npz`; a member is decompressed into memory in full.
MAX_NPZ_TOTAL_BYTES = 2 * 2**30
#: A member whose declared size exceeds both of these relative to its compressed size is a zip bomb.
ZIP_BOMB_RATIO = 1000
ZIP_BOMB_MIN_BYTES = 64 * 2**20
#: Protobuf cannot parse messages above 2 GiB anyway; refuse before reading them into memory.
MAX_PB_BYTES = 2**31 - 1
#: Element kinds accepted from files: bool, integers, floats, complex, and strings (for string inputs).
_FILE_KINDS = "biufcSU"
_EOCD = b"PK\x05\x06"
_PACKED_TYPES = {
    getattr(onnx.TensorProto, name)
    for name in ("INT4", "UINT4", "FLOAT4E2M1", "INT2", "UINT2")
    if hasattr(onnx.TensorProto, name)
}


def describe(exc: BaseException) -> str:
    """Exception type and message on one line, for errors that wrap a library failure."""
    return errors.one_line(f"{type(exc).__name__}: {exc}" if str(exc).strip() else type(exc).__name__)


@contextlib.contextmanager
def open_regular(path: str, origin: str) -> Iterator[tuple[BinaryIO, int]]:
    """Open `path` read-only as a regular file, never through a symlink; yield (file, size).

    ``O_NONBLOCK`` keeps a FIFO from blocking the open; ``fstat`` on the open descriptor (not the path)
    decides whether it is a regular file, so nothing can be swapped in between check and use.
    """
    flags = os.O_RDONLY
    for name in ("O_NOFOLLOW", "O_NONBLOCK", "O_CLOEXEC", "O_BINARY"):
        flags |= getattr(os, name, 0)
    try:
        fd = os.open(path, flags)
    except PermissionError as exc:
        raise CalibrationError(f"{origin}: cannot read the file: permission denied") from exc
    except FileNotFoundError as exc:
        raise CalibrationError(f"{origin}: file not found (removed while reading?)") from exc
    except OSError as exc:
        if os.path.islink(path):
            raise CalibrationError(f"{origin}: is a symbolic link; links are not followed") from exc
        raise CalibrationError(f"{origin}: cannot open the file ({describe(exc)})") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise CalibrationError(f"{origin}: not a regular file")
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with handle:
        try:
            yield handle, info.st_size
        except OSError as exc:
            raise CalibrationError(f"{origin}: read error ({describe(exc)})") from exc


def check_file_dtype(dtype: np.dtype, origin: str) -> None:
    """Refuse dtypes that are pickles (object), records, sub-arrays or raw bytes."""
    if dtype.hasobject:
        raise CalibrationError(
            f"{origin}: stores Python objects (dtype=object); "
            "pickled data is never loaded, save numeric arrays"
        )
    if dtype.names is not None or dtype.subdtype is not None or dtype.kind not in _FILE_KINDS:
        raise CalibrationError(f"{origin}: unsupported array dtype {dtype.str!r}; save plain numeric arrays")


def _read_npy_header(fp: BinaryIO, origin: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Parse a `.npy` header; any exception numpy raises on malformed bytes becomes a CalibrationError."""
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
        else:
            raise CalibrationError(f"{origin}: unsupported .npy format version {version[0]}.{version[1]}")
    except (CalibrationError, zipfile.BadZipFile):  # a CRC error belongs to the archive, not the header
        raise
    except Exception as exc:  # numpy raises ValueError, SyntaxError, TypeError... on crafted headers
        raise CalibrationError(f"{origin}: not a valid .npy file ({describe(exc)})") from exc
    if any(not isinstance(d, int) or d < 0 for d in shape):
        raise CalibrationError(f"{origin}: .npy header declares an invalid shape {shape}")
    check_file_dtype(dtype, origin)
    return tuple(shape), bool(fortran), dtype


def _declared_bytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    """Exact byte count in Python integers, so absurd shapes cannot overflow into small numbers."""
    return math.prod(shape) * dtype.itemsize


def npy_shape(path: str, origin: str) -> tuple[int, ...]:
    """The shape a `.npy` header declares, without reading the data (to count samples beforehand)."""
    with open_regular(path, origin) as (fp, _):
        return _read_npy_header(fp, origin)[0]


def load_npy(path: str, origin: str) -> np.ndarray:
    """Memory-map a `.npy` file read-only after checking its header against the file size."""
    with open_regular(path, origin) as (fp, size):
        shape, fortran, dtype = _read_npy_header(fp, origin)
        offset = fp.tell()
        need = _declared_bytes(shape, dtype)
        if need > size - offset:
            raise CalibrationError(
                f"{origin}: header declares shape {shape} of {dtype} ({need} bytes) but the file holds only "
                f"{size - offset} bytes of data (truncated or corrupt)"
            )
        order: Literal["C", "F"] = "F" if fortran else "C"
        if need == 0:
            return np.empty(shape, dtype=dtype, order=order)
        try:
            return np.memmap(fp, dtype=dtype, mode="r", offset=offset, shape=shape, order=order)
        except Exception as exc:
            raise CalibrationError(f"{origin}: cannot map the array ({describe(exc)})") from exc


def _zip_declared_members(fp: BinaryIO, size: int) -> int | None:
    """Member count from the end-of-central-directory record, read before zipfile parses the directory.

    Returns None when no record is found (zipfile will then report the archive as invalid). A count of
    0xFFFF means "see the zip64 record", i.e. at least that many members.
    """
    tail = min(size, 22 + 65535)
    fp.seek(size - tail)
    data = fp.read(tail)
    pos = data.rfind(_EOCD)
    fp.seek(0)
    if pos < 0 or len(data) - pos < 22:
        return None
    return int.from_bytes(data[pos + 10 : pos + 12], "little")


def _check_zip_members(infos: list[zipfile.ZipInfo], origin: str) -> None:
    """Refuse member counts, sizes and compression ratios that only a zip bomb would declare."""
    if len(infos) > MAX_NPZ_MEMBERS:
        raise CalibrationError(f"{origin}: archive has {len(infos)} members (limit {MAX_NPZ_MEMBERS})")
    total = sum(info.file_size for info in infos)
    if total > MAX_NPZ_TOTAL_BYTES:
        raise CalibrationError(
            f"{origin}: archive declares {total} uncompressed bytes (limit {MAX_NPZ_TOTAL_BYTES}); "
            "split the data into several files"
        )
    for info in infos:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > ZIP_BOMB_MIN_BYTES and ratio > ZIP_BOMB_RATIO:
            raise CalibrationError(
                f"{origin}: member {info.filename!r} expands {ratio:.0f}x to {info.file_size} bytes "
                f"(limit {ZIP_BOMB_RATIO}x above {ZIP_BOMB_MIN_BYTES} bytes): refusing a likely zip bomb"
            )
        if info.flag_bits & 0x1:
            raise CalibrationError(f"{origin}: member {info.filename!r} is encrypted")
        if not info.filename.endswith(".npy"):
            raise CalibrationError(f"{origin}: member {info.filename!r} is not a .npy array")


def _read_npz_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, origin: str) -> np.ndarray:
    """Read one member: header first, then exactly the declared bytes (bounded by the checks above)."""
    where = f"{origin}[{info.filename}]"
    with zf.open(info) as member:
        shape, fortran, dtype = _read_npy_header(member, where)  # type: ignore[arg-type]
        available = info.file_size - member.tell()
        need = _declared_bytes(shape, dtype)
        if need > available:
            raise CalibrationError(
                f"{where}: header declares shape {shape} of {dtype} ({need} bytes) but the member holds "
                f"only {available} bytes"
            )
        data = member.read(need)
        member.read(1)  # reach the end so that zipfile verifies the CRC
    if len(data) != need:
        raise CalibrationError(f"{where}: truncated member ({len(data)} of {need} bytes)")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")


def load_npz(path: str, origin: str) -> dict[str, np.ndarray]:
    """Read every array of a `.npz` archive (one archive at a time is the memory bound)."""
    with open_regular(path, origin) as (fp, size):
        declared = _zip_declared_members(fp, size)
        if declared is not None and declared > MAX_NPZ_MEMBERS:
            raise CalibrationError(f"{origin}: archive declares {declared} members (limit {MAX_NPZ_MEMBERS})")
        try:
            with zipfile.ZipFile(fp) as zf:
                infos = zf.infolist()
                _check_zip_members(infos, origin)
                arrays: dict[str, np.ndarray] = {}
                for info in infos:
                    key = info.filename[: -len(".npy")]
                    if key in arrays:
                        raise CalibrationError(f"{origin}: array {key!r} appears twice in the archive")
                    arrays[key] = _read_npz_member(zf, info, origin)
                return arrays
        except CalibrationError:
            raise
        except Exception as exc:  # BadZipFile, CRC errors, zlib.error, EOFError, NotImplementedError...
            raise CalibrationError(f"{origin}: not a valid .npz archive ({describe(exc)})") from exc


def _expected_field_count(tensor: onnx.TensorProto, count: int) -> int:
    """How many entries the typed field must hold for `count` elements (complex numbers take two)."""
    complex_types = (onnx.TensorProto.COMPLEX64, onnx.TensorProto.COMPLEX128)
    return 2 * count if tensor.data_type in complex_types else count


def tensor_to_array(tensor: onnx.TensorProto, origin: str) -> np.ndarray:
    """Convert a TensorProto after checking what onnx's own converter does not.

    The onnx checker accepts `raw_data` shorter than the dims say; `numpy_helper.to_array` would then
    fail with an odd reshape error or, with external data, read other files. Both are refused here.
    """
    if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data):
        raise CalibrationError(f"{origin}: tensor uses external data, which calibration data may not")
    if tensor.HasField("segment"):
        raise CalibrationError(f"{origin}: segmented tensors are not supported")
    if tensor.data_type in _PACKED_TYPES:
        raise CalibrationError(f"{origin}: packed sub-byte tensors are not supported as calibration data")
    try:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type))
    except Exception as exc:
        raise CalibrationError(f"{origin}: unknown tensor data type {tensor.data_type}") from exc
    dims = tuple(tensor.dims)
    if any(d < 0 for d in dims):
        raise CalibrationError(f"{origin}: tensor has negative dims {list(dims)}")
    count = math.prod(dims)
    if tensor.HasField("raw_data"):
        if tensor.data_type == onnx.TensorProto.STRING:
            raise CalibrationError(f"{origin}: string tensor stored as raw_data")
        need = count * dtype.itemsize
        if len(tensor.raw_data) != need:
            raise CalibrationError(
                f"{origin}: raw_data has {len(tensor.raw_data)} bytes but dims {list(dims)} of {dtype} "
                f"need {need}"
            )
    else:
        field = helper.tensor_dtype_to_field(tensor.data_type)
        have, need = len(getattr(tensor, field)), _expected_field_count(tensor, count)
        if have != need:
            raise CalibrationError(f"{origin}: {field} has {have} values but dims {list(dims)} need {need}")
    try:
        return numpy_helper.to_array(tensor)
    except Exception as exc:
        raise CalibrationError(f"{origin}: cannot convert the tensor ({describe(exc)})") from exc


def load_pb(path: str, origin: str) -> tuple[str, np.ndarray]:
    """Read one serialized TensorProto; returns (tensor name, possibly empty; array)."""
    with open_regular(path, origin) as (fp, size):
        if size > MAX_PB_BYTES:
            raise CalibrationError(f"{origin}: {size} bytes is above the 2 GiB protobuf limit")
        data = fp.read()
    tensor = onnx.TensorProto()
    try:
        tensor.ParseFromString(data)
    except Exception as exc:
        raise CalibrationError(f"{origin}: not a serialized TensorProto ({describe(exc)})") from exc
    if not tensor.HasField("data_type"):
        raise CalibrationError(f"{origin}: not a serialized TensorProto (no data type)")
    return tensor.name, tensor_to_array(tensor, origin)


_NUMBERED = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple[object, ...]:
    """Sort key that puts `input_2` before `input_10`, as the ONNX test-data layout numbers files."""
    return tuple(int(part) if part.isdigit() else part for part in _NUMBERED.split(name))
