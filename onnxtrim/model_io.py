"""Load, check and save ONNX models: the only module that reads or writes model files.

Loading trusts nothing: the file is always parsed as protobuf (never by extension), the header (IR version,
opsets, op domains) is checked before anything else, external data is validated and read by
`onnxtrim.external_data` before onnx sees the model, then onnxtrim's own size checks and the onnx checker
(full_check, with shape inference) run. Graph order: the checker requires nodes in topological order, so
unsorted graphs are refused along with cycles (a cycle cannot be sorted); onnxtrim does not reorder.

Saving never leaves a half-written output: `stage_model` stages the model (its data file first) in an
`onnxtrim.publish.Publication`, which renames every output of a run into place together or none of them.
The input model and its data files (`protected`) are never written, even with `overwrite=True`.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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
from .publish import Publication
from .tensor_walk import check_inline_tensor, iter_scopes, iter_tensors, q, raw_data_bytes

logger = logging.getLogger(__name__)

#: Protobuf cannot parse or serialize a message above 2 GiB; bigger models are checked by path.
_PROTOBUF_LIMIT = 2**31 - 1
#: Models with more tensor data than this are checked by path, as a copy whose data file is sparse (written
#: without data): the in-memory checker parses a serialized copy and infers shapes on another, and loading
#: a 1 GB model peaked at 3.8 times its size that way. Protobuf allows nothing else above 2 GiB.
_IN_MEMORY_CHECK_LIMIT = 64 * 2**20
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
    # The file's bytes when they are the whole model (no external data): what the checker and a session of the
    # unmodified model take instead of serializing it again (a resnet18 costs 0.1 s a serialization).
    payload: bytes | None = None


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
        model, payload = _read_proto(resolved)
        _check_header(model)
        data_files = load_external_data(model, resolved.parent)
        raw_bytes = _check_contents(model)
        whole = payload if not data_files else None
        _run_checker(model, full=True, raw_bytes=raw_bytes, payload=whole)
    except ModelError as exc:
        raise ModelError(f"{shown}: {exc}") from None
    logger.debug("loaded %s (%d external data file(s))", resolved, len(data_files))
    return LoadedModel(model=model, path=resolved, data_files=data_files, payload=whole)


def check_model(model: onnx.ModelProto, *, full: bool = True) -> bytes | None:
    """Raise ModelError (one line) unless `model` is valid and safe for onnxtrim to process.

    Runs the header checks, onnxtrim's tensor and name checks (what the onnx checker lets through), then
    the onnx checker, with shape inference if `full`. A model over 2 GiB is written to a temporary
    directory with a sparse stand-in data file and checked by path (protobuf allows nothing else). A model
    still referencing external data is refused: the in-memory checker would resolve it against the cwd.
    Returns the serialized bytes that were checked (None where the check ran by path), for a session.
    """
    _check_header(model)
    raw_bytes = _check_contents(model)
    return _run_checker(model, full=full, raw_bytes=raw_bytes)


def _read_proto(path: Path) -> tuple[onnx.ModelProto, bytes]:
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
    return model, data


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


def _run_checker(model: onnx.ModelProto, *, full: bool, raw_bytes: int, payload: bytes | None = None) -> bytes | None:
    """The onnx checker in memory, or by path on a layout-only copy when the model is large (`raw_bytes`
    says so without a serialization that would fail only after seconds of work above 2 GiB). The copy is
    of the model in memory, not the file it came from: what is checked is what onnxtrim will process.
    Where no temporary copy can be written (a read-only or full TMPDIR), a model under 2 GiB is checked in
    memory after all. `payload`: the model's bytes when the caller has them (read from its file). Returns the
    bytes checked in memory, or None."""
    refuse_unloaded(model)
    if raw_bytes > _IN_MEMORY_CHECK_LIMIT:
        payload = None
    elif payload is None:
        payload = _serialize(model, _IN_MEMORY_CHECK_LIMIT)
    if payload is None and _check_by_path(model, full):
        return None
    if payload is None:
        payload = _serialize(model, _PROTOBUF_LIMIT)
        if payload is None:
            raise ModelError("cannot check model: it is over 2 GiB and no temporary copy of it can be written "
                             f"in {tempfile.gettempdir()} (TMPDIR)")
    _checker(payload, full)
    return payload


def _check_by_path(model: onnx.ModelProto, full: bool) -> bool:
    """Check a layout-only copy (a sparse data file: no data written); False if it cannot be written."""
    try:
        with tempfile.TemporaryDirectory(prefix="onnxtrim-check-") as tmp:
            target = Path(tmp) / "model.onnx"
            try:
                with open(target.with_name("model.onnx.data"), "xb") as data_file:
                    payload = serialize_with_external_data(model, data_file, "model.onnx.data", layout_only=True)
                target.write_bytes(_fits(payload, target))
            except OutputError as exc:
                raise ModelError(f"cannot check model: {exc}") from None
            del payload
            _checker(os.fspath(target), full)
    except OSError as exc:
        logger.warning("cannot write a temporary copy to check the model by path: %s", exc.strerror or exc)
        return False
    return True


def _checker(source: bytes | str, full: bool) -> None:
    try:
        onnx.checker.check_model(source, full_check=full)
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
    with Publication(overwrite=overwrite, protected=protected) as publication:
        written = stage_model(publication, model, path, external_data=external_data)
        publication.commit()
    return written


def stage_model(publication: Publication, model: onnx.ModelProto, path: str | os.PathLike[str], *,
                external_data: bool | None = None) -> list[Path]:
    """Stage `model` (and its data file, staged first so that it is published first) in `publication`;
    returns the final paths, model first. See `save_model` for the rules."""
    final = publication.target(path)  # fail before serializing a large model
    refuse_unloaded(model)
    payload = None
    if external_data is False:
        payload = _serialize(model, _PROTOBUF_LIMIT)
        if payload is None:
            raise OutputError(f"{final}: model protobuf is over 2 GiB; save it with external data")
    elif external_data is None and raw_data_bytes(model) <= _AUTO_EXTERNAL_BYTES:
        payload = _serialize(model, _AUTO_EXTERNAL_BYTES)
    if payload is not None:
        publication.write_bytes(final, payload)
        return [final]
    data_path = publication.target(final.with_name(final.name + ".data"))
    with publication.new_file(data_path) as data_file:
        payload = _fits(serialize_with_external_data(model, data_file, _data_location(final)), final)
    publication.write_bytes(final, payload)
    return [final, data_path]


def saves_external_data(model: onnx.ModelProto) -> bool:
    """Whether `save_model(model, ...)` with `external_data=None` writes a data file (trimming only shrinks a
    model, so this holds for its trimmed version at most as well)."""
    return raw_data_bytes(model) > _AUTO_EXTERNAL_BYTES


def _data_location(final: Path) -> str:
    try:
        return validate_location(final.name + ".data", f"output {final}")[0]
    except ModelError as exc:
        raise OutputError(f"{final}: unusable as an external data file name: {exc}") from None


def write_text(path: str | os.PathLike[str], text: str, *, overwrite: bool = False,
               protected: Sequence[Path] = ()) -> Path:
    """Atomically write UTF-8 `text` (a JSON report, say) with the same rules as save_model."""
    return write_bytes(path, text.encode("utf-8"), overwrite=overwrite, protected=protected)


def write_bytes(path: str | os.PathLike[str], payload: bytes, *, overwrite: bool = False,
                protected: Sequence[Path] = ()) -> Path:
    """Atomically write `payload` (saved statistics, say) with the same rules as save_model."""
    with Publication(overwrite=overwrite, protected=protected) as publication:
        final = publication.write_bytes(path, payload)
        publication.commit()
    return final


#: Protobuf's own limit, for callers that need the model's bytes whatever their size below it.
PROTOBUF_LIMIT = _PROTOBUF_LIMIT
#: Above this many bytes of tensor data, onnxruntime gets the model as a file with external data rather
#: than as bytes. Above 2 GiB there is no choice; below, the file is also cheaper: a session built from
#: bytes holds the serialized copy and onnxruntime's parsed one at once (1 GB model: 9.0 s and +1.9 GiB
#: from bytes, 5.4 s and +1.0 GiB from the file, which onnxruntime memory-maps; 100 MB: 0.8 s, 0.3 s).
_IN_MEMORY_SESSION_LIMIT = 64 * 2**20


def session_bytes(model: onnx.ModelProto, limit: int | None = None, payload: bytes | None = None) -> bytes | None:
    """The model's bytes for onnxruntime, or None for a model with more tensor data than `limit`
    (`_IN_MEMORY_SESSION_LIMIT` by default; then `write_session_copy`).

    Decided from the tensor data first: serializing a model over 2 GiB fails only after seconds of work
    and a copy of the whole model (`ByteSize()` does the same), which is what made a 2.3 GB model
    peak at 3.7 times its size before it failed. `payload`: the model's bytes, when the caller has them."""
    limit = _IN_MEMORY_SESSION_LIMIT if limit is None else min(limit, _PROTOBUF_LIMIT)
    if raw_data_bytes(model) > limit:
        return None
    if payload is not None:
        return payload if len(payload) <= limit else None
    return _serialize(model, limit)


def write_session_copy(model: onnx.ModelProto, directory: Path) -> Path:
    """Write `model` with external data into `directory` (a fresh temporary directory of the caller's) and
    return the model's path. onnxruntime memory-maps the aligned data file, so the session costs no
    second in-memory copy beyond its own; the model is not modified."""
    refuse_unloaded(model)
    target = directory / "model.onnx"
    try:
        with open(target.with_name("model.onnx.data"), "xb") as data_file:
            payload = _fits(serialize_with_external_data(model, data_file, "model.onnx.data"), target)
        with open(target, "xb") as handle:
            handle.write(payload)
    except OSError as exc:
        raise OutputError(f"cannot write a temporary copy of the model for onnxruntime in {directory}: "
                          f"{exc.strerror or exc}") from None
    return target


__all__ = ["LoadedModel", "check_model", "load_model", "save_model", "saves_external_data", "session_bytes",
           "stage_model", "write_bytes", "write_session_copy", "write_text"]
