"""A small BERT-style encoder (tests/helpers/encoder.py) from both torch exporters, batch and
sequence dynamic: what the analysis makes of it, dead heads, stream dimensions and GELU neurons
made dead *in torch* removed exactly, and masked equivalence for random keep sets.

What the analysis finds, on both exports:
- each layer's attention is one group of 4 heads (producers q, k, v; consumer o): a head is one
  class spanning its Q, K and V columns and the output projection's rows;
- the residual stream is one group of 32 dimensions: the token embedding (a Gather on a constant
  table) and o and fc2 of both layers produce it; the positional embedding (a Slice of a constant
  to the sequence length), every LayerNorm's scale and shift are its parameters; q, k, v, fc1 and
  the pooler consume it;
- the 64 GELU neurons of each MLP and the pooler's 32 tanh neurons are groups of their own;
- the classifier reaches the graph output; there is no barrier.

Dead units made in torch: a head by zeroing its rows of v (weight and bias: its context is
P·0 = 0); a stream dimension by zeroing it in both embeddings, every LayerNorm and every
producer into the stream (it is then zero wherever it is read); a GELU neuron by a zero fc1
row with bias -1e4 (exact GELU of -1e4 is exactly zero in float32). `criterion="mean-activation",
threshold=0` removes exactly those, with the exact LayerNorm rewrite, and the outputs equal torch's.
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from onnxtrim import ir
from onnxtrim.api import trim
from onnxtrim.config import TrimConfig
from tests.helpers.encoder import FF, HEADS, HIDDEN, SEQ, VOCAB, TinyEncoder
from tests.helpers.plans import analysis_of, assert_masked_equivalent, random_plan, run

DEAD_NEURONS = {0: [3, 10, 17, 40, 63], 1: [0, 5, 31, 32, 50, 51]}  # dead MLP neurons per layer
DEAD_HEADS = {0: [1], 1: [0, 3]}
DEAD_DIMS = [2, 9, 30]
HEAD = HIDDEN // HEADS
EXPORTERS = ["torchscript", "dynamo"]


def dead_encoder() -> TinyEncoder:
    torch.manual_seed(0)
    net = TinyEncoder().eval()
    with torch.no_grad():
        for i, dead in DEAD_NEURONS.items():
            net.layers[i].fc1.weight[dead] = 0.0
            net.layers[i].fc1.bias[dead] = -1e4
        for i, heads in DEAD_HEADS.items():
            for h in heads:
                rows = slice(h * HEAD, (h + 1) * HEAD)
                net.layers[i].v.weight[rows] = 0.0
                net.layers[i].v.bias[rows] = 0.0
        net.tok.weight[:, DEAD_DIMS] = 0.0
        net.pos.weight[:, DEAD_DIMS] = 0.0
        for module in net.modules():
            if isinstance(module, nn.LayerNorm):
                module.weight[DEAD_DIMS] = 0.0
                module.bias[DEAD_DIMS] = 0.0
        for layer in net.layers:
            for linear in (layer.o, layer.fc2):
                linear.weight[DEAD_DIMS] = 0.0
                linear.bias[DEAD_DIMS] = 0.0
    return net


def export(net, path, exporter: str) -> None:
    ids = torch.randint(0, VOCAB, (2, SEQ))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "torchscript":
            torch.onnx.export(net, (ids,), str(path), dynamo=False, opset_version=17, input_names=["ids"],
                              output_names=["logits"], dynamic_axes={"ids": {0: "n", 1: "t"}, "logits": {0: "n"}})
        else:
            torch.onnx.export(net, (ids,), str(path), dynamo=True, verbose=False, input_names=["ids"],
                              output_names=["logits"],
                              dynamic_shapes={"ids": {0: torch.export.Dim("n"), 1: torch.export.Dim("t", max=SEQ)}})


def token_ids(rng: np.random.Generator, batch: int, seq: int = SEQ) -> np.ndarray:
    return rng.integers(0, VOCAB, size=(batch, seq), dtype=np.int64)


def torch_logits(net, ids: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(ids)).numpy()


@pytest.fixture(scope="module", params=EXPORTERS)
def exported(request, tmp_path_factory):
    net = dead_encoder()
    path = tmp_path_factory.mktemp(request.param) / "encoder.onnx"
    export(net, path, request.param)
    return request.param, net, path, onnx.load(path)


def groups_of_modules(analysis, net) -> dict[str, object]:
    """Module name (e.g. 'layers.0.fc1') -> the channel group its Linear produces.

    Matched on weight values, so the test does not depend on either exporter's node names.
    """
    weights = {name: m.weight.detach().numpy().T for name, m in net.named_modules() if isinstance(m, nn.Linear)}
    nodes = {ir.node_label(n, i): n for i, n in enumerate(analysis.graph.nodes)}
    found = {}
    for group in analysis.groups:
        for member in group.members:
            node = nodes[member]
            if node.op not in ("MatMul", "Gemm"):
                continue
            w = ir.const_value(node.inputs[1])
            if node.op == "Gemm" and node.attrs.get("transB", 0):
                w = w.T
            (name,) = [n for n, lw in weights.items() if lw.shape == w.shape and np.array_equal(lw, w)]
            found[name] = group
    assert sorted(found) == sorted(weights)
    return found


# ---- 1. analysis --------------------------------------------------------------------------


def test_analysis_finds_heads_the_stream_and_the_mlp_units(exported):
    _, net, _, model = exported
    analysis = analysis_of(model)
    groups = groups_of_modules(analysis, net)
    assert not analysis.barriers and len(analysis.groups) == 7
    stream = groups["layers.0.o"]
    assert stream.kind == "stream" and stream.size == HIDDEN and not stream.blocked
    assert all(groups[f"layers.{i}.{n}"] is stream for i in range(2) for n in ("o", "fc2"))
    ops = {ir.node_label(n, i): n.op for i, n in enumerate(analysis.graph.nodes)}
    assert sorted(ops[m] for m in stream.members) == ["Gather", "MatMul", "MatMul", "MatMul", "MatMul"]
    for i in range(2):
        heads = groups[f"layers.{i}.q"]
        assert heads.kind == "heads" and heads.size == HEADS and not heads.blocked
        assert groups[f"layers.{i}.k"] is heads and groups[f"layers.{i}.v"] is heads
        assert groups[f"layers.{i}.fc1"].size == FF and not groups[f"layers.{i}.fc1"].blocked
    assert len(groups["pool"].prunable) == HIDDEN
    assert groups["cls"].reasons() == ["channels reach graph output 'logits'"]
    params = {m.tensor for m in analysis.members(stream.id, ("param",))}
    assert len([p for p in params if ir.const_shape(analysis.graph.tensors()[p]) == (SEQ, HIDDEN)]) == 1  # pos


# ---- 2. dead units removed exactly ------------------------------------------------------


def test_gelu_of_a_very_negative_input_is_exactly_zero():
    x = torch.tensor([-1e4, -1e3, -20.0], dtype=torch.float32)
    assert (nn.functional.gelu(x) == 0).all()  # -0.0, which equals 0


def test_dead_heads_stream_dimensions_and_neurons_are_removed_exactly(exported):
    _, net, path, model = exported
    rng = np.random.default_rng(0)
    ids = token_ids(rng, 40)
    data = [{"ids": ids[k:k + 8]} for k in range(0, len(ids), 8)]
    result = trim(TrimConfig(model=path, data=data, criterion="mean-activation", threshold=0.0,
                             round_to=1))

    groups = groups_of_modules(analysis_of(model), net)
    rows = {tuple(g["members"]): (g["size"], g["kept"]) for g in result.report["groups"]}
    expected = {groups[f"layers.{i}.fc1"].members: (FF, FF - len(d)) for i, d in DEAD_NEURONS.items()}
    expected |= {groups[f"layers.{i}.q"].members: (HEADS, HEADS - len(h)) for i, h in DEAD_HEADS.items()}
    expected[groups["layers.0.o"].members] = (HIDDEN, HIDDEN - len(DEAD_DIMS))
    assert {m: r for m, r in rows.items() if r[0] != r[1]} == expected

    trimmed = result.model
    onnx.checker.check_model(trimmed, full_check=True)
    assert [i.name for i in trimmed.graph.input] == ["ids"] and [o.name for o in trimmed.graph.output] == ["logits"]
    assert [i.type for i in trimmed.graph.input] == [i.type for i in model.graph.input]  # batch, sequence dynamic
    # Against the ORIGINAL model and torch, not a masked reference; another batch and a shorter sequence too.
    for feeds in ({"ids": ids}, {"ids": token_ids(rng, 3, seq=5)}):
        got = run(trimmed, feeds)[0]
        np.testing.assert_allclose(got, run(model, feeds)[0], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got, torch_logits(net, feeds["ids"]), rtol=1e-4, atol=1e-4)
    assert result.fidelity is not None and result.fidelity.max_abs_diff < 1e-4

    # The weights shrank to the kept units and hold exactly the kept rows and columns.
    graph = ir.to_graph(trimmed)
    by_name = {n.name: n for n in graph.nodes}
    alive_dims = np.setdiff1d(np.arange(HIDDEN), DEAD_DIMS)
    for i, dead in DEAD_NEURONS.items():
        layer = net.layers[i]
        alive = np.setdiff1d(np.arange(FF), dead)
        (fc1,) = [by_name[m] for m in groups[f"layers.{i}.fc1"].members]
        np.testing.assert_array_equal(ir.const_value(fc1.inputs[1]),
                                      layer.fc1.weight.detach().numpy().T[np.ix_(alive_dims, alive)])
        heads_alive = np.setdiff1d(np.arange(HEADS), DEAD_HEADS[i])
        columns = (heads_alive[:, None] * HEAD + np.arange(HEAD)).reshape(-1)
        v = next(by_name[m] for m in groups[f"layers.{i}.q"].members
                 if np.array_equal(ir.const_value(by_name[m].inputs[1]),
                                   layer.v.weight.detach().numpy().T[np.ix_(alive_dims, columns)]))
        assert v is not None


# ---- 3. masked equivalence for random keep sets --------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_plans_are_masked_equivalent(exported, seed):
    _, net, _, model = exported
    rng = np.random.default_rng(seed)
    plan = random_plan(model, rng, share=0.5)
    groups = groups_of_modules(analysis_of(model), net)
    prunable = {g.members for g in groups.values() if len(g.prunable)}
    assert {g.members for g in plan.groups} == prunable and len(prunable) == 6
    for feeds in ({"ids": token_ids(rng, 3)}, {"ids": token_ids(rng, 2, seq=5)}):
        trimmed = assert_masked_equivalent(model, plan, feeds)
        assert not np.allclose(run(trimmed, feeds)[0], run(model, feeds)[0], atol=1e-4)  # the plan matters
