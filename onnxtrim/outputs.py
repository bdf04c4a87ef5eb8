"""What a trim writes and where, and the pre-flight check of all of it before any work starts.

Tried as a new user would, a forgotten `--overwrite` or a missing output directory used to be reported
only when the outputs were written, after 30-50 s of calibration, verification and benchmarking.
`check_outputs` runs the checks a publication will run (`publish.check_targets`) on every output the
config asks for, first from the paths alone (before the model is read), then again once the model's
external-data files are known; a failure is the same one-line OutputError the publication would raise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from . import model_io, publish
from .config import TrimConfig


@dataclass(frozen=True)
class TrimOutputs:
    """The files one trim writes: the model (or, for a dry run, the plan), the report, the statistics."""

    output: Path  # the trimmed model, or the plan of a dry run
    report: Path
    stats: Path | None

    @property
    def model_data(self) -> Path:
        """Where the model's external data goes when it is saved with external data."""
        return self.output.with_name(self.output.name + ".data")


def trim_outputs(config: TrimConfig, model_path: Path) -> TrimOutputs:
    """Default names sit beside the model file (its real location): MODEL.trimmed.onnx, or MODEL.plan.json
    for a dry run, and OUTPUT.report.json."""
    stem = model_path.name.removesuffix(".onnx")
    suffix = ".plan.json" if config.dry_run else ".trimmed.onnx"
    output = Path(config.output) if config.output else model_path.with_name(stem + suffix)
    report_stem = output.name[:-5] if output.name.endswith((".onnx", ".json")) else output.name
    report = Path(config.report) if config.report else output.with_name(report_stem + ".report.json")
    return TrimOutputs(output, report, Path(config.save_stats) if config.save_stats is not None else None)


def read_inputs(config: TrimConfig, source: model_io.LoadedModel | None = None) -> tuple[Path, ...]:
    """Every file the run reads and must never write: the model, its data files, and the files given
    for data, labels, a plan or statistics."""
    given: list[str | os.PathLike[str] | None] = [config.model, config.labels, config.plan, config.load_stats,
                                                  config.train_labels]
    for data in (config.data, config.train_data):
        if isinstance(data, (str, os.PathLike)) and os.path.isfile(data):
            given.append(data)
    files = [Path(p) for p in given if p is not None]
    if source is not None:
        files += [source.path, *source.data_files]
    return tuple(files)


def check_outputs(config: TrimConfig, source: model_io.LoadedModel | None = None) -> TrimOutputs | None:
    """Raise the OutputError a publication would raise, before any work; None when the model path does not
    resolve (loading it then reports that, which comes first)."""
    if source is not None:
        model_path = source.path
    else:
        try:
            model_path = Path(config.model).resolve(strict=True)
        except (OSError, RuntimeError, ValueError):
            return None
    outputs = trim_outputs(config, model_path)
    targets = [outputs.output, outputs.report] + ([outputs.stats] if outputs.stats is not None else [])
    if config.shard is not None:  # a shard run writes its statistics only
        targets = [outputs.stats] if outputs.stats is not None else []
    if source is not None and not config.dry_run and model_io.saves_external_data(source.model):
        targets.append(outputs.model_data)
    publish.check_targets(targets, overwrite=config.overwrite, protected=read_inputs(config, source))
    return outputs


__all__ = ["TrimOutputs", "check_outputs", "read_inputs", "trim_outputs"]
