"""The command line with one fault injected, for tests that need a fault at an exact point of a real run.

    python -m tests.helpers.inject signal SIGINT fsync 3 -- MODEL --data DIR ...
        the process sends itself SIGINT just before its 3rd os.fsync (os.replace, os.link likewise)
    python -m tests.helpers.inject oserror ENOSPC fsync 2 -- MODEL --data DIR ...
        the 2nd os.fsync fails with that errno (disk full) instead of running
    python -m tests.helpers.inject raise onnxtrim.stages:apply_plan [onnxtrim.errors:PassError] -- MODEL ...
        that function raises the exception (RuntimeError by default: an internal error, as a bug would)
    python -m tests.helpers.inject slow 2 0.002 -- MODEL --bench ...
        every 2nd model the bench harness times (the trimmed one of --bench) sleeps 2 ms per run

Everything else is the real CLI in a real process (signal handlers, exit status, death by signal), so the
test observes exactly what a user's shell would.
"""

from __future__ import annotations

import errno
import importlib
import os
import signal
import sys
from collections.abc import Callable
from typing import Any


def _before(name: str, nth: int, fault: Callable[[], None]) -> None:
    """Run `fault` just before the `nth` call of os.`name`."""
    real: Callable[..., Any] = getattr(os, name)
    calls = 0

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == nth:
            fault()
        return real(*args, **kwargs)

    setattr(os, name, wrapped)


def _raise(code: int) -> None:
    raise OSError(code, os.strerror(code))


def _slow(every: int, seconds: float) -> None:
    """Every `every`-th runner the bench harness makes sleeps `seconds` before each call."""
    import time

    from onnxtrim.bench import harness

    real = harness.make_runner
    made = 0

    def make_runner(*args: Any, **kwargs: Any) -> Any:
        nonlocal made
        made += 1
        runner = real(*args, **kwargs)
        if made % every:
            return runner

        def slower() -> Any:
            time.sleep(seconds)
            return runner()

        slower.io_binding = runner.io_binding  # type: ignore[attr-defined]
        return slower

    harness.make_runner = make_runner  # type: ignore[assignment]


def _named(spec: str) -> Any:
    module, attr = spec.split(":")
    return getattr(importlib.import_module(module), attr)


def _broken(target: str, error: type[BaseException]) -> None:
    module, attr = target.split(":")

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise error(f"injected into {target}")

    setattr(importlib.import_module(module), attr, broken)


def main(argv: list[str]) -> int:
    split = argv.index("--")
    spec, args = argv[:split], argv[split + 1:]
    if spec[0] == "signal":
        signum = int(getattr(signal, spec[1]))
        _before(spec[2], int(spec[3]), lambda: os.kill(os.getpid(), signum))
    elif spec[0] == "oserror":
        code = int(getattr(errno, spec[1]))
        _before(spec[2], int(spec[3]), lambda: _raise(code))
    elif spec[0] == "slow":
        _slow(int(spec[1]), float(spec[2]))
    elif spec[0] == "raise":
        _broken(spec[1], _named(spec[2]) if len(spec) > 2 else RuntimeError)
    else:
        raise SystemExit(f"unknown fault {spec!r}")
    from onnxtrim.cli import main as cli_main

    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
