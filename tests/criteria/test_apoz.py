"""APoZ of a group: a channel is as dead as it is at its *least* dead observed member."""

from __future__ import annotations

import numpy as np

from onnxtrim.calibration.stats import ChannelStats, TensorStats
from onnxtrim.criteria.apoz import APoZ, activation_points
from tests.helpers import models
from tests.helpers.plans import analysis_of


def stats_for(analysis, zeros_by_tensor: dict[str, list[float]], count: int = 10) -> ChannelStats:
    stats = ChannelStats("f")
    for obs, _ in activation_points(analysis):
        zeros = np.asarray(zeros_by_tensor[obs.tensor], dtype=np.float64)
        stats.tensors[obs.tensor] = TensorStats(obs.axis, {"zeros": zeros}, count=count, samples=1)
    return stats


def test_residual_group_channel_counts_as_dead_only_where_dead_at_every_member():
    analysis = analysis_of(models.RESIDUAL)
    residual = next(g for g in analysis.groups if g.members == ("Conv#0", "Conv#4"))
    # The residual group is observed twice: at `ar` (Relu before the block) and `sr` (Relu after the Add).
    assert sorted(o.tensor for o, _ in activation_points(analysis)) == ["ar", "br", "sr"]
    ar = [10, 10, 10, 0, 5, 10, 0, 0]
    sr = [10, 0, 7, 10, 10, 10, 0, 2]
    scores = APoZ().scores(analysis, stats_for(analysis, {"ar": ar, "sr": sr, "br": [3] * 8})).values
    np.testing.assert_allclose(scores[residual.id], np.minimum(ar, sr) / 10)
    np.testing.assert_allclose(scores[next(g.id for g in analysis.groups if g.members == ("Conv#2",))], 0.3)


def test_reshaped_channels_are_measured_at_the_relu_before_the_reshape():
    analysis = analysis_of(models.RESHAPE)  # Conv → Relu → Reshape([-1, 512]) → Gemm: observed at the Relu
    [(obs, at_relu)] = activation_points(analysis)
    assert at_relu
    assert obs.tensor == "ar" and len(obs.elems) == 8
    scores = APoZ().scores(analysis, stats_for(analysis, {"ar": [0, 64, 32, 0, 0, 0, 0, 1]}, count=64)).values
    np.testing.assert_allclose(scores[0], [0, 1, 0.5, 0, 0, 0, 0, 1 / 64])
