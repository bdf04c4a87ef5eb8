"""Fidelity: run the original and the trimmed model on the same held-out samples.

Reports what a user needs to decide whether trimming cost anything, per output in the terms of what
that output is (`output_kinds`): top-1 agreement and accuracy for class scores, cosine similarity for
embeddings, absolute and relative error for regressions, exact match for integer outputs. Over every
float output: the largest absolute difference, the same relative to the output's largest magnitude
(a model whose outputs are all below 1e-6 differs "by 0" in absolute terms and by 30% in relative
ones), and how many elements fall outside numpy's allclose tolerance |Δ| <= atol + rtol·|original|.

The headline numbers (`top1_agreement`, `mean_cosine`, accuracy) are those of the primary output:
the first class-score output, else the first output.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from . import runtime
from .calibration.readers import Batch
from .errors import CalibrationError
from .output_kinds import OutputKind, output_kinds


@dataclass(frozen=True)
class OutputFidelity:
    """One output's comparison; the metric that matters depends on `kind`."""

    name: str
    kind: str
    because: str
    max_abs_diff: float = 0.0
    max_rel_diff: float = 0.0  # max |Δ| / max |original| over the samples
    mean_cosine: float | None = None  # float outputs: per sample (per token for rank-3 embeddings)
    top1_agreement: float | None = None  # class scores
    exact_match: float | None = None  # integer outputs: share of samples equal in every element
    outside_tolerance: int = 0  # elements with |Δ| > atol + rtol·|original|

    @property
    def metric(self) -> tuple[str, float | None]:
        """The number that says most about this output, and its name."""
        if self.kind == "class_scores":
            return "top-1 agreement", self.top1_agreement
        if self.kind == "embedding":
            return "cosine", self.mean_cosine
        if self.kind == "integer":
            return "exact match", self.exact_match
        return "relative error", self.max_rel_diff


@dataclass(frozen=True)
class Fidelity:
    samples: int
    data: str  # "holdout" or "calibration": which samples were compared
    max_abs_diff: float
    mean_cosine: float | None
    top1_agreement: float | None
    accuracy_original: float | None
    accuracy_trimmed: float | None
    max_rel_diff: float = 0.0
    outputs: tuple[OutputFidelity, ...] = ()
    primary: str | None = None  # the output the headline numbers describe
    atol: float = 1e-4
    rtol: float = 0.0
    outside_tolerance: int = 0

    @property
    def accuracy_drop(self) -> float | None:
        if self.accuracy_original is None or self.accuracy_trimmed is None:
            return None
        return self.accuracy_original - self.accuracy_trimmed

    @property
    def primary_output(self) -> OutputFidelity | None:
        return next((o for o in self.outputs if o.name == self.primary), None)

    def within(self, atol: float, rtol: float) -> bool:
        """Whether every output element passed allclose at the tolerances it was measured with."""
        if (atol, rtol) != (self.atol, self.rtol):
            raise ValueError(f"measured at atol={self.atol}, rtol={self.rtol}, not {atol}, {rtol}")
        return self.outside_tolerance == 0


@dataclass
class _Tally:
    """Running sums of one output's comparison."""

    kind: OutputKind
    max_abs: float = 0.0
    max_ref: float = 0.0
    cosines: list[np.ndarray] = field(default_factory=list)
    agree: int = 0
    exact: int = 0
    outside: int = 0
    correct: tuple[int, int] = (0, 0)

    def add(self, x: np.ndarray, y: np.ndarray, rows: int, atol: float, rtol: float) -> None:
        if not x.size:
            return
        if x.dtype.kind not in "fc":
            same = (x.reshape(rows, -1) == y.reshape(rows, -1)).all(axis=1) if x.shape == y.shape else \
                np.zeros(rows, bool)
            self.exact += int(same.sum())
            self.outside += int(np.count_nonzero(x != y)) if x.shape == y.shape else int(x.size)
            if not same.all():
                self.max_abs = float("inf")
            return
        a, b = x.astype(np.float64, copy=False), y.astype(np.float64, copy=False)
        diff = np.abs(a - b)
        ref = np.abs(a)
        self.max_abs = max(self.max_abs, float(diff.max()))
        self.max_ref = max(self.max_ref, float(ref.max()))
        self.outside += int(np.count_nonzero(diff > atol + rtol * ref))
        vectors = a.shape[-1] if a.ndim >= 3 and self.kind.kind == "embedding" else a.size // max(rows, 1)
        va, vb = a.reshape(-1, vectors), b.reshape(-1, vectors)
        norms = np.linalg.norm(va, axis=1) * np.linalg.norm(vb, axis=1)
        self.cosines.append(np.where(norms > 0, np.sum(va * vb, axis=1) / np.maximum(norms, 1e-300), 1.0))
        if self.kind.kind == "class_scores":
            self.agree += int(np.sum(a.reshape(rows, -1).argmax(axis=1) == b.reshape(rows, -1).argmax(axis=1)))

    def result(self, samples: int) -> OutputFidelity:
        k = self.kind
        rel = self.max_abs / self.max_ref if self.max_ref > 0 else (0.0 if self.max_abs == 0 else float("inf"))
        cosine = float(np.mean(np.concatenate(self.cosines))) if self.cosines else None
        return OutputFidelity(
            k.name, k.kind, k.because, self.max_abs, rel if k.kind != "integer" else 0.0, cosine,
            self.agree / samples if k.kind == "class_scores" else None,
            self.exact / samples if k.kind == "integer" else None, self.outside)


def compare(original: onnx.ModelProto, trimmed: onnx.ModelProto, batches: Iterable[Batch], *, data: str,
            providers: Sequence[str] = ("cpu",), labels: np.ndarray | None = None, atol: float = 1e-4,
            rtol: float = 0.0, sessions: tuple[Any, Any] | None = None) -> Fidelity | None:
    """None when there were no samples to compare. `sessions`: onnxruntime sessions of the two models
    already built (the caller's, reused), else built here."""
    a, b = sessions if sessions is not None else (runtime.make_session(original, providers),
                                                  runtime.make_session(trimmed, providers))
    kinds = output_kinds(original)
    tallies: list[_Tally] | None = None
    samples = 0
    for batch in batches:
        rows = len(batch.indices)
        out_a = runtime.run(a, None, batch.feeds)
        out_b = runtime.run(b, None, batch.feeds)
        if tallies is None:
            tallies = [_Tally(k.refine(x.ndim, x.shape[-1] if x.ndim else 1)) for k, x in zip(kinds, out_a)]
        for tally, x, y in zip(tallies, out_a, out_b):
            tally.add(x, y, rows, atol, rtol)
        primary = _primary(tallies)
        if labels is not None and primary is not None:
            _score_labels(primary, out_a[tallies.index(primary)], out_b[tallies.index(primary)], batch, labels)
        samples += rows
    if samples == 0 or tallies is None:
        return None
    results = tuple(t.result(samples) for t in tallies)
    main = _primary(tallies) or tallies[0]
    head = results[tallies.index(main)]
    with_labels = labels is not None and main.kind.kind == "class_scores"
    floats = [r for r in results if r.kind != "integer"]
    return Fidelity(
        samples=samples, data=data,
        max_abs_diff=max((r.max_abs_diff for r in results), default=0.0),
        mean_cosine=head.mean_cosine, top1_agreement=head.top1_agreement,
        accuracy_original=main.correct[0] / samples if with_labels else None,
        accuracy_trimmed=main.correct[1] / samples if with_labels else None,
        max_rel_diff=max((r.max_rel_diff for r in floats), default=0.0),
        outputs=results, primary=head.name, atol=atol, rtol=rtol,
        outside_tolerance=sum(r.outside_tolerance for r in results))


def _primary(tallies: list[_Tally]) -> _Tally | None:
    return next((t for t in tallies if t.kind.kind == "class_scores"), None)


def _score_labels(tally: _Tally, x: np.ndarray, y: np.ndarray, batch: Batch, labels: np.ndarray) -> None:
    if batch.indices.max() >= len(labels):
        raise CalibrationError(f"labels hold {len(labels)} entries; sample {int(batch.indices.max())} has none")
    rows = len(batch.indices)
    truth = labels[batch.indices]
    top_a, top_b = x.reshape(rows, -1).argmax(axis=1), y.reshape(rows, -1).argmax(axis=1)
    tally.correct = (tally.correct[0] + int(np.sum(top_a == truth)), tally.correct[1] + int(np.sum(top_b == truth)))


__all__ = ["Fidelity", "OutputFidelity", "compare"]
