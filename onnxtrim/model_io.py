"""Load, check and save ONNX models: the only module that reads or writes model files.

Loading trusts nothing: the file is always parsed as protobuf (never by extension), the header (IR version,
opsets, op domains) is checked before anything else, external data is validated and read by
`onnxtrim.external_data` before onnx sees the model, then onnxtrim's own size checks and the onnx checker
(full_check, with shape inference) run. Graph order: the checker requires nodes in topological order, so
unsorted graphs are refused along with cycles (a cycle cannot be sorted); onnxtrim does not reorder.

Saving never leaves a half-written output: files are written into a fresh temporary directory inside the
destination directory (same file system), fsync'ed and published with `os.replace` -- the data file first,
then the model -- and rolled back if publishing is interrupted. The input model and its data files
(`protected`) are never written, even with `overwrite=True`.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import onnx
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import EncodeError, Message

from .errors import ModelError, OutputError, one_line
from .external_data import (
    is_repeated,
    load_external_data,
    refuse_unloaded,
    serialize_with_external_data,
    validate_location,
)
from .tensor_walk import check_inline_tensor, iter_scopes, iter_tensors, q, raw_data_bytes

logger = logging.getLogger(__name__)

#: Protobuf cannot parse or serialize a message above 2 GiB; bigger models are checked by path.
_PROTOBUF_LIMIT = 2**31 - 1
#: Above this the checker runs by path (its own constant so that tests can exercise that branch cheaply).
_IN_MEMORY_CHECK_LIMIT = _PROTOBUF_LIMIT
#: With external_data=None, a model whose protobuf exceeds this is saved with external data.
_AUTO_EXTERNAL_BYTES = 1_800_000_000
#: Op domains onnxtrim accepts; anything else would need a custom-op library, which is never loaded.
_ALLOWED_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft"})


@dataclass
class LoadedModel:
    """A validated model with its external data in memory, and the files it came from (to protect them)."""

    model: onnx.ModelProto
    path: Path
    data_files: tuple[Path, ...]


def load_model(path: str | os.PathLike[str]) -> LoadedModel:
    """Read, validate and fully load a model; every failure is a one-line ModelError naming the file.

    External data is resolved against the directory of the model file after following a symlinked model
    path (its real location), never against the working directory.
    """
    shown = os.fspath(path)
    try:
        resolved = Path(path).resolve(strict=True)
    except (OSError, RuntimeError, ValueError) as exc:  # ValueError: a NUL in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else one_line(exc)
        raise ModelError(f"{shown!r}: cannot open model: {reason}" if "\x00" in shown
                         else f"{shown}: cannot open model: {reason}") from None
    try:
        model = _read_proto(resolved)
        _check_header(model)
        data_files = load_external_data(model, resolved.parent)
        raw_bytes = _check_contents(model)
        _run_checker(model, full=True, path=resolved, raw_bytes=raw_bytes)
    except ModelError as exc:
        raise ModelError(f"{shown}: {exc}") from None
    logger.debug("loaded %s (%d external data file(s))", resolved, len(data_files))
    return LoadedModel(model=model, path=resolved, data_files=data_files)


def check_model(model: onnx.ModelProto, *, full: bool = True) -> None:
    """Raise ModelError (one line) unless `model` is valid and safe for onnxtrim to process.

    Runs the header checks, onnxtrim's tensor and name checks (what the onnx checker lets through), then
    the onnx checker, with shape inference if `full`. A model over 2 GiB is written to a temporary
    directory with a sparse stand-in data file and checked by path (protobuf allows nothing else). A model
    still referencing external data is refused: the in-memory checker would resolve it against the cwd.
    """
    _check_header(model)
    raw_bytes = _check_contents(model)
    _run_checker(model, full=full, path=None, raw_bytes=raw_bytes)


def _read_proto(path: Path) -> onnx.ModelProto:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise ModelError(f"cannot open model: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ModelError("is a directory, not a model file")
        if not stat.S_ISREG(st.st_mode):
            raise ModelError("is not a regular file")
        if st.st_size == 0:
            raise ModelError("is empty, not an ONNX model")
        if st.st_size > _PROTOBUF_LIMIT:
            raise ModelError("is over 2 GiB, which protobuf cannot parse; store weights as external data")
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(st.st_size + 1)
    except OSError as exc:
        raise ModelError(f"cannot read model: {exc.strerror}") from None
    finally:
        os.close(fd)
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as exc:  # noqa: BLE001 - the protobuf boundary: any parse failure of hostile bytes
        raise ModelError(f"not an ONNX model (protobuf parse failed: {one_line(exc, 120)})") from None
    if not model.HasField("graph"):
        raise ModelError("not an ONNX model (no graph)")
    return model


_TEXT_AND_MESSAGE_FIELDS: dict[str, tuple[list[FieldDescriptor], list[FieldDescriptor]]] = {}


def _check_text_fields(model: onnx.ModelProto) -> None:
    """Refuse invalid UTF-8 in any string field. onnx.proto is proto2, which does not validate it on parse,
    and the Python runtime then hands back `bytes` where every caller expects `str` (names, domains,
    external-data keys and locations). Bytes fields (raw_data, string_data) are never touched: no copies."""
    todo: list[Message] = [model]
    while todo:
        message = todo.pop()
        descriptor = message.DESCRIPTOR
        fields = _TEXT_AND_MESSAGE_FIELDS.get(descriptor.full_name)
        if fields is None:
            text = [f for f in descriptor.fields if f.type == FieldDescriptor.TYPE_STRING]
            nested = [f for f in descriptor.fields if f.type == FieldDescriptor.TYPE_MESSAGE]
            fields = _TEXT_AND_MESSAGE_FIELDS[descriptor.full_name] = (text, nested)
        for field in fields[0]:
            values = getattr(message, field.name)
            for value in values if is_repeated(field) else (values,):
                if not isinstance(value, str):
                    raise ModelError(f"invalid UTF-8 in field {field.name!r} of a {descriptor.name}")
        for field in fields[1]:
            if is_repeated(field):
                todo.extend(getattr(message, field.name))
            elif message.HasField(field.name):
                todo.append(getattr(message, field.name))


def _check_header(model: onnx.ModelProto) -> None:
    """UTF-8, IR version, opset versions and op domains: cheap checks that run before any file is opened."""
    _check_text_fields(model)
    if model.ir_version <= 0:
        raise ModelError("not an ONNX model (no IR version)")
    if model.ir_version > onnx.IR_VERSION:
        raise ModelError(f"IR version {model.ir_version} is newer than onnx {onnx.__version__} supports "
                         f"({onnx.IR_VERSION}); upgrade onnx")
    newest = {"": onnx.defs.onnx_opset_version(), "ai.onnx": onnx.defs.onnx_opset_version(),
              "ai.onnx.ml": onnx.defs.onnx_ml_opset_version()}
    imports = list(model.opset_import) + [o for f in model.functions for o in f.opset_import]
    for opset in imports:
        if opset.domain in newest and opset.version > newest[opset.domain]:
            raise ModelError(f"opset {opset.version} of domain {q(opset.domain or 'ai.onnx')} is newer than "
                             f"onnx {onnx.__version__} supports ({newest[opset.domain]}); upgrade onnx")
    local = {(f.domain, f.name, getattr(f, "overload", "")) for f in model.functions}
    for scope in iter_scopes(model):
        for node in scope.nodes:
            key = (node.domain, node.op_type, getattr(node, "overload", ""))
            if node.domain not in _ALLOWED_DOMAINS and key not in local:
                raise ModelError(f"custom op domain {q(node.domain)} at node {q(node.name or node.op_type)} "
                                 f"in {scope.label}; onnxtrim never loads custom-op libraries")


def _check_contents(model: onnx.ModelProto) -> int:
    """What the onnx checker lets through: tensor sizes, long raw_data, SSA and dangling graph outputs.
    Returns the bytes of raw tensor data, to choose between checking in memory and by path."""
    raw_bytes = sum(check_inline_tensor(ref) for ref in iter_tensors(model))
    graph = model.graph
    defined = {v.name for v in graph.input} | {t.name for t in graph.initializer}
    defined |= {s.values.name for s in graph.sparse_initializer}
    produced: set[str] = set()
    for node in graph.node:
        for name in node.output:
            if not name:
                continue  # an omitted optional output
            if name in produced or name in defined:
                raise ModelError(f"tensor {q(name)} is produced twice (again by node "
                                 f"{q(node.name or node.op_type)}); the graph must be in SSA form")
            produced.add(name)
    for output in graph.output:
        if output.name not in produced and output.name not in defined:
            raise ModelError(f"graph output {q(output.name)} is produced by nothing")
    return raw_bytes


def _run_checker(model: onnx.ModelProto, *, full: bool, path: Path | None, raw_bytes: int) -> None:
    """The onnx checker in memory, or by path when the model is too large for one protobuf message
    (`raw_bytes` says so without a serialization that would fail only after seconds of work)."""
    refuse_unloaded(model)
    payload = _serialize(model, _IN_MEMORY_CHECK_LIMIT) if raw_bytes <= _IN_MEMORY_CHECK_LIMIT else None
    try:
        if payload is not None:
            onnx.checker.check_model(payload, full_check=full)
        elif path is not None:  # the file on disk: its external references were validated by load_model
            onnx.checker.check_model(os.fspath(path), full_check=full)
        else:
            with tempfile.TemporaryDirectory(prefix="onnxtrim-check-") as tmp:
                target = Path(tmp) / "model.onnx"
                with open(target.with_name("model.onnx.data"), "xb") as data_file:
                    payload = serialize_with_external_data(model, data_file, "model.onnx.data",
                                                           layout_only=True)
                target.write_bytes(_fits(payload, target))
                del payload
                onnx.checker.check_model(os.fspath(target), full_check=full)
    except OutputError as exc:
        raise ModelError(f"cannot check model: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - the checker boundary: ValidationError, InferenceError, ...
        raise ModelError(f"onnx checker: {one_line(exc)}") from None


def _serialize(model: onnx.ModelProto, limit: int) -> bytes | None:
    """The model's bytes, or None when they would exceed `limit` (or protobuf's own 2 GiB)."""
    try:
        payload = model.SerializeToString()
    except (EncodeError, ValueError):
        return None
    return payload if len(payload) <= limit else None


def _fits(payload: bytes, dest: Path) -> bytes:
    if len(payload) > _PROTOBUF_LIMIT:
        raise OutputError(f"{dest}: model protobuf is over 2 GiB even with initializers moved to external "
                          "data (large attribute tensors?)")
    return payload


def save_model(model: onnx.ModelProto, path: str | os.PathLike[str], *, overwrite: bool = False,
               protected: Sequence[Path] = (), external_data: bool | None = None) -> list[Path]:
    """Atomically write `model` to `path`; return the final paths written (model first, then data file).

    With external data (`external_data=True`, or None and a protobuf over 1.8 GB) the initializers of
    1 KiB or more go to a fresh `<name>.data` beside the model (always written, possibly empty, so the set
    of outputs is predictable). The model is not modified. Raises OutputError if the destination exists
    without `overwrite`, resolves to a `protected` file, or cannot be written; ModelError if the model
    still references unloaded external data.
    """
    final = _destination(path)
    _check_targets([final], protected, overwrite)  # fail before serializing a large model
    refuse_unloaded(model)
    payload = None
    if external_data is False:
        payload = _serialize(model, _PROTOBUF_LIMIT)
        if payload is None:
            raise OutputError(f"{final}: model protobuf is over 2 GiB; save it with external data")
    elif external_data is None and raw_data_bytes(model) <= _AUTO_EXTERNAL_BYTES:
        payload = _serialize(model, _AUTO_EXTERNAL_BYTES)
    data_path = final.with_name(final.name + ".data") if payload is None else None
    targets = [final] + ([data_path] if data_path is not None else [])
    _check_targets(targets, protected, overwrite)
    with _staging(final) as stage:
        staged = stage / final.name
        if data_path is not None:
            try:
                location = validate_location(data_path.name, f"output {final}")[0]
            except ModelError as exc:
                raise OutputError(f"{final}: unusable as an external data file name: {exc}") from None
            with _open_new(stage / data_path.name) as data_file:
                payload = _fits(serialize_with_external_data(model, data_file, location), final)
                _sync(data_file)
        _write_new(staged, payload or b"")
        pairs = ([(stage / data_path.name, data_path)] if data_path is not None else []) + [(staged, final)]
        _publish(pairs, overwrite)
    logger.info("saved %s", ", ".join(map(str, targets)))
    return targets


def write_text(path: str | os.PathLike[str], text: str, *, overwrite: bool = False,
               protected: Sequence[Path] = ()) -> Path:
    """Atomically write UTF-8 `text` (a JSON report, say) with the same rules as save_model."""
    return write_bytes(path, text.encode("utf-8"), overwrite=overwrite, protected=protected)


def write_bytes(path: str | os.PathLike[str], payload: bytes, *, overwrite: bool = False,
                protected: Sequence[Path] = ()) -> Path:
    """Atomically write `payload` (saved statistics, say) with the same rules as save_model."""
    final = _destination(path)
    _check_targets([final], protected, overwrite)
    with _staging(final) as stage:
        _write_new(stage / final.name, payload)
        _publish([(stage / final.name, final)], overwrite)
    return final


def _destination(path: str | os.PathLike[str]) -> Path:
    """The final path: real parent directory (must exist) + the file name as given."""
    given = Path(path)
    if given.name in ("", ".", ".."):
        raise OutputError(f"{os.fspath(path)}: not a file name")
    if "\x00" in os.fspath(given):
        raise OutputError(f"{os.fspath(given)!r}: a path cannot contain NUL")
    try:
        parent = given.parent.resolve(strict=True)
    except (OSError, RuntimeError):
        raise OutputError(f"{given}: directory {given.parent} does not exist") from None
    if not parent.is_dir():
        raise OutputError(f"{given}: {given.parent} is not a directory")
    return parent / given.name


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _check_targets(targets: Sequence[Path], protected: Sequence[Path], overwrite: bool) -> None:
    """Refuse protected files (same real path or same inode: hard links too), directories, and existing
    files without `overwrite`."""
    guarded = {os.path.realpath(p) for p in protected}
    guarded_ids = {i for i in map(_identity, map(Path, protected)) if i is not None}
    for target in targets:
        ident = _identity(target)
        if os.path.realpath(target) in guarded or (ident is not None and ident in guarded_ids):
            raise OutputError(f"{target}: refusing to write over an input file (the model or its external "
                              "data), even with overwrite")
        if target.is_dir():
            raise OutputError(f"{target}: is a directory")
        if os.path.lexists(target) and not overwrite:
            raise OutputError(f"{target}: exists; pass overwrite to replace it")


@contextmanager
def _staging(final: Path) -> Iterator[Path]:
    """A fresh temporary directory beside `final` (same file system), removed whatever happens; OSError
    inside becomes a one-line OutputError."""
    try:
        stage = Path(tempfile.mkdtemp(prefix=".onnxtrim-", dir=final.parent))
    except OSError as exc:
        raise OutputError(f"{final}: cannot write in {final.parent}: {exc.strerror or exc}") from None
    try:
        yield stage
    except OSError as exc:
        raise OutputError(f"{final}: cannot write: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _open_new(path: Path) -> BinaryIO:
    """Create exclusively (never append to or truncate an existing file), with the usual umask mode."""
    return open(path, "xb")  # callers use it as a context manager


def _sync(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def _write_new(path: Path, payload: bytes) -> None:
    with _open_new(path) as handle:
        handle.write(payload)
        _sync(handle)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # platforms that cannot open a directory (Windows) have no directory fsync either
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _publish(pairs: Sequence[tuple[Path, Path]], overwrite: bool) -> None:
    """os.replace each staged file over its destination, in order; on any failure (Ctrl-C included) put
    back what was already replaced, so that a model never points at a data file of another save.

    The previous file is kept as a hard link in the staging directory; where hard links are not available
    it is moved there instead, so the destination is briefly absent (never half-written)."""
    done: list[tuple[Path, Path | None]] = []
    try:
        for staged, dest in pairs:
            backup = None
            if os.path.lexists(dest):
                if not overwrite:
                    raise OutputError(f"{dest}: appeared while writing; not replaced")
                backup = staged.with_name(staged.name + ".previous")
                try:
                    os.link(dest, backup, follow_symlinks=False)
                except OSError:
                    os.replace(dest, backup)
            os.replace(staged, dest)
            done.append((dest, backup))
        _fsync_dir(pairs[-1][1].parent)
    except BaseException:
        for dest, backup in reversed(done):
            try:
                os.replace(backup, dest) if backup is not None else os.unlink(dest)
            except OSError as exc:
                logger.warning("could not roll back %s: %s", dest, exc.strerror)
        raise


__all__ = ["LoadedModel", "check_model", "load_model", "save_model", "write_text"]
