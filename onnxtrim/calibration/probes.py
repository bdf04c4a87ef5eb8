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
    spatial: int | None = None  # set: "zeros" holds per-sample zero fractions summed; no "size" output


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
    def blocked_layout_zeros(self) -> bool:
        """Whether zeros can be counted with ops onnxruntime runs in its blocked (NCHWc) layout.

        A probe that reads an activation with any other op makes onnxruntime convert the
        activation out of that layout and, on resnet50, slows the convolutions around it by
        more than 2x. For a non-negative float NCHW tensor, Relu(1 - 1e30·x) is 1 exactly where
        x is 0 (and where 0 < x < 1e-30, which no ReLU output in practice holds), and a
        depthwise 1x1 Conv with a fused Relu and GlobalAveragePool compute its mean per sample.
        """
        return (self.nonnegative and self.axis == 1 and self.rank == 4 and self.channels is not None
                and self.spatial is not None and self.elem_type == TensorProto.FLOAT)


def add_probes(model: onnx.ModelProto, observed: list[ObservedTensor],
               kinds: tuple[str, ...] = STAT_KINDS) -> tuple[onnx.ModelProto, list[Probe]]:
    """Return a copy of `model` with reductions of each observed tensor as extra outputs.

    Zero counts are reduced in int32 so they stay exact far beyond float32's 2**24. Each
    probe is placed right after the node producing what it observes: onnxruntime then runs it
    early and frees the activation, instead of keeping every observed activation alive until
    the end of the run (which doubled the convolutions' time on resnet50 through lost buffer
    reuse).
    """
    augmented = onnx.ModelProto()
    augmented.CopyFrom(model)
    graph = augmented.graph
    opset = ir.default_opset(model)
    probes: list[Probe] = []
    probe_nodes: dict[str, list[onnx.NodeProto]] = {}
    for k, obs in enumerate(observed):
        name, axis, rank = obs.name, obs.axis, obs.rank
        axes = [i for i in range(rank) if i != axis]
        prefix = f"onnxtrim_probe_{k}"
        axes_name = f"{prefix}_axes"
        graph.initializer.append(helper.make_tensor(axes_name, TensorProto.INT64, [len(axes)], axes))
        outputs: dict[str, str] = {}
        nodes = probe_nodes.setdefault(name, [])
        blocked = "zeros" in kinds and obs.blocked_layout_zeros
        for kind in kinds:
            source = name
            if kind == "zeros" and blocked:
                nodes.extend(_zero_fraction_nodes(graph, prefix, name, obs.channels))
                outputs[kind] = f"{prefix}_zeros"
                continue
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
                node = helper.make_node(op, [source, axes_name], [out], name=out, keepdims=0)
            else:
                node = helper.make_node(op, [source], [out], name=out, keepdims=0, axes=axes)
            nodes.append(node)
            outputs[kind] = out
        if not blocked:
            size = f"{prefix}_size"
            nodes.append(helper.make_node("Size", [name], [size], name=size))
            outputs["size"] = size
        for out in outputs.values():
            graph.output.append(helper.make_empty_tensor_value_info(out))
        probes.append(Probe(name, axis, outputs, obs.spatial if blocked else None))
    ordered: list[onnx.NodeProto] = []
    for node in graph.node:
        ordered.append(node)
        for out in node.output:
            ordered.extend(probe_nodes.pop(out, ()))
    for rest in probe_nodes.values():  # observed tensors produced by no node (none in practice)
        ordered.extend(rest)
    del graph.node[:]
    graph.node.extend(ordered)
    return augmented, probes


def _zero_fraction_nodes(graph: onnx.GraphProto, prefix: str, name: str, channels: int) -> list[onnx.NodeProto]:
    """Sum over the batch of each sample's fraction of exact zeros per channel (see blocked_layout_zeros)."""
    weight, bias, axes = f"{prefix}_zw", f"{prefix}_zb", f"{prefix}_zaxes"
    graph.initializer.append(numpy_helper.from_array(np.full((channels, 1, 1, 1), -1e30, np.float32), weight))
    graph.initializer.append(numpy_helper.from_array(np.ones(channels, np.float32), bias))
    graph.initializer.append(helper.make_tensor(axes, TensorProto.INT64, [3], [0, 2, 3]))
    return [
        helper.make_node("Conv", [name, weight, bias], [f"{prefix}_zc"], name=f"{prefix}_zc", group=channels,
                         kernel_shape=[1, 1]),
        helper.make_node("Relu", [f"{prefix}_zc"], [f"{prefix}_zr"], name=f"{prefix}_zr"),
        helper.make_node("GlobalAveragePool", [f"{prefix}_zr"], [f"{prefix}_zg"], name=f"{prefix}_zg"),
        helper.make_node("ReduceSum", [f"{prefix}_zg", axes], [f"{prefix}_zeros"], name=f"{prefix}_zeros",
                         keepdims=0),
    ]
