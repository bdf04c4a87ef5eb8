"""The criterion interface: per-class removal scores for every channel group.

A score is the strength of the case for removing a channel (higher goes first), NaN where
a class was never observed. Criteria differ in what they measure (APoZ, activity share,
Taylor) but share how a group's measurement is formed from its member tensors.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ..analysis.groups import Analysis
from ..calibration.stats import ChannelStats


class Criterion(Protocol):
    name: str
    kinds: tuple[str, ...]  # statistics it needs from calibration

    def scores(self, analysis: Analysis, stats: ChannelStats) -> dict[int, np.ndarray]:
        """Group id -> removal score per class."""
        ...


def per_tensor_class_ratios(analysis: Analysis, stats: ChannelStats, kind: str) -> dict[int, list[np.ndarray]]:
    """For each group, one array per observed tensor: sum of `kind` / count, per class.

    Positions of one class within a tensor (a flattened channel's block, a channel
    concatenated twice) are pooled before dividing; NaN marks classes the tensor lacks.
    """
    per_group: dict[int, list[np.ndarray]] = {}
    sizes = {g.id: g.size for g in analysis.groups}
    for obs in analysis.observations:
        tensor_stats = stats.tensors.get(obs.tensor)
        if tensor_stats is None or kind not in tensor_stats.sums or tensor_stats.count == 0:
            continue
        values = tensor_stats.sums[kind]
        if len(values) != len(obs.elems):
            continue
        group_of, class_of = analysis.classes_of(obs.elems)
        for gid in np.unique(group_of[group_of >= 0]).tolist():
            here = group_of == gid
            numerator = np.zeros(sizes[gid])
            count = np.zeros(sizes[gid])
            np.add.at(numerator, class_of[here], np.asarray(values, dtype=np.float64)[here])
            np.add.at(count, class_of[here], tensor_stats.count)
            with np.errstate(invalid="ignore", divide="ignore"):
                ratio = np.where(count > 0, numerator / np.maximum(count, 1), np.nan)
            per_group.setdefault(gid, []).append(ratio)
    return per_group
