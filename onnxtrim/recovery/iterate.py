"""Network Trimming's iterations (Hu et al. 2016): trim, fine-tune, recalibrate, trim again.

Each round measures the model the previous round left, removes what crosses the threshold (or
the chosen share), and retrains the survivors towards the original. The loop stops when nothing
more is removed, after `iterations` rounds, or when a round would lose more than `max_drop` on
the holdout (against the original); the last good model is kept. A round whose training
diverges (FinetuneError: NaN or Inf loss) is undone the same way and stops the loop; in the
first round there is no good model to keep but the input, so the error goes to the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import onnx

from .. import stages
from ..analysis.groups import Analysis
from ..criteria.base import Criterion
from ..errors import FinetuneError
from ..gates import quality_drop
from ..metrics import cost
from ..passes.apply_plan import masked_weights
from ..passes.layer_norm import LayerNormMode
from ..plan import PrunePlan, structure_fingerprint
from ..policy import Selection
from .training import BatchFactory, Training, fidelity_dict, fine_tune, holdout_fidelity


@dataclass
class Round:
    number: int
    plan: PrunePlan
    params: int
    macs: int
    fidelity: dict[str, Any] | None
    training: dict[str, Any]
    kept: bool  # False: the round broke max_drop and was undone

    def to_dict(self) -> dict[str, Any]:
        return {"iteration": self.number, "removed_channels": self.plan.removed, "params": self.params,
                "macs": self.macs, "fidelity": self.fidelity, "training": self.training, "kept": self.kept}


def iterate(original: onnx.ModelProto, criterion: Criterion, selection: Selection, calibration: BatchFactory,
            training: Training, *, iterations: int, max_drop: float | None = None, providers: Sequence[str] = ("cpu",),
            nodes_to_exclude: Sequence[str] = (), layernorm: LayerNormMode = "exact",
            on_round: Callable[[Round, onnx.ModelProto], None] | None = None
            ) -> tuple[onnx.ModelProto, tuple[PrunePlan, Analysis] | None, list[Round], str]:
    """The final model, the plan of the last kept round with the analysis it refers to (that round's
    input), every round, and why the loop stopped. `on_round(round, model)` sees each round's trained
    model as it is made (to measure it: rounds are not kept, so memory holds two models at most)."""
    model: onnx.ModelProto = original
    last: tuple[PrunePlan, Analysis] | None = None
    rounds: list[Round] = []
    reason = f"reached {iterations} iterations"
    for number in range(1, iterations + 1):
        analysis = stages.analyse(model)
        fingerprint = structure_fingerprint(model)
        stats = stages.measure(model, analysis, criterion.requests(analysis), calibration, providers=providers,
                               fingerprint=fingerprint, labels=training.labels,
                               teacher=None if model is original else original)
        plan = stages.decide(analysis, criterion, stats, selection, fingerprint=fingerprint,
                             nodes_to_exclude=nodes_to_exclude)
        if plan.removed == 0 and not plan.masks:
            reason = f"nothing more crosses the threshold after {number - 1} iterations"
            break
        try:
            tuned, record = fine_tune(stages.rewrite(model, plan, analysis, layernorm=layernorm), original, training,
                                      held=masked_weights(model, plan, analysis, layernorm=layernorm))
        except FinetuneError as error:
            if last is None:
                raise
            reason = f"iteration {number} diverged ({error}): kept iteration {number - 1}"
            break
        fidelity = holdout_fidelity(original, tuned, training)
        drop, measure = quality_drop(fidelity)
        after = cost(tuned)
        kept = max_drop is None or drop is None or drop <= max_drop
        rounds.append(Round(number, plan, after.params, after.macs, None if fidelity is None else fidelity_dict(fidelity),
                            record.to_dict(), kept))
        if on_round is not None:
            on_round(rounds[-1], tuned)
        if not kept:
            reason = (f"iteration {number} would lose {drop:.4g} ({measure}), above max_drop {max_drop:g}: "
                      f"kept iteration {number - 1}")
            break
        model, last = tuned, (plan, analysis)
    return model, last, rounds, reason
