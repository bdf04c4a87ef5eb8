"""Gradual pruning inside fine-tuning (Zhu & Gupta 2017), for single weights and for channels.

Every Δt steps the target sparsity of the cubic schedule is recomputed and masks grow to it;
what is masked stays masked. Two forms:

- weights (`--criterion magnitude`): each Conv/Gemm/MatMul weight loses its smallest |w| among
  those still unmasked; masks are held by the bridge's MaskSet (gradients and values zeroed
  after every step) and the trained model keeps the zeros in its dense weights;
- channels (`--criterion l1` or `l2`, scored on the weights being trained): the model is trained
  with a channel mask at every tensor carrying removable channels (the `mask_channels` pass,
  masks as frozen parameters), each update choosing the schedule's share of each group (or of
  all channels with a global ranking) through the policy, earlier removals forced; at the end
  the trained weights go back into the original graph and the existing rewrite removes the
  masked channels, which by masked equivalence computes what the masked model computed.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from .. import ir, stages
from ..analysis.groups import Analysis
from ..calibration.stats import ChannelStats
from ..criteria.base import Criterion, weighted_layers
from ..errors import ConfigError
from ..masks import WeightMask
from ..passes.mask_channels import mask_channels, mask_name
from ..passes.preamble import validated_keep
from ..plan import PrunePlan
from ..policy import Selection, make_plan
from .schedule import CubicSchedule
from .training import Training, TrainingRecord, fine_tune


def gradual(original: onnx.ModelProto, analysis: Analysis, criterion: Criterion, selection: Selection,
            schedule: CubicSchedule, training: Training, *,
            fingerprint: str) -> tuple[onnx.ModelProto, PrunePlan, TrainingRecord]:
    """The trimmed (or sparsified) trained model, the final plan, and the training record."""
    if criterion.name == "magnitude":
        return _weights(original, analysis, schedule, training, fingerprint)
    if criterion.needs_data or criterion.needs_gradients:
        raise ConfigError(f"--schedule scores channels on the weights being trained: use --criterion l1 or l2 "
                          f"(or magnitude for single weights), not {criterion.name}")
    return _channels(original, analysis, criterion, selection, schedule, training, fingerprint)


def _weights(original: onnx.ModelProto, analysis: Analysis, schedule: CubicSchedule, training: Training,
             fingerprint: str) -> tuple[onnx.ModelProto, PrunePlan, TrainingRecord]:
    from ..torch_bridge import MaskSet

    layers = {ir.constant_behind(node.inputs[1]).name: (label, node.inputs[1].name)
              for label, node, _ in weighted_layers(analysis)}
    masks = MaskSet()
    final: dict[str, np.ndarray] = {}

    def update(step: int, module: Any) -> None:
        if not schedule.updates(step):
            return
        for name in layers:
            param = module.parameter(name)
            masks.grow_by_magnitude(param, schedule.count(step, param.numel()))
            final[name] = masks.keep(param)

    trained, record = fine_tune(original, original, training, on_step=update, on_start=lambda m: update(0, m),
                                masks=masks)
    plan_masks = tuple(WeightMask(label, 1, read, final[name]) for name, (label, read) in layers.items())
    return trained, PrunePlan(fingerprint, "magnitude", (), masks=plan_masks,
                              notes=(f"gradual magnitude pruning to sparsity {schedule.final:g}",)), record


def _channels(original: onnx.ModelProto, analysis: Analysis, criterion: Criterion, selection: Selection,
              schedule: CubicSchedule, training: Training,
              fingerprint: str) -> tuple[onnx.ModelProto, PrunePlan, TrainingRecord]:
    from ..torch_bridge import write_back

    maskable = mask_channels(original, PrunePlan(fingerprint, criterion.name, ()), every_prunable=True)
    names = {init.name for init in maskable.graph.initializer}
    masked = {t: tr.elems for t, tr in analysis.tracked.items() if mask_name(t) in names}
    state: dict[str, Any] = {"plan": PrunePlan(fingerprint, criterion.name, ())}

    def update(step: int, module: Any) -> None:
        if not schedule.updates(step):
            return
        current = weights_into(original, write_back(maskable, module))
        now = stages.analyse(current)
        forced = {g.group: set(range(g.size)) - set(g.keep) for g in state["plan"].groups}
        share = replace(selection, threshold=None, fraction=schedule.sparsity(step), target_macs=None,
                        target_params=None)
        plan = make_plan(now, criterion, criterion.scores(now, ChannelStats(fingerprint)), share,
                         fingerprint=fingerprint, forced=forced)
        removed = analysis.removed_roots(validated_keep(plan, analysis))
        for tensor, elems in masked.items():
            module.assign(mask_name(tensor), ~removed[analysis.table.roots(elems)], trainable=False)
        state["plan"] = plan

    def start(module: Any) -> None:
        for tensor in masked:
            module.parameter(mask_name(tensor)).requires_grad_(False)
        update(0, module)

    trained, record = fine_tune(maskable, original, training, on_step=update, on_start=start)
    final = weights_into(original, trained)
    plan = state["plan"]
    return stages.rewrite(final, plan, analysis), plan, record


def weights_into(model: onnx.ModelProto, source: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with every initializer that `source` also has replaced by `source`'s values."""
    values = {t.name: t for t in source.graph.initializer}
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for init in out.graph.initializer:
        if init.name in values:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(values[init.name]), init.name))
    return out
