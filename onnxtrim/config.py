"""One typed, frozen configuration that mirrors the command line flags one to one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError


@dataclass(frozen=True)
class TrimConfig:
    model: str | Path
    # A directory of .npy/.npz/test_data_set_* files, "reader.py:make_reader", or (Python
    # only) a CalibrationDataReader, a factory of one, or an iterable of feed dicts.
    data: Any = None
    apoz: float | None = None  # remove channels with APoZ >= this; 1.0 (only never-active ones) by default
    fraction: float | None = None  # or remove this share of every group, highest APoZ first
    min_keep: int = 1
    round_to: int = 1
    nodes_to_exclude: tuple[str, ...] = ()
    max_samples: int | None = None
    batch_size: int = 32
    holdout: float = 0.2
    labels: str | Path | None = None
    verify: bool = True
    check: bool = False
    tolerance: float = 1e-4
    providers: tuple[str, ...] = ("cpu",)
    save_stats: str | Path | None = None
    load_stats: str | Path | None = None
    plan: str | Path | None = None  # apply this saved plan instead of choosing channels
    dry_run: bool = False  # choose channels and write the plan, but no model
    bench: bool = False  # time original and trimmed models on `providers`
    bench_batch: tuple[int, ...] = (1,)
    bench_runs: int = 50
    bench_threads: int = 1
    max_drop: float | None = None  # gates for deployment pipelines
    min_speedup: float | None = None
    max_latency_ms: float | None = None
    output: str | Path | None = None
    report: str | Path | None = None
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.apoz is not None and self.fraction is not None:
            raise ConfigError("--apoz and --fraction choose channels in two different ways: give one")
        if self.apoz is not None and not 0.0 <= self.apoz <= 1.0:
            raise ConfigError(f"--apoz must be within [0, 1], got {self.apoz}")
        if self.fraction is not None and not 0.0 <= self.fraction < 1.0:
            raise ConfigError(f"--fraction must be within [0, 1), got {self.fraction}")
        if self.min_keep < 1:
            raise ConfigError("--min-keep must be at least 1")
        if self.round_to < 1:
            raise ConfigError("--round-to must be at least 1")
        if self.batch_size < 1:
            raise ConfigError("--batch-size must be at least 1")
        if self.max_samples is not None and self.max_samples < 1:
            raise ConfigError("--max-samples must be at least 1")
        if not 0.0 <= self.holdout < 1.0:
            raise ConfigError(f"--holdout must be within [0, 1), got {self.holdout}")
        if self.tolerance < 0:
            raise ConfigError("--tolerance must not be negative")
        if self.data is None and self.load_stats is None and self.plan is None:
            raise ConfigError("calibration data is required: pass --data DIR (or --load-stats / --plan)")
        if self.check and self.data is None:
            raise ConfigError("--check compares outputs on data: pass --data")
        if self.bench_runs < 1 or self.bench_threads < 0 or not self.bench_batch or min(self.bench_batch) < 1:
            raise ConfigError("--bench-runs and --bench-batch must be positive")
        for flag, value in (("--max-drop", self.max_drop), ("--min-speedup", self.min_speedup),
                            ("--max-latency-ms", self.max_latency_ms)):
            if value is not None and value < 0:
                raise ConfigError(f"{flag} must not be negative")
        if self.max_drop is not None and self.data is None:
            raise ConfigError("--max-drop compares outputs on data: pass --data")
        if self.plan is not None and (self.apoz is not None or self.fraction is not None):
            raise ConfigError("--plan fixes the channels to remove: drop --apoz/--fraction")

    @property
    def benchmarks(self) -> bool:
        return self.bench or self.min_speedup is not None or self.max_latency_ms is not None

    @property
    def threshold(self) -> float | None:
        if self.fraction is not None:
            return None
        return 1.0 if self.apoz is None else self.apoz
