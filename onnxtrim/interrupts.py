"""Holding Ctrl-C and SIGTERM through the few steps that must not be cut in half.

Renaming staged outputs into place (and putting back what was replaced) and removing staging
directories take microseconds to milliseconds, but a signal landing in the middle of them would
leave half a publication or a `.onnxtrim-*` directory behind. Inside `held_signals()` those signals
are recorded instead of acted on; the caller sees what arrived (`Held.caught`), decides (the
publication rolls back), and on leaving the block the first one is delivered to the handler that
was there before (Ctrl-C's KeyboardInterrupt, the CLI's SIGTERM handler, or the default action).

Only the main thread can change signal handlers; elsewhere the block holds nothing. Signals that
were being ignored (SIG_IGN) stay ignored and are never recorded.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

#: The signals a user or a CI runner sends to stop a run.
STOP_SIGNALS: tuple[signal.Signals, ...] = tuple(
    s for s in (getattr(signal, "SIGINT", None), getattr(signal, "SIGTERM", None)) if s is not None
)

Handler = Callable[[int, FrameType | None], Any] | int | None


@dataclass
class Held:
    """Signals recorded while held, in arrival order."""

    caught: list[int] = field(default_factory=list)

    def record(self, signum: int, frame: FrameType | None) -> None:
        self.caught.append(signum)


@contextmanager
def held_signals() -> Iterator[Held]:
    """Record SIGINT/SIGTERM instead of acting on them; deliver the first one on the way out."""
    held = Held()
    if threading.current_thread() is not threading.main_thread():
        yield held
        return
    previous: dict[int, Handler] = {}
    try:
        for signum in STOP_SIGNALS:
            current = signal.getsignal(signum)
            if current is signal.SIG_IGN:
                continue
            previous[signum] = signal.signal(signum, held.record)
        yield held
    finally:
        for stopped, handler in previous.items():
            # None: a handler installed from C, which Python cannot reinstall; the default is closest.
            signal.signal(stopped, signal.SIG_DFL if handler is None else handler)
        if held.caught:
            signal.raise_signal(held.caught[0])  # runs the restored handler now (or ends the process)
