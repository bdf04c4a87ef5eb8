"""Calibration data sources: a directory, one file, a Python reader file, or a Python object.

:func:`open_data` turns what the user named into a :class:`DataSource` whose :meth:`~DataSource.batches`
makes a fresh pass over the data each call (the tool reads the data once to calibrate and once more to
verify). Sources yield chunks as they come (one file, one reader batch); :func:`iter_batches` (from
:mod:`.batching`, re-exported here) re-chunks them into model batches and splits off the hold-out set.

Directory formats (one per directory, files in sorted name order so runs are reproducible):

- ``*.npy`` for single-input models; ``*.npz`` keyed by input name;
- the ONNX test-data layout ``test_data_set_*/input_*.pb`` (tensor name, else file number, picks the input).

Symlinks are skipped with a warning, hidden files (``.DS_Store``) are ignored, and so is ``*.onnx`` next to
test data sets (the model-zoo layout); anything else is an error.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import CalibrationError
from .batching import iter_batches
from .feeds import Batch, DataSource, InputSpec, check_inputs, conform, model_input_specs
from .safe_files import describe, load_npy, load_npz, load_pb, natural_key, npy_shape, open_regular

log = logging.getLogger(__name__)

__all__ = ["Batch", "DataSource", "InputSpec", "iter_batches", "model_input_specs", "open_data"]

SUPPORTED_FORMATS = "*.npy (single-input models), *.npz (keyed by input name), test_data_set_*/input_*.pb"
_READER_SPEC = re.compile(r"^(?P<path>.+\.py):(?P<attr>[A-Za-z_][A-Za-z0-9_]*)$")
_DATA_SET = re.compile(r"^test_data_set_.+$")
_INPUT_PB = re.compile(r"^input_(\d+)\.pb$")
_OUTPUT_PB = re.compile(r"^output_(\d+)\.pb$")
_MAX_READER_SOURCE = 16 * 2**20
_END = object()  # end of an iterable reader (None ends a get_next() reader)


# ----------------------------------------------------------------------------------------------------
# Files


@dataclass(frozen=True)
class _Unit:
    """One file (or one test data set) read as one chunk."""

    origin: str
    kind: str  # "npy" | "npz" | "pb"
    path: str
    members: tuple[tuple[int, str, str], ...] = ()  # pb: (input number, path, origin)


class _FileSource:
    """A fixed list of units, read one at a time, so memory holds one file however large the directory."""

    def __init__(self, description: str, units: list[_Unit], inputs: Sequence[InputSpec]) -> None:
        self.description = description
        self._units = units
        self._inputs = list(inputs)

    def batches(self) -> Iterator[Batch]:
        start = 0
        for unit in self._units:
            feeds, rows = conform(self._load(unit), self._inputs, unit.origin)
            yield Batch(feeds, unit.origin, np.arange(start, start + rows, dtype=np.int64))
            del feeds  # let this file go before the next one is loaded
            start += rows

    def samples(self) -> int | None:
        """How many samples a pass yields, from the `.npy` headers alone (None for other formats)."""
        if not self._units or any(unit.kind != "npy" for unit in self._units):
            return None
        rank = self._inputs[0].rank
        total = 0
        for unit in self._units:
            shape = npy_shape(unit.path, unit.origin)
            total += shape[0] if len(shape) == rank else 1
        return total

    def _load(self, unit: _Unit) -> dict[str, np.ndarray]:
        if unit.kind == "npy":
            return {self._inputs[0].name: load_npy(unit.path, unit.origin)}
        if unit.kind == "npz":
            return load_npz(unit.path, unit.origin)
        feeds: dict[str, np.ndarray] = {}
        for number, path, origin in unit.members:
            name, array = load_pb(path, origin)
            if not name:
                if number >= len(self._inputs):
                    raise CalibrationError(
                        f"{origin}: unnamed tensor number {number} "
                        f"but the model has {len(self._inputs)} inputs"
                    )
                name = self._inputs[number].name
            if name in feeds:
                raise CalibrationError(f"{origin}: a second tensor for input '{name}' in {unit.origin}")
            feeds[name] = array
        return feeds


def _list_dir(path: str, display: str) -> tuple[list[os.DirEntry[str]], list[str]]:
    """Entries in name order, minus hidden files and symlinks (returned separately, never followed)."""
    try:
        with os.scandir(path) as it:
            entries = sorted(it, key=lambda e: e.name)
    except PermissionError as exc:
        raise CalibrationError(f"{display}: cannot list the directory: permission denied") from exc
    except OSError as exc:
        raise CalibrationError(f"{display}: cannot list the directory ({describe(exc)})") from exc
    kept, links = [], []
    for entry in entries:
        if entry.name.startswith("."):
            log.debug("%s: ignoring hidden entry %s", display, entry.name)
        elif entry.is_symlink():
            log.warning("%s: skipping symbolic link %s (links are not followed)", display, entry.name)
            links.append(entry.name)
        else:
            kept.append(entry)
    return kept, links


def _unsupported(display: str, names: list[str]) -> CalibrationError:
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return CalibrationError(f"{display}: unsupported entries {shown}; supported formats: {SUPPORTED_FORMATS}")


def _scan_data_set(path: str, display: str) -> _Unit:
    entries, _ = _list_dir(path, display)
    members, unsupported = [], []
    for entry in entries:
        match = _INPUT_PB.match(entry.name)
        if match and entry.is_file(follow_symlinks=False):
            members.append((int(match.group(1)), entry.path, os.path.join(display, entry.name)))
        elif not (_OUTPUT_PB.match(entry.name) and entry.is_file(follow_symlinks=False)):
            unsupported.append(entry.name)
    if unsupported:
        raise _unsupported(display, unsupported)
    if not members:
        raise CalibrationError(f"{display}: no input_*.pb files")
    return _Unit(display, "pb", path, tuple(sorted(members)))


def _scan_directory(path: str, display: str, inputs: Sequence[InputSpec],
                    skip: frozenset[str] = frozenset()) -> _FileSource:
    """Classify the directory once, eagerly, so format errors surface before any work starts.

    `skip`: real paths of files given for something else (labels kept beside the data, as a CI
    layout `calib/labels.npy` does): not calibration data."""
    entries, links = _list_dir(path, display)
    given = [entry for entry in entries if os.path.realpath(entry.path) in skip]
    if given:
        log.info("%s: not reading %s as calibration data", display, ", ".join(e.name for e in given))
        entries = [entry for entry in entries if entry not in given]
    found: dict[str, list[_Unit]] = {".npy": [], ".npz": [], "test_data_set_*": []}
    unsupported, models = [], []
    for entry in entries:
        origin = os.path.join(display, entry.name)
        suffix = os.path.splitext(entry.name)[1].lower()
        if entry.is_dir(follow_symlinks=False) and _DATA_SET.match(entry.name):
            found["test_data_set_*"].append(_scan_data_set(entry.path, origin))
        elif entry.is_file(follow_symlinks=False) and suffix in (".npy", ".npz"):
            found[suffix].append(_Unit(origin, suffix[1:], entry.path))
        elif entry.is_file(follow_symlinks=False) and suffix == ".onnx":
            models.append(entry.name)
        else:
            unsupported.append(entry.name + ("/" if entry.is_dir(follow_symlinks=False) else ""))
    formats = [name for name, units in found.items() if units]
    if formats == ["test_data_set_*"] and models:
        # The ONNX model-zoo layout keeps model.onnx next to its test_data_set_* folders.
        log.info("%s: ignoring %s next to the test data sets", display, ", ".join(models))
    else:
        unsupported += models
    if unsupported:
        raise _unsupported(display, unsupported)
    if len(formats) > 1:
        raise CalibrationError(
            f"{display}: mixes {' and '.join(formats)} files; use one format per directory"
        )
    if not formats:
        skipped = f" ({len(links)} symbolic links skipped)" if links else ""
        raise CalibrationError(
            f"{display}: no calibration files{skipped}; supported formats: {SUPPORTED_FORMATS}"
        )
    units = found[formats[0]]
    if formats[0] == ".npy":
        _require_single_input(display, inputs)
    if formats[0] == "test_data_set_*":
        units.sort(key=lambda unit: natural_key(os.path.basename(unit.origin)))
        what = f"{len(units)} test data sets"
    else:
        what = f"{len(units)} {formats[0]} files"
    return _FileSource(f"directory {display} ({what})", units, inputs)


def _require_single_input(where: str, inputs: Sequence[InputSpec]) -> None:
    if len(inputs) != 1:
        names = ", ".join(spec.name for spec in inputs)
        raise CalibrationError(
            f"{where}: .npy files can feed only a single-input model; this one has inputs {names}: "
            "use .npz files keyed by input name"
        )


def _open_path(spec: str | os.PathLike[str], inputs: Sequence[InputSpec],
               skip: frozenset[str] = frozenset()) -> DataSource:
    display = os.fspath(spec)
    match = _READER_SPEC.match(display)
    if match:
        return _ReaderSource.from_file(match.group("path"), match.group("attr"), inputs)
    # The path the user named is followed even if it is a link; links inside it are not.
    if not os.path.exists(display):
        raise CalibrationError(f"calibration data {display}: no such file or directory")
    if os.path.isdir(display):
        return _scan_directory(display, display.rstrip("/\\") or display, inputs, skip)
    suffix = os.path.splitext(display)[1].lower()
    if suffix == ".py":
        raise CalibrationError(f"{display}: name the factory to call, e.g. {display}:make_reader")
    if suffix not in (".npy", ".npz"):
        raise CalibrationError(
            f"{display}: unsupported calibration data; supported formats: {SUPPORTED_FORMATS}"
        )
    if suffix == ".npy":
        _require_single_input(display, inputs)
    return _FileSource(f"file {display}", [_Unit(display, suffix[1:], display)], inputs)


# ----------------------------------------------------------------------------------------------------
# Python readers


def _load_factory(path: str, attr: str) -> Callable[[], Any]:
    """Import a reader file by path and return its factory.

    The module is created with importlib but its code is compiled here rather than by the import system,
    so no ``__pycache__`` is written next to the user's file (inputs are never modified) and nothing is
    added to ``sys.path``.
    """
    where = f"{path}:{attr}"
    full = os.path.abspath(path)
    if not os.path.isfile(full):
        raise CalibrationError(f"{where}: reader file not found")
    with open_regular(full, path) as (fp, size):
        if size > _MAX_READER_SOURCE:
            raise CalibrationError(f"{path}: {size} bytes is too large for a reader file")
        source = fp.read()
    name = "_onnxtrim_reader_" + hashlib.sha256(full.encode()).hexdigest()[:16]
    module_spec = importlib.util.spec_from_file_location(name, full)
    if module_spec is None:
        raise CalibrationError(f"{where}: cannot import the reader file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # dataclasses and pickling look their module up here
    try:
        # Running the user's reader is the point of a reader file; it is named explicitly by the user.
        exec(compile(source, full, "exec", dont_inherit=True), module.__dict__)  # noqa: S102
    except Exception as exc:
        sys.modules.pop(name, None)
        raise CalibrationError(f"{path}: importing the reader file failed ({describe(exc)})") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise CalibrationError(f"{path}: defines no callable '{attr}'")
    return factory


def _is_reader_object(obj: object) -> bool:
    return not isinstance(obj, type) and callable(getattr(obj, "get_next", None))


class _ReaderSource:
    """Python readers; `fresh` is a factory (called once per pass) or None for a single object.

    A single reader object supports a second pass only through `rewind()`; a one-shot iterator not at
    all, and asking for one is an error that says to pass a factory instead.
    """

    def __init__(
        self,
        description: str,
        label: str,
        inputs: Sequence[InputSpec],
        *,
        fresh: Callable[[], Any] | None = None,
        obj: object = None,
        sequence: object = None,
    ) -> None:
        self.description = description
        self._sequence = sequence  # feed dicts held in memory (a list or tuple): countable beforehand
        self._label = label
        self._inputs = list(inputs)
        self._fresh = fresh
        self._obj = obj
        self._passes = 0

    @classmethod
    def from_file(cls, path: str, attr: str, inputs: Sequence[InputSpec]) -> _ReaderSource:
        factory = _load_factory(path, attr)
        return cls(f"reader {path}:{attr}", f"{path}:{attr} batch", inputs, fresh=factory)

    @classmethod
    def from_object(cls, obj: object, inputs: Sequence[InputSpec]) -> _ReaderSource:
        kind = type(obj).__name__
        if _is_reader_object(obj):
            return cls(f"reader object {kind}", "reader batch", inputs, obj=obj)
        if callable(obj):
            label = getattr(obj, "__qualname__", kind)
            return cls(f"reader factory {label}", "reader batch", inputs, fresh=obj)
        if isinstance(obj, Mapping):
            raise CalibrationError("calibration data is a single dict: pass a list of feed dicts")
        if isinstance(obj, (bytes, bytearray, np.ndarray)):
            raise CalibrationError(
                f"calibration data of type {kind}: pass a directory, a reader or feed dicts"
            )
        if isinstance(obj, Iterable):
            if iter(obj) is obj:
                return cls(f"iterator {kind}", "reader batch", inputs, obj=obj)
            count = f"{len(obj)} feed dicts" if hasattr(obj, "__len__") else "feed dicts"  # type: ignore[arg-type]
            return cls(f"{kind} of {count}", "feed dict", inputs, fresh=lambda: obj, sequence=obj)
        raise CalibrationError(
            f"calibration data of type {kind} is not a path, a reader (get_next), a factory or an iterable"
        )

    def samples(self) -> int | None:
        """How many samples a pass yields, where the data is a sequence in memory (None otherwise)."""
        items = self._sequence
        if not isinstance(items, Sequence) or not self._inputs:
            return None
        first, total = self._inputs[0], 0
        for item in items:
            array = item.get(first.name) if isinstance(item, Mapping) else None
            shape = getattr(array, "shape", None)
            if shape is None:
                return None
            total += shape[0] if len(shape) == first.rank else 1
        return total

    def batches(self) -> Iterator[Batch]:
        """Start a pass now (so a pass that cannot be made fails at the call, not at first use)."""
        self._passes += 1
        if self._fresh is not None:
            try:
                reader = self._fresh()
            except Exception as exc:
                raise CalibrationError(f"{self.description}: the factory raised {describe(exc)}") from exc
        else:
            reader = self._obj
            if self._passes > 1:
                rewind = getattr(reader, "rewind", None)
                if not callable(rewind):
                    raise CalibrationError(
                        f"{self.description} can be read only once (it has no rewind()); "
                        "pass a zero-argument factory that returns a fresh reader instead"
                    )
                try:
                    rewind()
                except Exception as exc:
                    raise CalibrationError(f"{self.description}: rewind() raised {describe(exc)}") from exc
        return self._chunks(self._items(reader))

    def _items(self, reader: object) -> Iterator[Any]:
        """Feed dicts from a get_next() reader or an iterable, with reader exceptions made one-line errors."""
        if _is_reader_object(reader):
            get_next: Callable[[], Any] = reader.get_next  # type: ignore[attr-defined]
            end: object = None
        elif isinstance(reader, Iterable) and not isinstance(reader, (str, bytes, Mapping)):
            get_next, end = functools.partial(next, iter(reader), _END), _END
        else:
            raise CalibrationError(
                f"{self.description} produced a {type(reader).__name__}, "
                "which has neither get_next() nor __iter__"
            )
        while True:
            try:
                item = get_next()
            except Exception as exc:
                raise CalibrationError(f"{self.description}: reading data raised {describe(exc)}") from exc
            if item is end:
                return
            yield item

    def _chunks(self, items: Iterator[Any]) -> Iterator[Batch]:
        start = 0
        for number, item in enumerate(items):
            feeds, rows = conform(item, self._inputs, f"{self._label} {number}")
            yield Batch(feeds, f"{self._label} {number}", np.arange(start, start + rows, dtype=np.int64))
            del item, feeds  # let this chunk go before the reader makes the next one
            start += rows


def open_data(spec: Any, inputs: Sequence[InputSpec], *, skip: Sequence[str | os.PathLike[str]] = ()) -> DataSource:
    """Open calibration data for a model whose inputs are `inputs`.

    `spec` is a directory or a `.npy`/`.npz` file (str or PathLike), ``"path/reader.py:make_reader"``,
    or a Python object: a reader with ``get_next() -> dict | None`` (onnxruntime's CalibrationDataReader
    protocol), a zero-argument factory returning a reader or an iterable of feed dicts, or an iterable of
    feed dicts. Format problems that can be seen without reading data are raised here. Files in `skip`
    (labels, for instance) are never read as data, even inside a data directory.
    """
    inputs = list(inputs)
    check_inputs(inputs)
    if isinstance(spec, (str, os.PathLike)):
        return _open_path(spec, inputs, frozenset(os.path.realpath(p) for p in skip))
    return _ReaderSource.from_object(spec, inputs)
