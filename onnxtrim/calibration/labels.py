"""Integer class labels of the data samples, in sample order (`--labels`, `--train-labels`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import CalibrationError


def read_labels(path: str | Path) -> np.ndarray:
    try:
        labels = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CalibrationError(f"cannot read labels {path}: {exc}") from exc
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise CalibrationError(f"labels {path} must be a 1-D integer array, got {labels.dtype}{list(labels.shape)}")
    return labels
