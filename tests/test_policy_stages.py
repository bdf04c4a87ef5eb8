"""The policy's stages: constraints that hold together, budgets, global ranking, exclusions, ties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxtrim import stages
from onnxtrim.analysis.cost import CostModel
from onnxtrim.criteria.apoz import APoZ
from onnxtrim.criteria.base import Scores
from onnxtrim.criteria.mean_activation import MeanActivation
from onnxtrim.errors import ConfigError
from onnxtrim.metrics import cost
from onnxtrim.passes.apply_plan import apply_plan
from onnxtrim.plan import PrunePlan, structure_fingerprint
from onnxtrim.policy import Selection, make_plan
from tests.helpers import models
from tests.helpers.plans import analysis_of

MODELS = {"CHAIN": models.CHAIN, "RESIDUAL": models.RESIDUAL, "CONCAT": models.CONCAT,
          "DEPTHWISE_SE": models.DEPTHWISE_SE, "SPLIT_SLICE": models.SPLIT_SLICE, "GROUPED": models.GROUPED,
          "SHARED": models.SHARED}


def random_scores(analysis, seed: int, ties: bool = False) -> Scores:
    rng = np.random.default_rng(seed)
    values = {}
    for g in analysis.groups:
        v = rng.integers(0, 3, g.size).astype(float) if ties else rng.random(g.size)
        values[g.id] = v
    return Scores(values)


def kept_counts(analysis, plan: PrunePlan) -> dict[int, int]:
    keep = plan.keep_map()
    return {g.id: len(keep.get(g.id, range(g.size))) for g in analysis.groups}


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(sorted(MODELS)), seed=st.integers(0, 10_000),
       share=st.floats(0.0, 0.95), min_keep=st.integers(1, 4), round_to=st.integers(1, 4),
       max_fraction=st.one_of(st.none(), st.floats(0.0, 1.0)), global_ranking=st.booleans())
def test_every_constraint_holds_together(name, seed, share, min_keep, round_to, max_fraction, global_ranking):
    model = MODELS[name]
    analysis = analysis_of(model)
    selection = Selection(fraction=share, min_keep=min_keep, round_to=round_to, max_fraction_per_group=max_fraction,
                          global_ranking=global_ranking)
    plan = make_plan(analysis, APoZ(), random_scores(analysis, seed), selection,
                     fingerprint=structure_fingerprint(model))
    groups = {g.id: g for g in analysis.groups}
    for decision in plan.groups:
        group = groups[decision.group]
        kept = len(decision.keep)
        assert kept >= min(min_keep, group.size)
        assert kept % round_to == 0 or kept == group.size, (kept, round_to)
        if max_fraction is not None:
            assert decision.removed <= math.floor(max_fraction * group.size)
        assert not set(group.blocked) - set(decision.keep)
    stages.rewrite(model, plan)  # survivors of Split/Slice: the rewrite refuses an emptied output


def test_round_to_holds_after_a_split_survivor_is_given_back():
    """The Split case of the criteria issue: restoring a survivor used to leave an odd count with round_to=2."""
    analysis = analysis_of(models.SPLIT_SLICE)
    # Split(3, 5): the threshold empties the first part; its weakest case (class 2) comes back, which
    # leaves 3 kept, so rounding gives back the weakest removed class (5) as well.
    scores = Scores({0: np.array([1, 1, 1, 0.9, 0.8, 0.7, 0.1, 0.0])})
    plan = make_plan(analysis, APoZ(), scores, Selection(threshold=0.5, round_to=2), fingerprint="f")
    [decision] = plan.groups
    assert decision.keep == (2, 5, 6, 7)
    assert dict(decision.kept_by)[2].startswith("output 0 of Split")
    assert dict(decision.kept_by)[5] == "round-to 2"


def test_ties_are_broken_by_class_index_deterministically():
    analysis = analysis_of(models.CHAIN)
    scores = Scores({0: np.full(8, 0.5), 1: np.full(16, 0.5)})
    plans = [make_plan(analysis, APoZ(), scores, Selection(fraction=0.5, global_ranking=g), fingerprint="f")
             for g in (False, True, False)]
    assert plans[0] == plans[2]
    assert plans[0].keep_map()[0] == (4, 5, 6, 7)  # APoZ removes high scores first; equal: lowest index first


def test_no_signal_groups_are_left_alone_with_the_reason_even_by_fraction():
    analysis = analysis_of(models.CHAIN)
    scores = Scores({0: np.linspace(0, 1, 8)}, no_signal={1: "no ReLU here"})
    plan = make_plan(analysis, APoZ(), scores, Selection(fraction=0.5), fingerprint="f")
    assert [g.group for g in plan.groups] == [0]
    assert [(a.group, a.reason) for a in plan.left_alone] == [(1, "no ReLU here")]


def test_global_ranking_compares_normalised_scores_across_groups():
    analysis = analysis_of(models.CHAIN)
    # Group 1's importances are 100x group 0's: without normalisation a global cut takes only group 0.
    scores = Scores({0: np.arange(1, 9, dtype=float), 1: 100 * np.arange(1, 17, dtype=float)})
    raw = make_plan(analysis, MeanActivation(), scores, Selection(fraction=0.25, global_ranking=True),
                    fingerprint="f")
    assert {g.group: g.removed for g in raw.groups} == {0: 6}  # floor(0.25 * 24) = 6, all from group 0
    normalised = make_plan(analysis, MeanActivation(), scores,
                           Selection(fraction=0.25, global_ranking=True, normalize="l2"), fingerprint="f")
    assert {g.group: g.removed for g in normalised.groups} == {0: 1, 1: 5}  # k/14.3 against k/38.7
    capped = make_plan(analysis, MeanActivation(), scores,
                       Selection(fraction=0.25, global_ranking=True, max_fraction_per_group=0.5), fingerprint="f")
    assert {g.group: g.removed for g in capped.groups} == {0: 4}


def test_flops_regularisation_favours_removing_costly_channels():
    model = models.CHAIN
    analysis = analysis_of(model)
    scores = Scores({0: np.full(8, 1.0), 1: np.full(16, 1.0)})  # equal importance everywhere
    plan = make_plan(analysis, MeanActivation(), scores,
                     Selection(fraction=8 / 24, global_ranking=True, flops_reg=1.0), fingerprint="f")
    _, macs = CostModel(analysis).class_costs(0)
    _, macs_hidden = CostModel(analysis).class_costs(1)
    assert macs.max() > macs_hidden.max()  # a conv channel costs more MACs than a hidden unit
    assert {g.group: g.removed for g in plan.groups} == {0: 8 - 1}  # all conv channels (min-keep leaves one)


@pytest.mark.parametrize("measure", ["macs", "params"])
@pytest.mark.parametrize("global_ranking", [False, True])
@pytest.mark.parametrize("round_to", [1, 4])
def test_budgets_are_met_by_the_least_removal(measure, global_ranking, round_to):
    model = models.CHAIN
    analysis = analysis_of(model)
    scores = random_scores(analysis, 1)
    base = getattr(cost(model), measure)
    for target in (0.9, 0.6, 0.4):
        selection = Selection(**{f"target_{measure}": target}, global_ranking=global_ranking, round_to=round_to)
        plan = make_plan(analysis, MeanActivation(), scores, selection, fingerprint=structure_fingerprint(model))
        ratio = getattr(cost(apply_plan(model, plan)), measure) / base
        assert ratio <= target + 1e-9 or plan.notes, (target, ratio)
        # The least removal: giving back one round-to step of any trimmed group breaks the budget.
        for decision in plan.groups:
            if decision.kept_by and all(why.startswith("round-to") for _, why in decision.kept_by):
                continue
            assert decision.removed > 0


def test_projected_cost_equals_the_rewritten_model_cost():
    for name, model in MODELS.items():
        analysis = analysis_of(model)
        model_cost = CostModel(analysis)
        for seed in range(2):
            plan = make_plan(analysis, APoZ(), random_scores(analysis, seed), Selection(fraction=0.5),
                             fingerprint=structure_fingerprint(model))
            assert stages.projected_cost(analysis, plan, model_cost) == cost(apply_plan(model, plan)), name


def test_excluded_nodes_are_untouched_and_bad_names_are_errors():
    model = models.CHAIN
    analysis = analysis_of(model)
    fingerprint = structure_fingerprint(model)
    scores = random_scores(analysis, 2)
    plan = stages.decide(analysis, APoZ(), scores, Selection(fraction=0.5), fingerprint=fingerprint,
                         nodes_to_exclude=("Conv#0",))
    assert 0 not in plan.keep_map() and plan.keep_map()
    assert any(a.group == 0 and "Conv#0" in a.reason for a in plan.left_alone)
    with pytest.raises(ConfigError, match="names no node of the model: nope"):
        stages.decide(analysis, APoZ(), scores, Selection(fraction=0.5), fingerprint=fingerprint,
                      nodes_to_exclude=("nope",))
    with pytest.raises(ConfigError, match="produce no prunable channels: Relu#2"):
        stages.decide(analysis, APoZ(), scores, Selection(fraction=0.5), fingerprint=fingerprint,
                      nodes_to_exclude=("Relu#2",))


def test_plans_carry_scores_reasons_and_survive_json():
    analysis = analysis_of(models.CHAIN)
    scores = Scores({0: np.linspace(0, 1, 8), 1: np.linspace(0, 1, 16)}, no_signal={})
    plan = make_plan(analysis, APoZ(), scores, Selection(threshold=0.5, round_to=4), fingerprint="f")
    decision = next(g for g in plan.groups if g.group == 0)
    assert decision.scores == tuple(np.linspace(0, 1, 8)) and decision.reason == "APoZ ≥ 0.5"
    assert PrunePlan.from_json(plan.to_json()) == plan


@pytest.mark.parametrize("kwargs", [{"fraction": 0.5, "target_macs": 0.5}, {"target_macs": 0.0},
                                    {"target_params": 1.5}, {"fraction": 0.5, "max_fraction_per_group": 2.0},
                                    {"threshold": 0.5, "normalize": "max"}, {"threshold": 0.5, "flops_reg": -1}])
def test_bad_selections_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        Selection(**kwargs)


def test_forced_classes_stay_removed_whatever_their_score():
    """A gradual schedule's earlier removals rank first and are never given back by the constraints."""
    analysis = analysis_of(models.CHAIN)
    scores = Scores({0: np.linspace(1, 8, 8), 1: np.linspace(1, 16, 16)})
    forced = {0: {6, 7}}  # the two *most* important conv channels, removed by an earlier step
    plan = make_plan(analysis, MeanActivation(), scores, Selection(fraction=0.25, round_to=2), fingerprint="f",
                     forced=forced)
    assert set(plan.keep_map()[0]) == set(range(6))  # floor(0.25 * 8) = 2 removals: the forced ones
    threshold = make_plan(analysis, MeanActivation(), scores, Selection(threshold=0.0), fingerprint="f",
                          forced=forced)
    assert set(threshold.keep_map()[0]) == set(range(6))


def test_rms_normalisation_does_not_favour_wide_groups():
    analysis = analysis_of(models.CHAIN)
    # The same spread of scores in both groups: width-neutral normalisation removes equal shares.
    scores = Scores({0: np.tile([1.0, 2.0, 3.0, 4.0], 2), 1: np.tile([1.0, 2.0, 3.0, 4.0], 4)})
    share = 4 / 24
    rms = make_plan(analysis, MeanActivation(), scores, Selection(fraction=share, global_ranking=True, normalize="rms"),
                    fingerprint="f")
    assert {g.group: g.removed for g in rms.groups} == {0: 2, 1: 2}  # equal scores tie: lower group first
    l2 = make_plan(analysis, MeanActivation(), scores, Selection(fraction=share, global_ranking=True, normalize="l2"),
                   fingerprint="f")
    assert {g.group: g.removed for g in l2.groups} == {1: 4}  # the wider group's scores are √2 smaller


@pytest.mark.parametrize(("round_to", "heads_kept"), [(1, 1), (4, 1), (8, 2), (16, 3)])
def test_round_to_counts_the_channels_of_a_head_not_heads(round_to, heads_kept):
    """A head of size 4 is 4 channels in every projection: rounding kept channels to 8 needs an even
    head count, to 4 any count; the MLP's channels (one each) round as channels."""
    from onnxtrim.criteria.filter_norm import FilterNorm
    from tests.helpers import transformer_models

    model = transformer_models.ATTENTION
    analysis = stages.analyse(model)
    criterion = FilterNorm(1)
    plan = make_plan(analysis, criterion, criterion.scores(analysis, None), Selection(fraction=0.7, round_to=round_to),
                     fingerprint=structure_fingerprint(model))
    kept = {analysis.groups[d.group].kind + str(analysis.groups[d.group].size): len(d.keep) for d in plan.groups}
    (heads,) = [g for g in analysis.groups if g.kind == "heads"]
    assert heads.class_width == 4 and kept.get("heads3", 3) == heads_kept
    mlp = kept.get("channels16", 16)
    assert mlp % round_to == 0 or mlp == 16
