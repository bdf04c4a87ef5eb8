"""Masked equivalence for attention heads, head dims, residual streams (both LayerNorm semantics),
channel shuffles, computed shapes and fused ops, on the hand-built graphs of
`helpers/transformer_models.py`; and the direct statements the rewrites make: removing a head
equals zeroing its V slice; removing zero stream dimensions with the exact LayerNorm rewrite
changes nothing; the plain rewrite normalises over the kept channels."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxtrim import ir, metrics, stages
from onnxtrim.analysis.groups import analyse
from onnxtrim.api import trim
from onnxtrim.config import TrimConfig
from onnxtrim.errors import ConfigError
from onnxtrim.passes.apply_plan import apply_plan
from onnxtrim.plan import GroupPlan, PrunePlan, structure_fingerprint
from tests.helpers import transformer_models as tm
from tests.helpers.dead import set_initializer
from tests.helpers.plans import assert_masked_equivalent, random_feeds, random_plan, run

CASES = [(name, attention, layernorm)
         for name in ("ATTENTION", "FUSED_QKV", "MHA", "ATTENTION_OP")
         for attention in ("heads", "head-dims") for layernorm in ("exact",)]
CASES += [(name, "heads", layernorm) for name in ("STREAM", "VIT") for layernorm in ("exact", "plain")]
CASES += [("SHUFFLE", "heads", "exact"), ("COMPUTED_PADS", "heads", "exact")]


def model_of(name: str) -> onnx.ModelProto:
    return getattr(tm, name) if name.isupper() else tm.fused(name)


@pytest.mark.parametrize(("name", "attention", "layernorm"), CASES + [(op, "heads", "exact")
                                                                       for op in ("BiasGelu", "FastGelu")])
@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), share=st.floats(0.1, 0.9))
def test_masked_equivalence_for_random_head_and_channel_choices(name, attention, layernorm, seed, share):
    model = model_of(name)
    analysis = analyse(ir.to_graph(model), attention=attention)
    rng = np.random.default_rng(seed)
    plan = random_plan(model, rng, share, analysis)
    assert plan.groups
    assert_masked_equivalent(model, plan, random_feeds(model, rng, batch=3), analysis=analysis, layernorm=layernorm)


@pytest.mark.parametrize(("name", "attention", "layernorm"), CASES)
def test_projected_cost_is_the_rewritten_models_cost(name, attention, layernorm):
    model = model_of(name)
    analysis = analyse(ir.to_graph(model), attention=attention)
    plan = random_plan(model, np.random.default_rng(3), 0.5, analysis)
    trimmed = apply_plan(model, plan, analysis, layernorm=layernorm)  # type: ignore[arg-type]
    assert stages.projected_cost(analysis, plan) == metrics.cost(trimmed)
    assert metrics.cost(trimmed).macs < metrics.cost(model).macs


# name -> (V weight, V bias, first V column): head h of V is columns first + 4h ... first + 4h + 3
V_SLICES = {"ATTENTION": ("wv", "bv", 0), "FUSED_QKV": ("wqkv", "bqkv", 24), "MHA": ("win", "bin", 24),
            "ATTENTION_OP": ("wv", None, 0)}


@pytest.mark.parametrize("name", sorted(V_SLICES))
@pytest.mark.parametrize("head", [0, 2])
def test_removing_a_head_equals_zeroing_its_v_slice(name, head):
    model = model_of(name)
    analysis = analyse(ir.to_graph(model))
    (heads,) = [g for g in analysis.groups if g.kind == "heads"]
    keep = tuple(c for c in range(3) if c != head)
    plan = PrunePlan(structure_fingerprint(model), "test", (GroupPlan(heads.id, heads.members, 3, keep),))
    weight, bias, first = V_SLICES[name]
    columns = slice(first + 4 * head, first + 4 * head + 4)
    zeroed = onnx.ModelProto()
    zeroed.CopyFrom(model)
    set_initializer(zeroed, weight, lambda w: w.__setitem__((slice(None), columns), 0.0))
    if bias is not None:
        set_initializer(zeroed, bias, lambda b: b.__setitem__(columns, 0.0))
    feeds = random_feeds(model, np.random.default_rng(head), batch=3)
    trimmed = apply_plan(model, plan)
    np.testing.assert_allclose(run(trimmed, feeds)[0], run(zeroed, feeds)[0], rtol=1e-5, atol=1e-5)
    assert not np.allclose(run(trimmed, feeds)[0], run(model, feeds)[0], atol=1e-3)  # the head mattered


def _zero_stream_dims(model, analysis, group, classes):
    """Zero every producer, bias and parameter slice of `classes`: those dimensions are then exactly
    zero wherever the stream is read (a LayerNorm with zero scale and shift outputs zero)."""
    dead = onnx.ModelProto()
    dead.CopyFrom(model)
    for member in analysis.members(group.id, ("producer", "bias", "param")):
        positions = np.flatnonzero(np.isin(member.classes, classes))
        set_initializer(dead, member.tensor,
                        lambda a, m=member, p=positions: np.moveaxis(a, m.axis, 0).__setitem__(p, 0.0))
    return dead


@pytest.mark.parametrize("name", ["STREAM", "VIT"])
def test_dead_stream_dimensions_go_exactly_with_the_exact_layernorm_and_approximately_with_plain(name, tmp_path):
    model = model_of(name)
    analysis = analyse(ir.to_graph(model))
    (stream,) = [g for g in analysis.groups if g.kind == "stream"]
    dead = _zero_stream_dims(model, analysis, stream, [1, 5, 6])
    path = tmp_path / "dead.onnx"
    onnx.save(dead, path)
    rng = np.random.default_rng(0)
    data = [random_feeds(model, rng, batch=4) for _ in range(3)]
    exact = trim(TrimConfig(model=path, data=data, criterion="mean-activation", threshold=0.0, holdout=0.0, round_to=1))
    rows = {tuple(g["members"]): g for g in exact.report["groups"]}
    assert rows[stream.members]["kept"] == 9 and exact.report["criterion"]["selection"]["layernorm"] == "exact"
    feeds = random_feeds(model, rng, batch=5)
    original = run(dead, feeds)[0]
    np.testing.assert_allclose(run(exact.model, feeds)[0], original, rtol=1e-5, atol=1e-5)
    plain = trim(TrimConfig(model=path, data=data, criterion="mean-activation", threshold=0.0, holdout=0.0, round_to=1,
                            layernorm="plain"))
    assert np.abs(run(plain.model, feeds)[0] - original).max() > 1e-3  # statistics over 9 channels, not 12
    # onnxruntime's full optimisation must not fuse the exact rewrite back into a LayerNorm over 9 channels
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(exact.model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, feeds)[0], original, rtol=1e-5, atol=1e-5)


def test_both_layernorm_rewrites_against_numpy():
    """x ─MatMul(w)─LayerNorm─MatMul(w2)─▶ y with channels {2, 7, 8} of w's group removed."""
    model = tm.build("""
ln (float[N,5,6] x, float[6,12] w, float[12] g, float[12] b, float[12,4] w2) => (float[N,5,4] y) {
  h = MatMul(x, w)
  n = LayerNormalization<axis=-1, epsilon=0.001>(h, g, b)
  y = MatMul(n, w2)
}""", ["w", "g", "b", "w2"])
    analysis = analyse(ir.to_graph(model))
    group = next(g for g in analysis.groups if g.kind == "stream")
    keep = np.setdiff1d(np.arange(12), [2, 7, 8])
    plan = PrunePlan(structure_fingerprint(model), "test", (GroupPlan(group.id, group.members, 12, tuple(keep)),))
    w, g, b, w2 = (onnx.numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == n)).astype(np.float64)
                   for n in ("w", "g", "b", "w2"))
    x = np.random.default_rng(0).standard_normal((2, 5, 6)).astype(np.float32)

    def layer_norm(h):
        mean = h.mean(-1, keepdims=True)
        return (h - mean) / np.sqrt(((h - mean) ** 2).mean(-1, keepdims=True) + 1e-3)

    h = x @ w
    zeroed = np.where(np.isin(np.arange(12), keep), h, 0.0)  # the removed channels as zeros, all 12 counted
    exact = (layer_norm(zeroed) * g + b)[..., keep] @ w2[keep]
    plain = (layer_norm(h[..., keep]) * g[keep] + b[keep]) @ w2[keep]
    for mode, expected in (("exact", exact), ("plain", plain)):
        got = run(apply_plan(model, plan, layernorm=mode), {"x": x})[0]
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5, err_msg=mode)
    with pytest.raises(Exception, match="layernorm"):
        apply_plan(model, plan, layernorm="approximate")  # type: ignore[arg-type]


def test_layernorm_choice_is_a_validated_config_field():
    with pytest.raises(ConfigError, match="--layernorm must be exact or plain"):
        TrimConfig(model="m.onnx", data=[], criterion="mean-activation", layernorm="loose")  # type: ignore[arg-type]
    from onnxtrim.cli.trim_command import build_parser, config_from_args

    args = build_parser().parse_args(["m.onnx", "--criterion", "l1", "--fraction", "0.5", "--layernorm", "plain"])
    assert config_from_args(args).layernorm == "plain"


def test_mean_activation_scores_a_head_by_its_mean_absolute_output():
    """The criterion reads what the output projection reads (the merged context) and pools each head's
    4 dims: the score of head h is mean |context[..., 4h:4h+4]|, computed here with onnxruntime."""
    from onnxtrim.calibration.feeds import Batch
    from onnxtrim.criteria import make_criterion

    model = tm.ATTENTION
    analysis = stages.analyse(model)
    (heads,) = [g for g in analysis.groups if g.kind == "heads"]
    feeds = random_feeds(model, np.random.default_rng(0), batch=4)
    criterion = make_criterion("mean-activation")
    stats = stages.measure(model, analysis, criterion.requests(analysis),
                           [Batch(feeds, "test", np.arange(4, dtype=np.int64))])
    scores = criterion.scores(analysis, stats).values[heads.id]
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    exposed.graph.output.append(onnx.helper.make_tensor_value_info("cm", onnx.TensorProto.FLOAT, None))
    context = run(exposed, feeds)[1]
    expected = np.abs(context).reshape(*context.shape[:-1], 3, 4).mean(axis=(0, 1, 3))
    np.testing.assert_allclose(scores, expected, rtol=1e-5)
