"""Progress of a trim, told to whoever shows it: stages, each with a total where one is known.

The library never prints; `trim(config, progress)` tells a `progress` object what happens and the
command line draws it (bars with an ETA in a terminal, one line per stage in a CI log). A stage
starts (with a total when the number of samples is known beforehand: a data source that can count
them, or `max_samples`), advances once per batch, and finishes, so that a display can stop its timer
when the work stops rather than when the program does.

`progress` may be a `ProgressSink` (start/advance/finish) or, as before, a plain function
`(stage, samples just processed)`, which then only hears the advances.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Protocol, runtime_checkable

#: The stages `trim` reports, in order, with what each counts.
STAGES = {"analyse": None, "calibrate": "samples", "finetune": "samples", "verify": "samples",
          "bench": "runs"}


@runtime_checkable
class ProgressSink(Protocol):
    def start(self, stage: str, total: int | None, unit: str) -> None: ...

    def advance(self, stage: str, amount: int) -> None: ...

    def finish(self, stage: str, done: int, seconds: float) -> None: ...


ProgressLike = ProgressSink | Callable[[str, int], None] | None


class Reporter:
    """What the pipeline talks to: forwards to the sink, remembers what each stage counted and how long
    it took (a stage may start several times, e.g. fine-tuning's epochs: it is one stage)."""

    def __init__(self, target: ProgressLike = None) -> None:
        self._sink = target if isinstance(target, ProgressSink) else None
        self._plain: Callable[[str, int], None] | None = None if isinstance(target, ProgressSink) else target
        self._open: dict[str, tuple[float, int]] = {}

    def start(self, stage: str, total: int | None = None) -> None:
        if stage in self._open:
            return
        self._open[stage] = (time.perf_counter(), 0)
        if self._sink is not None:
            self._sink.start(stage, total, STAGES.get(stage) or "")

    def advance(self, stage: str, amount: int) -> None:
        if stage not in self._open:
            self.start(stage)
        began, done = self._open[stage]
        self._open[stage] = (began, done + amount)
        if self._sink is not None:
            self._sink.advance(stage, amount)
        elif self._plain is not None:
            self._plain(stage, amount)

    def finish(self, stage: str) -> None:
        opened = self._open.pop(stage, None)
        if opened is not None and self._sink is not None:
            self._sink.finish(stage, opened[1], time.perf_counter() - opened[0])

    def finish_all(self) -> None:
        for stage in list(self._open):
            self.finish(stage)

    @contextmanager
    def stage(self, name: str, total: int | None = None) -> Iterator[None]:
        self.start(name, total)
        try:
            yield
        finally:
            self.finish(name)

    def counted(self, batches: Iterable, stage: str) -> Iterator:
        """Each batch reported to the stage once the consumer has finished with it."""
        for batch in batches:
            yield batch
            self.advance(stage, len(batch.indices))


__all__ = ["STAGES", "ProgressLike", "ProgressSink", "Reporter"]
