"""One fine-tuning run of a trimmed model, as recovery needs it: distilled from the original (or
trained on labels), with the holdout fidelity against the original after every epoch.

The holdout is never trained on: training batches come from the calibration part of the data
(or from separate training data), and fidelity is measured on the holdout part only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from .. import stages
from ..calibration.feeds import Batch
from ..verify import Fidelity

BatchFactory = Callable[[], Iterable[Batch]]


@dataclass(frozen=True)
class Training:
    """What every recovery loop passes to each fine-tuning run."""

    config: Any  # torch_bridge.FinetuneConfig (typed loosely: this module must not import torch)
    batches: BatchFactory  # training data, a fresh iterable per epoch
    holdout: BatchFactory | None  # verification data, never trained on
    labels: np.ndarray | None = None  # class of each training sample (cross-entropy), else distillation
    holdout_labels: np.ndarray | None = None
    providers: tuple[str, ...] = ("cpu",)
    on_epoch: Callable[[dict[str, Any]], None] | None = None  # progress: one record per epoch
    on_step: Callable[[int], None] | None = None  # progress: after every optimizer step (its number)


@dataclass
class TrainingRecord:
    epochs: list[dict[str, Any]] = field(default_factory=list)  # epoch, loss, holdout fidelity
    steps: int = 0
    seconds: float = 0.0
    device: str = "cpu"
    losses: dict[str, str] = field(default_factory=dict)
    bridge_max_rel: float = 0.0
    world_size: int = 1  # processes training together under torchrun

    def to_dict(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "steps": self.steps, "seconds": round(self.seconds, 3), "device": self.device,
                "losses": self.losses, "bridge_max_rel": self.bridge_max_rel, "world_size": self.world_size}


def fine_tune(model: onnx.ModelProto, original: onnx.ModelProto, training: Training, *,
              on_step: Callable[[int, Any], None] | None = None, on_start: Callable[[Any], None] | None = None,
              masks: Any = None, held: dict[str, np.ndarray] | None = None) -> tuple[onnx.ModelProto, TrainingRecord]:
    """Train `model` towards `original` (or the labels); `on_step(step, module)` and `on_start(module)`
    are the schedule's hooks, `masks` (a torch_bridge.MaskSet) holds weights at zero, and so does
    `held` (initializer name → keep, `passes.apply_plan.masked_weights`): a plan's weight masks,
    which training would otherwise revive."""
    from ..torch_bridge import MaskSet, finetune, write_back

    record = TrainingRecord()
    if held:
        import torch

        masks = MaskSet() if masks is None else masks
        then = on_start

        def hold(module: Any) -> None:
            for name, keep in held.items():
                masks.set(module.parameter(name), torch.from_numpy(np.ascontiguousarray(keep)))
            if then is not None:
                then(module)

        on_start = hold

    def after_epoch(epoch: int, module: Any) -> None:
        entry: dict[str, Any] = {"epoch": epoch}
        if training.holdout is not None:
            current = write_back(model, module)
            fidelity = holdout_fidelity(original, current, training)
            entry["fidelity"] = None if fidelity is None else fidelity_dict(fidelity)
        record.epochs.append(entry)

    def step(number: int, module: Any) -> None:
        if on_step is not None:
            on_step(number, module)
        if training.on_step is not None:
            training.on_step(number)

    def epoch_done(epoch: int, module: Any) -> None:
        after_epoch(epoch, module)
        if training.on_epoch is not None:
            training.on_epoch(record.epochs[-1])

    trained, log = finetune(model, training.batches, training.config, teacher=original, labels=training.labels,
                            on_step=step, on_start=on_start, masks=masks, on_epoch=epoch_done)
    for entry, loss in zip(record.epochs, log.epoch_losses):
        entry["loss"] = loss
    record.steps, record.seconds, record.device = log.steps, log.seconds, log.device
    record.losses, record.bridge_max_rel, record.world_size = dict(log.losses), log.bridge_max_rel, log.world_size
    return trained, record


def holdout_fidelity(original: onnx.ModelProto, model: onnx.ModelProto, training: Training) -> Fidelity | None:
    if training.holdout is None:
        return None
    return stages.verify(original, model, training.holdout(), data="holdout", providers=training.providers,
                         labels=training.holdout_labels)


def fidelity_dict(fidelity: Fidelity) -> dict[str, Any]:
    return {"samples": fidelity.samples, "max_abs_diff": fidelity.max_abs_diff, "mean_cosine": fidelity.mean_cosine,
            "top1_agreement": fidelity.top1_agreement, "accuracy_original": fidelity.accuracy_original,
            "accuracy_trimmed": fidelity.accuracy_trimmed}
