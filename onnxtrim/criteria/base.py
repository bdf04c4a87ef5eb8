"""The criterion interface: what a criterion needs measured, and its score for every channel.

A criterion declares its needs as statistic requests (or none: data-free criteria read the
weights), turns the measured sums into one score per class of every channel group, and says
which groups it has nothing to say about (APoZ without a ReLU, for instance) so that the
policy leaves them alone with that reason instead of cutting them by index. Criteria that
decide single weights rather than channels (magnitude, Relief) also return weight masks.
The policy, not the criterion, turns scores into a plan.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import onnx_graphsurgeon as gs

from .. import ir
from ..analysis.groups import Analysis, Observation
from ..calibration.requests import StatRequest
from ..calibration.stats import ChannelStats
from ..errors import CalibrationError
from ..masks import WeightMask


@dataclass(frozen=True)
class Scores:
    """Per group id, one score per class (NaN where unmeasured); and the groups without a signal."""

    values: dict[int, np.ndarray]
    no_signal: dict[int, str] = field(default_factory=dict)
    masks: tuple[WeightMask, ...] = ()


class Criterion(ABC):
    """Base of every criterion; subclasses set the class attributes and override what they need.

    `removes`: "high" when a high score is the case for removal (APoZ: zero most of the time),
    "low" when a low score is (importance: activation, magnitude, Taylor). A threshold is in the
    criterion's own unit and direction: APoZ ≥ T, mean |a| ≤ T.
    """

    name: str = ""
    unit: str = ""
    removes: Literal["high", "low"] = "low"
    default_threshold: float | None = None  # what a bare run removes; None: the user must choose
    # The threshold that removes only channels that contribute exactly nothing on the calibration data
    # (a difference on other data then means the calibration missed something); None: no such threshold.
    lossless_threshold: float | None = None
    default_normalize: str = "none"  # per-group score normalisation unless the user picks one
    needs_data: bool = True
    needs_gradients: bool = False
    paper: str = ""

    def requests(self, analysis: Analysis) -> list[StatRequest]:
        return []

    @abstractmethod
    def scores(self, analysis: Analysis, stats: ChannelStats) -> Scores:
        """Group id -> score per class, from the statistics of `requests` (empty if data-free)."""

    def removal_order(self, score: np.ndarray) -> np.ndarray:
        """The key whose ascending order puts the strongest case for removal first."""
        return -score if self.removes == "high" else score

    def crosses(self, score: np.ndarray, threshold: float) -> np.ndarray:
        """Which scores are past `threshold` in the criterion's direction (and so removed)."""
        return score >= threshold if self.removes == "high" else score <= threshold


def ratios_per_group(analysis: Analysis, stats: ChannelStats, points: list[Observation], key: str,
                     per: str = "value") -> dict[int, list[np.ndarray]]:
    """For each group, one array per observed tensor: sum of statistic `key` / count, per class.

    `per="value"` divides by the values seen per channel (a mean over every activation),
    `per="sample"` by the samples. Positions of one class within a tensor (a flattened
    channel's block, a channel concatenated twice) are pooled before dividing; NaN marks
    classes the tensor lacks.
    """
    per_group: dict[int, list[np.ndarray]] = {}
    sizes = {g.id: g.size for g in analysis.groups}
    for obs in points:
        tensor_stats = stats.tensors.get(obs.tensor)
        if tensor_stats is None or tensor_stats.count == 0:
            continue
        values = tensor_stats.sums.get(key)
        if values is None:
            raise CalibrationError(f"the statistics hold no '{key}' for tensor '{obs.tensor}': they were "
                                   "measured for another criterion (calibrate again, or --save-stats with this one)")
        if len(values) != len(obs.elems):
            continue
        unit = tensor_stats.count if per == "value" else tensor_stats.samples
        group_of, class_of = analysis.classes_of(obs.elems)
        for gid in np.unique(group_of[group_of >= 0]).tolist():
            here = group_of == gid
            numerator = np.zeros(sizes[gid])
            count = np.zeros(sizes[gid])
            np.add.at(numerator, class_of[here], np.asarray(values, dtype=np.float64)[here])
            np.add.at(count, class_of[here], unit)
            with np.errstate(invalid="ignore", divide="ignore"):
                ratio = np.where(count > 0, numerator / np.maximum(count, 1), np.nan)
            per_group.setdefault(gid, []).append(ratio)
    return per_group


def weighted_layers(analysis: Analysis) -> list[tuple[str, gs.Node, np.ndarray]]:
    """Every Conv, Gemm and MatMul whose weight (input 1) is a float constant: label, node, weight."""
    layers = []
    for index, node in enumerate(analysis.graph.nodes):
        if node.op not in ("Conv", "Gemm", "MatMul") or len(node.inputs) < 2:
            continue
        weight = ir.const_value(node.inputs[1])
        if weight is not None and weight.dtype.kind == "f" and weight.ndim >= 2:
            layers.append((ir.node_label(node, index), node, weight))
    return layers
