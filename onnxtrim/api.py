"""The Python API: `trim(config)` does everything the command line does, and prints nothing.

    load ─▶ analyse ─▶ calibrate (or load stats) ─▶ score ─▶ plan ─▶ rewrite ─▶ verify ─▶ report
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from . import advice, model_io, outputs, stages
from .analysis.groups import Analysis
from .calibration.batching import iter_batches, part_samples
from .calibration.feeds import Batch, model_input_specs
from .calibration.labels import read_labels
from .calibration.readers import open_data
from .calibration.requests import StatRequest, basic_requests
from .calibration.stats import ChannelStats
from .config import TrimConfig
from .criteria.apoz import activation_points
from .criteria.base import Criterion, Scores
from .errors import CalibrationError, PlanError, VerificationError
from .gates import GateResult, evaluate
from .metrics import cost
from .plan import PrunePlan, structure_fingerprint
from .policy import Selection
from .progress import ProgressLike, Reporter
from .publish import Publication
from .report import build_report, to_json
from .verify import Fidelity

log = logging.getLogger(__name__)

Progress = ProgressLike  # a ProgressSink, or a plain function (stage, samples just processed)


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
    writes: bool = True  # False on torchrun's ranks other than 0: they train alongside, rank 0 publishes
    scores: Scores | None = None  # the criterion's scores per group (for figures); None with --plan

    @property
    def warnings(self) -> list[str]:
        """What a user would want to be told (the report's `warnings`; the command line prints them)."""
        return list(self.report.get("warnings", []))

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
        """Publish every output as one (`onnxtrim.publish`): all or none, the report last.

        A shard run (`config.shard`) publishes its statistics only; a rank other than 0 of a
        data-parallel fine-tune (torchrun) publishes nothing, since rank 0 writes the same model.
        """
        if not self.writes:
            self.written = []
            return self.written
        paths = outputs.trim_outputs(self.config, self.source.path)
        figures = _figures(self) if self.config.plot is not None and self.config.shard is None else {}
        with Publication(overwrite=self.config.overwrite, protected=self.protected,
                         make_dirs=paths.directories) as publication:
            if self.config.save_stats and self.stats is not None:
                publication.write_bytes(self.config.save_stats, self.stats.to_bytes())
            if self.config.shard is None:
                for name, png in figures.items():
                    publication.write_bytes(paths.plot_file(name), png)
                if self.config.dry_run:
                    publication.write_bytes(paths.output, (self.plan.to_json() + "\n").encode("utf-8"))
                elif write_model and self.model is not None:
                    model_io.stage_model(publication, self.model, paths.output)
                written = self.config.dry_run or (write_model and self.model is not None)
                self.report["output"] = {"path": str(outputs.absolute(paths.output)) if written else None}
                publication.write_bytes(paths.report, to_json(self.report).encode("utf-8"))
            self.written = publication.commit()
        return self.written


def _figures(result: TrimResult) -> dict[str, bytes]:
    from .plots import figures

    return figures(result.report, result.plan, result.scores)


def trim(config: TrimConfig, progress: Progress = None) -> TrimResult:
    """Everything the command line does, in memory; `TrimResult.save` writes the outputs.

    Raises VerificationError (with the result attached, so the report can still be saved)
    when `config.check` finds outputs that moved beyond the tolerance. `progress` hears every
    stage start, advance and finish (see `onnxtrim.progress`).
    """
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    reporter = Reporter(progress)

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[stage] = now - clock
        clock = now
        reporter.finish(stage)

    outputs.check_outputs(config)  # every output target, before any work: seconds, not minutes, to a typo
    if config.plot is not None:
        from .plots import require_matplotlib

        require_matplotlib()
    reporter.start("analyse")
    source = model_io.load_model(config.model)
    outputs.check_outputs(config, source)  # again, now that the model's data files are known
    model = source.model
    fingerprint = structure_fingerprint(model)
    analysis = stages.analyse(model)
    criterion = config.make_criterion()
    rounding = config.rounding
    stages.excluded_groups(analysis, config.nodes_to_exclude)  # bad names fail before any calibration
    lap("analyse")

    inputs = model_input_specs(model)
    labels = read_labels(config.labels) if config.labels is not None else None
    data = open_data(config.data, inputs, skip=outputs.read_inputs(config)) if config.data is not None else None
    stats: ChannelStats | None = None
    scores: Scores | None = None
    plan: PrunePlan | None = None
    if config.plan is not None:
        plan = _read_plan(config.plan)
    elif config.iterations == 1 and config.schedule is None:  # iterations and schedules make their own plans
        stats = _statistics(config, model, analysis, data, inputs, fingerprint, criterion, labels, reporter)
        lap("calibrate")
        if config.shard is not None:  # one shard of a calibration: its statistics are the result
            return TrimResult(config, source, PrunePlan(fingerprint, criterion.name, ()), None,
                              {"shard": list(config.shard), "samples": stats.samples}, stats, None)
        scores = criterion.scores(analysis, stats)
        plan = stages.decide(analysis, criterion, scores, config.selection(criterion), fingerprint=fingerprint,
                             nodes_to_exclude=config.nodes_to_exclude)
    lap("plan")

    recovery: dict[str, Any] | None = None
    trimmed: onnx.ModelProto | None
    trimmed_bytes: bytes | None = None
    writes = True
    if config.recovering:
        from .recovery.launch import launched
        from .recovery.run import recover

        launch = launched()  # under torchrun every rank trims and trains alike; only rank 0 writes
        writes = launch is None or launch.writes

        recovered = recover(config, model, analysis, criterion, fingerprint=fingerprint, data=data, inputs=inputs,
                            labels=labels, counted=lambda batches, stage: reporter.counted(batches, stage),
                            plan=plan, calibration=lambda: _calibration(config, data, inputs, reporter))
        trimmed, plan, analysis, recovery = recovered.model, recovered.plan, recovered.analysis, recovered.report
        reporter.finish("finetune")
    else:
        assert plan is not None
        trimmed = None
        if not config.dry_run:
            trimmed, trimmed_bytes = stages.rewrite_checked(model, plan, analysis, layernorm=config.layernorm)
    lap("rewrite")

    fidelity = None
    if trimmed is not None and data is not None and config.verify:
        fidelity = _verify(config, (model, source.payload), (trimmed, trimmed_bytes), data, inputs, labels, reporter)
    lap("verify")

    before = cost(model)
    after = stages.projected_cost(analysis, plan) if trimmed is None else cost(trimmed)
    latency = None
    if trimmed is not None and config.benchmarks:
        reporter.start("bench", 2 * len(config.bench_batch) * len(config.providers) * config.bench_runs)
        latency = _latency(config, model, trimmed, after.macs / before.macs if before.macs else None, reporter)
    lap("bench")
    first = latency["rows"][0] if latency else None
    gates = evaluate(max_drop=config.max_drop, min_speedup=config.min_speedup, max_latency_ms=config.max_latency_ms,
                     fidelity=fidelity, speedup=first["speedup"] if first else None,
                     latency_ms=first["trimmed_ms"] if first else None)
    selection = None if config.plan else config.selection(criterion)
    report = build_report(
        model_path=str(source.path), analysis=analysis, plan=plan, scores=scores, criterion=criterion,
        selection=None if selection is None else _selection_record(config, selection),
        samples=stats.samples if stats is not None else 0, observed=len(stats.tensors) if stats is not None else 0,
        before=before, after=after, projected=trimmed is None,
        fidelity=fidelity, timings=timings, rounding=None if selection is None else rounding.to_dict(),
    )
    report["latency"] = latency
    report["gates"] = [g.to_dict() for g in gates]
    report["recovery"] = recovery
    facts = advice.RunFacts(
        criterion=criterion, selection=selection, plan=plan, samples=stats.samples if stats is not None else 0,
        measured=stats is not None and bool(stats.tensors) and criterion.needs_data, fidelity=fidelity,
        written=trimmed is not None and config.shard is None, unverified_because=_unverified(config, data),
        latency=latency, rounding=rounding.multiple if selection is not None else 0)
    report["warnings"] = advice.warnings_for(facts)
    result = TrimResult(config, source, plan, trimmed, report, stats, fidelity, gates, scores=scores, writes=writes)
    reporter.finish_all()
    failure = _check_failure(config, facts, report["calibration"]["samples"])
    if failure is not None:
        failure.result = result
        raise failure
    return result


def _unverified(config: TrimConfig, data: Any) -> str | None:
    """Why a written model has no fidelity, in words that say how to get one."""
    given = "--plan" if config.plan is not None else "--load-stats" if config.load_stats is not None else None
    if not config.verify:
        return "verification was turned off (--no-verify)"
    if data is None:
        return (f"it was made from {given} without --data, " if given else "no --data was given, ") + \
            "so there was nothing to compare it with the original on; pass --data to verify"
    return "no samples were left to compare the models on"


def _selection_record(config: TrimConfig, selection: Selection) -> dict[str, Any]:
    return {"threshold": selection.threshold, "fraction": selection.fraction, "global": selection.global_ranking,
            "target_macs": selection.target_macs, "target_params": selection.target_params,
            "normalize": selection.normalize, "flops_reg": selection.flops_reg, "min_keep": selection.min_keep,
            "max_fraction_per_group": selection.max_fraction_per_group, "round_to": selection.round_to,
            "nodes_to_exclude": sorted(config.nodes_to_exclude), "sparsity": config.sparsity,
            "layernorm": config.layernorm}


def _check_failure(config: TrimConfig, facts: advice.RunFacts, calibration_samples: int) -> VerificationError | None:
    if not config.check or config.dry_run:
        return None
    fidelity = facts.fidelity
    if fidelity is None:
        return VerificationError("--check found no samples to compare: give --data with at least one sample")
    if fidelity.outside_tolerance:
        allowed = f"--tolerance {config.tolerance:g}" + (f" + --rtol {config.rtol:g} x |original|" if config.rtol else "")
        return VerificationError(
            f"outputs differ by up to {fidelity.max_abs_diff:.3g} (relative {fidelity.max_rel_diff:.3g}) on "
            f"{fidelity.samples} {fidelity.data} samples, above {allowed} at {fidelity.outside_tolerance:,} "
            f"element{'s' if fidelity.outside_tolerance != 1 else ''}; model not written. Cause: "
            f"{advice.check_cause(facts, calibration_samples)}")
    return None


def _latency(config: TrimConfig, model: onnx.ModelProto, trimmed: onnx.ModelProto,
             macs_ratio: float | None, reporter: Reporter) -> dict[str, Any]:
    """Original and trimmed timed in one process, interleaved (see `onnxtrim bench`)."""
    from .bench.harness import BenchConfig, benchmark

    result = benchmark([model, trimmed], BenchConfig(providers=config.providers, batch_sizes=config.bench_batch,
                                                     runs=config.bench_runs, intra_op_threads=config.bench_threads),
                       names=["original", "trimmed"], on_runs=lambda n: reporter.advance("bench", n))
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
                criterion: Criterion, labels, reporter: Reporter) -> ChannelStats:
    requests = criterion.requests(analysis)
    if config.load_stats is not None:
        return _loaded_stats(Path(config.load_stats), fingerprint, requests)
    if not requests:
        return ChannelStats(fingerprint)  # a data-free criterion
    if config.save_stats is not None:  # what other activation criteria read too, for later trims
        requests = list(dict.fromkeys([*requests, *saved_requests(analysis)]))

    def batches() -> Iterator[Batch]:
        return _calibration(config, data, inputs, reporter)

    stats = stages.measure(model, analysis, requests, batches, providers=config.providers, fingerprint=fingerprint,
                           labels=labels)
    if config.shard is not None:
        stats.parts = (config.shard,)
    if stats.samples == 0 and config.shard is None:
        raise CalibrationError(f"{data.description}: no calibration samples (all held out or none read)")
    return stats


def _calibration(config: TrimConfig, data, inputs, reporter: Reporter) -> Iterator[Batch]:
    """The calibration part of the data (this shard of it with --shard), counted for progress."""
    every = iter_batches(data, inputs, batch_size=config.batch_size, max_samples=config.max_samples,
                         holdout=config.holdout, part="calibration")
    total = None if config.shard is not None else \
        part_samples(data, max_samples=config.max_samples, holdout=config.holdout, part="calibration")
    if config.shard is not None:
        every = (b for k, b in enumerate(every) if k % config.shard[1] == config.shard[0])
    reporter.start("calibrate", total)
    return reporter.counted(every, "calibrate")


def saved_requests(analysis: Analysis) -> list[StatRequest]:
    """The four basic sums at every tensor APoZ or mean activation reads (`--save-stats`)."""
    points = [point for point, _ in activation_points(analysis)] + list(analysis.consumed)
    return [request for point in points for request in basic_requests(point.tensor, point.axis)]


def _loaded_stats(path: Path, fingerprint: str, requests: list[StatRequest]) -> ChannelStats:
    try:
        stats = ChannelStats.from_bytes(path.read_bytes(), source=str(path))
    except OSError as exc:
        raise CalibrationError(f"cannot read statistics file {path}: {exc.strerror}") from exc
    if stats.fingerprint != fingerprint:
        raise CalibrationError(f"{path} holds statistics of a model of another structure")
    missing = [r for r in requests if r.tensor not in stats.tensors or r.key not in stats.tensors[r.tensor].keys]
    if missing:
        raise CalibrationError(f"{path} lacks statistics this criterion needs ({missing[0].key} of "
                               f"'{missing[0].tensor}' and {len(missing) - 1} more): calibrate with this criterion")
    return stats


def _verify(config: TrimConfig, original: tuple[onnx.ModelProto, bytes | None],
            result: tuple[onnx.ModelProto, bytes | None], data, inputs, labels, reporter: Reporter) -> Fidelity | None:
    """Both models on the holdout (on the calibration samples when none are held out). The sessions are
    built once, from bytes already serialized where there are some (the model file's, the checker's), and a
    holdout known to be empty beforehand is not read at all."""
    from . import runtime

    (model, model_bytes), (trimmed, trimmed_bytes) = original, result
    expected = part_samples(data, max_samples=config.max_samples, holdout=config.holdout, part="holdout")
    parts = ("holdout", "calibration") if config.holdout > 0 and expected != 0 else ("calibration",)
    sessions = (runtime.make_session(model, config.providers, payload=model_bytes),
                runtime.make_session(trimmed, config.providers, payload=trimmed_bytes))
    for part in parts:
        reporter.start("verify", part_samples(data, max_samples=config.max_samples, holdout=config.holdout,
                                              part=part))  # type: ignore[arg-type]
        batches = iter_batches(data, inputs, batch_size=config.batch_size, max_samples=config.max_samples,
                               holdout=config.holdout, part=part)  # type: ignore[arg-type]
        fidelity = stages.verify(model, trimmed, reporter.counted(batches, "verify"), data=part,
                                 providers=config.providers, labels=labels, atol=config.tolerance,
                                 rtol=config.rtol, sessions=sessions)
        if fidelity is not None:
            return fidelity
    return None


def _read_plan(path: str | Path) -> PrunePlan:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PlanError(f"cannot read plan {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise PlanError(f"plan {path} is not a JSON text file") from exc
    return PrunePlan.from_json(text)


__all__ = ["TrimConfig", "TrimResult", "trim"]
