"""External data: every reference validated, every data file read and written here.

Why onnxtrim does this itself instead of calling `onnx.external_data_helper`:

- The resolution of `location` in onnx has had path-traversal bugs fixed and bypassed several times, and the
  in-memory `onnx.checker.check_model` resolves external locations against the *working directory*. So
  onnxtrim validates every reference, opens every data file itself (one path component at a time, refusing
  symlinks, hard links and anything that is not a regular file), reads exactly the declared byte range, and
  only then lets onnx see the model, with all data already in memory.
- Tensors hide in many places: graph initializers, sparse initializers, `Constant` (or any) node attributes,
  `If`/`Loop`/`Scan` subgraphs, local functions and training-info graphs. `tensor_walk.iter_tensors`
  walks them all.
- `onnx.save(..., save_as_external_data=True)` appends to an existing data file and mutates the model it is
  given; `serialize_with_external_data` writes a fresh file and leaves the model alone, without copying it.
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from onnx import GraphProto, ModelProto, TensorProto

from .errors import ModelError
from .tensor_walk import (
    DATA_FIELDS,
    Scope,
    TensorRef,
    dims_text,
    dtype_name,
    iter_tensors,
    q,
    tensor_nbytes,
    uses_external_data,
    walk_scopes,
)

logger = logging.getLogger(__name__)

#: Initializers with at least this many bytes go to the data file when saving with external data
#: (onnx's own default threshold, so that small shape constants stay readable in the model file).
EXTERNAL_THRESHOLD = 1024
#: Tensors of at least _ALIGN_THRESHOLD bytes start at a multiple of _LARGE_ALIGN in the data file, so that
#: onnxruntime can memory-map them (its own writer uses the same 1 MiB / 64 KiB rule); others at _SMALL_ALIGN.
_ALIGN_THRESHOLD = 1 << 20
_LARGE_ALIGN = 1 << 16
_SMALL_ALIGN = 64

_ALLOWED_KEYS = frozenset({"location", "offset", "length", "checksum", "basepath"})
_UINT = re.compile(r"[0-9]{1,19}\Z")  # ASCII digits only: str.isdigit() also accepts '²' and friends
_DRIVE = re.compile(r"[A-Za-z]:")


def validate_location(location: str, where: str) -> tuple[str, ...]:
    """Split a `location` into path components, refusing anything that could leave the model's directory.

    Refused: empty, NUL, backslashes (a Windows separator; ambiguous across platforms), absolute paths
    (`/etc/passwd`, `C:\\x`, `C:x`), colons (drive-relative paths, NTFS streams) and any `..` component.
    """
    if not location or "\x00" in location:
        raise ModelError(f"{where}: external data location {q(location)} is empty or contains NUL")
    if "\\" in location or ":" in location or location.startswith("/") or _DRIVE.match(location) \
            or os.path.isabs(location):
        raise ModelError(f"{where}: external data location {q(location)} is absolute or platform-specific; "
                         "only relative paths inside the model's directory are allowed")
    parts = tuple(p for p in location.split("/") if p not in ("", "."))
    if ".." in parts or not parts:
        raise ModelError(f"{where}: external data location {q(location)} leaves the model's directory")
    return parts


@dataclass(frozen=True)
class ExternalRef:
    """A validated external-data reference: path components, offset, optional length, declared bytes."""

    ref: TensorRef
    parts: tuple[str, ...]
    offset: int
    length: int | None
    nbytes: int


def _parse_uint(value: str, key: str, where: str) -> int:
    if not _UINT.match(value):
        raise ModelError(f"{where}: external data {key} {q(value)} is not a non-negative integer")
    return int(value)


def parse_external(ref: TensorRef) -> ExternalRef:
    """Validate one tensor's `external_data` entries without touching the file system."""
    t, where = ref.tensor, ref.where
    entries: dict[str, str] = {}
    for entry in t.external_data:
        if entry.key not in _ALLOWED_KEYS:
            raise ModelError(f"{where}: unknown external_data key {q(entry.key)}")
        if entry.key in entries:
            raise ModelError(f"{where}: external_data key {q(entry.key)} appears twice")
        entries[entry.key] = entry.value
    if entries.get("basepath"):
        raise ModelError(f"{where}: external_data 'basepath' is not supported; locations are resolved "
                         "against the model's directory only")
    if "location" not in entries:
        raise ModelError(f"{where}: external data without a 'location'")
    parts = validate_location(entries["location"], where)
    offset = _parse_uint(entries.get("offset", "0"), "offset", where)
    length = _parse_uint(entries["length"], "length", where) if "length" in entries else None
    nbytes = tensor_nbytes(t, where)
    if nbytes is None:
        raise ModelError(f"{where}: string tensors cannot be stored as external data")
    if length is not None and length != nbytes:
        raise ModelError(f"{where}: external data length {length} disagrees with dims {dims_text(t.dims)} of "
                         f"{dtype_name(t.data_type)} ({nbytes} bytes)")
    if t.HasField("raw_data") or any(len(getattr(t, f)) for f in DATA_FIELDS):
        raise ModelError(f"{where}: has both external and inline data")
    return ExternalRef(ref, parts, offset, length, nbytes)


_DIR_FD = os.open in os.supports_dir_fd and os.stat in os.supports_dir_fd and hasattr(os, "O_NOFOLLOW")


def _lstat(base: Path, parts: tuple[str, ...], i: int, dir_fd: int | None) -> os.stat_result:
    if dir_fd is not None:
        return os.stat(parts[i], dir_fd=dir_fd, follow_symlinks=False)
    return os.lstat(base.joinpath(*parts[: i + 1]))


def open_data_file(base: Path, parts: tuple[str, ...], where: str) -> int:
    """Open `base/parts` read-only, refusing symlinks (file or any directory below base), hard links and
    non-regular files. Walks with directory descriptors and O_NOFOLLOW where the platform has them, so
    that a directory swapped for a symlink between check and open is refused too."""
    shown = "/".join(parts)
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    dir_fd = os.open(base, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)) if _DIR_FD else None
    try:
        for i, part in enumerate(parts):
            try:
                st = _lstat(base, parts, i, dir_fd)
            except FileNotFoundError:
                raise ModelError(f"{where}: external data file {q(shown)} not found next to the model "
                                 f"(in {base})") from None
            if stat.S_ISLNK(st.st_mode):
                raise ModelError(f"{where}: external data path {q(shown)} goes through symlink {q(part)}; "
                                 "onnxtrim does not follow symlinks")
            if i < len(parts) - 1:
                if not stat.S_ISDIR(st.st_mode):
                    raise ModelError(f"{where}: external data path {q(shown)}: {q(part)} is not a directory")
                if dir_fd is not None:
                    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | nofollow
                    next_fd = os.open(part, flags, dir_fd=dir_fd)
                    os.close(dir_fd)
                    dir_fd = next_fd
                continue
            if not stat.S_ISREG(st.st_mode):
                raise ModelError(f"{where}: external data file {q(shown)} is not a regular file")
            if st.st_nlink > 1:
                raise ModelError(f"{where}: external data file {q(shown)} is a hard link (st_nlink="
                                 f"{st.st_nlink}); onnxtrim refuses linked data files")
            flags = os.O_RDONLY | nofollow | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
            fd = os.open(part if dir_fd is not None else base.joinpath(*parts), flags, dir_fd=dir_fd)
            opened = os.fstat(fd)
            if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino) or opened.st_nlink > 1:
                os.close(fd)
                raise ModelError(f"{where}: external data file {q(shown)} changed while being opened")
            return fd
        raise AssertionError("unreachable: validate_location never returns an empty path")
    except OSError as exc:
        raise ModelError(f"{where}: cannot open external data file {q(shown)}: {exc.strerror}") from None
    finally:
        if dir_fd is not None:
            os.close(dir_fd)


def _refuse_overlaps(refs: Sequence[ExternalRef]) -> None:
    """Refuse two tensors reading the same bytes: onnx never writes that, and a small model could otherwise
    make onnxtrim read one large region thousands of times. Loaded bytes stay bounded by the files' sizes."""
    ranges = sorted((ext.parts, ext.offset, ext.offset + ext.nbytes, ext.ref.where)
                    for ext in refs if ext.nbytes)
    for before, after in itertools.pairwise(ranges):
        if before[0] == after[0] and after[1] < before[2]:
            raise ModelError(f"{after[3]}: external data overlaps that of {before[3]} in "
                             f"{q('/'.join(after[0]))}")


def load_external_data(model: ModelProto, base: Path) -> tuple[Path, ...]:
    """Validate every external reference in `model`, then read the data into the tensors, in place.

    Nothing is read before everything is validated (keys, locations, dims, files, ranges), so a hostile
    `length` never allocates memory. Returns the data files, resolved, in order of first use.
    """
    refs = [parse_external(ref) for ref in iter_tensors(model) if uses_external_data(ref.tensor)]
    files: dict[tuple[str, ...], BinaryIO] = {}
    try:
        for ext in refs:
            if ext.parts not in files:
                files[ext.parts] = os.fdopen(open_data_file(base, ext.parts, ext.ref.where), "rb")
        for ext in refs:
            size = os.fstat(files[ext.parts].fileno()).st_size
            length = ext.length if ext.length is not None else max(size - ext.offset, 0)
            if ext.offset + length > size:
                raise ModelError(f"{ext.ref.where}: external data [{ext.offset}, {ext.offset + length}) is "
                                 f"beyond the end of {q('/'.join(ext.parts))} ({size} bytes)")
            if length != ext.nbytes:  # no 'length' key: onnx reads to the end of the file
                raise ModelError(f"{ext.ref.where}: external data from offset {ext.offset} to the end of "
                                 f"{q('/'.join(ext.parts))} is {length} bytes; dims need {ext.nbytes}")
        _refuse_overlaps(refs)
        for ext in refs:
            handle = files[ext.parts]
            handle.seek(ext.offset)
            data = handle.read(ext.nbytes)
            if len(data) != ext.nbytes:
                raise ModelError(f"{ext.ref.where}: {q('/'.join(ext.parts))} is shorter than declared "
                                 "(changed while reading?)")
            t = ext.ref.tensor
            t.raw_data = data
            del t.external_data[:]
            t.ClearField("data_location")
    except OSError as exc:
        raise ModelError(f"cannot read external data: {exc.strerror}") from None
    finally:
        for handle in files.values():
            handle.close()
    if refs:
        logger.debug("loaded %d external tensors from %d file(s)", len(refs), len(files))
    return tuple(base.joinpath(*parts) for parts in files)


def _align(offset: int, nbytes: int) -> int:
    step = _LARGE_ALIGN if nbytes >= _ALIGN_THRESHOLD else _SMALL_ALIGN
    return -(-offset // step) * step


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field: parsers accept fields in any order, so parts may be appended."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def is_repeated(field: FieldDescriptor) -> bool:
    """Whether a protobuf field is repeated, across protobuf versions (`label` went away in 6)."""
    repeated = getattr(field, "is_repeated", None)
    return bool(repeated) if repeated is not None else field.label == FieldDescriptor.LABEL_REPEATED


def _copy_fields(source: Message, target: Message, skip: str) -> None:
    """Copy every set field but `skip`, without reading `skip` (ListFields would copy a GB of raw_data)."""
    for desc in source.DESCRIPTOR.fields:
        if desc.name == skip:
            continue
        if is_repeated(desc):
            values = getattr(source, desc.name)
            if len(values):
                getattr(target, desc.name).extend(values)
        elif not source.HasField(desc.name):
            continue
        elif desc.type == FieldDescriptor.TYPE_MESSAGE:
            getattr(target, desc.name).CopyFrom(getattr(source, desc.name))
        else:
            setattr(target, desc.name, getattr(source, desc.name))


class _DataWriter:
    """Appends tensor bytes to a fresh data file, aligned, and points tensors at them. With `layout_only`
    nothing is written: the caller gets the layout and a file of the right size to truncate to."""

    def __init__(self, handle: BinaryIO, location: str, threshold: int, layout_only: bool) -> None:
        self.handle, self.location, self.threshold = handle, location, threshold
        self.layout_only = layout_only
        self.position = self.count = 0

    def wants(self, tensor: TensorProto) -> bool:
        return tensor.data_type != TensorProto.STRING and tensor.HasField("raw_data")

    def refer(self, tensor: TensorProto, raw: bytes) -> None:
        """Write `raw` and make `tensor` (already without raw_data) refer to it."""
        start = _align(self.position, len(raw))
        if not self.layout_only:
            self.handle.write(b"\0" * (start - self.position))
            self.handle.write(raw)
        self.position = start + len(raw)
        self.count += 1
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", self.location), ("offset", str(start)), ("length", str(len(raw)))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value

    def main_initializer(self, tensor: TensorProto) -> bytes:
        """The serialized tensor, its data moved out if large, without copying the tensor first."""
        if not self.wants(tensor):
            return tensor.SerializeToString()
        raw = tensor.raw_data
        if len(raw) < self.threshold:
            return tensor.SerializeToString()
        meta = TensorProto()
        _copy_fields(tensor, meta, skip="raw_data")
        self.refer(meta, raw)
        return meta.SerializeToString()

    def subgraph_initializers(self, graph: GraphProto) -> None:
        """Move large initializers of subgraphs out of `graph`, a copy, in place."""
        for scope in walk_scopes(collections.deque([Scope("graph", graph.node, graph)])):
            for tensor in scope.graph.initializer if scope.graph is not None else ():
                if self.wants(tensor) and len(raw := tensor.raw_data) >= self.threshold:
                    tensor.ClearField("raw_data")
                    self.refer(tensor, raw)


def serialize_with_external_data(model: ModelProto, data_file: BinaryIO, location: str,
                                 threshold: int = EXTERNAL_THRESHOLD, *, layout_only: bool = False) -> bytes:
    """Serialize `model` with its initializers of `threshold` bytes or more (raw_data, in every graph and
    subgraph) written to `data_file` and referenced by `location`; the model itself is not modified.

    Like onnx's default (convert_attribute=False), attribute tensors, sparse initializers and typed-field
    tensors stay inline. `data_file` must be new and empty: offsets count from its start. Memory: the main
    graph is serialized piecewise (everything but its initializers, then each initializer), so the model
    is never copied whole; a model of several GB is saved in not much more memory than its own size.
    Returns bytes that may exceed protobuf's 2 GiB limit: the caller checks.

    `layout_only` writes no data but sizes `data_file` (sparse) as if it had: enough for the onnx checker,
    which checks that data files exist and are regular but does not read them.
    """
    writer = _DataWriter(data_file, location, threshold, layout_only)
    head, rest = ModelProto(), GraphProto()
    _copy_fields(model, head, skip="graph")
    _copy_fields(model.graph, rest, skip="initializer")
    writer.subgraph_initializers(rest)
    parts = [rest.SerializeToString()]
    parts += [_field(5, writer.main_initializer(t)) for t in model.graph.initializer]  # 5: initializer
    graph = b"".join(parts)
    if layout_only:
        data_file.truncate(writer.position)
    logger.debug("wrote %d initializers (%d bytes) to external data %s", writer.count, writer.position,
                 location)
    return head.SerializeToString() + (_field(7, graph) if model.HasField("graph") else b"")  # 7: graph


def refuse_unloaded(model: ModelProto) -> None:
    """Refuse a model that still points at external data: saving or checking it would resolve the
    locations against the wrong directory (the checker uses the working directory)."""
    for ref in iter_tensors(model):
        if uses_external_data(ref.tensor):
            raise ModelError(f"{ref.where}: still references external data (not loaded); load the model "
                             "with onnxtrim.model_io.load_model")


__all__ = [
    "EXTERNAL_THRESHOLD", "ExternalRef", "is_repeated", "load_external_data", "open_data_file",
    "parse_external", "refuse_unloaded", "serialize_with_external_data", "validate_location",
]
