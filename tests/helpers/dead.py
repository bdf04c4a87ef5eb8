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


def inject_dead(model: onnx.ModelProto, analysis, group, classes: list[int]) -> onnx.ModelProto | None:
    """Make `classes` of `group` provably dead: every producer's output rows 0 and bias -1e4.

    Every zero-producing activation torchvision uses (ReLU, ReLU6, HardSwish, HardSigmoid,
    Sigmoid, SiLU, GELU) maps -1e4 to exactly zero, so each class is zero wherever it is read.
    Returns None when a producer has no constant bias to drive (then the group is skipped).
    """

    from onnxtrim import ir

    graph = analysis.graph
    nodes = {ir.node_label(n, i): n for i, n in enumerate(graph.nodes)}
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    inits = {t.name: i for i, t in enumerate(copy.graph.initializer)}
    edits: dict[str, tuple[int, np.ndarray]] = {}  # initializer -> (axis, channel positions)
    roots = {int(group.roots[c]) for c in classes}
    for space in group.spaces:
        node = nodes[space.node]
        positions = np.array([p for p, e in enumerate(space.elems) if analysis.table.find(int(e)) in roots])
        if positions.size == 0:
            continue
        if node.op == "Conv" and len(node.inputs) > 2:
            weight, bias, axis = node.inputs[1], node.inputs[2], 0
        elif node.op == "Gemm" and len(node.inputs) > 2:
            weight, bias, axis = node.inputs[1], node.inputs[2], 0 if node.attrs.get("transB", 0) else 1
        else:
            return None
        weight, bias = _initializer_behind(weight), _initializer_behind(bias)
        if weight not in inits or bias not in inits:
            return None
        edits.setdefault(weight, (axis, positions))
        edits.setdefault(bias, (-1, positions))
    if not edits:
        return None
    for name, (axis, positions) in edits.items():
        array = numpy_helper.to_array(copy.graph.initializer[inits[name]]).copy()
        if axis == -1:
            array.reshape(-1)[positions] = -1e4
        else:
            np.moveaxis(array, axis, 0)[positions] = 0.0
        copy.graph.initializer[inits[name]].CopyFrom(numpy_helper.from_array(array, name))
    return copy


def _initializer_behind(tensor) -> str:
    while not hasattr(tensor, "values") and tensor.inputs and tensor.inputs[0].op == "Identity":
        tensor = tensor.inputs[0].inputs[0]
    return tensor.name
