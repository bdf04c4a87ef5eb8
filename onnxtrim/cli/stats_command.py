"""`onnxtrim stats merge A.npz B.npz ... -o ALL.npz`: add up statistics calibrated in shards.

Statistics are exact sums, so shards calibrated as parallel jobs (`--shard I/N --save-stats`)
add up to exactly what one run over all the data gives. Merging refuses statistics of another
model, of another set of measurements (another criterion or options), and overlapping shards.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from .. import model_io
from ..calibration.stats import ChannelStats
from ..errors import CalibrationError, ConfigError

EPILOG = """\
example (four parallel jobs, then one merge):
  for i in 0 1 2 3; do
    onnxtrim model.onnx --data calib/ --shard $i/4 --save-stats shard$i.npz &   # statistics only
  done; wait
  onnxtrim stats merge shard0.npz shard1.npz shard2.npz shard3.npz -o all.npz
  onnxtrim model.onnx --load-stats all.npz --apoz 0.9
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="onnxtrim stats", description="Work with saved calibration statistics.",
                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    merge = verbs.add_parser("merge", help="add up statistics of disjoint shards of one calibration")
    merge.add_argument("inputs", nargs="+", metavar="STATS.npz")
    merge.add_argument("-o", "--output", required=True, metavar="ALL.npz")
    merge.add_argument("--overwrite", action="store_true", help="replace an existing output")
    return parser


def merge_files(paths: Sequence[str | Path]) -> ChannelStats:
    merged: ChannelStats | None = None
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise CalibrationError(f"cannot read statistics file {path}: {exc.strerror}") from exc
        stats = ChannelStats.from_bytes(data, source=str(path))
        if merged is None:
            merged = stats
            continue
        try:
            merged.merge(stats)
        except CalibrationError as exc:
            raise CalibrationError(f"{path}: {exc}") from exc
    assert merged is not None
    return merged


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    merged = merge_files(args.inputs)
    written = model_io.write_bytes(args.output, merged.to_bytes(), overwrite=args.overwrite,
                                   protected=tuple(Path(p) for p in args.inputs))
    missing = merged.missing_shards
    note = f"; shards {', '.join(map(str, missing))} of {merged.parts[0][1]} still missing" if missing else ""
    print(f"wrote {written} ({merged.samples} samples from {len(args.inputs)} files{note})")
    return 0
