"""APoZ, the Average Percentage of Zeros (Hu et al. 2016, "Network Trimming").

A neuron whose ReLU output is zero on most of the data contributes little; one that is zero
on all of it contributes nothing, and removing it is exact. For a group (channels coupled
across layers) a class counts as zero only as far as it is zero at *every* observed member
tensor: its APoZ is the minimum over them, so a channel that is dead after one branch but
alive after another is kept.
"""

from __future__ import annotations

import numpy as np

from ..analysis.groups import Analysis
from ..calibration.stats import ChannelStats
from .base import per_tensor_class_ratios


class APoZ:
    name = "apoz"
    kinds = ("zeros",)

    def scores(self, analysis: Analysis, stats: ChannelStats) -> dict[int, np.ndarray]:
        return {gid: np.fmin.reduce(np.vstack(ratios), axis=0)
                for gid, ratios in per_tensor_class_ratios(analysis, stats, "zeros").items()}
