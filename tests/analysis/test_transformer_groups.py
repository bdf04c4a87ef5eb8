"""What the analysis makes of attention, residual streams, channel shuffles, computed shapes and
fused ops, on the hand-built graphs of `helpers/transformer_models.py` (sketches there)."""

from __future__ import annotations

import numpy as np
import pytest

from onnxtrim import ir
from onnxtrim.analysis.groups import analyse
from onnxtrim.shape_values import ShapeValues
from tests.helpers import transformer_models as tm

ATTENTIONS = ["ATTENTION", "FUSED_QKV", "MHA", "ATTENTION_OP"]


def groups_of(model, attention="heads"):
    analysis = analyse(ir.to_graph(model), attention=attention)
    return analysis, {g.members: g for g in analysis.groups}


@pytest.mark.parametrize("name", ATTENTIONS)
def test_a_head_is_one_class_spanning_q_k_and_v(name):
    analysis, _ = groups_of(getattr(tm, name))
    (heads,) = [g for g in analysis.groups if g.kind == "heads"]
    assert heads.size == 3 and not heads.blocked and not analysis.barriers
    # every Q, K and V column of head h (its 4 dims) is class h, packed projections part by part;
    # the output projection's rows follow
    for space in heads.spaces:
        classes = analysis.classes_of(space.elems)[1]
        assert np.array_equal(classes, np.tile(np.repeat([0, 1, 2], 4), len(classes) // 12))
    (wo,) = [m for m in analysis.members(heads.id, ("consumer",))]
    assert np.array_equal(wo.classes, np.repeat([0, 1, 2], 4))


@pytest.mark.parametrize("name", ATTENTIONS)
def test_head_dims_mode_keeps_heads_equal_in_size(name):
    analysis, _ = groups_of(getattr(tm, name), "head-dims")
    dims = [g for g in analysis.groups if g.kind == "head-dims"]
    # Q and K dims are one class per dimension across heads; V's (and the output rows) another,
    # unless the projection is packed with a parts axis that ties Q, K and V together
    assert sorted(g.size for g in dims) == ([8] if name == "FUSED_QKV" else [4] if name == "MHA" else [4, 4])
    for group in dims:
        for space in group.spaces:  # dim d of every head is one class: each head's 4 columns read alike
            heads = analysis.classes_of(space.elems)[1].reshape(-1, 4)
            assert (heads == heads[0]).all() if name != "FUSED_QKV" else (heads[:6] == heads[0]).all()
            assert len(set(heads[0].tolist())) == 4


def test_attention_matmuls_scale_with_the_kept_heads():
    from onnxtrim.analysis.rule_context import ScaledMacs

    analysis, _ = groups_of(tm.ATTENTION)
    scaled = [analysis.graph.nodes[e.node].outputs[0].name for e in analysis.edits if isinstance(e, ScaledMacs)]
    assert scaled == ["s", "c"]


def test_residual_stream_is_one_group_through_embeddings_layernorms_and_the_token_gather():
    analysis, groups = groups_of(tm.STREAM)
    stream = groups[("Gather#6", "MatMul#18")]
    assert stream.kind == "stream" and stream.size == 12 and not stream.blocked
    roles = {(m.role, m.tensor) for m in analysis.members(stream.id)}
    assert {("producer", "tok"), ("param", "pos"), ("param", "g0"), ("param", "b0"), ("param", "g1"),
            ("consumer", "wf1"), ("consumer", "wh")} <= roles
    assert {t for r, t in roles if r == "producer"} == {"tok", "wf2"}


def test_vit_patch_embedding_class_token_and_positions_belong_to_the_stream():
    analysis, groups = groups_of(tm.VIT)
    stream = groups[("Conv#4", "MatMul#16")]
    assert stream.kind == "stream" and not stream.blocked and not analysis.barriers
    params = {m.tensor for m in analysis.members(stream.id, ("param",))}
    assert {"cls", "pos", "g0", "b0", "g1", "b1"} <= params


def test_channel_shuffle_keeps_channel_identity_and_pairs_the_branches():
    analysis, groups = groups_of(tm.SHUFFLE)
    pair = groups[("Conv#3", "Conv#5")]
    assert pair.size == 6 and not pair.blocked  # channel j of branch A and channel j of branch B
    a, b = (analysis.classes_of(s.elems)[1] for s in pair.spaces)
    assert np.array_equal(a, np.arange(6)) and np.array_equal(b, np.arange(6))
    shuffled = analysis.classes_of(analysis.tracked["sh"].elems)[1]
    assert np.array_equal(shuffled, np.repeat(np.arange(6), 2))  # output 2j and 2j+1 hold channel j of A and B


def test_computed_pads_fold_on_static_sizes_and_stay_a_barrier_on_runtime_sizes():
    analysis, _ = groups_of(tm.COMPUTED_PADS)
    assert not analysis.barriers and all(len(g.prunable) for g in analysis.groups if g.members != ("Gemm#30",))
    pad = next(n for n in analysis.graph.nodes if n.op == "Pad")
    assert ir.const_value(pad.inputs[1]).tolist() == [0, 0, 1, 1, 0, 0, 1, 1]
    runtime, _ = groups_of(tm.computed_pads("H"))
    assert [b.reason for b in runtime.barriers] == ["Pad node 'Pad#23' has non-constant pads"]


def test_shape_values_know_entries_partly():
    graph = ir.to_graph(tm.VIT, fold_shapes=False)
    values = ShapeValues(graph)
    target = graph.tensors()["target"]
    assert values.entries(target) == ("N", 12, -1)
    folded = ir.to_graph(tm.VIT)
    reshape = next(n for n in folded.nodes if n.op == "Reshape")
    assert ir.const_value(reshape.inputs[1]).tolist() == [0, 12, -1]  # batch copied, width a literal


@pytest.mark.parametrize("op", tm.FUSED_OPS)
def test_fused_onnxruntime_ops_are_supported_or_barriers_that_say_why(op):
    analysis, groups = groups_of(tm.fused(op))
    fc1 = groups[("fc1",)]
    if op in ("BiasGelu", "FastGelu"):
        assert len(fc1.prunable) == 16 and not analysis.barriers
        assert {m.tensor for m in analysis.members(fc1.id, ("param",))} == {"b"}
        return
    (reason,) = fc1.reasons()
    assert reason.startswith(f"com.microsoft op '{op}' at node 'fused' fuses")
    assert reason.endswith("trim the model before onnxruntime's transformer optimiser fuses it, then fuse")


def test_attention_mode_is_checked():
    with pytest.raises(ValueError, match="heads"):
        analyse(ir.to_graph(tm.ATTENTION), attention="dims")  # type: ignore[arg-type]
