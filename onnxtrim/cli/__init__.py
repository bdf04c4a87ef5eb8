"""Command line: a thin layer over the Python API.

Only this package prints, draws progress bars and tables, sets log levels and chooses exit
codes. `onnxtrim MODEL ...` trims; `onnxtrim bench A.onnx [B.onnx ...]` measures latency;
`onnxtrim stats merge ...` adds up statistics calibrated in shards.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Sequence

from ..errors import (
    BridgeError,
    CalibrationError,
    ConfigError,
    DependencyError,
    FinetuneError,
    ModelError,
    OnnxTrimError,
    OutputError,
    PassError,
    PlanError,
    VerificationError,
    one_line,
)
from ..gates import AccuracyGateError, LatencyGateError, SpeedupGateError
from . import signals

# Documented in README.md ("Exit codes"); tests pin every entry.
EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_CODES: dict[type[OnnxTrimError], int] = {
    ConfigError: EXIT_USAGE,
    ModelError: 3,
    CalibrationError: 4,
    VerificationError: 5,
    OutputError: 6,
    DependencyError: 7,
    PlanError: 8,
    PassError: 9,
    AccuracyGateError: 10,
    SpeedupGateError: 11,
    LatencyGateError: 12,
    BridgeError: 13,
    FinetuneError: 14,
}


def exit_code_for(error: OnnxTrimError) -> int:
    for cls in type(error).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return EXIT_INTERNAL


def flag_for(option: str) -> str:
    """The command-line flag of a TrimConfig field (the config mirrors the flags one to one)."""
    return "--" + option.replace("_", "-")


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command and return its exit code; dies by SIGINT/SIGTERM when interrupted (see `signals`).

    `--debug` adds the traceback and debug logs; it never changes the exit code."""
    previous = signals.install()
    try:
        try:
            code = _run(list(sys.argv[1:] if argv is None else argv))
        finally:
            signals.restore(previous)  # a signal landing in here is caught just below like any other
    except KeyboardInterrupt as interrupt:
        signum = signals.signal_of(interrupt)
    else:
        return code  # after this, Python's own handling: a KeyboardInterrupt also ends the process by SIGINT
    # Here, not inside `except`: the traceback, and the sessions its frames hold, are gone.
    signals.ignore()
    print("onnxtrim: interrupted", file=sys.stderr)
    signals.die_by(signum)


def _run(args: list[str]) -> int:
    debug = "--debug" in args
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        if args and args[0] == "bench":
            from . import bench_command

            return bench_command.main(args[1:])
        if args and args[0] == "stats":
            from . import stats_command

            return stats_command.main(args[1:])
        from . import trim_command

        return trim_command.main(args)
    except OnnxTrimError as error:
        if debug:
            traceback.print_exc()
        print(f"onnxtrim: error: {error.render(flag_for)}", file=sys.stderr)
        return exit_code_for(error)
    except Exception as bug:  # noqa: BLE001 - the last boundary: one line and exit code 1, as documented
        if debug:
            traceback.print_exc()
        print(f"onnxtrim: internal error: {type(bug).__name__}: {one_line(bug)} (a bug: please report it; "
              "--debug shows the traceback)", file=sys.stderr)
        return EXIT_INTERNAL
