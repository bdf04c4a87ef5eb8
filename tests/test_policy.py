"""From scores to plans: thresholds, fractions, min-keep, round-to and survivors, on known scores."""

from __future__ import annotations

import numpy as np
import pytest

from onnxtrim.criteria.apoz import APoZ
from onnxtrim.criteria.base import Scores
from onnxtrim.errors import ConfigError
from onnxtrim.policy import Selection, make_plan
from tests.helpers import models
from tests.helpers.plans import analysis_of

CONV_SCORES = np.array([1.0, 0.95, 0.2, 0.9, 0.0, 0.5, 0.97, np.nan])  # class 7 never observed


def plan_for(model, scores, **selection):
    analysis = analysis_of(model)
    return analysis, make_plan(analysis, APoZ(), Scores(scores), Selection(**selection), fingerprint="f")


def kept(plan, gid):
    return next((set(g.keep) for g in plan.groups if g.group == gid), None)


def test_threshold_removes_scores_at_or_above_it_and_never_unobserved_classes():
    _, plan = plan_for(models.CHAIN, {0: CONV_SCORES}, threshold=0.9)
    assert kept(plan, 0) == {2, 4, 5, 7}


def test_fraction_takes_the_highest_scores_of_each_group():
    _, plan = plan_for(models.CHAIN, {0: CONV_SCORES}, fraction=0.5)
    assert kept(plan, 0) == {2, 4, 5, 7}  # floor(0.5 * 8) = 4 removed: 1.0, 0.97, 0.95, 0.9


def test_min_keep_and_round_to_only_ever_keep_more():
    _, plan = plan_for(models.CHAIN, {0: CONV_SCORES}, threshold=0.0, min_keep=3)
    assert kept(plan, 0) == {2, 4, 7}  # the two weakest cases for removal, plus the unobserved one
    _, plan = plan_for(models.CHAIN, {0: CONV_SCORES}, threshold=0.9, round_to=8)
    assert kept(plan, 0) is None  # 4 kept rounds up to 8: nothing removed
    _, plan = plan_for(models.CHAIN, {0: CONV_SCORES}, threshold=0.9, round_to=3)
    assert len(kept(plan, 0)) == 6 and {2, 4, 5, 7} <= kept(plan, 0)


def test_blocked_groups_are_never_planned():
    _, plan = plan_for(models.CHAIN, {2: np.ones(10)}, threshold=0.5)
    assert plan.groups == ()


def test_split_outputs_keep_a_survivor():
    _, plan = plan_for(models.SPLIT_SLICE, {0: np.array([1, 1, 0.99, 0, 0, 0, 0, 0.0])}, threshold=0.5)
    assert kept(plan, 0) == {2, 3, 4, 5, 6, 7}  # the least dead of the first Split part comes back


@pytest.mark.parametrize("kwargs", [{}, {"threshold": 0.5, "fraction": 0.5}, {"fraction": 1.0},
                                    {"threshold": 0.5, "min_keep": 0}, {"threshold": 0.5, "round_to": 0}])
def test_bad_selections_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        Selection(**kwargs)
