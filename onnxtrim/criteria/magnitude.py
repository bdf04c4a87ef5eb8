"""Unstructured weight magnitude: zero the smallest |w| of every layer (Zhu & Gupta 2017).

The primitive that gradual pruning schedules: at sparsity s, each Conv, Gemm and MatMul weight
loses its floor(s·n) smallest-magnitude entries (ties: lower flat index first). It removes no
channel; the zeros stay in the dense ONNX weights (onnxruntime gains no speed from them, but
they compress and they are what sparse kernels and later structured passes start from).
"""

from __future__ import annotations

import numpy as np

from ..analysis.groups import Analysis
from ..calibration.stats import ChannelStats
from ..masks import WeightMask
from .base import Criterion, Scores, weighted_layers


def magnitude_mask(weight: np.ndarray, sparsity: float) -> np.ndarray:
    """Keep-mask of `weight` with its floor(sparsity * size) smallest |w| removed."""
    flat = np.abs(np.asarray(weight, dtype=np.float64)).reshape(-1)
    keep = np.ones(flat.size, dtype=bool)
    keep[np.argsort(flat, kind="stable")[: int(np.floor(sparsity * flat.size))]] = False
    return keep.reshape(weight.shape)


class Magnitude(Criterion):
    name = "magnitude"
    unit = "|w|"
    removes = "low"
    default_threshold = 0.0  # no channel scores: nothing structured is removed
    needs_data = False
    paper = "Zhu & Gupta 2017, To prune or not to prune"

    def __init__(self, sparsity: float) -> None:
        if not 0.0 <= sparsity < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
        self.sparsity = sparsity

    def scores(self, analysis: Analysis, stats: ChannelStats) -> Scores:
        masks = tuple(WeightMask(label, 1, node.inputs[1].name, magnitude_mask(weight, self.sparsity))
                      for label, node, weight in weighted_layers(analysis))
        return Scores({}, masks=masks)
