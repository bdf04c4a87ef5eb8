"""Re-chunking source chunks into model batches, with a deterministic hold-out split.

Sources yield whatever chunks the data comes in (a file of 1000 samples, a reader batch of 7); the model
wants batches of `batch_size`. :func:`iter_batches` streams rows into one preallocated batch buffer, so
memory holds one source chunk plus one batch whatever the dataset size.

The hold-out split depends only on a sample's position in the stream, never on randomness or on the
batch size: sample ``i`` is held out iff ``floor((i+1)*h) > floor(i*h)``. That spreads held-out samples
evenly (for h = 0.2: samples 4, 9, 14, ...), makes exactly ``floor(N*h)`` of the first N held out, and
lets the calibration pass and the verification pass, run separately, agree on which sample is which.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from fractions import Fraction
from typing import Literal

import numpy as np

from ..errors import CalibrationError, ConfigError, ModelError
from .feeds import Batch, DataSource, InputSpec, check_inputs

log = logging.getLogger(__name__)

Part = Literal["calibration", "holdout", "all"]
PARTS: tuple[str, ...] = ("calibration", "holdout", "all")


def holdout_fraction(holdout: float | Fraction) -> Fraction:
    """The hold-out fraction as the exact decimal the user wrote (0.7 means 7/10, not 0.6999...).

    Using ``Fraction(repr(h))`` rather than the binary float keeps ``floor(N*h)`` what a person computes
    by hand, e.g. exactly 7 of the first 10 samples for h = 0.7.
    """
    if isinstance(holdout, bool) or not isinstance(holdout, (int, float, Fraction, np.floating, np.integer)):
        raise ConfigError(f"holdout must be a number in [0, 1), got {holdout!r}")
    if isinstance(holdout, Fraction):
        frac = holdout
    else:
        value = float(holdout)
        if not math.isfinite(value):
            raise ConfigError(f"holdout must be a number in [0, 1), got {holdout!r}")
        frac = Fraction(repr(value))
    if not 0 <= frac < 1:
        raise ConfigError(f"holdout must be in [0, 1), got {holdout!r}")
    return frac


def held_out(indices: np.ndarray, holdout: float | Fraction) -> np.ndarray:
    """Boolean mask: which of these global sample indices belong to the hold-out set."""
    frac = holdout_fraction(holdout)
    idx = np.asarray(indices, dtype=np.int64)
    p, q = frac.numerator, frac.denominator
    if p == 0:
        return np.zeros(idx.shape, dtype=bool)
    if idx.size == 0 or (int(idx.max()) + 1) * p < 2**62:
        return ((idx + 1) * p) // q > (idx * p) // q
    return np.fromiter((((int(i) + 1) * p) // q > (int(i) * p) // q for i in idx.flat), bool, idx.size)


def part_samples(source: DataSource, *, max_samples: int | None, holdout: float, part: Part) -> int | None:
    """How many samples `iter_batches` will yield for `part`, where the source can count its own
    beforehand (`samples()`); None otherwise. A static batch may drop a trailing partial batch, so
    this is an upper bound there (it is for progress bars, not for logic)."""
    counter = getattr(source, "samples", None)
    total = counter() if callable(counter) else None
    if total is None:
        return None
    if max_samples is not None:
        total = min(total, int(max_samples))
    held = math.floor(total * holdout_fraction(holdout))
    return {"calibration": total - held, "holdout": held}.get(part, total)


def _batch_size(inputs: Sequence[InputSpec], requested: int) -> tuple[int, tuple[str, ...]]:
    """A static batch dim overrides the requested size; returns (size, the inputs whose batch is static)."""
    statics = {spec.name: spec.static_batch for spec in inputs if spec.static_batch is not None}
    sizes = set(statics.values())
    if len(sizes) > 1:
        detail = ", ".join(f"'{name}' {size}" for name, size in statics.items())
        raise CalibrationError(f"model inputs have different static batch dimensions: {detail}")
    if not sizes:
        return requested, ()
    size = sizes.pop()
    if size < 1:
        raise CalibrationError(f"model input '{next(iter(statics))}' has a static batch dimension of {size}")
    if size != requested:
        log.info("batch size %d forced to %d by the model's static batch dimension", requested, size)
    return size, tuple(statics)


def machine_memory() -> int | None:
    """This machine's physical memory in bytes, where the platform says (None elsewhere)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return None


def check_batch_bytes(size: int, rows: Mapping[str, tuple[tuple[int, ...], np.dtype]], static: tuple[str, ...],
                      at_least: bool = False) -> None:
    """Refuse a batch buffer this machine cannot hold, before allocating it (a static batch of 2**40 made
    numpy raise MemoryError). `rows`: per-sample shape and dtype of each input. A ModelError: the model's
    static batch dimension is what no data and no option can change."""
    need = sum(size * math.prod(shape) * dtype.itemsize for shape, dtype in rows.values())
    memory = machine_memory()
    if memory is None or need <= memory:
        return
    names = ", ".join(f"'{name}'" for name in static) or ", ".join(f"'{name}'" for name in rows)
    raise ModelError(f"model input {names} has a static batch dimension of {size}: one batch needs "
                     f"{'at least ' if at_least else ''}{_gib(need)}, more than this machine's "
                     f"{_gib(memory)} of memory; export the model with a dynamic (or smaller) batch dimension")


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:,.1f} GiB" if nbytes >= 2**30 else f"{nbytes:,} bytes"


def _check_options(batch_size: object, max_samples: object, part: object) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    if max_samples is not None and (
        isinstance(max_samples, bool) or not isinstance(max_samples, (int, np.integer)) or max_samples < 1
    ):
        raise ConfigError(f"max_samples must be a positive integer or None, got {max_samples!r}")
    if part not in PARTS:
        raise ConfigError(f"part must be one of {', '.join(PARTS)}, got {part!r}")


def _chunk_rows(chunk: Batch, inputs: Sequence[InputSpec]) -> int:
    """Rows in a chunk; also guards against DataSource implementations that skip validation."""
    feeds = chunk.feeds
    names = [spec.name for spec in inputs]
    if not isinstance(feeds, Mapping) or set(feeds) != set(names):
        got = ", ".join(map(str, feeds)) if isinstance(feeds, Mapping) else type(feeds).__name__
        raise CalibrationError(
            f"{chunk.origin}: feeds {got} do not match the model inputs {', '.join(names)}"
        )
    rows = set()
    for spec in inputs:
        arr = feeds[spec.name]
        if not isinstance(arr, np.ndarray) or arr.ndim != spec.rank:
            raise CalibrationError(f"{chunk.origin}: input '{spec.name}' is not a rank-{spec.rank} array")
        rows.add(arr.shape[0])
    if len(rows) != 1:
        raise CalibrationError(f"{chunk.origin}: inputs disagree on the number of samples")
    return rows.pop()


class _BatchBuilder:
    """Fills one batch buffer at a time from selected rows of incoming chunks.

    Rows of different per-sample shapes (e.g. two files with different sequence lengths) cannot share a
    batch, so a shape change ends the current batch early: it is emitted short with a dynamic batch dim,
    and dropped with a warning with a static one, like the trailing partial batch.
    """

    def __init__(self, size: int, static: tuple[str, ...]) -> None:
        self.size = size
        self.static = static  # the inputs whose batch dimension is static (then no short batch is run)
        self.emitted = 0
        self.dropped: list[str] = []  # origins of the samples a static batch could not take
        self._warnings: list[str] = []  # said at the end, once it is known whether any batch ran
        self._layout: dict[str, tuple[tuple[int, ...], np.dtype]] | None = None
        self._buffers: dict[str, np.ndarray] | None = None
        self._indices = np.empty(0, dtype=np.int64)
        self._origins: list[str] = []
        self._count = 0

    def add(
        self, feeds: Mapping[str, np.ndarray], positions: np.ndarray, base: int, origin: str
    ) -> Iterator[Batch]:
        if not len(positions):
            return
        layout = {name: (arr.shape[1:], arr.dtype) for name, arr in feeds.items()}
        if layout != self._layout:
            yield from self._flush(f"per-sample shapes change at {origin}")
            self._layout = layout
        done = 0
        while done < len(positions):
            if self._buffers is None:
                if self.static:
                    check_batch_bytes(self.size, layout, self.static)
                self._buffers = {
                    name: np.empty((self.size, *shape), dtype) for name, (shape, dtype) in layout.items()
                }
                self._indices = np.empty(self.size, dtype=np.int64)
            take = min(self.size - self._count, len(positions) - done)
            pos = positions[done : done + take]
            rows = slice(int(pos[0]), int(pos[-1]) + 1) if pos[-1] - pos[0] + 1 == take else pos
            for name, arr in feeds.items():
                self._buffers[name][self._count : self._count + take] = arr[rows]
            self._indices[self._count : self._count + take] = pos + base
            if not self._origins or self._origins[-1] != origin:
                self._origins.append(origin)
            self._count += take
            done += take
            if self._count == self.size:
                yield self._emit()

    def finish(self) -> Iterator[Batch]:
        yield from self._flush("the data ends")
        if self.emitted:  # with no batch at all, the error the stream then raises says it in one line
            for warning in self._warnings:
                log.warning("%s", warning)

    def _flush(self, reason: str) -> Iterator[Batch]:
        if not self._count:
            return
        if self.static:
            idx = self._indices[: self._count]
            self.dropped.extend(o for o in self._origins if o not in self.dropped)
            self._warnings.append(f"dropping {self._count} sample(s) (indices {idx[0]}..{idx[-1]}): the model's "
                                  f"static batch dimension is {self.size} and {reason}")
            self._reset()
        else:
            yield self._emit()

    def _emit(self) -> Batch:
        n, buffers = self._count, self._buffers or {}  # only called with rows in the buffers
        full = n == self.size
        feeds = {name: (buf if full else buf[:n].copy()) for name, buf in buffers.items()}
        indices = self._indices if full else self._indices[:n].copy()
        origin = self._origins[0] if len(self._origins) == 1 else f"{self._origins[0]}..{self._origins[-1]}"
        self._reset()
        self.emitted += 1
        return Batch(feeds, origin, indices)

    def _reset(self) -> None:
        self._buffers = None
        self._origins = []
        self._count = 0


def iter_batches(
    source: DataSource,
    inputs: Sequence[InputSpec],
    *,
    batch_size: int = 32,
    max_samples: int | None = None,
    holdout: float = 0.2,
    part: Part = "all",
) -> Iterator[Batch]:
    """Batches of `batch_size` rows of one part of the data, in stream order.

    Global sample indices count rows in the order the source yields them; the first `max_samples` are
    used (before the split, so calibration and hold-out come from the same samples). A static batch dim
    forces the batch size and a trailing partial batch is dropped with a warning; with a dynamic one the
    last batch may be short. Options are checked at the call; data errors surface while iterating.
    """
    inputs = list(inputs)
    check_inputs(inputs)
    _check_options(batch_size, max_samples, part)
    frac = holdout_fraction(holdout)
    size, static = _batch_size(inputs, int(batch_size))
    if static:  # the dims known now (symbolic ones counted as 1) already bound the batch from below
        known = {spec.name: (tuple(d if isinstance(d, int) else 1 for d in spec.shape[1:]), spec.dtype)
                 for spec in inputs}
        check_batch_bytes(size, known, static, at_least=True)
    limit = None if max_samples is None else int(max_samples)
    return _stream(source, inputs, size, static, limit, frac, part)


def _stream(
    source: DataSource,
    inputs: list[InputSpec],
    size: int,
    static: tuple[str, ...],
    max_samples: int | None,
    frac: Fraction,
    part: str,
) -> Iterator[Batch]:
    builder = _BatchBuilder(size, static)
    seen = selected = 0
    chunks = source.batches()
    try:
        for chunk in chunks:
            rows = _chunk_rows(chunk, inputs)
            if max_samples is not None:
                rows = min(rows, max_samples - seen)
            if part == "all":
                positions = np.arange(rows, dtype=np.int64)
            else:
                mask = held_out(np.arange(seen, seen + rows, dtype=np.int64), frac)
                positions = np.flatnonzero(mask if part == "holdout" else ~mask).astype(np.int64)
            selected += len(positions)
            yield from builder.add(chunk.feeds, positions, seen, chunk.origin)
            del chunk  # hold one source chunk at a time: drop it before the source loads the next
            seen += rows
            if max_samples is not None and seen >= max_samples:
                break
    finally:
        close = getattr(chunks, "close", None)
        if callable(close):
            close()
    yield from builder.finish()
    if seen == 0:
        raise CalibrationError(f"{source.description}: no samples")
    if selected and not builder.emitted:
        what = "samples" if part == "all" else f"{part} samples"
        inputs_named = ", ".join(f"'{name}'" for name in static)
        raise CalibrationError(
            f"{_files(builder.dropped, source.description)}: no full batch: model input {inputs_named} has a "
            f"static batch dimension of {size} but only {selected} {what} were read"
        )


def _files(origins: Sequence[str], fallback: str, shown: int = 3) -> str:
    """The origins of the samples, for a message: 'a.npy, b.npy', or 'a.npy, b.npy, c.npy and 5 more'."""
    if not origins:
        return fallback
    head = ", ".join(origins[:shown])
    return head if len(origins) <= shown else f"{head} and {len(origins) - shown} more"
