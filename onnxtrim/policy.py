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
    keep = _choose(analysis, scores, selection)
    restore_survivors(analysis, keep, scores)
    groups = {g.id: g for g in analysis.groups}
    decisions = tuple(GroupPlan(gid, groups[gid].members, groups[gid].size, tuple(sorted(k)))
                      for gid, k in sorted(keep.items()) if len(k) < groups[gid].size)
    return PrunePlan(fingerprint, criterion, decisions)


def restore_survivors(analysis: Analysis, keep: dict[int, set[int]], scores: dict[int, np.ndarray]) -> None:
    """Give back, where a choice would empty a Split or Slice output, its least removable channel."""
    while True:
        removed = analysis.removed_roots({g: np.array(sorted(k), dtype=np.int64) for g, k in keep.items()})
        emptied = analysis.emptied(removed)
        if not emptied:
            return
        classes = {analysis.class_of(int(e)) for e in emptied[0][0]} - {None}
        gid, cid = min(classes, key=lambda gc: (scores.get(gc[0], np.full(gc[1] + 1, np.inf))[gc[1]], gc))
        keep.setdefault(gid, set(range(next(g.size for g in analysis.groups if g.id == gid)))).add(cid)


def _choose(analysis: Analysis, scores: dict[int, np.ndarray], selection: Selection) -> dict[int, set[int]]:
    keep: dict[int, set[int]] = {}
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
            chosen = order[: math.floor(selection.fraction * group.size)]
        keep_count = max(group.size - len(chosen), selection.min_keep)
        keep_count = min(group.size, math.ceil(keep_count / selection.round_to) * selection.round_to)
        chosen = chosen[: group.size - keep_count]
        if chosen.size:
            keep[group.id] = set(range(group.size)) - {int(c) for c in chosen}
    return keep
