"""First-order Taylor expansion (Molchanov et al. 2017, "Pruning CNNs for resource-efficient inference").

The change in loss from zeroing a feature map is approximated by its first-order term: per
example, |mean over the map's positions of a · ∂C/∂a|, averaged over examples (the paper's
feature-map form, not the weight × gradient form of their 2019 paper that Torch-Pruning and NNI
implement). Gradients come from PyTorch through the ONNX → torch bridge (see
`torch_bridge.gradients` for the loss used, and where the absolute value goes). Scores are
normalised per layer by their L2 norm by default, as in the paper, so that a global ranking
compares layers fairly; `--flops-reg λ` adds the paper's FLOPs regularisation. A group's class
scores the sum of its terms at every observed tensor of the group.

Measured at the activation after each producer (where APoZ is), through pooling and reshapes:
zeroing a channel there is what removing it does downstream.
"""

from __future__ import annotations

import numpy as np

from ..analysis.groups import Analysis
from ..calibration.requests import StatRequest
from ..calibration.stats import ChannelStats
from .apoz import activation_points
from .base import Criterion, Scores, ratios_per_group


class Taylor(Criterion):
    name = "taylor"
    unit = "Taylor"
    removes = "low"
    default_threshold = None
    default_normalize = "l2"
    needs_gradients = True
    paper = "Molchanov et al. 2017, Pruning CNNs for resource-efficient inference"

    def requests(self, analysis: Analysis) -> list[StatRequest]:
        return [StatRequest(p.tensor, p.axis, "taylor") for p, _ in activation_points(analysis)]

    def scores(self, analysis: Analysis, stats: ChannelStats) -> Scores:
        points = [p for p, _ in activation_points(analysis)]
        ratios = ratios_per_group(analysis, stats, points, "taylor", per="sample")
        values = {}
        for gid, per_point in ratios.items():
            stacked = np.vstack(per_point)
            measured = np.isfinite(stacked).any(axis=0)
            values[gid] = np.where(measured, np.nansum(stacked, axis=0), np.nan)
        return Scores(values)
