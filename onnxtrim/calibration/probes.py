"""In-graph probes: per-channel reductions added as extra outputs.

Like onnxruntime's own calibrators (`augment_graph`), the statistics are computed inside the
graph, so each batch returns C numbers per observed tensor instead of the activation itself:
calibration then costs about what inference costs, whatever the dataset size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .. import ir

# The sums kept per channel; `count` (values per channel) is derived from Size / C.
STAT_KINDS = ("zeros", "sum", "abs_sum", "sq_sum")
_REDUCE_OP = {"zeros": "ReduceSum", "sum": "ReduceSum", "abs_sum": "ReduceL1", "sq_sum": "ReduceSumSquare"}
# ReduceSum took `axes` as an input from opset 13, the other reductions from opset 18.
_AXES_AS_INPUT_SINCE = {"ReduceSum": 13, "ReduceL1": 18, "ReduceSumSquare": 18}


@dataclass(frozen=True)
class Probe:
    tensor: str
    axis: int
    outputs: dict[str, str]  # stat kind (and "size") -> graph output name
    spatial: int | None = None  # set: every output holds per-sample channel means [N, C]; no "size"


@dataclass(frozen=True)
class ObservedTensor:
    name: str
    axis: int
    rank: int
    elem_type: int  # onnx TensorProto data type
    channels: int | None = None
    spatial: int | None = None  # product of the static dims after the channel axis of an NCHW tensor
    nonnegative: bool = False  # a ReLU's output: zero exactly where it is not positive

    @property
    def blocked_layout(self) -> bool:
        """Whether every statistic can be computed with ops onnxruntime runs in its blocked (NCHWc) layout.

        A probe that reads an activation with any other op makes onnxruntime convert the
        activation out of that layout first, a full copy per observed tensor (on resnet50 the
        reductions and those copies cost 0.4x of a plain run). For a non-negative float NCHW
        tensor the per-sample means need only blocked ops: GlobalAveragePool of x gives the
        sum (and the sum of |x|, the same thing), of Mul(x, x) the sum of squares, and of
        Relu(1 - 1e30·x), a depthwise 1x1 Conv with a fused Relu, the zero count (it is 1
        exactly where x is 0, and where 0 < x < 1e-30, which no ReLU output in practice holds).
        """
        return (self.nonnegative and self.axis == 1 and self.rank == 4 and self.channels is not None
                and self.spatial is not None and self.elem_type == TensorProto.FLOAT)


def add_probes(model: onnx.ModelProto, observed: list[ObservedTensor],
               kinds: tuple[str, ...] = STAT_KINDS) -> tuple[onnx.ModelProto, list[Probe]]:
    """Return a copy of `model` whose outputs are reductions of each observed tensor.

    The model's own outputs are dropped, and the probes appended in reverse (the first
    observed tensor's last), because that decides when onnxruntime runs them: its default
    execution order is a depth-first walk back from the graph's leaves, starting with the
    leaf of highest node index. With the probes as the only leaves, each probe runs as soon
    as its tensor exists, and the tensor can then be freed or overwritten. Behind the
    model's output (whose layout conversions onnxruntime numbers last), every probe ran
    after the whole model: every observed activation stayed alive to the end, residual
    sums could not accumulate in place, and resnet50's convolutions took twice as long.
    Statistics never need the outputs, so nothing is lost by not computing them.
    """
    augmented = onnx.ModelProto()
    augmented.CopyFrom(model)
    graph = augmented.graph
    del graph.output[:]
    opset = ir.default_opset(model)
    probes: list[Probe] = []
    probe_nodes: list[list[onnx.NodeProto]] = []
    for k, obs in enumerate(observed):
        prefix = f"onnxtrim_probe_{k}"
        if obs.blocked_layout:
            nodes, outputs = _blocked_probe(graph, prefix, obs, kinds)
        else:
            nodes, outputs = _reduction_probe(graph, prefix, obs, kinds, opset)
        for out in dict.fromkeys(outputs.values()):
            graph.output.append(helper.make_empty_tensor_value_info(out))
        probes.append(Probe(obs.name, obs.axis, outputs, obs.spatial if obs.blocked_layout else None))
        probe_nodes.append(nodes)
    for nodes in reversed(probe_nodes):
        graph.node.extend(nodes)
    _keep_only_ancestors_of_outputs(graph)
    return augmented, probes


def _keep_only_ancestors_of_outputs(graph: onnx.GraphProto) -> None:
    """Drop the nodes no output depends on (onnxruntime would run them, and run them first)."""
    needed = {o.name for o in graph.output}
    kept: list[onnx.NodeProto] = []
    for node in reversed(graph.node):
        if not needed.intersection(node.output):
            continue
        kept.append(node)
        needed.update(node.input)
        needed.update(_names_read_by_subgraphs(node))
    del graph.node[:]
    graph.node.extend(reversed(kept))


def _names_read_by_subgraphs(node: onnx.NodeProto) -> set[str]:
    names: set[str] = set()
    for attr in node.attribute:
        for sub in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)):
            for inner in sub.node:
                names.update(inner.input)
                names.update(_names_read_by_subgraphs(inner))
    return names


def _reduction_probe(graph: onnx.GraphProto, prefix: str, obs: ObservedTensor, kinds: tuple[str, ...],
                     opset: int) -> tuple[list[onnx.NodeProto], dict[str, str]]:
    """Sums over every axis but the channel axis, for tensors of any layout and sign.

    Zero counts are reduced in int32 so they stay exact far beyond float32's 2**24.
    """
    name = obs.name
    axes = [i for i in range(obs.rank) if i != obs.axis]
    axes_name = f"{prefix}_axes"
    graph.initializer.append(helper.make_tensor(axes_name, TensorProto.INT64, [len(axes)], axes))
    nodes: list[onnx.NodeProto] = []
    outputs: dict[str, str] = {}
    for kind in kinds:
        source = name
        if kind == "zeros":
            zero = f"{prefix}_zero"
            graph.initializer.append(helper.make_tensor(zero, obs.elem_type, [], [0]))
            nodes.append(helper.make_node("Equal", [name, zero], [f"{prefix}_eq"], name=f"{prefix}_eq"))
            nodes.append(helper.make_node("Cast", [f"{prefix}_eq"], [f"{prefix}_eq_i"],
                                          name=f"{prefix}_eq_cast", to=TensorProto.INT32))
            source = f"{prefix}_eq_i"
        op = _REDUCE_OP[kind]
        out = f"{prefix}_{kind}"
        if opset >= _AXES_AS_INPUT_SINCE[op]:
            nodes.append(helper.make_node(op, [source, axes_name], [out], name=out, keepdims=0))
        else:
            nodes.append(helper.make_node(op, [source], [out], name=out, keepdims=0, axes=axes))
        outputs[kind] = out
    size = f"{prefix}_size"
    nodes.append(helper.make_node("Size", [name], [size], name=size))
    outputs["size"] = size
    return nodes, outputs


def _blocked_probe(graph: onnx.GraphProto, prefix: str, obs: ObservedTensor,
                   kinds: tuple[str, ...]) -> tuple[list[onnx.NodeProto], dict[str, str]]:
    """Per-sample channel means, with blocked-layout ops (see `blocked_layout`).

    The batch is summed outside the graph (N x C numbers), where zero counts can be rounded
    per sample: summed in float32 inside, they drift by whole counts at large batch sizes.
    """
    name, channels = obs.name, obs.channels
    nodes: list[onnx.NodeProto] = []
    outputs: dict[str, str] = {}

    def mean(source: str, out: str) -> None:
        # Flatten is not a blocked-layout op, so it keeps its place in the node list: the
        # execution order add_probes arranges depends on that (see add_probes).
        nodes.append(helper.make_node("GlobalAveragePool", [source], [f"{out}_gap"], name=f"{out}_gap"))
        nodes.append(helper.make_node("Flatten", [f"{out}_gap"], [out], name=out, axis=1))

    sources: dict[str, str] = {}  # kind -> the tensor whose per-sample mean gives it
    for kind in kinds:
        if kind == "zeros":
            weight, bias = f"{prefix}_zw", f"{prefix}_zb"
            graph.initializer.append(numpy_helper.from_array(np.full((channels, 1, 1, 1), -1e30, np.float32), weight))
            graph.initializer.append(numpy_helper.from_array(np.ones(channels, np.float32), bias))
            nodes.append(helper.make_node("Conv", [name, weight, bias], [f"{prefix}_zc"], name=f"{prefix}_zc",
                                          group=channels, kernel_shape=[1, 1]))
            nodes.append(helper.make_node("Relu", [f"{prefix}_zc"], [f"{prefix}_zr"], name=f"{prefix}_zr"))
            sources[kind] = f"{prefix}_zr"
        elif kind == "sq_sum":
            nodes.append(helper.make_node("Mul", [name, name], [f"{prefix}_sq"], name=f"{prefix}_sq"))
            sources[kind] = f"{prefix}_sq"
        else:  # "sum" and "abs_sum": |x| = x, so both are the mean of x itself
            sources[kind] = name
    means: dict[str, str] = {}  # source -> output holding its mean, each computed once
    for kind, source in sources.items():
        if source not in means:
            means[source] = f"{prefix}_{kind}"
            mean(source, means[source])
        outputs[kind] = means[source]
    return nodes, outputs
