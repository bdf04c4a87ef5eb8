"""Fine-tuning an ONNX model through the bridge: a library function, independent of the CLI.

`finetune(model, batches, config)` builds the module, checks it against onnxruntime on the first
batch (a mismatch stops before any training), trains it, and returns the ONNX model with the
trained weights written back by name, plus a log. Data comes as onnxtrim's calibration `Batch`
objects, so the holdout split is the one the rest of onnxtrim uses; the caller passes the
training part only.

Failure modes: a NaN or Inf loss raises `FinetuneError` at once, naming the step (nothing is
returned: weights that produced NaN are not a model to keep, and the caller still has the model
it passed in); Ctrl-C (and SIGTERM where a handler turns it into that exception, as the command line's does) raises KeyboardInterrupt between two torch operations (onnxruntime teacher
runs stop early too, through `onnxtrim.runtime.run`), and nothing is written anywhere.
Seeded CPU runs are reproducible: the seed fixes torch's generator and the batch order.
Started by torchrun as several processes, every rank trains on its share of each batch under
DistributedDataParallel and gets the same weights (`distributed` says how and why).
Shuffling holds one epoch's batches in memory (they are the factory's arrays, not copies);
`shuffle=False` streams them instead.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import onnx
import torch

from ..calibration.feeds import Batch
from ..errors import ConfigError, FinetuneError
from ..recovery.launch import launched
from . import distributed, losses
from .check import compare, module_outputs
from .masks import MaskSet
from .module import OnnxModule, to_torch
from .teacher import TeacherCache
from .write_back import write_back

log = logging.getLogger(__name__)

Batches = Callable[[], Iterable[Batch]] | Iterable[Batch]


@dataclass(frozen=True)
class FinetuneConfig:
    """Every option of a fine-tuning run (mirrors the future `--finetune` flags one to one)."""

    epochs: int = 1
    lr: float = 1e-4
    batch_size: int | None = None  # split larger incoming batches into these; None: as they come
    device: Literal["cpu", "cuda"] = "cpu"
    seed: int = 0
    loss: Literal["auto", "kl", "kl_probs", "mse", "cosine", "ce"] = "auto"
    output_losses: tuple[tuple[str, str], ...] = ()  # (output name, loss) overrides
    temperature: float = 2.0
    optimizer: Literal["adam", "sgd"] = "adam"
    momentum: float = 0.9  # SGD only
    weight_decay: float = 0.0
    shuffle: bool = True  # batch order per epoch, from the seed
    teacher_cache_bytes: int = 256 * 2**20
    verify_tolerance: float = 1e-3  # bridge check on the first batch: max |Δ| / max |onnxruntime output|
    data_parallel: bool = True  # under torchrun with several processes, train with DDP (`distributed`)

    def __post_init__(self) -> None:
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ConfigError(f"epochs must be a positive integer, got {self.epochs!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be a positive number, got {self.lr!r}")
        if self.batch_size is not None and (not isinstance(self.batch_size, int) or self.batch_size < 1):
            raise ConfigError(f"batch_size must be a positive integer or None, got {self.batch_size!r}")
        if self.device not in ("cpu", "cuda"):
            raise ConfigError(f"device must be cpu or cuda, got {self.device!r}")
        if self.optimizer not in ("adam", "sgd"):
            raise ConfigError(f"optimizer must be adam or sgd, got {self.optimizer!r}")
        for name, loss in (("loss", self.loss), *self.output_losses):
            if loss not in (*losses.LOSSES, "auto"):
                raise ConfigError(f"unknown loss {loss!r} for {name}: use one of {', '.join(losses.LOSSES)}")
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be positive, got {self.temperature!r}")


@dataclass(frozen=True)
class FinetuneLog:
    epoch_losses: tuple[float, ...]  # sample-weighted mean loss of each epoch
    steps: int
    seconds: float
    device: str
    losses: dict[str, str] = field(default_factory=dict)  # output name -> loss used
    bridge_max_rel: float = 0.0  # the bridge check before training
    world_size: int = 1  # processes that trained together (torchrun); 1: this one alone


def finetune(model: onnx.ModelProto, batches: Batches, config: FinetuneConfig, *,
             teacher: onnx.ModelProto | None = None, labels: np.ndarray | None = None,
             on_step: Callable[[int, OnnxModule], None] | None = None,
             progress: Callable[[int, int, float], None] | None = None,
             masks: MaskSet | None = None,
             on_start: Callable[[OnnxModule], None] | None = None,
             on_epoch: Callable[[int, OnnxModule], None] | None = None) -> tuple[onnx.ModelProto, FinetuneLog]:
    """Train `model`'s weights on `batches`; return the model with them written back, and the log.

    `teacher` (default: `model` as given) supplies distillation targets through onnxruntime;
    `labels[i]` is the class of global sample i (cross-entropy on classifier outputs);
    `on_step(step, module)` runs after every optimizer step (masks, schedules);
    `progress(epoch, step, running epoch loss)` after every step; `masks` holds weights at zero;
    `on_start(module)` runs before the first step (initial masks; a Parameter it sets to
    `requires_grad=False` is not trained), `on_epoch(epoch, module)` after each epoch (holdout fidelity).
    """
    started = time.perf_counter()
    parallel = _data_parallel(config)
    device = parallel.device if parallel is not None else _device(config.device)
    torch.manual_seed(config.seed)
    module = to_torch(model)
    first = next(iter(_epoch(batches, None)), None)
    if first is None:
        raise ConfigError("no training batches")
    bridge_rel = _verify(model, module, first, config.verify_tolerance)
    module.to(device).train()
    if masks is not None:
        masks.to(device)
    chosen, kinds = _losses(model, module, first, config, labels is not None)
    log.info("fine-tuning %d parameters on %s; losses %s", sum(p.numel() for p in module.parameters()), device,
             chosen)
    needs_teacher = any(loss != "ce" for loss in chosen.values())
    cache = TeacherCache(teacher if teacher is not None else model, list(chosen),
                         max_bytes=config.teacher_cache_bytes) if needs_teacher else None
    rng = np.random.default_rng(config.seed)
    epoch_losses: list[float] = []
    step = 0
    if on_start is not None:
        on_start(module)  # may freeze Parameters: DDP and the optimizer see only those left trainable
    net = parallel.wrap(module) if parallel is not None else module
    optimizer = _optimizer(module, config)
    try:
        for epoch in range(config.epochs):
            total, seen = 0.0, 0
            for batch in _epoch(batches, rng if config.shuffle else None):
                for mini in _split(batch, config.batch_size):
                    part, weight = parallel.share(mini) if parallel is not None else (mini, 1.0)
                    loss = _loss(net, module.output_names, part, cache, labels, chosen, kinds, config, device)
                    rows = len(part.indices) if weight > 0 else 0
                    loss_sum = float(loss.detach()) * rows
                    if parallel is not None:  # every rank sees the global batch's loss, and stops alike
                        loss_sum, rows = parallel.total(loss_sum, rows)
                    mean = loss_sum / max(rows, 1)
                    if not math.isfinite(mean):
                        raise FinetuneError(f"training diverged: loss is {mean} at step {step + 1} (epoch {epoch + 1}); "
                                            f"lower the learning rate (lr {config.lr:g})")
                    optimizer.zero_grad(set_to_none=True)
                    (loss * weight if parallel is not None else loss).backward()
                    if masks is not None:
                        masks.before_step()
                    optimizer.step()
                    if masks is not None:
                        masks.after_step()
                    step += 1
                    total, seen = total + loss_sum, seen + rows
                    if on_step is not None:
                        on_step(step, module)
                    if progress is not None:
                        progress(epoch + 1, step, total / seen)
            epoch_losses.append(total / max(seen, 1))
            log.info("epoch %d: loss %.6g", epoch + 1, epoch_losses[-1])
            _check_finite(module, first, step, epoch + 1, config)  # before anyone reads this epoch's weights
            if on_epoch is not None:
                on_epoch(epoch + 1, module)
    finally:
        if cache is not None:
            cache.close()
    trained = write_back(model, module.cpu())
    return trained, FinetuneLog(tuple(epoch_losses), step, time.perf_counter() - started, str(device), chosen,
                                bridge_rel, parallel.world_size if parallel is not None else 1)


def _check_finite(module: OnnxModule, batch: Batch, steps: int, epoch: int, config: FinetuneConfig) -> None:
    """An epoch's last update is checked by no later loss (none at all after the last epoch): weights can
    be finite yet large enough for the outputs to overflow. One forward pass over the first batch at the
    end of each epoch catches that, the same on every rank."""
    with torch.no_grad():
        outs = module(batch.feeds)
    for name, value in zip(module.output_names, outs):
        if isinstance(value, torch.Tensor) and value.dtype.is_floating_point and not bool(torch.isfinite(value).all()):
            raise FinetuneError(f"training diverged: output '{name}' holds NaN or Inf after step {steps} "
                                f"(end of epoch {epoch}); lower the learning rate (lr {config.lr:g})")


def _data_parallel(config: FinetuneConfig) -> distributed.DataParallel | None:
    """The process group to train in when torchrun started several of us (see `distributed`)."""
    launch = launched() if config.data_parallel else None
    return distributed.join(launch, config.device) if launch is not None and launch.world_size > 1 else None


def _device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda requested but torch sees no GPU (torch.cuda.is_available() is False)")
    return torch.device(name)


def _epoch(batches: Batches, rng: np.random.Generator | None) -> Iterator[Batch]:
    source = batches() if callable(batches) else batches
    if rng is None:
        yield from source
        return
    items = list(source)  # the order of one epoch's batches; their arrays are shared, not copied
    for i in rng.permutation(len(items)):
        yield items[int(i)]


def _split(batch: Batch, size: int | None) -> Iterator[Batch]:
    n = len(batch.indices)
    if size is None or n <= size:
        yield batch
        return
    for start in range(0, n, size):
        part = slice(start, start + size)
        yield Batch({k: v[part] for k, v in batch.feeds.items()}, batch.origin, batch.indices[part])


def _verify(model: onnx.ModelProto, module: OnnxModule, batch: Batch, tolerance: float) -> float:
    from .check import onnxruntime_outputs

    expected = onnxruntime_outputs(model, batch.feeds)
    got = module_outputs(module, batch.feeds)
    worst = 0.0
    for name, a, b in zip(module.output_names, got, expected):
        scale = float(np.abs(b).max()) if b.size and b.dtype.kind == "f" else 1.0
        agreement = compare([name], [a], [b], rtol=0.0, atol=tolerance * max(scale, 1e-12))
        worst = max(worst, agreement.max_rel)
    return worst


def _losses(model: onnx.ModelProto, module: OnnxModule, batch: Batch, config: FinetuneConfig,
            has_labels: bool) -> tuple[dict[str, str], dict[str, str]]:
    """Output name -> loss for every float output (integer outputs such as labels are not trained)."""
    overrides = dict(config.output_losses)
    with torch.no_grad():
        outs = module(batch.feeds)
    chosen: dict[str, str] = {}
    kinds: dict[str, str] = {}
    for name, value in zip(module.output_names, outs):
        if not (isinstance(value, torch.Tensor) and value.dtype.is_floating_point):
            continue
        kinds[name] = losses.output_kind(model, name)
        loss = overrides.get(name, config.loss)
        if loss == "auto":
            loss = losses.choose_loss(kinds[name], tuple(value.shape), has_labels)
        if loss == "ce" and not has_labels:
            raise ConfigError(f"loss ce for output '{name}' needs labels")
        chosen[name] = loss
    if not chosen:
        raise ConfigError("the model has no float output to train on")
    return chosen, kinds


def _optimizer(module: OnnxModule, config: FinetuneConfig) -> torch.optim.Optimizer:
    params = [p for p in module.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def _loss(net: Callable[..., Any], names: list[str], batch: Batch, cache: TeacherCache | None,
          labels: np.ndarray | None, chosen: dict[str, str], kinds: dict[str, str], config: FinetuneConfig,
          device: torch.device) -> torch.Tensor:
    """The loss of one batch; `net` is the module, or DDP around it (whose backward averages gradients)."""
    outs = dict(zip(names, net(batch.feeds)))
    targets: dict[str, Any] = {}
    if cache is not None:
        targets = {k: torch.from_numpy(np.asarray(v)).to(device) for k, v in cache.outputs(batch).items()}
    y = None
    if labels is not None:
        y = torch.from_numpy(np.asarray(labels)[batch.indices].astype(np.int64)).to(device)
    return losses.total_loss(chosen, outs, targets, y, config.temperature, kinds)
