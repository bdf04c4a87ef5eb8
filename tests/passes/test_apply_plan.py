"""Masked equivalence: removing channels computes what zeroing them at every point computes."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxtrim.errors import PassError, PlanError
from onnxtrim.passes.apply_plan import apply_plan
from onnxtrim.plan import GroupPlan, PrunePlan, structure_fingerprint
from tests.helpers import models
from tests.helpers.plans import analysis_of, assert_masked_equivalent, random_feeds, random_plan, run

PRUNABLE = ["CHAIN", "RESIDUAL", "CONCAT", "DEPTHWISE_SE", "GROUPED", "SHARED", "RESHAPE", "MLP", "SPLIT_SLICE"]


@pytest.mark.parametrize("name", PRUNABLE)
@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), share=st.floats(0.1, 0.9))
def test_masked_equivalence_for_random_channel_choices(name, seed, share):
    model = getattr(models, name)
    rng = np.random.default_rng(seed)
    plan = random_plan(model, rng, share)
    assert plan.groups, "every model here has a prunable group"
    assert_masked_equivalent(model, plan, random_feeds(model, rng, batch=3))


def test_parameter_shapes_after_trimming_chain():
    model = models.CHAIN
    groups = analysis_of(model).groups
    conv, fc = groups[0], groups[1]
    plan = PrunePlan(structure_fingerprint(model), "test", (
        GroupPlan(conv.id, conv.members, 8, (0, 2, 5)),
        GroupPlan(fc.id, fc.members, 16, tuple(range(0, 16, 2))),
    ))
    trimmed = apply_plan(model, plan)
    shapes = {t.name: list(t.dims) for t in trimmed.graph.initializer}
    assert shapes == {"w1": [3, 1, 3, 3], "b1": [3], "s": [3], "bb": [3], "m": [3], "v": [3],
                      "w2": [8, 48], "b2": [8], "w3": [10, 8], "b3": [10]}
    # Independent computation: the surviving weight columns are the blocks of the kept channels.
    w2 = onnx.numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "w2"))
    got = onnx.numpy_helper.to_array(next(t for t in trimmed.graph.initializer if t.name == "w2"))
    expected = w2.reshape(16, 8, 16)[::2][:, [0, 2, 5]].reshape(8, 48)
    np.testing.assert_array_equal(got, expected)


def test_shared_weight_gets_one_copy_per_distinct_slicing():
    model = models.SHARED
    rng = np.random.default_rng(1)
    plan = random_plan(model, rng, 0.5)
    trimmed = assert_masked_equivalent(model, plan, random_feeds(model, rng))
    weights = [t for t in trimmed.graph.initializer if t.name.startswith("w") and t.name != "wo"]
    assert len(weights) == 2 and {tuple(t.dims) for t in weights} == {(2, 4, 1, 1), (2, 2, 1, 1)}


def test_depthwise_group_attribute_follows_kept_channels():
    model = models.DEPTHWISE_SE
    groups = analysis_of(model).groups
    trunk = next(g for g in groups if g.members == ("Conv#0", "Conv#7"))
    plan = PrunePlan(structure_fingerprint(model), "test", (GroupPlan(trunk.id, trunk.members, 8, (1, 4, 6)),))
    trimmed = assert_masked_equivalent(model, plan, random_feeds(model, np.random.default_rng(2)))
    depthwise = next(n for n in trimmed.graph.node if n.op_type == "Conv" and
                     any(a.name == "group" and a.i > 1 for a in n.attribute))
    assert next(a.i for a in depthwise.attribute if a.name == "group") == 3


def test_reshape_constant_rewritten_and_dynamic_batch_kept():
    model = models.RESHAPE
    conv = analysis_of(model).groups[0]
    plan = PrunePlan(structure_fingerprint(model), "test", (GroupPlan(conv.id, conv.members, 8, (0, 3, 7)),))
    trimmed = assert_masked_equivalent(model, plan, random_feeds(model, np.random.default_rng(3), batch=5))
    shape = onnx.numpy_helper.to_array(next(t for t in trimmed.graph.initializer if t.name == "shape"))
    assert shape.tolist() == [-1, 192]
    assert trimmed.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    assert run(trimmed, random_feeds(model, np.random.default_rng(4), batch=7))[0].shape == (7, 10)


def test_split_sizes_and_slice_bounds_follow_kept_channels():
    model = models.SPLIT_SLICE
    conv = analysis_of(model).groups[0]
    # Split (3, 5): keep 0, 2 of the first part; of the second part (3..7) keep 4, 6, 7.
    # The Slice [1:4] of the second part covers channels 4, 5, 6; of those 4 and 6 survive.
    plan = PrunePlan(structure_fingerprint(model), "test", (GroupPlan(conv.id, conv.members, 8, (0, 2, 4, 6, 7)),))
    trimmed = assert_masked_equivalent(model, plan, random_feeds(model, np.random.default_rng(8)))
    values = {t.name: onnx.numpy_helper.to_array(t).tolist() for t in trimmed.graph.initializer if t.dims in ([1], [2])}
    assert values["sizes"] == [2, 3] and values["st"] == [0] and values["en"] == [2]


def test_plan_emptying_a_split_output_is_refused():
    model = models.SPLIT_SLICE
    conv = analysis_of(model).groups[0]
    plan = PrunePlan(structure_fingerprint(model), "test", (GroupPlan(conv.id, conv.members, 8, (3, 4, 5)),))
    with pytest.raises(PlanError, match="output 0 of Split"):
        apply_plan(model, plan)


def test_input_model_is_not_modified():
    model = models.RESIDUAL
    before = model.SerializeToString()
    apply_plan(model, random_plan(model, np.random.default_rng(5)))
    assert model.SerializeToString() == before


def test_plan_for_another_model_is_refused():
    plan = random_plan(models.CHAIN, np.random.default_rng(6))
    with pytest.raises(PlanError, match="fingerprint"):
        apply_plan(models.RESIDUAL, plan)


def test_plan_removing_a_blocked_channel_is_refused():
    model = models.CHAIN
    out = analysis_of(model).groups[2]
    plan = PrunePlan(structure_fingerprint(model), "test", (GroupPlan(out.id, out.members, 10, (0, 1)),))
    with pytest.raises(PlanError, match="graph output"):
        apply_plan(model, plan)


@pytest.mark.parametrize("keep", [(), (3, 1), (0, 0), (0, 8)])
def test_malformed_keep_lists_are_refused(keep):
    model = models.CHAIN
    conv = analysis_of(model).groups[0]
    plan = PrunePlan(structure_fingerprint(model), "test", (GroupPlan(conv.id, conv.members, 8, keep),))
    with pytest.raises(PlanError):
        apply_plan(model, plan)


def test_plan_json_round_trip():
    plan = random_plan(models.CONCAT, np.random.default_rng(7))
    assert PrunePlan.from_json(plan.to_json()) == plan
    with pytest.raises(PlanError):
        PrunePlan.from_json('{"version": 1, "groups": "nope"}')


def test_reused_analysis_gives_the_same_model_and_is_checked():
    model = models.RESIDUAL
    plan = random_plan(model, np.random.default_rng(3), 0.5)
    reused = apply_plan(model, plan, analysis_of(model))
    assert reused.SerializeToString() == apply_plan(model, plan).SerializeToString()
    with pytest.raises(PassError, match="another model"):
        apply_plan(model, plan, analysis_of(models.CHAIN))
