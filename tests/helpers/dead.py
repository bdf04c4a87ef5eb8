"""Make channels provably dead, so removing them must leave every output unchanged."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper


def set_initializer(model: onnx.ModelProto, name: str, update) -> None:
    for i, t in enumerate(model.graph.initializer):
        if t.name == name:
            array = numpy_helper.to_array(t).copy()
            update(array)
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(array, name))
            return
    raise KeyError(name)


def dead_chain(conv_channels: list[int], hidden_units: list[int]) -> onnx.ModelProto:
    """CHAIN with BN weight 0 / bias -1e4 on `conv_channels` and dead `hidden_units` before the ReLUs.

    Every other channel gets a positive bias, so none is dead by accident of random weights.
    """
    from tests.helpers import models

    model = onnx.ModelProto()
    model.CopyFrom(models.CHAIN)

    def kill(values, channels, value, alive=None):
        if alive is not None:
            values[...] = alive
        values[channels] = value

    set_initializer(model, "s", lambda a: kill(a, conv_channels, 0.0))
    set_initializer(model, "bb", lambda a: kill(a, conv_channels, -1e4, alive=1.0))
    set_initializer(model, "w2", lambda a: kill(a, hidden_units, 0.0))
    set_initializer(model, "b2", lambda a: kill(a, hidden_units, -1e4, alive=30.0))
    return model


def write_npy_batches(directory, x: np.ndarray, per_file: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for k, start in enumerate(range(0, len(x), per_file)):
        np.save(directory / f"batch_{k:03d}.npy", x[start:start + per_file])


ACTIVATIONS = frozenset({"Relu", "Clip", "HardSwish", "HardSigmoid", "Sigmoid", "Mul", "Gelu"})


def injectable(analysis, group) -> bool:
    """True when every tensor measuring this group is an activation's output: only then does a
    producer driven to -1e4 make the channel read as exactly zero everywhere."""
    from onnxtrim import ir
    from onnxtrim.criteria.apoz import activation_points

    tensors = analysis.graph.tensors()
    roots = set(group.roots.tolist())
    seen = False
    for obs, _ in activation_points(analysis):
        if not roots & set(analysis.table.roots(obs.elems).tolist()):
            continue
        node = ir.producer(tensors[obs.tensor])
        if node is None or not (node.op in ACTIVATIONS or _is_grouped(node)):
            return False
        seen = True
    return seen


def inject_dead(model: onnx.ModelProto, analysis, group, classes: list[int]) -> onnx.ModelProto | None:
    """Make `classes` of `group` provably dead: every producer's output driven to -1e4.

    A producer with a bias gets its output rows zeroed and bias -1e4 (a bias-less Conv/Gemm
    gets a zero bias first; a MatMul's bias is the constant of the Add after it); one followed
    by BatchNormalization gets BN scale 0 and shift -1e4. Every activation torchvision uses
    (ReLU, ReLU6, HardSwish, HardSigmoid, Sigmoid, SiLU, GELU) maps -1e4 to exactly zero.
    Each driven node gets private copies: exporters share identical tensors between unrelated
    nodes. Returns None when some producer cannot be driven (then skip the group).
    """
    from onnxtrim import ir

    nodes = {ir.node_label(n, i): n for i, n in enumerate(analysis.graph.nodes)}
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    inits = {t.name: t for t in copy.graph.initializer}
    protos = {out: n for n in copy.graph.node for out in n.output}
    roots = {int(group.roots[c]) for c in classes}
    changed = False
    for space in group.spaces:
        node = nodes[space.node]
        positions = np.array([p for p, e in enumerate(space.elems) if analysis.table.find(int(e)) in roots])
        if positions.size == 0:
            continue
        consumers = node.outputs[0].outputs
        proto = protos[node.outputs[0].name]
        if node.op in ("Conv", "Gemm"):
            if len(proto.input) == 2:
                proto.input.append(_add_initializer(copy, inits, f"{node.outputs[0].name}.bias",
                                                    np.zeros(len(space.elems), np.float32)))
            axis = 1 if node.op == "Gemm" and not node.attrs.get("transB", 0) else 0
            targets = [(proto, 1, axis, 0.0), (proto, 2, 0, -1e4)]
        elif len(consumers) == 1 and consumers[0].op == "BatchNormalization":
            bn = protos[consumers[0].outputs[0].name]
            targets = [(bn, 1, 0, 0.0), (bn, 2, 0, -1e4)]
        elif node.op == "MatMul" and len(consumers) == 1 and consumers[0].op == "Add":
            add = protos[consumers[0].outputs[0].name]
            other = 1 if add.input[0] == node.outputs[0].name else 0
            targets = [(proto, 1, -1, 0.0), (add, other, -1, -1e4)]
        else:
            return None
        for owner, index, axis, value in targets:
            source = _initializer_of(copy, inits, protos, owner.input[index])
            if source is None:
                return None
            array = numpy_helper.to_array(source).copy()
            np.moveaxis(array, axis, 0)[positions] = value
            owner.input[index] = _add_initializer(copy, inits, f"{source.name}.dead", array)
            changed = True
    for index, node in enumerate(analysis.graph.nodes):  # a depthwise conv's bias would revive the channel
        tracked = analysis.tracked.get(node.inputs[0].name) if node.inputs else None
        if not _is_grouped(node) or tracked is None or len(node.inputs) < 3:
            continue
        out = analysis.tracked[node.outputs[0].name].elems
        positions = np.flatnonzero(np.isin(analysis.table.roots(out), list(roots)))
        if positions.size:
            proto = protos[node.outputs[0].name]
            source = _initializer_of(copy, inits, protos, proto.input[2])
            if source is None:
                return None
            array = numpy_helper.to_array(source).copy()
            array[positions] = 0.0
            proto.input[2] = _add_initializer(copy, inits, f"{source.name}.dead", array)
    return copy if changed else None


def _is_grouped(node) -> bool:
    return node.op == "Conv" and int(node.attrs.get("group", 1)) > 1


def _initializer_of(model, inits, protos, name):
    """The initializer behind a node input, looking through Identity nodes."""
    while name not in inits and name in protos and protos[name].op_type == "Identity":
        name = protos[name].input[0]
    return inits.get(name)


def _add_initializer(model: onnx.ModelProto, inits: dict, base: str, array: np.ndarray) -> str:
    name, n = base, 1
    while name in inits:
        n += 1
        name = f"{base}{n}"
    tensor = numpy_helper.from_array(array, name)
    model.graph.initializer.append(tensor)
    inits[name] = model.graph.initializer[-1]
    return name
