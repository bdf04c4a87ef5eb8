"""LayerNormalization over channels that are removed: two semantics, two rewrites.

A LayerNormalization over N values x (the channel axis and any normalised axes after it)
computes μ = Σx/N, σ² = Σ(x−μ)²/N, y = (x−μ)/√(σ²+ε)·γ + β. Removing channels leaves N' < N
values. The choice (`--layernorm`, `TrimConfig.layernorm`) is between:

**exact** (default): the statistics still count the removed channels, as zeros. Reference:
the original model with the removed channels zeroed (`mask_channels`), where LayerNorm sees
those zeros. The rewrite replaces the node by

    μ  = ReduceSum(x')/N
    d  = x' − μ
    σ² = (ReduceSum(d·d) + (N − N')·μ²) / N
    y' = d/√(σ²+ε)·γ' + β'

which is that computation restricted to the kept values: each removed value contributes 0 to
Σx and (0−μ)² = μ² to Σ(x−μ)², so Σ over all N of (x−μ)² = Σ over the kept of d² + (N−N')μ².
Sums rather than means, so onnxruntime's LayerNorm fusion (which matches ReduceMean) cannot
turn it back into a LayerNormalization over N' values.

**plain**: the node stays a LayerNormalization over the kept channels (γ, β sliced), which is
what a fine-tuned pruned model would use; it is not exact. Reference (`mask_channels` with
`layernorm="plain"`): the original model whose LayerNorms take their statistics over the
kept channels only, μ = Σ(m·x)/N', σ² = Σ m·(x−μ)²/N' with m the 0/1 channel mask.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import onnx_graphsurgeon as gs

from .. import ir

LayerNormMode = Literal["exact", "plain"]
LAYERNORM_MODES = ("exact", "plain")


class _Builder:
    """Appends nodes named after the node they replace (deterministic names)."""

    def __init__(self, graph: gs.Graph, node: gs.Node, fresh) -> None:
        self.graph, self.fresh = graph, fresh
        self.base = node.name or "LayerNormalization"

    def op(self, op: str, inputs: list, attrs: dict | None = None, output: gs.Variable | None = None) -> gs.Variable:
        out = output if output is not None else gs.Variable(self.fresh(f"{self.base}/{op}"))
        self.graph.nodes.append(gs.Node(op, self.fresh(f"{self.base}/{op}"), dict(attrs or {}), inputs, [out]))
        return out

    def const(self, name: str, value: np.ndarray) -> gs.Constant:
        return gs.Constant(self.fresh(f"{self.base}/{name}"), np.array(value))  # keeps rank 0


def replace_layer_norm(graph: gs.Graph, node: gs.Node, fresh, *, count: float, extra: float | None = None,
                       mask: np.ndarray | None = None) -> None:
    """Replace `node` (a LayerNormalization) by its decomposition, in place.

    Statistics are Σ/count; `extra` adds `extra`·μ² to the sum of squares (the removed zeros of
    the exact rewrite); `mask` (broadcastable to the input) restricts them to the kept
    channels (the plain reference). The node's output tensor is produced by the last new node.
    """
    x, y = node.inputs[0], node.outputs[0]
    scale = node.inputs[1] if len(node.inputs) > 1 else None
    bias = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2].name else None
    rank = len(ir.shape_of(x) or ())
    first = int(node.attrs.get("axis", -1)) % rank
    epsilon = float(node.attrs.get("epsilon", 1e-5))
    dtype = np.dtype(x.dtype) if x.dtype is not None else np.dtype(np.float32)
    b = _Builder(graph, node, fresh)
    axes = b.const("axes", np.arange(first, rank, dtype=np.int64))
    compute = np.dtype(np.float32) if int(node.attrs.get("stash_type", 1)) == 1 else dtype
    if dtype != compute:
        x = b.op("Cast", [x], {"to": _onnx_type(compute)})
    inv = b.const("inv_count", np.array(1.0 / count, dtype=compute))
    if mask is not None:
        m = b.const("mask", mask.astype(compute))
        x_for_stats = b.op("Mul", [x, m])
    else:
        x_for_stats = x
    mean = b.op("Mul", [b.op("ReduceSum", [x_for_stats, axes], {"keepdims": 1}), inv])
    d = b.op("Sub", [x, mean])
    if mask is not None:
        d = b.op("Mul", [d, m])
    squares = b.op("ReduceSum", [b.op("Mul", [d, d]), axes], {"keepdims": 1})
    if extra:
        squares = b.op("Add", [squares, b.op("Mul", [b.op("Mul", [mean, mean]),
                                                      b.const("removed", np.array(extra, dtype=compute))])])
    var = b.op("Mul", [squares, inv])
    std = b.op("Sqrt", [b.op("Add", [var, b.const("epsilon", np.array(epsilon, dtype=compute))])])
    out = b.op("Div", [d, std])
    if dtype != compute:
        out = b.op("Cast", [out], {"to": _onnx_type(dtype)})
    if scale is not None:
        out = b.op("Mul", [out, scale], output=None if bias is not None else y)
    if bias is not None:
        out = b.op("Add", [out, bias], output=y)
    elif scale is None:
        b.op("Identity", [out], output=y)
    node.outputs.clear()  # the node is now dead; cleanup removes it


def _onnx_type(dtype: np.dtype) -> int:
    import onnx

    return onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
