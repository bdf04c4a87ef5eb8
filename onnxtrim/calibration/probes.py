"""In-graph probes: per-channel reductions added as extra outputs.

Like onnxruntime's own calibrators (`augment_graph`), the statistics are computed inside the
graph, so each batch returns C numbers per observed tensor instead of the activation itself:
calibration then costs about what inference costs, whatever the dataset size.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx
from onnx import TensorProto, helper

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


@dataclass(frozen=True)
class ObservedTensor:
    name: str
    axis: int
    rank: int
    elem_type: int  # onnx TensorProto data type


def add_probes(model: onnx.ModelProto, observed: list[ObservedTensor],
               kinds: tuple[str, ...] = STAT_KINDS) -> tuple[onnx.ModelProto, list[Probe]]:
    """Return a copy of `model` with reductions of each observed tensor as extra outputs.

    Zero counts are reduced in int32 so they stay exact far beyond float32's 2**24.
    """
    augmented = onnx.ModelProto()
    augmented.CopyFrom(model)
    graph = augmented.graph
    opset = ir.default_opset(model)
    probes: list[Probe] = []
    for k, obs in enumerate(observed):
        name, axis, rank = obs.name, obs.axis, obs.rank
        axes = [i for i in range(rank) if i != axis]
        prefix = f"onnxtrim_probe_{k}"
        axes_name = f"{prefix}_axes"
        graph.initializer.append(helper.make_tensor(axes_name, TensorProto.INT64, [len(axes)], axes))
        outputs: dict[str, str] = {}
        for kind in kinds:
            source = name
            if kind == "zeros":
                zero = f"{prefix}_zero"
                graph.initializer.append(helper.make_tensor(zero, obs.elem_type, [], [0]))
                graph.node.append(helper.make_node("Equal", [name, zero], [f"{prefix}_eq"], name=f"{prefix}_eq"))
                graph.node.append(helper.make_node("Cast", [f"{prefix}_eq"], [f"{prefix}_eq_i"],
                                                   name=f"{prefix}_eq_cast", to=TensorProto.INT32))
                source = f"{prefix}_eq_i"
            op = _REDUCE_OP[kind]
            out = f"{prefix}_{kind}"
            if opset >= _AXES_AS_INPUT_SINCE[op]:
                node = helper.make_node(op, [source, axes_name], [out], name=out, keepdims=0)
            else:
                node = helper.make_node(op, [source], [out], name=out, keepdims=0, axes=axes)
            graph.node.append(node)
            outputs[kind] = out
        size = f"{prefix}_size"
        graph.node.append(helper.make_node("Size", [name], [size], name=size))
        outputs["size"] = size
        for out in outputs.values():
            graph.output.append(helper.make_empty_tensor_value_info(out))
        probes.append(Probe(name, axis, outputs))
    return augmented, probes
