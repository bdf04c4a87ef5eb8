"""APoZ, the Average Percentage of Zeros (Hu et al. 2016, "Network Trimming").

APoZ_c = (1/(N·M)) Σ_n Σ_m [a_c,n,m = 0], the share of a channel's activations that are exactly
zero at the output of the ReLU after its producer, over the calibration data. A channel zero on
most of the data contributes little; one zero on all of it contributes nothing, and removing it
is exact. APoZ is defined at the ReLU, so from each tensor a consumer reads, the criterion walks
back through ops that keep an all-zero channel all zero (pooling, reshapes) to the activation.

For a group (channels coupled across layers) a class counts as zero only as far as it is zero
at *every* observed member tensor: its APoZ is the minimum over them, so a channel that is dead
after one branch but alive after another is kept. A group with no ReLU-family activation
anywhere (a linear bottleneck, a GELU MLP) has no APoZ signal: it is left alone with that reason
rather than cut by an all-zero score.
"""

from __future__ import annotations

import numpy as np

from .. import ir
from ..analysis.groups import Analysis, Observation, is_zero_producing
from ..calibration.requests import StatRequest
from ..calibration.stats import ChannelStats
from .base import Criterion, Scores, ratios_per_group

# Ops through which an all-zero channel stays all zero: the zero statistics of an activation
# observed before them are the statistics of what the consumer reads.
ZERO_PRESERVING_OPS = frozenset(
    {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Flatten", "Reshape", "Transpose",
     "Squeeze", "Unsqueeze", "Identity", "Dropout", "Resize", "Upsample", "Relu", "LeakyRelu"}
)


class APoZ(Criterion):
    name = "apoz"
    unit = "APoZ"
    removes = "high"
    default_threshold = 1.0  # only never-active channels: lossless on the calibration data
    lossless_threshold = 1.0  # removes only channels exactly silent on the data
    paper = "Hu et al. 2016, Network Trimming"

    def requests(self, analysis: Analysis) -> list[StatRequest]:
        return [StatRequest(p.tensor, p.axis, "zeros") for p, _ in activation_points(analysis)]

    def scores(self, analysis: Analysis, stats: ChannelStats) -> Scores:
        points = activation_points(analysis)
        values = {gid: np.fmin.reduce(np.vstack(ratios), axis=0)
                  for gid, ratios in ratios_per_group(analysis, stats, [p for p, _ in points], "zeros").items()}
        signalled = _groups_of(analysis, [p for p, at_activation in points if at_activation])
        no_signal = {g.id: "APoZ needs a ReLU-family activation after these channels and there is none "
                           "(try --criterion mean-activation or l1)"
                     for g in analysis.groups if g.id not in signalled and len(g.prunable)}
        return Scores({gid: v for gid, v in values.items() if gid in signalled}, no_signal)


def activation_points(analysis: Analysis) -> list[tuple[Observation, bool]]:
    """Where to count zeros for each consumed tensor, and whether that point is a ReLU-family output.

    From the tensor a consumer reads, walk back through zero-preserving ops to the activation
    that produces the zeros; where there is none, count at what the consumer reads (exact
    zeros there are still exact zeros, but they are no APoZ signal on their own).
    """
    tensors = analysis.graph.tensors()
    chosen: dict[str, tuple[Observation, bool]] = {}
    for read in analysis.consumed:
        point, at_activation = read, False
        current = tensors[read.tensor]
        while True:
            node = ir.producer(current)
            if node is None:
                break
            if is_zero_producing(node):
                point, at_activation = analysis.observation(current.name), True
                break
            if node.op not in ZERO_PRESERVING_OPS or not node.inputs or node.inputs[0].name not in analysis.tracked:
                break
            current = node.inputs[0]
        chosen.setdefault(point.tensor, (point, at_activation))
    return list(chosen.values())


def _groups_of(analysis: Analysis, points: list[Observation]) -> set[int]:
    groups: set[int] = set()
    for point in points:
        group_of, _ = analysis.classes_of(point.elems)
        groups.update(np.unique(group_of[group_of >= 0]).tolist())
    return groups
