"""Filter magnitude: the L1 or L2 norm of the weights that produce each channel. Data-free.

The classic baseline (Li et al. 2017 use L1; Molchanov et al. 2017 compare against both): a
filter with small weights writes small values. For a group, a class's norm is taken over the
weights of every coupled producer together (the concatenation of their slices), so a residual
channel is as large as all the convolutions that write it. Biases and norms are not counted,
as in the reference codes.
"""

from __future__ import annotations

import numpy as np

from .. import ir
from ..analysis.groups import Analysis
from ..calibration.stats import ChannelStats
from .base import Criterion, Scores


class FilterNorm(Criterion):
    removes = "low"
    needs_data = False
    paper = "filter magnitude (Li et al. 2017), baseline of Molchanov et al. 2017"

    def __init__(self, order: int) -> None:
        if order not in (1, 2):
            raise ValueError(f"filter norms are L1 or L2, not L{order}")
        self.order = order
        self.name = f"l{order}"
        self.unit = f"L{order}"

    def scores(self, analysis: Analysis, stats: ChannelStats) -> Scores:
        values: dict[int, np.ndarray] = {}
        nodes = analysis.graph.nodes
        labels = {ir.node_label(n, i): n for i, n in enumerate(nodes)}
        for group in analysis.groups:
            total = np.zeros(group.size)
            for member in analysis.members(group.id, roles=("producer",)):
                weight = ir.const_value(labels[member.node].inputs[member.input_index])
                if weight is None:
                    continue
                w = np.moveaxis(np.asarray(weight, dtype=np.float64), member.axis, 0).reshape(weight.shape[member.axis], -1)
                per_position = np.abs(w).sum(axis=1) if self.order == 1 else (w * w).sum(axis=1)
                here = member.classes >= 0
                np.add.at(total, member.classes[here], per_position[here])
            values[group.id] = total if self.order == 1 else np.sqrt(total)
        return Scores(values)
