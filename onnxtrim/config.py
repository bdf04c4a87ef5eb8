"""One typed, frozen configuration that mirrors the command line flags one to one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .criteria import make_criterion
from .criteria.base import Criterion
from .errors import ConfigError
from .policy import Selection
from .targets import AUTO, Rounding, check_round_to, resolve


@dataclass(frozen=True)
class TrimConfig:
    model: str | Path
    # A directory of .npy/.npz/test_data_set_* files, "reader.py:make_reader", or (Python
    # only) a CalibrationDataReader, a factory of one, or an iterable of feed dicts.
    data: Any = None
    criterion: str = "apoz"  # see onnxtrim.criteria.CRITERIA
    threshold: float | None = None  # remove channels past this score, in the criterion's unit and direction
    apoz: float | None = None  # shorthand for criterion="apoz", threshold=apoz
    fraction: float | None = None  # or remove this share of every group (of all channels with global_ranking)
    global_ranking: bool = False
    target_macs: float | None = None  # or remove the least that keeps at most this share of the MACs
    target_params: float | None = None  # ... or of the parameters
    normalize: str | None = None  # per-group score normalisation before ranking: "none", "l2"; None: the criterion's
    flops_reg: float = 0.0
    min_keep: int = 1
    max_fraction_per_group: float | None = None
    round_to: int | str = AUTO  # kept counts rounded up to multiples of this; "auto": the target's channel block
    target_cpu: str | None = None  # "avx2" or "avx512": the CPU "auto" rounds for (default: this machine's)
    nodes_to_exclude: tuple[str, ...] = ()
    layernorm: Literal["exact", "plain"] = "exact"  # LayerNorm over removed channels: statistics over the
    # original width (exact: removing zero channels changes nothing) or over the kept ones (plain)
    sparsity: float | None = None  # criterion "magnitude": share of every layer's weights set to zero
    alpha_conv: float = 0.9  # criterion "relief": share of a neuron's activity its kept connections carry
    alpha_fc: float = 0.95
    shard: tuple[int, int] | None = None  # (i, n): calibrate batches i, i+n, i+2n, ... only
    # Recovery through PyTorch (the `torch` extra): fine-tune after trimming, iterate, or prune gradually.
    finetune: bool = False
    train_data: Any = None  # default: the calibration part of `data` (the holdout is never trained on)
    train_labels: str | Path | None = None  # labels of `train_data`'s samples
    epochs: int = 1
    lr: float = 1e-4
    device: str = "cpu"
    seed: int = 0
    iterations: int = 1  # Network Trimming: trim, fine-tune, recalibrate ... up to this many rounds
    schedule: str | None = None  # "cubic": Zhu & Gupta's gradual pruning inside fine-tuning
    sparsity_final: float | None = None
    sparsity_initial: float = 0.0
    prune_every: int | None = None  # steps between mask updates (default: a tenth of the pruning span)
    prune_start: int = 0
    prune_end: int | None = None  # default: three quarters of the training steps
    max_samples: int | None = None
    batch_size: int = 32
    holdout: float = 0.2
    labels: str | Path | None = None
    verify: bool = True
    check: bool = False
    tolerance: float = 1e-4  # --check: |trimmed - original| <= tolerance + rtol * |original| (numpy's allclose)
    rtol: float = 0.0
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
    plot: str | Path | None = None  # a directory for PNG figures (the `plot` extra: matplotlib)
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.apoz is not None:
            if self.criterion != "apoz":
                raise ConfigError(f"--apoz is APoZ's threshold; with --criterion {self.criterion} use --threshold")
            if self.threshold is not None:
                raise ConfigError("--apoz T is shorthand for --threshold T: give one")
            if not 0.0 <= self.apoz <= 1.0:
                raise ConfigError(f"--apoz must be within [0, 1], got {self.apoz}")
        ways = [flag for flag, value in (("--apoz/--threshold", self.threshold if self.apoz is None else self.apoz),
                                         ("--fraction", self.fraction), ("--target-macs", self.target_macs),
                                         ("--target-params", self.target_params)) if value is not None]
        if len(ways) > 1:
            raise ConfigError(f"{' and '.join(ways)} choose channels in different ways: give one")
        if self.fraction is not None and not 0.0 <= self.fraction < 1.0:
            raise ConfigError(f"--fraction must be within [0, 1), got {self.fraction}")
        if self.global_ranking and self.fraction is None and self.target_macs is None and self.target_params is None:
            raise ConfigError("--global ranks channels across groups for --fraction, --target-macs or "
                              "--target-params; a threshold is global already")
        if self.shard is not None and not (self.shard[1] >= 1 and 0 <= self.shard[0] < self.shard[1]):
            raise ConfigError(f"--shard I/N needs 0 <= I < N, got {self.shard[0]}/{self.shard[1]}")
        if self.shard is not None and self.save_stats is None:
            raise ConfigError("--shard calibrates part of the data: pass --save-stats to keep it for "
                              "'onnxtrim stats merge'")
        if self.batch_size < 1:
            raise ConfigError("--batch-size must be at least 1")
        if self.max_samples is not None and self.max_samples < 1:
            raise ConfigError("--max-samples must be at least 1")
        if not 0.0 <= self.holdout < 1.0:
            raise ConfigError(f"--holdout must be within [0, 1), got {self.holdout}")
        if self.tolerance < 0 or self.rtol < 0:
            raise ConfigError("--tolerance and --rtol must not be negative")
        check_round_to(self.round_to, self.target_cpu)
        if self.layernorm not in ("exact", "plain"):
            raise ConfigError(f"--layernorm must be exact or plain, got {self.layernorm!r}")
        self._check_recovery()
        criterion = self.make_criterion()
        self.selection(criterion)  # validates the selection options together
        if self.data is None and self.load_stats is None and self.plan is None and criterion.needs_data:
            raise ConfigError(f"criterion {criterion.name} measures activations: pass --data DIR "
                              "(or --load-stats / --plan, or a data-free criterion such as --criterion l1)")
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
        if self.plan is not None and ways:
            raise ConfigError(f"--plan fixes the channels to remove: drop {', '.join(ways)}")

    @property
    def rounding(self) -> Rounding:
        """`round_to` resolved: "auto" becomes the channel block of the target providers."""
        return resolve(self.round_to, self.providers, self.target_cpu)

    @property
    def benchmarks(self) -> bool:
        return self.bench or self.min_speedup is not None or self.max_latency_ms is not None

    @property
    def recovering(self) -> bool:
        """Whether trimming is followed (or accompanied) by training through PyTorch."""
        return self.finetune or self.iterations > 1 or self.schedule is not None

    def make_criterion(self) -> Criterion:
        sparsity = self.sparsity if self.sparsity is not None else self.sparsity_final
        return make_criterion(self.criterion, sparsity=sparsity, alpha_conv=self.alpha_conv, alpha_fc=self.alpha_fc)

    def _check_recovery(self) -> None:
        if self.epochs < 1 or self.iterations < 1:
            raise ConfigError("--epochs and --iterations must be at least 1")
        if not self.lr > 0:
            raise ConfigError(f"--lr must be positive, got {self.lr}")
        if self.device not in ("cpu", "cuda"):
            raise ConfigError(f"--device must be cpu or cuda, got {self.device!r}")
        if self.schedule not in (None, "cubic"):
            raise ConfigError(f"--schedule takes 'cubic', got {self.schedule!r}")
        if self.schedule is not None and self.sparsity_final is None:
            raise ConfigError("--schedule cubic needs --sparsity-final S")
        if self.schedule is not None and self.iterations > 1:
            raise ConfigError("--schedule prunes inside one fine-tuning run: drop --iterations")
        if self.schedule is not None and self.layernorm == "plain":
            raise ConfigError("--schedule trains with the removed channels masked, which is --layernorm exact: "
                              "drop --layernorm plain")
        if self.recovering and (self.dry_run or self.shard is not None):
            raise ConfigError("fine-tuning writes a trained model: drop --dry-run/--shard")
        if self.recovering and self.plan is not None and (self.iterations > 1 or self.schedule):
            raise ConfigError("--plan fixes the channels: use it with --finetune alone")
        if self.recovering and self.data is None and self.train_data is None:
            raise ConfigError("fine-tuning needs training data: pass --data or --train-data")
        if self.train_labels is not None and self.train_data is None:
            raise ConfigError("--train-labels label --train-data: pass both")

    def selection(self, criterion: Criterion) -> Selection:
        """The policy's options; the threshold defaults to the criterion's own (APoZ: 1.0)."""
        threshold = self.apoz if self.apoz is not None else self.threshold
        if threshold is None and self.fraction is None and self.target_macs is None and self.target_params is None:
            threshold = criterion.default_threshold
            if threshold is None and self.plan is None and self.schedule is None:
                raise ConfigError(f"criterion {criterion.name} has no natural threshold: choose channels with "
                                  "--threshold, --fraction, --target-macs or --target-params")
        if threshold is None and (self.plan is not None or self.schedule is not None):
            threshold = 0.0  # unused: the plan, or the schedule's sparsity, decides
        return Selection(threshold=threshold, fraction=self.fraction, target_macs=self.target_macs,
                         target_params=self.target_params, global_ranking=self.global_ranking,
                         normalize=self.normalize or criterion.default_normalize,  # type: ignore[arg-type]
                         flops_reg=self.flops_reg, min_keep=self.min_keep,
                         max_fraction_per_group=self.max_fraction_per_group,
                         round_to=self.rounding.multiple)
