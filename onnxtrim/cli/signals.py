"""Ctrl-C and SIGTERM on the command line: one clean path, then death by that very signal.

A shell, `timeout` or a CI runner tells "interrupted" from "failed" by how the process ended: killed by
SIGINT/SIGTERM, not an exit status such as 130. So the CLI turns both signals into `Interrupted` (a
KeyboardInterrupt, so everything that already cleans up on Ctrl-C does: runs are terminated, temporary
session files and staging directories removed), and once that has run, `die_by` re-raises the signal
with its default action.

`die_by` releases onnxruntime first: sessions kept alive by an exception's traceback, and a run still
finishing in its worker thread, were torn down during interpreter exit with their thread pools running,
which aborted the process ("terminate called without an active exception", SIGABRT) in most trials.
Dying by the signal skips interpreter exit altogether; collecting and joining first is what makes that
safe for whatever runs until the signal lands.
"""

from __future__ import annotations

import gc
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any, NoReturn

from .. import runtime
from ..interrupts import STOP_SIGNALS

Handlers = dict[int, Callable[[int, FrameType | None], Any] | int | None]


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM, as the exception Ctrl-C already raises."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _stop(signum: int, frame: FrameType | None) -> None:
    ignore()  # the first signal starts the clean path; further ones must not cut it short (it is bounded)
    raise Interrupted(signum)


def ignore() -> None:
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def install() -> Handlers:
    """Route SIGINT and SIGTERM to `Interrupted`; returns the previous handlers, for `restore`."""
    return {signum: signal.signal(signum, _stop) for signum in STOP_SIGNALS}


def restore(previous: Handlers) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, signal.SIG_DFL if handler is None else handler)


def signal_of(interrupt: KeyboardInterrupt) -> int:
    return interrupt.signum if isinstance(interrupt, Interrupted) else int(signal.SIGINT)


def die_by(signum: int) -> NoReturn:
    """End the process by `signum`'s default action, after releasing every onnxruntime session."""
    gc.collect()  # sessions held by tracebacks and reference cycles
    runtime.join_workers()
    gc.collect()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    signal.signal(signum, signal.SIG_DFL)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
    signal.raise_signal(signum)
    # Only where the default action does not end the process (not POSIX): the shell's convention.
    raise SystemExit(128 + signum)
