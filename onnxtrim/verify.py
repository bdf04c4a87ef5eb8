"""Fidelity: run the original and the trimmed model on the same held-out samples.

Reports what a user needs to decide whether trimming cost anything: the largest absolute
difference of any output, the mean cosine similarity of the first output per sample, top-1
agreement where the first output looks like class scores, and accuracy with labels.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from . import runtime
from .calibration.readers import Batch
from .errors import CalibrationError


@dataclass(frozen=True)
class Fidelity:
    samples: int
    data: str  # "holdout" or "calibration": which samples were compared
    max_abs_diff: float
    mean_cosine: float
    top1_agreement: float | None
    accuracy_original: float | None
    accuracy_trimmed: float | None

    @property
    def accuracy_drop(self) -> float | None:
        if self.accuracy_original is None or self.accuracy_trimmed is None:
            return None
        return self.accuracy_original - self.accuracy_trimmed


def compare(original: onnx.ModelProto, trimmed: onnx.ModelProto, batches: Iterable[Batch], *, data: str,
            providers: Sequence[str] = ("cpu",), labels: np.ndarray | None = None) -> Fidelity | None:
    """None when there were no samples to compare."""
    a = runtime.make_session(original, providers)
    b = runtime.make_session(trimmed, providers)
    samples, max_diff, cosines, agree, correct_a, correct_b, classified = 0, 0.0, [], 0, 0, 0, False
    for batch in batches:
        out_a = runtime.run(a, None, batch.feeds)
        out_b = runtime.run(b, None, batch.feeds)
        for x, y in zip(out_a, out_b):
            if x.dtype.kind == "f" and x.size:
                max_diff = max(max_diff, float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64)))))
            elif x.size and not np.array_equal(x, y):
                max_diff = float("inf")
        first_a = out_a[0].reshape(len(batch.indices), -1).astype(np.float64)
        first_b = out_b[0].reshape(len(batch.indices), -1).astype(np.float64)
        norms = np.linalg.norm(first_a, axis=1) * np.linalg.norm(first_b, axis=1)
        cosines.extend(np.where(norms > 0, np.sum(first_a * first_b, axis=1) / np.maximum(norms, 1e-300), 1.0))
        if out_a[0].ndim == 2 and out_a[0].shape[1] > 1:
            classified = True
            top_a, top_b = first_a.argmax(axis=1), first_b.argmax(axis=1)
            agree += int(np.sum(top_a == top_b))
            if labels is not None:
                if batch.indices.max() >= len(labels):
                    raise CalibrationError(f"labels hold {len(labels)} entries; sample {int(batch.indices.max())} has none")
                truth = labels[batch.indices]
                correct_a += int(np.sum(top_a == truth))
                correct_b += int(np.sum(top_b == truth))
        samples += len(batch.indices)
    if samples == 0:
        return None
    with_labels = classified and labels is not None
    return Fidelity(
        samples=samples,
        data=data,
        max_abs_diff=max_diff,
        mean_cosine=float(np.mean(cosines)),
        top1_agreement=agree / samples if classified else None,
        accuracy_original=correct_a / samples if with_labels else None,
        accuracy_trimmed=correct_b / samples if with_labels else None,
    )
