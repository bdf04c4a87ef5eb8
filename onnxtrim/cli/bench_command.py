"""`onnxtrim bench`: is the trimmed model faster on this provider? A table, optionally JSON.

Only parsing, printing and file writing live here; measuring is `onnxtrim.bench.benchmark`.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import numpy as np
import onnx
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..bench.harness import BenchConfig, BenchResult, benchmark, load_models, model_names
from ..calibration.feeds import model_input_specs
from ..calibration.readers import open_data
from ..errors import CalibrationError, ConfigError, OutputError
from ..runtime import PROVIDER_ALIASES

log = logging.getLogger(__name__)

_SHORT_PROVIDER = {full: short for short, full in PROVIDER_ALIASES.items()}

EPILOG = """\
examples:
  # is the trimmed model faster than the original on CPU, at batch sizes 1 and 8?
  onnxtrim bench model.onnx model.trimmed.onnx --batch 1,8

  # on CUDA and CPU, sizing a symbolic sequence dimension, with a JSON report
  onnxtrim bench model.onnx model.trimmed.onnx --providers cuda,cpu --dim seq_len=128 --json bench.json

how to read it:
  The first model is the reference: "vs first" is each model's median latency divided by the first
  model's (0.50x = twice as fast). All sessions live in one process and the timed runs alternate
  A B A B ... so that clock and thermal drift affect every model alike. On a GPU, inputs are copied
  to the device once and outputs stay there (IO binding), so only the model's compute is timed.
  One intra-op thread is the default because it gives repeatable numbers; --threads 0 uses
  onnxruntime's default (all cores).

inputs:
  Without --data, inputs are random (fixed seed) with the model's dtypes; the first dimension, if
  dynamic, is the batch size, and other symbolic dimensions need --dim NAME=VALUE.
"""


class _Parser(argparse.ArgumentParser):
    """argparse that raises ConfigError instead of exiting, so the dispatcher picks the exit code."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="onnxtrim bench",
        description="Measure the latency of ONNX models on onnxruntime providers, interleaved,\n"
        "on identical inputs; the first model is the reference.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("models", nargs="+", metavar="MODEL", help="ONNX files; the first is the reference")
    parser.add_argument(
        "--providers", default="cpu", help="comma-separated: cpu, cuda, tensorrt (default: cpu)"
    )
    parser.add_argument("--batch", default="1", help="comma-separated batch sizes (default: 1)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed runs per model first (default: 10)")
    parser.add_argument("--runs", type=int, default=50, help="timed runs per model (default: 50)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="intra-op threads per session; 0 = onnxruntime's default (default: 1)",
    )
    parser.add_argument(
        "--dim",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="size of a symbolic input dimension other than the batch; repeatable",
    )
    parser.add_argument(
        "--data",
        metavar="DIR",
        help="directory of .npy files for a single-input model: the first file (by name) "
        "is the input, cut or repeated along axis 0 to each batch size",
    )
    parser.add_argument("--json", metavar="PATH", help="write the JSON report to PATH ('-' for stdout)")
    parser.add_argument("--debug", action="store_true", help="show debug logs and tracebacks")
    return parser


def _int_list(text: str, flag: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"{flag} expects comma-separated integers, got {text!r}") from None
    if not values:
        raise ConfigError(f"{flag} is empty")
    return values


def _dims(items: Sequence[str]) -> dict[str, int]:
    dims: dict[str, int] = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            dims[name.strip()] = int(value)
        except ValueError:
            raise ConfigError(f"--dim expects NAME=VALUE with an integer VALUE, got {item!r}") from None
    return dims


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """The BenchConfig the flags describe (validated by BenchConfig itself)."""
    return BenchConfig(
        providers=tuple(p.strip() for p in args.providers.split(",") if p.strip()),
        batch_sizes=_int_list(args.batch, "--batch"),
        warmup=args.warmup,
        runs=args.runs,
        intra_op_threads=args.threads,
        dynamic_dims=_dims(args.dim),
    )


def read_data(path: str, model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """The first batch of `--data`, read by the same readers calibration uses."""
    inputs = model_input_specs(model)
    for batch in open_data(path, inputs).batches():
        return {name: np.ascontiguousarray(value) for name, value in batch.feeds.items()}
    raise CalibrationError(f"--data: no samples in {path}")


def _format_ms(value: float) -> str:
    return f"{value:.3f}" if value < 100 else f"{value:.1f}"


def render(result: BenchResult, console: Console) -> None:
    """The table users read, then what they need to trust it: device, IO binding, warnings."""
    ratios = result.ratios()
    table = Table(title="latency (ms)", title_justify="left")
    for header in ("model", "provider", "batch", "median", "p90", "p99", "min", "samples/s", "vs first"):
        table.add_column(
            header, justify="left" if header in ("model", "provider") else "right", overflow="fold"
        )
    for t in result.timings:
        ratio = ratios[(t.provider, t.batch)][t.model]
        table.add_row(
            escape(t.model),
            _SHORT_PROVIDER.get(t.provider, t.provider),
            str(t.batch),
            _format_ms(t.median_ms),
            _format_ms(t.p90_ms),
            _format_ms(t.p99_ms),
            _format_ms(t.min_ms),
            f"{t.throughput:,.0f}",
            f"{ratio:.2f}x",
        )
    console.print(table)
    config = result.config
    console.print(f"device: {escape(result.device)}", highlight=False)
    console.print(
        f"{config.warmup} warm-up and {config.runs} timed runs per model, interleaved; "
        f"intra-op threads: {config.intra_op_threads or 'onnxruntime default'}",
        highlight=False,
    )
    if result.io_binding:
        console.print("IO binding: used on GPU (host-device copies not timed)", highlight=False)
    else:
        console.print("IO binding: not used (host memory, plain run)", highlight=False)
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)


def _write_json(result: BenchResult, target: str) -> None:
    text = result.to_json()
    if target == "-":
        print(text, end="")
        return
    try:
        Path(target).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot write the JSON report to {target}: {exc}") from exc


def main(argv: Sequence[str]) -> int:
    try:
        args = build_parser().parse_args(list(argv))
    except SystemExit as exit_:  # --help: argparse printed it and asked to exit
        return int(exit_.code or 0)
    config = config_from_args(args)
    models = load_models(args.models)
    names = model_names(args.models, None)
    feeds = None
    if args.data is not None:
        feeds = read_data(args.data, models[0])
    # With the JSON on stdout, the table goes to stderr so stdout stays parseable.
    console = Console(stderr=args.json == "-")
    if not console.is_terminal:
        console.width = max(console.width, 120)
    with console.status("benchmarking...", spinner="dots"):
        result = benchmark(models, config, feeds=feeds, names=names)
    render(result, console)
    if args.json:
        _write_json(result, args.json)
    return 0
