"""From scores to a plan: which classes each group drops.

Two ways to choose (a score threshold, or a share of each group) and two constraints applied
after them, which only ever keep more: at least `min_keep` channels per group, and kept
counts rounded up to a multiple of `round_to` (kernels often run fastest on multiples of 8).
Blocked and unobserved classes are never removed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .analysis.groups import Analysis
from .errors import ConfigError
from .plan import GroupPlan, PrunePlan


@dataclass(frozen=True)
class Selection:
    threshold: float | None = None  # remove classes whose score >= threshold
    fraction: float | None = None  # or remove this share of each group, highest scores first
    min_keep: int = 1
    round_to: int = 1

    def __post_init__(self) -> None:
        if (self.threshold is None) == (self.fraction is None):
            raise ConfigError("choose channels either by a threshold or by a fraction, not both or neither")
        if self.fraction is not None and not 0.0 <= self.fraction < 1.0:
            raise ConfigError(f"fraction must be in [0, 1), got {self.fraction}")
        if self.min_keep < 1 or self.round_to < 1:
            raise ConfigError("min_keep and round_to must be at least 1")


def make_plan(analysis: Analysis, scores: dict[int, np.ndarray], selection: Selection, *,
              fingerprint: str, criterion: str) -> PrunePlan:
    decisions = []
    for group in analysis.groups:
        score = scores.get(group.id)
        if score is None:
            continue
        removable = np.array([c for c in group.prunable.tolist() if np.isfinite(score[c])], dtype=np.int64)
        if removable.size == 0:
            continue
        order = removable[np.argsort(-score[removable], kind="stable")]  # strongest case first
        if selection.threshold is not None:
            chosen = order[score[order] >= selection.threshold]
        else:
            chosen = order[: int(math.floor(selection.fraction * group.size))]
        keep_count = max(group.size - len(chosen), selection.min_keep)
        keep_count = min(group.size, int(math.ceil(keep_count / selection.round_to)) * selection.round_to)
        chosen = chosen[: group.size - keep_count]
        if chosen.size == 0:
            continue
        keep = np.setdiff1d(np.arange(group.size), chosen)
        decisions.append(GroupPlan(group.id, group.members, group.size, tuple(int(k) for k in keep)))
    return PrunePlan(fingerprint, criterion, tuple(decisions))
