"""A small BERT-style encoder from both torch exporters: what the analysis makes of it, dead GELU
neurons removed exactly, and masked equivalence for random keep sets.

The network (plain torch): token + position embedding, LayerNorm, two post-norm encoder layers
(separate q/k/v Linear, 4-head scaled dot-product attention, output projection, residual +
LayerNorm, Linear 32→64 → exact (erf) GELU → Linear 64→32, residual + LayerNorm), and a pooled
head on token 0 (Linear 32→32 → tanh → Linear 32→3). Token ids are int64 [batch, seq], both dynamic.

What the analysis finds, on both exports:
- the 64 MLP neurons of each layer are one prunable group each (producer fc1, consumer fc2);
  the pooler's 32 neurons are prunable too (tanh output, consumed by the classifier);
- q/k/v: blocked at the head split, "Reshape node ... has a computed target shape" (the target
  shape is built from Shape(ids) because batch and sequence are dynamic); the attention MatMul
  of two activations is never reached;
- residual stream (output projection and fc2 channels, hidden 32): blocked at the residual Add,
  "Add node ... combines channels with '<name>' (output of LayerNormalization '...'), which carries no
  removable channels".
  The stream itself is the output of a LayerNormalization, which creates no channel space, so
  the Add meets an untracked activation before any channel reaches the next LayerNorm: the
  LayerNormalization rule ("normalises over the channel axis") is never what blocks them;
- classifier: "channels reach graph output 'logits'".

Exact GELU of a very negative input is exactly zero in float32 (erf saturates to -1, so
0.5·x·(1 + erf(x/√2)) = -0.0, and |-0.0| = 0 for the mean |a|), in torch and in
onnxruntime (the TorchScript erf decomposition and the opset-20 Gelu op alike). So zeroed fc1 rows
with bias -1e4 make neurons dead that `criterion="mean-activation", threshold=0` finds and removes
through the public API (APoZ has no signal after a GELU).
"""

from __future__ import annotations

import math
import warnings
from collections import Counter

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from onnxtrim import ir
from onnxtrim.api import trim
from onnxtrim.config import TrimConfig
from onnxtrim.criteria.apoz import activation_points
from tests.helpers.plans import analysis_of, assert_masked_equivalent, random_plan, run

VOCAB, HIDDEN, HEADS, SEQ, FF = 50, 32, 4, 8, 64
DEAD = {0: [3, 10, 17, 40, 63], 1: [0, 5, 31, 32, 50, 51]}  # dead MLP neurons per layer
EXPORTERS = ["torchscript", "dynamo"]


class EncoderLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(HIDDEN, HIDDEN) for _ in range(4))
        self.ln1, self.ln2 = nn.LayerNorm(HIDDEN), nn.LayerNorm(HIDDEN)
        self.fc1, self.fc2 = nn.Linear(HIDDEN, FF), nn.Linear(FF, HIDDEN)

    def forward(self, x):
        b, t, _ = x.shape
        d = HIDDEN // HEADS

        def heads(y):
            return y.reshape(b, t, HEADS, d).transpose(1, 2)

        q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
        attention = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d), dim=-1)
        context = (attention @ v).transpose(1, 2).reshape(b, t, HIDDEN)
        x = self.ln1(x + self.o(context))
        return self.ln2(x + self.fc2(nn.functional.gelu(self.fc1(x))))  # exact (erf) GELU


class TinyEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.tok, self.pos = nn.Embedding(VOCAB, HIDDEN), nn.Embedding(SEQ, HIDDEN)
        self.ln = nn.LayerNorm(HIDDEN)
        self.layers = nn.ModuleList([EncoderLayer(), EncoderLayer()])
        self.pool, self.cls = nn.Linear(HIDDEN, HIDDEN), nn.Linear(HIDDEN, 3)

    def forward(self, ids):
        x = self.ln(self.tok(ids) + self.pos.weight[: ids.shape[1]])
        for layer in self.layers:
            x = layer(x)
        return self.cls(torch.tanh(self.pool(x[:, 0])))


def dead_encoder() -> TinyEncoder:
    torch.manual_seed(0)
    net = TinyEncoder().eval()
    with torch.no_grad():
        for i, dead in DEAD.items():
            fc1 = net.layers[i].fc1
            fc1.weight[dead] = 0.0
            fc1.bias[dead] = -1e4
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


def linear_of_groups(analysis, net) -> dict[str, object]:
    """Module name (e.g. 'layers.0.fc1') -> the channel group its producer node creates.

    Matched on weight values, so the test does not depend on either exporter's node names.
    """
    weights = {name: m.weight.detach().numpy().T for name, m in net.named_modules() if isinstance(m, nn.Linear)}
    nodes = {ir.node_label(n, i): n for i, n in enumerate(analysis.graph.nodes)}
    found = {}
    for group in analysis.groups:
        (member,) = group.members
        node = nodes[member]
        w = ir.const_value(node.inputs[1])
        if node.op == "Gemm" and node.attrs.get("transB", 0):
            w = w.T
        names = [n for n, lw in weights.items() if lw.shape == w.shape and np.array_equal(lw, w)]
        assert len(names) == 1, (member, names)
        found[names[0]] = group
    assert sorted(found) == sorted(weights)
    return found


def dim_params(value: onnx.ValueInfoProto) -> list[str]:
    return [d.dim_param for d in value.type.tensor_type.shape.dim]


# ---- 1. analysis --------------------------------------------------------------------------


def test_analysis_finds_mlp_groups_and_blocks_attention_and_residual(exported):
    _, net, _, model = exported
    analysis = analysis_of(model)
    groups = linear_of_groups(analysis, net)
    producers = {ir.node_label(n, i): n for i, n in enumerate(analysis.graph.nodes)}
    assert len(analysis.groups) == 14  # one per Linear: 2 × (q, k, v, o, fc1, fc2) + pool + cls

    for i in range(2):
        fc1 = groups[f"layers.{i}.fc1"]
        assert fc1.size == FF and len(fc1.prunable) == FF and not fc1.blocked, fc1.reasons()

        for name in ("q", "k", "v"):  # heads: blocked where the projection is split into heads
            g = groups[f"layers.{i}.{name}"]
            assert g.size == HIDDEN and len(g.prunable) == 0
            (reason,) = g.reasons()
            assert reason.startswith("Reshape node '") and reason.endswith("' has a computed target shape")

        for name in ("o", "fc2"):  # residual stream: blocked at the Add with the LayerNorm output
            g = groups[f"layers.{i}.{name}"]
            assert g.size == HIDDEN and len(g.prunable) == 0
            (reason,) = g.reasons()
            assert reason.startswith("Add node '") and reason.endswith("which carries no removable channels")
            assert "(output of LayerNormalization '" in reason
            other = reason.split("combines channels with '")[1].split("'")[0]
            (norm,) = [n for n in producers.values() if other in [t.name for t in n.outputs]]
            assert norm.op == "LayerNormalization"

    assert len(groups["pool"].prunable) == HIDDEN and not groups["pool"].blocked
    assert groups["cls"].reasons() == ["channels reach graph output 'logits'"]
    assert len(groups["cls"].prunable) == 0

    # Every barrier is a head split or a residual Add; no LayerNormalization is ever reached by a channel.
    assert Counter(b.op for b in analysis.barriers) == {"Reshape": 6, "Add": 4}
    # Consumers read three tensors: the GELU output (fc2), the tanh output (the classifier), and the
    # LayerNorm output the MLP's fc1 reads. None is a ReLU output: APoZ has no signal anywhere.
    assert len(analysis.consumed) == 3
    assert not any(at_relu for _, at_relu in activation_points(analysis))


# ---- 2. dead neurons removed exactly ------------------------------------------------------


def test_gelu_of_a_very_negative_input_is_exactly_zero():
    x = torch.tensor([-1e4, -1e3, -20.0], dtype=torch.float32)
    assert (nn.functional.gelu(x) == 0).all()  # -0.0, which equals 0


def test_dead_gelu_neurons_are_removed_exactly(exported):
    _, net, path, model = exported
    rng = np.random.default_rng(0)
    ids = token_ids(rng, 40)
    data = [{"ids": ids[k:k + 8]} for k in range(0, len(ids), 8)]
    result = trim(TrimConfig(model=path, data=data, criterion="mean-activation", threshold=0.0,
                             round_to=1))

    groups = linear_of_groups(analysis_of(model), net)
    rows = {tuple(g["members"]): (g["size"], g["kept"]) for g in result.report["groups"]}
    for i, dead in DEAD.items():
        assert rows[groups[f"layers.{i}.fc1"].members] == (FF, FF - len(dead))
    removed = {members for members, (size, kept) in rows.items() if kept != size}
    assert removed == {groups[f"layers.{i}.fc1"].members for i in DEAD}
    assert result.plan.removed == sum(len(d) for d in DEAD.values())

    trimmed = result.model
    onnx.checker.check_model(trimmed, full_check=True)
    assert [i.name for i in trimmed.graph.input] == ["ids"] and [o.name for o in trimmed.graph.output] == ["logits"]
    assert [i.type for i in trimmed.graph.input] == [i.type for i in model.graph.input]
    assert all(dim_params(trimmed.graph.input[0]))  # batch and sequence stay dynamic
    assert dim_params(trimmed.graph.output[0])[0]

    # Against the ORIGINAL model and torch, not a masked reference; another batch and a shorter sequence too.
    for feeds in ({"ids": ids}, {"ids": token_ids(rng, 3, seq=5)}):
        got = run(trimmed, feeds)[0]
        np.testing.assert_allclose(got, run(model, feeds)[0], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got, torch_logits(net, feeds["ids"]), rtol=1e-4, atol=1e-4)
    assert result.fidelity is not None and result.fidelity.max_abs_diff < 1e-4

    # The MLP weights shrank to the kept neurons, and hold exactly the kept rows and columns.
    graph = ir.to_graph(trimmed)
    by_name = {n.name: n for n in graph.nodes}
    for i, dead in DEAD.items():
        layer = net.layers[i]
        alive = np.setdiff1d(np.arange(FF), dead)
        (fc1_name,) = groups[f"layers.{i}.fc1"].members
        (fc2_name,) = groups[f"layers.{i}.fc2"].members
        fc1, fc2 = by_name[fc1_name], by_name[fc2_name]
        w1, w2 = ir.const_value(fc1.inputs[1]), ir.const_value(fc2.inputs[1])
        assert w1.shape == (HIDDEN, len(alive)) and w2.shape == (len(alive), HIDDEN)
        np.testing.assert_array_equal(w1, layer.fc1.weight.detach().numpy().T[:, alive])
        np.testing.assert_array_equal(w2, layer.fc2.weight.detach().numpy().T[alive])
        (bias_add,) = fc1.outputs[0].outputs
        assert bias_add.op == "Add"
        bias = next(v for v in map(ir.const_value, bias_add.inputs) if v is not None)
        np.testing.assert_array_equal(bias, layer.fc1.bias.detach().numpy()[alive])
    assert result.report["cost"]["params_after"] == result.report["cost"]["params_before"] - sum(
        len(d) * (2 * HIDDEN + 1) for d in DEAD.values())


# ---- 3. masked equivalence for random keep sets --------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_plans_are_masked_equivalent(exported, seed):
    _, net, _, model = exported
    rng = np.random.default_rng(seed)
    plan = random_plan(model, rng, share=0.5)
    groups = linear_of_groups(analysis_of(model), net)
    expected = {groups[n].members for n in ("layers.0.fc1", "layers.1.fc1", "pool")}
    assert {g.members for g in plan.groups} == expected
    assert sorted(len(g.keep) for g in plan.groups) == [HIDDEN // 2, FF // 2, FF // 2]
    for feeds in ({"ids": token_ids(rng, 3)}, {"ids": token_ids(rng, 2, seq=5)}):
        trimmed = assert_masked_equivalent(model, plan, feeds)
        assert not np.allclose(run(trimmed, feeds)[0], run(model, feeds)[0], atol=1e-4)  # the plan matters
