"""Make attention heads and residual-stream dimensions provably dead, exporter-independently.

- A dead head: its V columns zeroed (weights and bias), its Q and K left alone. Its context
  is then P·0 = 0 whatever the attention weights, so removing the head changes no output.
  Which producer columns are V is found by running the model: the producers of the head group
  get zero weights and their bias set to column index + 1, one producer at a time, and the
  V operand of every attention (the right operand of a MatMul whose left operand comes from a
  Softmax, or input 2 of an ONNX Attention) then holds those indices where it reads that
  producer.
- A dead stream dimension: every producer, bias and parameter slice of its class zeroed (the
  patch embedding, the projections into the stream, class token, positional embedding,
  LayerNorm scale and shift, layer scale). It is then exactly zero wherever it is read.

Every changed constant is a private copy for the node that reads it: exporters share identical
tensors between unrelated nodes.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from onnxtrim import ir
from tests.helpers.dead import _add_initializer, _initializer_of
from tests.helpers.plans import run


def _producer_bias(analysis, label: str):
    """(bias node, input index) of a MatMul/Gemm producer: Gemm's C, or the constant of the Add after a MatMul."""
    nodes = {ir.node_label(n, i): n for i, n in enumerate(analysis.graph.nodes)}
    node = nodes[label]
    if node.op == "Gemm":
        return (node, 2) if len(node.inputs) > 2 else None
    consumers = node.outputs[0].outputs
    if len(consumers) == 1 and consumers[0].op == "Add":
        add = consumers[0]
        other = 1 if add.inputs[0] is node.outputs[0] else 0
        return (add, other) if ir.const_value(add.inputs[other]) is not None else None
    return None


def _v_operands(analysis) -> list[str]:
    names = []
    for node in analysis.graph.nodes:
        if node.op == "Attention" and len(node.inputs) > 2:
            names.append(node.inputs[2].name)
        elif node.op == "MatMul" and all(t.name in analysis.tracked for t in node.inputs):
            source = ir.producer(node.inputs[0])
            while source is not None and source.op in ("Cast", "Dropout", "Identity"):
                source = ir.producer(source.inputs[0])
            if source is not None and source.op == "Softmax":
                names.append(node.inputs[1].name)
    return names


def _rewire(model: onnx.ModelProto, node_name: str, input_index: int, update) -> bool:
    """Give node `node_name`'s constant input a private, updated copy; False if it is not an initializer."""
    inits = {t.name: t for t in model.graph.initializer}
    protos = {out: n for n in model.graph.node for out in n.output}
    owner = next((n for n in model.graph.node if n.name == node_name), None)
    if owner is None:
        return False
    source = _initializer_of(model, inits, protos, owner.input[input_index])
    if source is None:
        return False
    array = numpy_helper.to_array(source).copy()
    update(array)
    owner.input[input_index] = _add_initializer(model, inits, f"{source.name}.dead", array)
    return True


def value_columns(model: onnx.ModelProto, analysis, group, feeds) -> dict[str, dict[int, list[int]]]:
    """Producer node -> class (head) -> the producer's columns that V reads for that head."""
    v_names = _v_operands(analysis)
    found: dict[str, dict[int, list[int]]] = {}
    for space in group.spaces:
        bias = _producer_bias(analysis, space.node)
        if bias is None:
            continue
        probe = onnx.ModelProto()
        probe.CopyFrom(model)
        weight = next(m for m in analysis.members(group.id, ("producer",)) if m.node == space.node)
        _rewire(probe, space.node, weight.input_index, lambda a: a.fill(0.0))
        _rewire(probe, bias[0].name, bias[1], lambda a: a.reshape(-1).__setitem__(
            slice(None), np.arange(1, a.size + 1, dtype=a.dtype)))
        probe.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in v_names)
        values = run(probe, feeds)[-len(v_names):]
        for name, value in zip(v_names, values):
            tracked = analysis.tracked[name]
            _, classes = analysis.classes_of(tracked.elems)
            moved = np.moveaxis(value, tracked.axis, 0)
            for position in range(moved.shape[0]):
                got = np.unique(moved[position])
                if np.all(got == np.round(got)) and got.min() >= 1 and got.max() <= len(space.elems):
                    cls = int(classes[position % len(classes)])
                    found.setdefault(space.node, {}).setdefault(cls, sorted(set(
                        found.get(space.node, {}).get(cls, [])) | set((got - 1).astype(int).tolist())))
    return found


def inject_dead_heads(model: onnx.ModelProto, analysis, group, heads: list[int], feeds) -> onnx.ModelProto | None:
    """A copy of `model` whose `heads` (classes of a heads group) have zero V slices; None if V is not found."""
    columns = value_columns(model, analysis, group, feeds)
    dead = onnx.ModelProto()
    dead.CopyFrom(model)
    changed = False
    for producer, per_head in columns.items():
        cols = sorted({c for h in heads for c in per_head.get(h, [])})
        if not cols:
            continue
        weight = next(m for m in analysis.members(group.id, ("producer",)) if m.node == producer)
        bias = _producer_bias(analysis, producer)
        _rewire(dead, producer, weight.input_index, _zeroing(weight.axis, cols))
        if bias is not None:
            _rewire(dead, bias[0].name, bias[1], _zeroing(-1, cols))
        changed = True
    return dead if changed and all(any(h in per for per in columns.values()) for h in heads) else None


def inject_dead_stream(model: onnx.ModelProto, analysis, group, classes: list[int]) -> onnx.ModelProto:
    """A copy of `model` where `classes` of a stream group are exactly zero wherever they are read."""
    dead = onnx.ModelProto()
    dead.CopyFrom(model)
    nodes = {ir.node_label(n, i): n for i, n in enumerate(analysis.graph.nodes)}
    for member in analysis.members(group.id, ("producer", "bias", "param")):
        positions = np.flatnonzero(np.isin(member.classes, classes))
        if positions.size == 0:
            continue
        assert _rewire(dead, nodes[member.node].name, member.input_index, _zeroing(member.axis, positions)), member
    return dead


def _zeroing(axis: int, positions):
    def update(array: np.ndarray) -> None:
        np.moveaxis(array, axis, 0)[positions] = 0.0

    return update
