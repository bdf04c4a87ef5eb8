"""Channel groups on hand-built graphs: one graph per coupling rule (sketches in helpers/models.py)."""

from __future__ import annotations

import pytest

from onnxtrim import ir
from tests.helpers import models
from tests.helpers.plans import analysis_of


def groups_by_members(model):
    return {g.members: g for g in analysis_of(model).groups}


def test_chain_groups_and_output_block():
    groups = groups_by_members(models.CHAIN)
    assert {m: g.size for m, g in groups.items()} == {("Conv#0",): 8, ("Gemm#5",): 16, ("Gemm#7",): 10}
    assert not groups[("Conv#0",)].blocked and not groups[("Gemm#5",)].blocked
    assert set(groups[("Gemm#7",)].blocked.values()) == {"channels reach graph output 'y'"}


def test_chain_records_what_each_consumer_reads():
    analysis = analysis_of(models.CHAIN)
    # Gemm#5 reads the Flatten output of the pooled ReLU, Gemm#7 the second ReLU.
    assert sorted(o.tensor for o in analysis.consumed) == ["f", "hr"]


def test_residual_add_couples_both_branches():
    groups = groups_by_members(models.RESIDUAL)
    assert ("Conv#0", "Conv#4") in groups
    assert groups[("Conv#0", "Conv#4")].size == 8
    assert groups[("Conv#2",)].size == 8


def test_concat_offsets_repeated_input_and_fixed_graph_input():
    analysis = analysis_of(models.CONCAT)
    groups = {g.members: g for g in analysis.groups}
    assert groups[("Conv#0",)].size == 4 and groups[("Conv#2",)].size == 6  # unnamed: labelled by position
    concat = analysis.tracked["k"]
    owners = [analysis.class_of(int(e)) for e in concat.elems]
    a, b = groups[("Conv#0",)].id, groups[("Conv#2",)].id
    assert [o[0] if o else None for o in owners] == [a] * 4 + [b] * 6 + [a] * 4 + [None] * 3
    assert [o[1] for o in owners[:4]] == [o[1] for o in owners[10:14]] == [0, 1, 2, 3]


def test_depthwise_and_squeeze_excite_couple_into_one_group():
    groups = groups_by_members(models.DEPTHWISE_SE)
    trunk = groups[("Conv#0", "Conv#7")]
    assert trunk.size == 8 and not trunk.blocked
    assert groups[("Conv#5",)].size == 2


def test_grouped_conv_lets_whole_groups_go():
    analysis = analysis_of(models.GROUPED)
    first = next(g for g in analysis.groups if g.members == ("Conv#0",))
    # 8 input channels in 2 groups of 4: the classes are the two groups.
    assert first.size == 2 and not first.blocked
    owners = [analysis.class_of(int(e)) for e in analysis.tracked["gr"].elems]
    assert owners == [(first.id, 0)] * 4 + [(first.id, 1)] * 4


def test_unknown_op_is_a_barrier_not_a_guess():
    analysis = analysis_of(models.UNKNOWN_OP)
    assert [(b.op, b.reason) for b in analysis.barriers] == [("LRN", "op 'LRN' at node 'LRN#2' has no channel rule")]
    assert all(len(g.prunable) == 0 for g in analysis.groups)


def test_reshape_with_constant_channel_count_is_rewritable():
    analysis = analysis_of(models.RESHAPE)
    conv = next(g for g in analysis.groups if g.members == ("Conv#0",))
    assert not conv.blocked
    assert analysis.tracked["f"].axis == 1 and len(analysis.tracked["f"].elems) == 512


def test_transformer_mlp_hidden_units_prunable_residual_stream_not():
    groups = groups_by_members(models.MLP)
    assert groups[("MatMul#0",)].size == 12 and not groups[("MatMul#0",)].blocked
    assert len(groups[("MatMul#10",)].prunable) == 0


def test_initializer_that_is_also_an_input_is_not_a_constant():
    groups = groups_by_members(models.OVERRIDABLE)
    assert groups[("Conv#0",)].reasons() == [
        "Add node 'Add#1' combines channels with graph input 'bias', which carries no removable channels"]


@pytest.mark.parametrize("name", ["CHAIN", "RESIDUAL", "CONCAT", "DEPTHWISE_SE", "SHARED", "RESHAPE", "MLP"])
def test_every_group_has_an_observation_for_each_prunable_class(name):
    analysis = analysis_of(getattr(models, name))
    seen = {analysis.class_of(int(e)) for o in analysis.consumed for e in o.elems}
    for g in analysis.groups:
        for c in g.prunable.tolist():
            assert (g.id, c) in seen, f"{name}: class {c} of group {g.members} is never observed"


def test_second_graph_output_blocks_its_channels_and_single_channel_conv_is_not_depthwise():
    analysis = analysis_of(models.MULTI_OUTPUT)
    groups = {g.members: g for g in analysis.groups}
    assert groups[("Conv#0",)].reasons() == ["channels reach graph output 'feat'"]
    one = groups[("Conv#2",)]
    assert one.size == 1 and not one.blocked  # its own group, not coupled to its input like a depthwise conv
    assert len(analysis.groups) == 3


def test_toposort_keeps_a_sorted_graph_and_sorts_a_shuffled_one():
    graph = ir.to_graph(models.RESIDUAL)
    order = [node.name or id(node) for node in graph.nodes]
    ir.toposort(graph)
    assert [node.name or id(node) for node in graph.nodes] == order
    graph.nodes.reverse()
    ir.toposort(graph)
    produced = set()
    for node in graph.nodes:
        assert all(not t.inputs or id(t.inputs[0]) in produced for t in node.inputs)
        produced.add(id(node))
