"""Recovery as `api.trim` runs it: one fine-tune after the trim, Network Trimming's iterations, or a
gradual schedule, chosen from the configuration. Imported only when one of them is asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from .. import stages
from ..analysis.groups import Analysis
from ..calibration.batching import Part, iter_batches
from ..calibration.feeds import Batch, DataSource, InputSpec
from ..calibration.labels import read_labels
from ..calibration.readers import open_data
from ..config import TrimConfig
from ..criteria.base import Criterion
from ..errors import ConfigError
from ..passes.apply_plan import masked_weights
from ..plan import PrunePlan
from .gradual import gradual
from .iterate import iterate
from .schedule import CubicSchedule
from .training import Training, fidelity_dict, fine_tune, holdout_fidelity

Counted = Callable[[Iterator[Batch], str], Iterator[Batch]]


@dataclass
class Recovered:
    model: onnx.ModelProto
    plan: PrunePlan
    analysis: Analysis  # the analysis `plan` refers to
    report: dict[str, Any] = field(default_factory=dict)  # the report's "recovery" block


def recover(config: TrimConfig, model: onnx.ModelProto, analysis: Analysis, criterion: Criterion, *,
            fingerprint: str, data: DataSource | None, inputs: list[InputSpec], labels: np.ndarray | None,
            counted: Counted, plan: PrunePlan | None, calibration: Callable[[], Iterator[Batch]]) -> Recovered:
    """Trim and recover. `plan` is the one-shot plan (given, or made by `api.trim`) for a single
    fine-tune; the iterative and gradual forms make their own. `calibration` yields fresh
    calibration batches (for the iterations' recalibration)."""
    training = _training(config, data, inputs, labels, counted)
    selection = config.selection(criterion)
    if config.schedule is not None:
        trimmed, final, record = gradual(model, analysis, criterion, selection, _schedule(config, training), training,
                                         fingerprint=fingerprint)
        return Recovered(trimmed, final, analysis, {"mode": "gradual", "schedule": _schedule_record(config),
                                                    "training": record.to_dict()})
    if config.iterations > 1:
        final_model, last, rounds, reason = iterate(model, criterion, selection, calibration, training,
                                                    iterations=config.iterations, max_drop=config.max_drop,
                                                    providers=config.providers,
                                                    nodes_to_exclude=config.nodes_to_exclude,
                                                    layernorm=config.layernorm)
        final_plan, final_analysis = last if last is not None else (PrunePlan(fingerprint, criterion.name, ()),
                                                                    analysis)
        return Recovered(final_model, final_plan, final_analysis,
                         {"mode": "iterative", "iterations": [r.to_dict() for r in rounds], "stopped": reason})
    assert plan is not None
    trimmed = stages.rewrite(model, plan, analysis, layernorm=config.layernorm)
    before = holdout_fidelity(model, trimmed, training)
    tuned, record = fine_tune(trimmed, model, training,
                              held=masked_weights(model, plan, analysis, layernorm=config.layernorm))
    after = holdout_fidelity(model, tuned, training)
    return Recovered(tuned, plan, analysis, {
        "mode": "finetune", "training": record.to_dict(),
        "fidelity_before": None if before is None else fidelity_dict(before),
        "fidelity_after": None if after is None else fidelity_dict(after)})


def _training(config: TrimConfig, data: DataSource | None, inputs: list[InputSpec], labels: np.ndarray | None,
              counted: Counted) -> Training:
    from ..torch_bridge import FinetuneConfig

    part: Part
    if config.train_data is not None:
        source = open_data(config.train_data, inputs)
        part, holdout_share = "all", 0.0
        train_labels = read_labels(config.train_labels) if config.train_labels is not None else None
    elif data is not None:
        source, part, holdout_share, train_labels = data, "calibration", config.holdout, labels
    else:
        raise ConfigError("fine-tuning needs training data: pass --data (its calibration part is trained on) "
                          "or --train-data")

    def batches() -> Iterator[Batch]:
        return iter_batches(source, inputs, batch_size=config.batch_size, max_samples=config.max_samples,
                            holdout=holdout_share, part=part)

    def holdout() -> Iterator[Batch]:
        assert data is not None
        return iter_batches(data, inputs, batch_size=config.batch_size, max_samples=config.max_samples,
                            holdout=config.holdout, part="holdout")

    tune = FinetuneConfig(epochs=config.epochs, lr=config.lr, device=config.device,  # type: ignore[arg-type]
                          seed=config.seed)
    return Training(tune, lambda: counted(batches(), "finetune"),
                    holdout if data is not None and config.holdout > 0 else None,
                    labels=train_labels, holdout_labels=labels, providers=config.providers)


def _schedule(config: TrimConfig, training: Training) -> CubicSchedule:
    assert config.sparsity_final is not None
    steps = config.epochs * sum(1 for _ in training.batches())
    end = config.prune_end if config.prune_end is not None else max(config.prune_start, int(0.75 * steps))
    every = config.prune_every if config.prune_every is not None else max(1, (end - config.prune_start) // 10)
    return CubicSchedule(config.sparsity_final, config.sparsity_initial, config.prune_start, end, every)


def _schedule_record(config: TrimConfig) -> dict[str, Any]:
    return {"kind": config.schedule, "sparsity_final": config.sparsity_final,
            "sparsity_initial": config.sparsity_initial, "prune_start": config.prune_start,
            "prune_end": config.prune_end, "prune_every": config.prune_every}
