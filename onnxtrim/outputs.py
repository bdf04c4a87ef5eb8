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

#: The figures `--plot DIR` writes (`onnxtrim.plots`), and the one added when recovery has rounds to show.
PLOTS = ("channels.png", "scores.png")
TRADEOFF_PLOT = "tradeoff.png"


@dataclass(frozen=True)
class TrimOutputs:
    """The files one trim writes: the model (or, for a dry run, the plan), the report, the statistics,
    the figures; and the directories to create for them (named with a trailing slash, or `--plot`)."""

    output: Path  # the trimmed model, or the plan of a dry run
    report: Path
    stats: Path | None
    plots: Path | None = None
    plot_names: tuple[str, ...] = ()
    directories: tuple[Path, ...] = ()

    @property
    def model_data(self) -> Path:
        """Where the model's external data goes when it is saved with external data."""
        return self.output.with_name(self.output.name + ".data")

    def plot_file(self, name: str) -> Path:
        assert self.plots is not None
        return self.plots / name


def names_directory(given: str | os.PathLike[str]) -> bool:
    """`-o DIR/` (a trailing separator) or an existing directory means: write into that directory."""
    text = os.fspath(given)
    return text.endswith(("/", os.sep)) or os.path.isdir(text)


def absolute(path: Path) -> Path:
    """The path as the report records it: absolute, like the input's (the file name as given)."""
    return Path(os.path.abspath(path.parent)).resolve() / path.name


def trim_outputs(config: TrimConfig, model_path: Path) -> TrimOutputs:
    """Default names sit beside the model file (its real location): MODEL.trimmed.onnx, or MODEL.plan.json
    for a dry run, and OUTPUT.report.json. An output or report naming a directory gets that default name
    inside it; such a directory that does not exist yet is created (one level, its parent must exist)."""
    stem = model_path.name.removesuffix(".onnx")
    suffix = ".plan.json" if config.dry_run else ".trimmed.onnx"
    directories: list[Path] = []

    def inside(given: str | os.PathLike[str], name: str) -> Path:
        folder = Path(given)
        if not folder.exists():
            directories.append(folder)
        return folder / name

    if config.output and names_directory(config.output):
        output = inside(config.output, stem + suffix)
    else:
        output = Path(config.output) if config.output else model_path.with_name(stem + suffix)
    report_stem = output.name[:-5] if output.name.endswith((".onnx", ".json")) else output.name
    if config.report and names_directory(config.report):
        report = inside(config.report, report_stem + ".report.json")
    else:
        report = Path(config.report) if config.report else output.with_name(report_stem + ".report.json")
    plots = Path(config.plot) if config.plot is not None else None
    if plots is not None and not plots.exists():
        directories.append(plots)
    names = PLOTS + ((TRADEOFF_PLOT,) if config.recovering else ()) if plots is not None else ()
    return TrimOutputs(output, report, Path(config.save_stats) if config.save_stats is not None else None, plots,
                       names, tuple(dict.fromkeys(directories)))


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
    targets += [outputs.plot_file(name) for name in outputs.plot_names]
    if config.shard is not None:  # a shard run writes its statistics only
        targets = [outputs.stats] if outputs.stats is not None else []
    if source is not None and not config.dry_run and model_io.saves_external_data(source.model):
        targets.append(outputs.model_data)
    publish.check_targets(targets, overwrite=config.overwrite, protected=read_inputs(config, source),
                          creatable=outputs.directories)
    return outputs


__all__ = ["PLOTS", "TRADEOFF_PLOT", "TrimOutputs", "absolute", "check_outputs", "names_directory", "read_inputs",
           "trim_outputs"]
