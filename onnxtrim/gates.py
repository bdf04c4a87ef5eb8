"""Quality gates for deployment pipelines: did trimming cost too much, or save too little?

Each gate compares one measured number with a limit the user set. The library evaluates
them; the command line turns the first failing gate into its own exit code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import OnnxTrimError
from .verify import Fidelity


class GateError(OnnxTrimError):
    """A quality gate failed (the outputs were still written)."""


class AccuracyGateError(GateError):
    pass


class SpeedupGateError(GateError):
    pass


class LatencyGateError(GateError):
    pass


@dataclass(frozen=True)
class GateResult:
    name: str  # "max_drop", "min_speedup", "max_latency_ms"
    limit: float
    value: float | None  # None: nothing to measure it on (fails)
    measure: str  # what `value` is, in words
    passed: bool

    def error(self) -> GateError:
        kind = {"max_drop": AccuracyGateError, "min_speedup": SpeedupGateError,
                "max_latency_ms": LatencyGateError}[self.name]
        if self.value is None:
            return kind(f"--{self.name.replace('_', '-')} {self.limit:g}: no {self.measure} was measured")
        relation = "above" if self.name != "min_speedup" else "below"
        return kind(f"{self.measure} is {self.value:.4g}, {relation} --{self.name.replace('_', '-')} {self.limit:g}")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "limit": self.limit, "value": self.value, "measure": self.measure,
                "passed": self.passed}


def quality_drop(fidelity: Fidelity | None) -> tuple[float | None, str]:
    """What `--max-drop` compares, in the terms of the primary output's kind (see `verify`): accuracy lost
    with labels; else top-1 disagreement for class scores, 1 - cosine for embeddings, the relative error
    for regressions, the share of samples not matching exactly for integer outputs."""
    if fidelity is None:
        return None, "accuracy drop"
    if fidelity.accuracy_drop is not None:
        return fidelity.accuracy_drop, "accuracy drop"
    primary = fidelity.primary_output
    kind = primary.kind if primary is not None else ("class_scores" if fidelity.top1_agreement is not None
                                                      else "embedding")
    if kind == "class_scores" and fidelity.top1_agreement is not None:
        return 1.0 - fidelity.top1_agreement, "top-1 disagreement"
    if kind == "integer" and primary is not None and primary.exact_match is not None:
        return 1.0 - primary.exact_match, "share of samples not matching exactly"
    if kind == "regression" and primary is not None:
        return primary.max_rel_diff, "relative error (max |Δ| / max |original|)"
    if fidelity.mean_cosine is None:
        return None, "1 - cosine similarity"
    return 1.0 - fidelity.mean_cosine, "1 - cosine similarity"


def evaluate(*, max_drop: float | None, min_speedup: float | None, max_latency_ms: float | None,
             fidelity: Fidelity | None, speedup: float | None, latency_ms: float | None) -> list[GateResult]:
    results = []
    if max_drop is not None:
        value, measure = quality_drop(fidelity)
        results.append(GateResult("max_drop", max_drop, value, measure, value is not None and value <= max_drop))
    if min_speedup is not None:
        results.append(GateResult("min_speedup", min_speedup, speedup, "speedup (original / trimmed median latency)",
                                  speedup is not None and speedup >= min_speedup))
    if max_latency_ms is not None:
        results.append(GateResult("max_latency_ms", max_latency_ms, latency_ms, "trimmed median latency (ms)",
                                  latency_ms is not None and latency_ms <= max_latency_ms))
    return results
