"""The policy on real architectures: budgets met within one round-to step, and no group cut without a signal.

Exported torchvision models (random seeded weights, as in test_zoo_trim.py), calibrated on their
export example. Budgets are checked against the cost of the model the rewrite really builds.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from onnxtrim import stages
from onnxtrim.analysis.cost import CostModel
from onnxtrim.calibration.readers import Batch
from onnxtrim.criteria import make_criterion
from onnxtrim.metrics import cost
from onnxtrim.policy import Selection

CASES = [("resnet18", "torchscript"), ("mobilenet_v2", "dynamo"), ("densenet121", "torchscript")]


def calibrated(zoo_export, zoo_reference, name, exporter, criterion_name):
    model = onnx.load(zoo_export(name, exporter))
    example, _ = zoo_reference(name)
    analysis = stages.analyse(model)
    criterion = make_criterion(criterion_name)
    batches = [Batch({model.graph.input[0].name: example}, "example", np.arange(len(example)))]
    stats = stages.measure(model, analysis, criterion.requests(analysis), batches)
    return model, analysis, criterion, stats


@pytest.mark.parametrize(("name", "exporter"), CASES, ids=[f"{n}-{e}" for n, e in CASES])
@pytest.mark.parametrize("global_ranking", [False, True], ids=["per-group", "global"])
def test_macs_budget_is_met_within_one_round_to_step(name, exporter, global_ranking, zoo_export, zoo_reference):
    model, analysis, criterion, stats = calibrated(zoo_export, zoo_reference, name, exporter, "mean-activation")
    costs = CostModel(analysis)
    base = cost(model).macs
    round_to, target = 8, 0.5
    plan = stages.decide(analysis, criterion, stats,
                         Selection(target_macs=target, global_ranking=global_ranking, round_to=round_to,
                                   normalize="rms" if global_ranking else "none",
                                   max_fraction_per_group=0.8 if global_ranking else None),
                         fingerprint=stages.structure_fingerprint(model), cost_model=costs)
    ratio = cost(stages.rewrite(model, plan, analysis)).macs / base
    assert ratio <= target and not plan.notes
    if global_ranking:
        # Within one step: no more below the target than one round-to step of the costliest group.
        step = max(round_to * float(costs.class_costs(g.id)[1].max()) for g in analysis.groups if len(g.prunable))
        assert ratio >= target - step / base, (ratio, step / base)
    else:
        # One share for every group: groups of equal size step together, so the step is coarser.
        assert ratio >= target - 0.1, ratio
    assert stages.projected_cost(analysis, plan, costs).macs / base == ratio


def test_apoz_leaves_linear_bottlenecks_alone_even_by_fraction(zoo_export, zoo_reference):
    """mobilenet_v2's bottleneck outputs have no ReLU6 after them: APoZ has nothing to say there."""
    model, analysis, criterion, stats = calibrated(zoo_export, zoo_reference, "mobilenet_v2", "torchscript", "apoz")
    plan = stages.decide(analysis, criterion, stats, Selection(fraction=0.3),
                         fingerprint=stages.structure_fingerprint(model))
    no_signal = {a.group for a in plan.left_alone if "ReLU" in a.reason}
    cut = {g.group for g in plan.groups}
    assert no_signal and cut and not no_signal & cut
    prunable = {g.id for g in analysis.groups if len(g.prunable)}
    assert prunable == no_signal | cut  # every prunable group is either cut by its APoZ or left with the reason
