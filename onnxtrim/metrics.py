"""Parameter and multiply-accumulate counts, recomputed from a model file's own contents.

MACs count Conv, ConvTranspose, Gemm and MatMul per sample (symbolic dimensions such as the
batch count as 1); elementwise work is left out, as in the papers' FLOPs figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

import numpy as np
import onnx

from . import ir


@dataclass(frozen=True)
class Cost:
    params: int
    macs: int


def cost(model: onnx.ModelProto) -> Cost:
    graph = ir.to_graph(model)
    params = sum(prod(t.shape) for t in graph.tensors().values() if _is_parameter(t))
    macs = 0
    for node in graph.nodes:
        out = ir.shape_of(node.outputs[0]) if node.outputs else None
        if out is None:
            continue
        out_elems = prod(d if isinstance(d, int) else 1 for d in out)
        weight = ir.const_shape(node.inputs[1]) if len(node.inputs) > 1 else None
        if node.op == "Conv" and weight is not None:
            macs += out_elems * prod(weight[1:])
        elif node.op == "ConvTranspose" and weight is not None:
            x = ir.shape_of(node.inputs[0])
            if x is not None:
                macs += prod(d if isinstance(d, int) else 1 for d in x) * prod(weight[1:])
        elif node.op in ("Gemm", "MatMul"):
            a = ir.shape_of(node.inputs[0])
            if a is not None and a:
                k = a[0] if node.op == "Gemm" and node.attrs.get("transA", 0) else a[-1]
                macs += out_elems * (k if isinstance(k, int) else 1)
    return Cost(params, macs)


def _is_parameter(tensor) -> bool:
    import onnx_graphsurgeon as gs

    return isinstance(tensor, gs.Constant) and np.dtype(tensor.dtype).kind == "f"
