"""Mean activation: the mean |a| of each channel at what its consumers read.

The activation baseline of Molchanov et al. 2017 (their "mean activation" criterion), which,
unlike APoZ, has a signal after any activation (SiLU, GELU, Hardswish, none at all): a channel
whose mean |a| is small contributes little to the next layer. A class of a group scores its
largest mean |a| over the group's consumed tensors, so `--threshold 0` removes exactly the
channels that are zero wherever they are read, which is lossless on the calibration data.
"""

from __future__ import annotations

import numpy as np

from ..analysis.groups import Analysis
from ..calibration.requests import StatRequest
from ..calibration.stats import ChannelStats
from .base import Criterion, Scores, ratios_per_group


class MeanActivation(Criterion):
    name = "mean-activation"
    unit = "mean |a|"
    removes = "low"
    default_threshold = 0.0
    lossless_threshold = 0.0  # removes only channels exactly silent on the data
    paper = "Molchanov et al. 2017 (activation baseline)"

    def requests(self, analysis: Analysis) -> list[StatRequest]:
        return [StatRequest(read.tensor, read.axis, "abs_sum") for read in analysis.consumed]

    def scores(self, analysis: Analysis, stats: ChannelStats) -> Scores:
        ratios = ratios_per_group(analysis, stats, analysis.consumed, "abs_sum")
        return Scores({gid: np.fmax.reduce(np.vstack(r), axis=0) for gid, r in ratios.items()})
