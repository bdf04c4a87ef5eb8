"""From scores to a plan, in stages: rank, select, constrain.

1. Rank: per group, the removable classes in order of the strength of the case for removing
   them, by the criterion's score, optionally normalised per group (the L2 normalisation of
   Molchanov et al. 2017, which makes layers comparable for a global ranking; it shrinks a
   group's scores as 1/√size, so "rms", the L2 norm scaled by √size, is offered as a
   width-neutral alternative) and regularised by the share of the model's MACs each class costs
   (their FLOPs regularisation).
2. Select, one of: a threshold in the criterion's own unit and direction; a share of every
   group; a share of all channels ranked globally; or a budget of MACs or parameters kept,
   met by the smallest removal that reaches it.
3. Constrain, with constraints that only ever keep more: at most a share of any group
   (`max_fraction_per_group`: a global ranking must not empty a layer), at least `min_keep`
   channels, kept counts rounded up to multiples of `round_to`, and a survivor in every
   Split/Slice output. Each gives back the weakest cases first, and they are applied in an
   order that leaves all of them true together (rounding last, again after survivors).

Blocked and unmeasured classes are never removed; groups the criterion has no signal for,
and excluded ones, are left alone with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .analysis.cost import CostModel
from .analysis.groups import Analysis, ChannelGroup
from .criteria.base import Criterion, Scores
from .errors import ConfigError
from .plan import GroupPlan, LeftAlone, PrunePlan

Normalize = Literal["none", "l2", "rms"]


@dataclass(frozen=True)
class Selection:
    threshold: float | None = None  # remove classes past this score, in the criterion's direction
    fraction: float | None = None  # or this share of each group (of all channels with global_ranking)
    target_macs: float | None = None  # or the least removal keeping at most this share of the MACs
    target_params: float | None = None  # ... or of the parameters
    global_ranking: bool = False  # rank classes across groups instead of within each
    normalize: Normalize = "none"
    flops_reg: float = 0.0  # lambda: the case for removal grows by lambda x the class's share of the MACs
    min_keep: int = 1
    max_fraction_per_group: float | None = None
    round_to: int = 1

    def __post_init__(self) -> None:
        chosen = [name for name in ("threshold", "fraction", "target_macs", "target_params")
                  if getattr(self, name) is not None]
        if len(chosen) != 1:
            raise ConfigError("choose channels by exactly one of a threshold, a fraction, --target-macs or "
                              f"--target-params (got {', '.join(chosen) or 'none'})")
        if self.fraction is not None and not 0.0 <= self.fraction < 1.0:
            raise ConfigError(f"fraction must be in [0, 1), got {self.fraction}")
        for name in ("target_macs", "target_params"):
            value = getattr(self, name)
            if value is not None and not 0.0 < value <= 1.0:
                raise ConfigError(f"{name} is the share of the original kept, in (0, 1]; got {value}")
        if self.max_fraction_per_group is not None and not 0.0 <= self.max_fraction_per_group <= 1.0:
            raise ConfigError(f"max_fraction_per_group must be in [0, 1], got {self.max_fraction_per_group}")
        if self.min_keep < 1 or self.round_to < 1:
            raise ConfigError("min_keep and round_to must be at least 1")
        if self.normalize not in ("none", "l2", "rms"):
            raise ConfigError(f"normalize must be 'none', 'l2' or 'rms', got {self.normalize!r}")
        if self.flops_reg < 0:
            raise ConfigError("flops_reg must not be negative")


@dataclass
class _Ranked:
    """One group's removable classes, strongest case first: their raw scores and the ranking key."""

    group: ChannelGroup
    classes: np.ndarray
    raw: np.ndarray
    keys: np.ndarray
    forced: np.ndarray  # bool per ranked class: removed already (an earlier step of a schedule)


def make_plan(analysis: Analysis, criterion: Criterion, scores: Scores, selection: Selection, *,
              fingerprint: str, excluded: dict[int, str] | None = None,
              cost_model: CostModel | None = None, forced: dict[int, set[int]] | None = None) -> PrunePlan:
    """`forced`: classes already removed (by an earlier step of a gradual schedule); they rank
    before every other class and are given back last, so a schedule never revives them unless
    a Split/Slice output would otherwise be emptied."""
    excluded = excluded or {}
    left = {**{gid: why for gid, why in scores.no_signal.items() if gid not in excluded}, **excluded}
    needs_cost = selection.flops_reg > 0 or selection.target_macs is not None or selection.target_params is not None
    cost = cost_model or (CostModel(analysis) if needs_cost else None)
    ranked = rank(analysis, criterion, scores, selection, set(left), cost, forced or {})
    chosen, reason, notes = select(analysis, criterion, ranked, selection, cost)
    keep, kept_by = constrain(analysis, ranked, chosen, selection)
    groups = {g.id: g for g in analysis.groups}
    decisions = tuple(
        GroupPlan(gid, groups[gid].members, groups[gid].size, tuple(sorted(k)),
                  tuple(None if not np.isfinite(v) else float(v) for v in scores.values[gid]),
                  reason, tuple(sorted(kept_by.get(gid, {}).items())))
        for gid, k in sorted(keep.items()) if len(k) < groups[gid].size)
    left_alone = tuple(LeftAlone(gid, groups[gid].members, why) for gid, why in sorted(left.items()))
    return PrunePlan(fingerprint, criterion.name, decisions, left_alone, scores.masks, tuple(notes))


def rank(analysis: Analysis, criterion: Criterion, scores: Scores, selection: Selection, skip: set[int],
         cost: CostModel | None, forced: dict[int, set[int]] | None = None) -> dict[int, _Ranked]:
    total_macs = cost.base.macs if cost is not None else 0
    ranked: dict[int, _Ranked] = {}
    for group in analysis.groups:
        score = scores.values.get(group.id)
        if score is None or group.id in skip:
            continue
        value = np.asarray(score, dtype=np.float64)
        if selection.normalize != "none":
            finite = value[np.isfinite(value)]
            norm = float(np.sqrt(np.sum(finite * finite)))
            if selection.normalize == "rms":  # the L2 norm scaled by √size: wide layers not favoured
                norm /= np.sqrt(max(finite.size, 1))
            value = value / norm if norm > 0 else value
        key = criterion.removal_order(value)
        if selection.flops_reg and cost is not None and total_macs:
            _, macs = cost.class_costs(group.id)
            key = key - selection.flops_reg * macs / total_macs
        already = (forced or {}).get(group.id, set())
        removable = np.array([c for c in group.prunable.tolist() if np.isfinite(score[c]) or c in already],
                             dtype=np.int64)
        if removable.size == 0:
            continue
        key = np.where(np.isin(np.arange(group.size), list(already)), -np.inf, key)
        order = removable[np.argsort(key[removable], kind="stable")]  # ties: lower class index first
        ranked[group.id] = _Ranked(group, order, np.asarray(score, dtype=np.float64)[order], key[order],
                                   np.isin(order, list(already)))
    return ranked


Chosen = dict[int, np.ndarray]  # group id -> classes chosen for removal, strongest case first


def select(analysis: Analysis, criterion: Criterion, ranked: dict[int, _Ranked], selection: Selection,
           cost: CostModel | None) -> tuple[Chosen, str, list[str]]:
    unit = criterion.unit or criterion.name
    first = "highest" if criterion.removes == "high" else "lowest"
    if selection.threshold is not None:
        chosen = {gid: r.classes[criterion.crosses(r.raw, selection.threshold) | r.forced]
                  for gid, r in ranked.items()}
        sign = "≥" if criterion.removes == "high" else "≤"
        return chosen, f"{unit} {sign} {selection.threshold:g}", []
    scope = "of all channels, ranked across groups" if selection.global_ranking else "of the group"
    if selection.fraction is not None:
        chosen = _by_share(ranked, selection.fraction, selection.global_ranking)
        return chosen, f"{selection.fraction:.0%} {scope}, {first} {unit} first", []
    assert cost is not None
    measure, target = ("macs", selection.target_macs) if selection.target_macs is not None \
        else ("params", selection.target_params)
    assert target is not None
    base = getattr(cost.base, measure)

    def ratio(share: float) -> float:
        chosen = _by_share(ranked, share, selection.global_ranking)
        keep, _ = constrain(analysis, ranked, chosen, selection)
        return getattr(cost.projected(analysis.removed_roots(_arrays(keep))), measure) / max(base, 1)

    share, reached = _least_share(ratio, target, ranked, selection.global_ranking)
    notes = []
    if reached > target:
        notes.append(f"target {measure} {target:.1%} not reached: {reached:.1%} with every removable channel "
                     "the constraints allow removed")
    label = "MACs" if measure == "macs" else "parameters"
    reason = f"{label} budget {target:.0%}: {share:.1%} {scope}, {first} {unit} first"
    return _by_share(ranked, share, selection.global_ranking), reason, notes


def _by_share(ranked: dict[int, _Ranked], share: float, global_ranking: bool) -> Chosen:
    """The strongest `share` of each group, or of all ranked classes together."""
    if not global_ranking:
        return {gid: r.classes[: math.floor(share * r.group.size + 1e-9)] for gid, r in ranked.items()}
    if not ranked:
        return {}
    keys = np.concatenate([r.keys for r in ranked.values()])
    owners = np.concatenate([np.full(len(r.classes), gid) for gid, r in ranked.items()])
    positions = np.concatenate([np.arange(len(r.classes)) for r in ranked.values()])
    total = sum(r.group.size for r in ranked.values())
    order = np.lexsort((positions, owners, keys))[: math.floor(share * total + 1e-9)]
    return {gid: r.classes[: int(np.count_nonzero(owners[order] == gid))] for gid, r in ranked.items()}


def _least_share(ratio: Callable[[float], float], target: float, ranked: dict[int, _Ranked],
                 global_ranking: bool) -> tuple[float, float]:
    """The smallest share whose plan keeps at most `target`, and the ratio it reaches.

    Ratios fall as the share grows (constraints can make small steps flat, never rising), so
    a bisection over the distinct shares that change the choice finds it.
    """
    if global_ranking:
        total = sum(r.group.size for r in ranked.values())
        steps = [k / total for k in range(total + 1)] if total else [0.0]
    else:
        steps = sorted({0.0} | {c / r.group.size for r in ranked.values() for c in range(1, len(r.classes) + 1)})
    steps = [min(s, 1.0 - 1e-12) for s in steps]
    low, high = 0, len(steps) - 1
    if ratio(steps[high]) > target:
        return steps[high], ratio(steps[high])
    while low < high:
        middle = (low + high) // 2
        if ratio(steps[middle]) <= target:
            high = middle
        else:
            low = middle + 1
    return steps[low], ratio(steps[low])


def constrain(analysis: Analysis, ranked: dict[int, _Ranked], chosen: Chosen,
              selection: Selection) -> tuple[dict[int, set[int]], dict[int, dict[int, str]]]:
    """Kept classes per group once every constraint holds, and which constraint kept which class."""
    removing = {gid: list(classes.tolist()) for gid, classes in chosen.items() if len(classes)}
    kept_by: dict[int, dict[int, str]] = {}

    def give_back(gid: int, count: int, why: str) -> None:
        for _ in range(min(max(count, 0), len(removing[gid]))):
            kept_by.setdefault(gid, {})[removing[gid].pop()] = why

    def round_up(gid: int) -> None:
        """Kept channels (classes x their width: a head is head-size channels) a multiple of round_to."""
        group = ranked[gid].group
        multiple = selection.round_to // math.gcd(selection.round_to, group.class_width)
        kept = group.size - len(removing[gid])
        give_back(gid, min(group.size, math.ceil(kept / multiple) * multiple) - kept, f"round-to {selection.round_to}")

    for gid, classes in removing.items():
        size = ranked[gid].group.size
        if selection.max_fraction_per_group is not None:
            give_back(gid, len(classes) - math.floor(selection.max_fraction_per_group * size),
                      f"max-fraction-per-group {selection.max_fraction_per_group:g}")
        give_back(gid, selection.min_keep - (size - len(classes)), f"min-keep {selection.min_keep}")
        round_up(gid)
    keep = {gid: set(range(ranked[gid].group.size)) - set(classes) for gid, classes in removing.items()}
    position = {gid: {c: k for k, c in enumerate(r.classes.tolist())} for gid, r in ranked.items()}
    for gid, cid, why in restore_survivors(analysis, keep, lambda g, c: position.get(g, {}).get(c, -1)):
        removing[gid].remove(cid)
        kept_by.setdefault(gid, {})[cid] = why
    for gid in list(removing):
        round_up(gid)
    keep = {gid: set(range(ranked[gid].group.size)) - set(classes) for gid, classes in removing.items() if classes}
    return keep, kept_by


def restore_survivors(analysis: Analysis, keep: dict[int, set[int]],
                      weakness: Callable[[int, int], float] | None = None) -> list[tuple[int, int, str]]:
    """Give back, where a choice would empty a Split or Slice output, its weakest case for removal.

    `keep` is updated in place; returns (group, class, reason) for each class given back.
    `weakness(group, class)`: higher is a weaker case for removal (default: the lowest index).
    """
    restored: list[tuple[int, int, str]] = []
    sizes = {g.id: g.size for g in analysis.groups}
    while True:
        emptied = analysis.emptied(analysis.removed_roots(_arrays(keep)))
        if not emptied:
            return restored
        elems, why = emptied[0]
        classes = sorted({c for c in (analysis.class_of(int(e)) for e in elems) if c is not None})
        gid, cid = max(classes, key=lambda gc: (weakness(*gc) if weakness else 0, -gc[0], -gc[1]))
        keep.setdefault(gid, set(range(sizes[gid]))).add(cid)
        restored.append((gid, cid, why))


def _arrays(keep: dict[int, set[int]]) -> dict[int, np.ndarray]:
    return {gid: np.array(sorted(k), dtype=np.int64) for gid, k in keep.items()}
