"""Parameter and multiply-accumulate counts, recomputed from a model file's own contents.

MACs count Conv, ConvTranspose, Gemm and MatMul per sample (symbolic dimensions such as the
batch count as 1); elementwise work is left out, as in the papers' FLOPs figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from . import ir


@dataclass(frozen=True)
class Cost:
    params: int
    macs: int


def cost(model: onnx.ModelProto) -> Cost:
    return graph_cost(ir.to_graph(model))


def graph_cost(graph: gs.Graph) -> Cost:
    params = sum(prod(t.shape) for t in graph.tensors().values() if is_parameter(t))
    return Cost(params, sum(node_macs(node) for node in graph.nodes))


def node_macs(node: gs.Node) -> int:
    """Multiply-accumulates per sample of one node (0 for ops that are not counted)."""
    out = ir.shape_of(node.outputs[0]) if node.outputs else None
    if out is None:
        return 0
    out_elems = prod(d if isinstance(d, int) else 1 for d in out)
    weight = ir.const_shape(node.inputs[1]) if len(node.inputs) > 1 else None
    if node.op == "Conv" and weight is not None:
        return out_elems * prod(weight[1:])
    if node.op == "ConvTranspose" and weight is not None:
        x = ir.shape_of(node.inputs[0])
        return 0 if x is None else prod(d if isinstance(d, int) else 1 for d in x) * prod(weight[1:])
    if node.op in ("Gemm", "MatMul"):
        a = ir.shape_of(node.inputs[0])
        if a:
            k = a[0] if node.op == "Gemm" and node.attrs.get("transA", 0) else a[-1]
            return out_elems * (k if isinstance(k, int) else 1)
    return 0


def is_parameter(tensor: gs.Tensor) -> bool:
    """A float constant of rank 1 or more; a rank-0 scalar (an epsilon, a scale) is not a parameter."""
    return isinstance(tensor, gs.Constant) and np.dtype(tensor.dtype).kind == "f" and len(tensor.shape) > 0
