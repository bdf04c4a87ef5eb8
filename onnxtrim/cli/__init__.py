"""Command line: a thin layer over the Python API.

Only this package prints, draws progress bars and tables, sets log levels and chooses exit
codes. `onnxtrim MODEL ...` trims; `onnxtrim bench A.onnx [B.onnx ...]` measures latency;
`onnxtrim stats merge ...` adds up statistics calibrated in shards.
"""

from __future__ import annotations

import logging
import sys
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
)
from ..gates import AccuracyGateError, LatencyGateError, SpeedupGateError

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


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
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
            raise
        print(f"onnxtrim: error: {error}", file=sys.stderr)
        return exit_code_for(error)
    except KeyboardInterrupt:
        print("onnxtrim: interrupted", file=sys.stderr)
        return 130
