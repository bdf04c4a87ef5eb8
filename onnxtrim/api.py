"""The Python API: `trim(config)` does everything the command line does, and prints nothing.

    load ─▶ analyse ─▶ calibrate (or load stats) ─▶ score ─▶ plan ─▶ rewrite ─▶ verify ─▶ report
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from . import ir, model_io, outputs
from .analysis.groups import Analysis, analyse
from .calibration.batching import iter_batches
from .calibration.collect import collect_stats
from .calibration.feeds import model_input_specs
from .calibration.probes import STAT_KINDS
from .calibration.readers import open_data
from .calibration.stats import ChannelStats
from .config import TrimConfig
from .criteria.apoz import APoZ
from .errors import CalibrationError, ConfigError, PlanError
from .gates import GateResult, evaluate
from .metrics import cost
from .passes.apply_plan import apply_plan
from .plan import PrunePlan, structure_fingerprint
from .policy import Selection, make_plan
from .publish import Publication
from .report import build_report, to_json
from .verify import Fidelity, compare

log = logging.getLogger(__name__)

Progress = Callable[[str, int], None]  # (stage, samples just processed)


@dataclass
class TrimResult:
    config: TrimConfig
    source: model_io.LoadedModel
    plan: PrunePlan
    model: onnx.ModelProto | None  # None for a dry run
    report: dict[str, Any]
    stats: ChannelStats | None
    fidelity: Fidelity | None
    gates: list[GateResult] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)

    @property
    def failed_gates(self) -> list[GateResult]:
        return [g for g in self.gates if not g.passed]

    @property
    def protected(self) -> tuple[Path, ...]:
        return outputs.read_inputs(self.config, self.source)

    def default_paths(self) -> tuple[Path, Path]:
        paths = outputs.trim_outputs(self.config, self.source.path)
        return paths.output, paths.report

    def save(self, *, write_model: bool = True) -> list[Path]:
        """Publish every output as one (`onnxtrim.publish`): all or none, the report last."""
        output, report_path = self.default_paths()
        with Publication(overwrite=self.config.overwrite, protected=self.protected) as publication:
            if self.config.save_stats and self.stats is not None:
                publication.write_bytes(self.config.save_stats, self.stats.to_bytes())
            if self.config.dry_run:
                publication.write_bytes(output, (self.plan.to_json() + "\n").encode("utf-8"))
            elif write_model and self.model is not None:
                model_io.stage_model(publication, self.model, output)
            self.report["output"] = {"path": str(output) if (self.config.dry_run or write_model) else None}
            publication.write_bytes(report_path, to_json(self.report).encode("utf-8"))
            self.written = publication.commit()
        return self.written


def trim(config: TrimConfig, progress: Progress | None = None) -> TrimResult:
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[stage] = now - clock
        clock = now

    outputs.check_outputs(config)  # every output target, before any work: seconds, not minutes, to a typo
    source = model_io.load_model(config.model)
    outputs.check_outputs(config, source)  # again, now that the model's data files are known
    model = source.model
    fingerprint = structure_fingerprint(model)
    analysis = analyse(ir.to_graph(model))
    lap("analyse")

    inputs = model_input_specs(model)
    data = open_data(config.data, inputs) if config.data is not None else None
    criterion = APoZ()
    stats: ChannelStats | None = None
    scores: dict[int, np.ndarray] = {}
    if config.plan is not None:
        plan = _read_plan(config.plan)
    else:
        stats = _statistics(config, model, analysis, data, inputs, fingerprint, criterion, progress)
        lap("calibrate")
        scores = criterion.scores(analysis, stats)
        selection = Selection(threshold=config.threshold, fraction=config.fraction,
                              min_keep=config.min_keep, round_to=config.round_to)
        excluded = _excluded_groups(analysis, config.nodes_to_exclude)
        plan = make_plan(analysis, {g: s for g, s in scores.items() if g not in excluded}, selection,
                         fingerprint=fingerprint, criterion=criterion.name)
    lap("plan")

    trimmed = None if config.dry_run else apply_plan(model, plan, analysis)
    if trimmed is not None:
        model_io.check_model(trimmed)
    lap("rewrite")

    fidelity = None
    if trimmed is not None and data is not None and config.verify:
        fidelity = _verify(config, model, trimmed, data, inputs, progress)
    lap("verify")

    before = cost(model)
    after = before if trimmed is None else cost(trimmed)
    latency = _latency(config, model, trimmed, after.macs / before.macs if before.macs else None) \
        if trimmed is not None and config.benchmarks else None
    lap("bench")
    first = latency["rows"][0] if latency else None
    gates = evaluate(max_drop=config.max_drop, min_speedup=config.min_speedup, max_latency_ms=config.max_latency_ms,
                     fidelity=fidelity, speedup=first["speedup"] if first else None,
                     latency_ms=first["trimmed_ms"] if first else None)
    report = build_report(
        model_path=str(source.path), analysis=analysis, plan=plan, scores=scores,
        criterion={"name": plan.criterion, "threshold": None if config.plan else config.threshold,
                   "fraction": config.fraction, "min_keep": config.min_keep, "round_to": config.round_to,
                   "nodes_to_exclude": sorted(config.nodes_to_exclude)},
        samples=stats.samples if stats is not None else 0, before=before, after=after,
        fidelity=fidelity, timings=timings,
    )
    report["latency"] = latency
    report["gates"] = [g.to_dict() for g in gates]
    return TrimResult(config, source, plan, trimmed, report, stats, fidelity, gates)


def _latency(config: TrimConfig, model: onnx.ModelProto, trimmed: onnx.ModelProto,
             macs_ratio: float | None) -> dict[str, Any]:
    """Original and trimmed timed in one process, interleaved (see `onnxtrim bench`)."""
    from .bench.harness import BenchConfig, benchmark

    result = benchmark([model, trimmed], BenchConfig(providers=config.providers, batch_sizes=config.bench_batch,
                                                     runs=config.bench_runs, intra_op_threads=config.bench_threads),
                       names=["original", "trimmed"])
    medians = {(t.provider, t.batch, t.model): t.median_ms for t in result.timings}
    rows = []
    for provider, batch in dict.fromkeys((t.provider, t.batch) for t in result.timings):
        original, after = medians[(provider, batch, "original")], medians[(provider, batch, "trimmed")]
        rows.append({"provider": provider, "batch": batch, "original_ms": round(original, 4),
                     "trimmed_ms": round(after, 4), "speedup": round(original / after, 4) if after else None})
    return {"device": result.device, "io_binding": result.io_binding, "runs": config.bench_runs,
            "threads": config.bench_threads, "macs_ratio": None if macs_ratio is None else round(macs_ratio, 6),
            "rows": rows, "warnings": list(result.warnings)}


def _statistics(config: TrimConfig, model: onnx.ModelProto, analysis: Analysis, data, inputs, fingerprint: str,
                criterion: APoZ, progress: Progress | None) -> ChannelStats:
    if config.load_stats is not None:
        path = Path(config.load_stats)
        try:
            stats = ChannelStats.from_bytes(path.read_bytes(), source=str(path))
        except OSError as exc:
            raise CalibrationError(f"cannot read statistics file {path}: {exc.strerror}") from exc
        if stats.fingerprint != fingerprint:
            raise CalibrationError(f"{path} holds statistics of a model of another structure")
        return stats
    batches = iter_batches(data, inputs, batch_size=config.batch_size, max_samples=config.max_samples,
                           holdout=config.holdout, part="calibration")
    # Only what the criterion reads, unless the statistics are kept for later trims.
    kinds = STAT_KINDS if config.save_stats is not None else criterion.kinds
    stats = collect_stats(model, analysis, _counted(batches, "calibrate", progress), fingerprint=fingerprint,
                          providers=config.providers, kinds=kinds)
    if stats.samples == 0 and analysis.observations:
        raise CalibrationError(f"{data.description}: no calibration samples (all held out or none read)")
    return stats


def _verify(config: TrimConfig, model, trimmed, data, inputs, progress: Progress | None) -> Fidelity | None:
    labels = _read_labels(config.labels) if config.labels is not None else None
    for part in ("holdout", "calibration") if config.holdout > 0 else ("calibration",):
        batches = iter_batches(data, inputs, batch_size=config.batch_size, max_samples=config.max_samples,
                               holdout=config.holdout, part=part)
        fidelity = compare(model, trimmed, _counted(batches, "verify", progress), data=part,
                           providers=config.providers, labels=labels)
        if fidelity is not None:
            return fidelity
    return None


def _counted(batches, stage: str, progress: Progress | None):
    """Report each batch to `progress` once the consumer has finished with it."""
    for batch in batches:
        yield batch
        if progress is not None:
            progress(stage, len(batch.indices))


def _read_labels(path: str | Path) -> np.ndarray:
    try:
        labels = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CalibrationError(f"cannot read labels {path}: {exc}") from exc
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise CalibrationError(f"labels {path} must be a 1-D integer array, got {labels.dtype}{list(labels.shape)}")
    return labels


def _read_plan(path: str | Path) -> PrunePlan:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PlanError(f"cannot read plan {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise PlanError(f"plan {path} is not a JSON text file") from exc
    return PrunePlan.from_json(text)


def _excluded_groups(analysis: Analysis, names: tuple[str, ...]) -> set[int]:
    if not names:
        return set()
    known = {ir.node_label(n, i) for i, n in enumerate(analysis.graph.nodes)}
    unknown = sorted(set(names) - known)
    if unknown:
        raise ConfigError(f"nodes_to_exclude names no node of the model: {', '.join(unknown[:5])}")
    wanted = set(names)
    return {g.id for g in analysis.groups if wanted & set(g.members)}


__all__ = ["TrimConfig", "TrimResult", "trim"]
