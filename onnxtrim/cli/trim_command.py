"""`onnxtrim MODEL --data DIR --apoz T`: trim a model and print what it cost."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from rich.console import Console

from ..api import trim
from ..config import TrimConfig
from ..errors import VerificationError
from .progress_view import ProgressView
from .summary import print_summary
from .trim_flags import EPILOG, build_parser, config_from_args

__all__ = ["EPILOG", "build_parser", "config_from_args", "main"]


def main(argv: Sequence[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    config = config_from_args(args)
    quiet = args.quiet or not _prints(config)
    with ProgressView(quiet=quiet) as view:
        try:
            result = trim(config, view)
            failure = None
        except VerificationError as error:
            if error.result is None:
                raise
            result, failure = error.result, error
    written = result.save(write_model=failure is None)
    if not quiet and config.shard is not None:
        Console(soft_wrap=True).print(f"calibrated shard {config.shard[0]}/{config.shard[1]} on {result.report['samples']}"
                                      f" samples; wrote {', '.join(map(str, written))}")
    elif not quiet:
        print_summary(Console(soft_wrap=True), result, written)
    if failure is not None:
        raise failure
    if result.failed_gates:
        raise result.failed_gates[0].error()
    return 0


def _prints(config: TrimConfig) -> bool:
    """Whether this process shows progress and the summary: under torchrun only rank 0 does, the one
    that writes (errors are printed by every rank that meets one)."""
    if not config.recovering:
        return True
    from ..recovery.launch import launched

    launch = launched()
    return launch is None or launch.writes


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
