"""Latency benchmark of one or more models on the same inputs, in one process.

The question users ask is "is the trimmed model faster than the original, here?". Answering it
with two separate runs invites noise: turbo clocks, thermal state, other processes and cache
contents drift over seconds. So every session is built before any timing, and the timed calls
are interleaved A B A B ... for each (provider, batch size): whatever drifts, drifts for all
models alike, and the ratio to the first model is what the report leads with.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import onnx

from .. import model_io
from ..calibration.feeds import model_input_specs
from ..errors import ConfigError, ModelError, OnnxTrimError
from ..runtime import make_session, resolve_providers, session_uses_gpu
from .device import cpu_name, gpu_name
from .inputs import check_same_inputs, effective_batch, fit_feeds, synthesize_feeds
from .runners import Runner, cuda_device_id, make_runner

log = logging.getLogger(__name__)

#: Version of the dictionary written by `BenchResult.to_dict`; bump on any incompatible change.
SCHEMA_VERSION = 1

ModelLike = onnx.ModelProto | str | Path
#: Builds one session: (model, full provider name, intra-op threads) -> onnxruntime session.
SessionFactory = Callable[[onnx.ModelProto, str, int], Any]
#: Monotonic clock in nanoseconds.
Clock = Callable[[], int]


def _resolve_each(providers: Sequence[str]) -> tuple[str, ...]:
    """Each provider on its own: `resolve_providers` appends CPU as a fallback, which a
    benchmark must not do silently (a CPU row is only timed when CPU is asked for)."""
    return tuple(dict.fromkeys(resolve_providers([p])[0] for p in providers))


@dataclass(frozen=True)
class BenchConfig:
    """What to measure; mirrors the `onnxtrim bench` flags one to one.

    `providers` takes short (`cpu`, `cuda`, `tensorrt`) or full onnxruntime names; each is timed
    separately. `intra_op_threads` defaults to 1 because a fixed, small thread count gives repeatable numbers;
    0 means onnxruntime's default (all cores). `dynamic_dims` sizes symbolic dimensions other
    than the batch (first) dimension when inputs are synthesised.
    """

    providers: tuple[str, ...] = ("cpu",)
    batch_sizes: tuple[int, ...] = (1,)
    warmup: int = 10
    runs: int = 50
    intra_op_threads: int = 1
    dynamic_dims: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            providers = (self.providers,) if isinstance(self.providers, str) else self.providers
            object.__setattr__(self, "providers", tuple(str(p) for p in providers))
            object.__setattr__(self, "batch_sizes", tuple(int(b) for b in self.batch_sizes))
            dims = {str(k): int(v) for k, v in dict(self.dynamic_dims).items()}
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid benchmark configuration: {exc}") from exc
        object.__setattr__(self, "dynamic_dims", MappingProxyType(dims))
        if not self.providers:
            raise ConfigError("at least one provider is needed")
        _resolve_each(self.providers)  # raises ConfigError on an unknown name
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise ConfigError(f"batch sizes must be positive integers, got {list(self.batch_sizes)}")
        if self.warmup < 0:
            raise ConfigError(f"warmup must be 0 or more, got {self.warmup}")
        if self.runs < 1:
            raise ConfigError(f"runs must be 1 or more, got {self.runs}")
        if self.intra_op_threads < 0:
            raise ConfigError(
                f"intra-op threads must be 0 (onnxruntime's default) or more, got {self.intra_op_threads}"
            )
        bad = {k: v for k, v in self.dynamic_dims.items() if v < 1}
        if bad:
            raise ConfigError(f"dynamic dimension sizes must be positive, got {bad}")

    @property
    def resolved_providers(self) -> tuple[str, ...]:
        """Full onnxruntime names, duplicates removed, in the order given (no CPU appended)."""
        return _resolve_each(self.providers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "providers": list(self.providers),
            "batch_sizes": list(self.batch_sizes),
            "warmup": self.warmup,
            "runs": self.runs,
            "intra_op_threads": self.intra_op_threads,
            "dynamic_dims": dict(self.dynamic_dims),
        }


@dataclass(frozen=True)
class Timing:
    """Latency statistics of one model for one (provider, batch size), in milliseconds.

    `provider` is the provider requested (full name); `io_binding` says whether the timed call
    excluded host-device copies; `samples_ms` keeps every timed run so that anyone can
    recompute or plot the distribution.
    """

    model: str
    provider: str
    batch: int
    median_ms: float
    p90_ms: float
    p99_ms: float
    min_ms: float
    mean_ms: float
    throughput: float  # samples/s at the median latency
    io_binding: bool = False
    samples_ms: tuple[float, ...] = field(default=(), repr=False)


def summarize(
    model: str, provider: str, batch: int, samples_ns: np.ndarray, *, io_binding: bool = False
) -> Timing:
    """Order statistics rather than mean alone: latency distributions have long right tails."""
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    median = float(np.median(ms))
    return Timing(
        model=model,
        provider=provider,
        batch=batch,
        median_ms=median,
        p90_ms=float(np.percentile(ms, 90)),
        p99_ms=float(np.percentile(ms, 99)),
        min_ms=float(ms.min()),
        mean_ms=float(ms.mean()),
        throughput=batch * 1000.0 / median if median > 0 else math.inf,
        io_binding=io_binding,
        samples_ms=tuple(float(x) for x in ms),
    )


def _finite(value: float) -> float | None:
    """JSON has no NaN or infinity; None says 'not measurable' instead."""
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class BenchResult:
    """Everything measured, plus what is needed to trust it: device, IO binding and warnings."""

    config: BenchConfig
    timings: tuple[Timing, ...]
    device: str
    io_binding: bool
    warnings: tuple[str, ...] = ()
    environment: Mapping[str, str] = field(default_factory=dict)

    @property
    def models(self) -> tuple[str, ...]:
        """Model names in the order given; the first is the reference of `ratios`."""
        return tuple(dict.fromkeys(t.model for t in self.timings))

    def ratios(self) -> dict[tuple[str, int], dict[str, float]]:
        """Per (provider, batch): each model's median latency over the first model's.

        Below 1 means faster than the first model (normally the original).
        """
        out: dict[tuple[str, int], dict[str, float]] = {}
        for t in self.timings:
            group = out.setdefault((t.provider, t.batch), {})
            reference = next(x for x in self.timings if (x.provider, x.batch) == (t.provider, t.batch))
            group[t.model] = t.median_ms / reference.median_ms if reference.median_ms > 0 else math.nan
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary with a stable schema (`schema_version`); floats in ms."""
        timings = []
        for t in self.timings:
            row = asdict(t)
            row["samples_ms"] = list(t.samples_ms)
            timings.append({k: _finite(v) if isinstance(v, float) else v for k, v in row.items()})
        ratios = [
            {"provider": provider, "batch": batch, "model": model, "ratio": _finite(ratio)}
            for (provider, batch), group in self.ratios().items()
            for model, ratio in group.items()
        ]
        return {
            "schema_version": SCHEMA_VERSION,
            "config": self.config.to_dict(),
            "models": list(self.models),
            "device": self.device,
            "io_binding": self.io_binding,
            "warnings": list(self.warnings),
            "environment": dict(self.environment),
            "timings": timings,
            "ratios": ratios,
        }

    def to_json(self) -> str:
        """`to_dict` as JSON with sorted keys, so reports diff cleanly."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=2, allow_nan=False) + "\n"


def _load(path: str | Path) -> onnx.ModelProto:
    return model_io.load_model(path).model


def load_models(models: Sequence[ModelLike]) -> list[onnx.ModelProto]:
    """Models as protos; paths are read, protos passed through."""
    return [m if isinstance(m, onnx.ModelProto) else _load(m) for m in models]


def model_names(models: Sequence[ModelLike], names: Sequence[str] | None) -> list[str]:
    """Given names, or file names (full paths if file names clash), or model0, model1, ..."""
    if names is not None:
        names = [str(n) for n in names]
        if len(names) != len(models):
            raise ConfigError(f"{len(names)} names given for {len(models)} models")
        if len(set(names)) != len(names):
            raise ConfigError(f"model names must be unique, got {names}")
        return names
    short = [f"model{i}" if isinstance(m, onnx.ModelProto) else Path(m).name for i, m in enumerate(models)]
    if len(set(short)) == len(short):
        return short
    full = [f"model{i}" if isinstance(m, onnx.ModelProto) else str(m) for i, m in enumerate(models)]
    if len(set(full)) == len(full):
        return full
    return [f"{n}#{i}" for i, n in enumerate(full)]


def _default_session_factory(model: onnx.ModelProto, provider: str, threads: int) -> Any:
    return make_session(model, [provider], optimize=True, intra_op_threads=threads, allow_fallback=True)


def _is_ort_error(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("onnxruntime")


def measure_interleaved(
    runners: Sequence[Runner | Callable[[], Any]],
    warmup: int,
    runs: int,
    *,
    clock: Clock = time.perf_counter_ns,
) -> np.ndarray:
    """Warm each runner up, then time `runs` rounds of one call each, in order: A B A B ...

    Returns nanoseconds, shape (len(runners), runs). The garbage collector is paused while
    timing so that a collection triggered by one model is not billed to it.
    """
    for runner in runners:
        for _ in range(warmup):
            runner()
    samples = np.empty((len(runners), runs), dtype=np.int64)
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for i in range(runs):
            for j, runner in enumerate(runners):
                start = clock()
                runner()
                samples[j, i] = clock() - start
    finally:
        if was_enabled:
            gc.enable()
    return samples


def _fallback_warnings(sessions: Mapping[str, Mapping[str, Any]]) -> list[str]:
    warnings = []
    for provider, group in sessions.items():
        for name, session in group.items():
            actual = session.get_providers()[0]
            if actual != provider:
                warnings.append(
                    f"{provider} was requested for {name!r} but the session runs on {actual}: onnxruntime "
                    f"fell back (often missing CUDA/cuDNN libraries); these '{provider}' timings are "
                    f"{actual} timings"
                )
    return warnings


def _describe_device(sessions: Mapping[str, Mapping[str, Any]]) -> str:
    every = [s for group in sessions.values() for s in group.values()]
    gpus = sorted({cuda_device_id(s) for s in every if session_uses_gpu(s)})
    cpu = cpu_name()
    if not gpus:
        return cpu
    return "; ".join(gpu_name(d) for d in gpus) + f"; host CPU {cpu}"


def _environment() -> dict[str, str]:
    env = {
        "onnx": onnx.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        import onnxruntime

        env["onnxruntime"] = onnxruntime.__version__
    except ImportError:  # pragma: no cover - only with a custom session factory
        pass
    return env


def benchmark(
    models: Sequence[ModelLike],
    config: BenchConfig = BenchConfig(),
    *,
    feeds: Mapping[str, np.ndarray] | None = None,
    names: Sequence[str] | None = None,
    session_factory: SessionFactory | None = None,
    clock: Clock = time.perf_counter_ns,
    on_runs: Callable[[int], None] | None = None,
) -> BenchResult:
    """Time every model on every provider and batch size, interleaved, on identical inputs.

    `on_runs(n)` hears the number of timed runs done after each provider and batch size (progress).

    `feeds` are cut or tiled along axis 0 to each batch size; without them, inputs are drawn
    from a fixed-seed generator. `session_factory` and `clock` exist so the measurement loop
    can be tested with fakes; leave them alone to benchmark for real.
    """
    if not models:
        raise ConfigError("no model to benchmark")
    labels = model_names(models, names)
    protos = load_models(models)
    specs = [tuple(model_input_specs(m)) for m in protos]
    check_same_inputs(specs, labels)
    batches = [effective_batch(specs[0], b) for b in config.batch_sizes]

    def feeds_for(batch: int) -> dict[str, np.ndarray]:
        if feeds is not None:
            return fit_feeds(specs[0], feeds, batch)
        return synthesize_feeds(specs[0], batch, config.dynamic_dims)

    feeds_for(min(batches))  # fail on bad inputs before building any session
    factory = session_factory or _default_session_factory
    sessions = {
        p: {n: _build(factory, m, p, config.intra_op_threads, n) for m, n in zip(protos, labels, strict=True)}
        for p in config.resolved_providers
    }
    warnings = _fallback_warnings(sessions)
    for warning in warnings:
        log.info("%s", warning)

    timings: list[Timing] = []
    for provider, group in sessions.items():
        for batch in batches:
            where = f"on {provider} at batch size {batch}"
            log.debug("timing %s: %d warm-up + %d runs per model", where, config.warmup, config.runs)
            runners, samples = _measure(group, feeds_for(batch), config, clock, where)
            timings += [
                summarize(n, provider, batch, s, io_binding=r.io_binding)
                for n, s, r in zip(labels, samples, runners, strict=True)
            ]
            if on_runs is not None:
                on_runs(len(runners) * config.runs)
    return BenchResult(
        config=config,
        timings=tuple(timings),
        device=_describe_device(sessions),
        io_binding=any(t.io_binding for t in timings),
        warnings=tuple(warnings),
        environment=MappingProxyType(_environment()),
    )


def _build(factory: SessionFactory, model: onnx.ModelProto, provider: str, threads: int, name: str) -> Any:
    try:
        return factory(model, provider, threads)
    except OnnxTrimError:
        raise
    except Exception as exc:
        if _is_ort_error(exc):
            raise ModelError(f"onnxruntime cannot load {name!r} on {provider}: {exc}") from exc
        raise


def _measure(
    sessions: Mapping[str, Any],
    feeds: Mapping[str, np.ndarray],
    config: BenchConfig,
    clock: Clock,
    where: str,
) -> tuple[list[Runner], np.ndarray]:
    """Runners and their samples; onnxruntime failures become ModelErrors naming the model.

    The first warm-up run of each model is made here, one model at a time, so that a model that
    cannot run at all is named in the error; the rest of the warm-up is left to the loop.
    """
    runners: list[Runner] = []
    for label, session in sessions.items():
        try:
            runners.append(make_runner(session, feeds))
            if config.warmup:
                runners[-1]()
        except Exception as exc:
            if _is_ort_error(exc):
                raise ModelError(f"{label!r} failed to run {where}: {exc}") from exc
            raise
    try:
        return runners, measure_interleaved(runners, max(config.warmup - 1, 0), config.runs, clock=clock)
    except Exception as exc:
        if _is_ort_error(exc):
            raise ModelError(f"a model failed to run {where}: {exc}") from exc
        raise
