"""How the command line shows a trim's progress: bars in a terminal, one line per stage in a log.

In a terminal every stage gets a bar with its count, and where the total is known beforehand (a data
directory of `.npy` files can be counted from its headers, `--max-samples` bounds any source) the
total and an ETA; a stage's timer stops when the stage does. Without a terminal (a CI log), bars would
be noise: each stage is one line on stdout when it ends, with what it counted and how long it took
(stdout, so that a failing run's stderr stays the one line the contract promises).
"""

from __future__ import annotations

from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from typing_extensions import Self

LABELS = {"analyse": "analysing", "calibrate": "calibrating", "finetune": "fine-tuning", "verify": "verifying",
          "bench": "benchmarking"}


class ProgressView:
    """A `onnxtrim.progress.ProgressSink` for the terminal or a log; use as a context manager."""

    def __init__(self, *, quiet: bool, stream: TextIO | None = None) -> None:
        console = Console(stderr=True, quiet=quiet)
        self._live = not quiet and console.is_terminal
        self._log = None if quiet or self._live else Console(file=stream, soft_wrap=True, highlight=False)
        self._bar = Progress(TextColumn("{task.description:<13}"), BarColumn(), TextColumn("{task.fields[count]}"),
                             TimeElapsedColumn(), TextColumn("{task.fields[eta]}"), TimeRemainingColumn(),
                             console=console, disable=not self._live)
        self._tasks: dict[str, tuple[TaskID, int | None, str, int]] = {}  # task, total, unit, done

    def __enter__(self) -> Self:
        self._bar.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._bar.__exit__(kind, value, tb)

    def start(self, stage: str, total: int | None, unit: str) -> None:
        if self._live:
            task = self._bar.add_task(LABELS.get(stage, stage), total=total, count=_count(0, total, unit),
                                      eta="eta" if total else "")
            self._tasks[stage] = (task, total, unit, 0)

    def advance(self, stage: str, amount: int) -> None:
        if stage in self._tasks:
            task, total, unit, done = self._tasks[stage]
            self._tasks[stage] = (task, total, unit, done + amount)
            self._bar.update(task, advance=amount, count=_count(done + amount, total, unit))

    def finish(self, stage: str, done: int, seconds: float) -> None:
        if stage in self._tasks:
            task, total, unit, _ = self._tasks.pop(stage)
            shown = total if total is not None and total >= done else None  # a static batch may drop a few
            self._bar.update(task, total=max(done, 1), completed=max(done, 1), count=_count(done, shown, unit))
            self._bar.stop_task(task)  # its timer stops here, not when the program ends
        if self._log is not None:
            from ..progress import STAGES

            what = STAGES.get(stage)
            counted = f"{done:,} {what} in " if what and done else ""
            self._log.print(f"{LABELS.get(stage, stage)}: {counted}{seconds:.1f} s")


def _count(done: int, total: int | None, unit: str) -> str:
    if not unit:
        return ""
    return f"{done:,}/{total:,} {unit}" if total else f"{done:,} {unit}"
