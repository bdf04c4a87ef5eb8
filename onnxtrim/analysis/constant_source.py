"""Operands that are constants in all but form: a class token broadcast to the batch, a
positional embedding sliced to the sequence length, an attention bias gathered from a table.

When channels meet such an operand (a residual stream's Add of positional embeddings, the
Concat of the class token with the patch tokens, Swin's Add of its relative position bias to
every head's scores), the channel axis of the operand is an axis of a constant further up:
`slice_source` walks back through ops that move or select along *other* axes (Identity, Cast,
Unsqueeze, Squeeze, Transpose, Expand along other axes, Slice and Gather on other axes,
Reshape that keeps the axis whole) and slices that constant where the chain reads it.

Equivalence: each op on the chain acts on every channel position alike, so slicing the
constant before it equals slicing its output; a Reshape on the chain has its entry for the
channel axis rewritten like any other. The chain's tensors must have no other consumer (they
change size).
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from .. import ir
from .rule_context import Barrier, CountEdit, Edit, ParamSlice, RuleContext
from .rule_helpers import normalise_axis

MAX_CHAIN = 16


def slice_source(ctx: RuleContext, i: int, axis: int, elems: np.ndarray) -> bool:
    """Record the edits that slice the constant input `i` is derived from along `axis`; False
    (nothing recorded) when it is not derived from one."""
    tensor, consumer, index, k = ctx.input(i), ctx.index, i, axis
    edits: list[Edit] = []
    for _ in range(MAX_CHAIN):
        if tensor is None:
            return False
        shape = ir.const_shape(tensor)
        if shape is not None:
            if k >= len(shape) or shape[k] != len(elems):
                return False
            edits.append(ParamSlice(consumer, index, k, elems, "param"))
            ctx.edits.extend(edits)
            return True
        node = ir.producer(tensor)
        if node is None or len(tensor.outputs) != 1 or tensor.name in ctx.graph_outputs:
            return False
        step = _step(ctx, node, k, len(elems))
        if step is None:
            return False
        k, edit = step
        if edit is not None:
            edits.append(CountEdit(ctx.index_of(node), elems, 1, edit))
        tensor, consumer, index = node.inputs[0], ctx.index_of(node), 0
    return False


def _rank(tensor: gs.Tensor) -> int | None:
    shape = ir.const_shape(tensor) if isinstance(tensor, gs.Constant) else ir.shape_of(tensor)
    return None if shape is None else len(shape)


def _axes(node: gs.Node, rank: int) -> list[int] | None:
    raw = node.attrs.get("axes")
    if raw is None and len(node.inputs) > 1 and node.inputs[1].name:
        value = ir.const_value(node.inputs[1])
        raw = None if value is None else value.reshape(-1).tolist()
    return None if raw is None else [normalise_axis(int(a), rank) for a in raw]


def _step(ctx: RuleContext, node: gs.Node, k: int, length: int) -> tuple[int, int | None] | None:
    """The axis of `node`'s data input that becomes output axis k, and the position of a Reshape
    target entry to rewrite (None: no entry)."""
    out_rank, in_rank = _rank(node.outputs[0]), _rank(node.inputs[0])
    if out_rank is None or in_rank is None:
        return None
    op = node.op
    if op in ("Identity", "Cast"):
        return k, None
    if op == "Transpose":
        perm = node.attrs.get("perm") or list(range(in_rank))[::-1]
        return int(perm[k]), None
    if op == "Unsqueeze":
        axes = _axes(node, out_rank)
        return None if axes is None or k in axes else (k - sum(a < k for a in axes), None)
    if op == "Squeeze":
        axes = _axes(node, in_rank)
        if axes is None:
            return None
        kept = [a for a in range(in_rank) if a not in axes]
        return kept[k], None
    if op == "Expand":
        target = ctx.values.entries(node.inputs[1]) if ctx.values is not None else None
        position = k - (out_rank - len(target)) if target is not None else -1
        k_in = k - (out_rank - in_rank)
        if target is None or k_in < 0 or not 0 <= position < len(target) or target[position] != 1:
            return None
        return k_in, None
    if op == "Slice":
        if len(node.inputs) > 3 and node.inputs[3].name:
            value = ir.const_value(node.inputs[3])
            if value is None:
                return None
            axes = [normalise_axis(int(a), in_rank) for a in value.reshape(-1)]
        else:
            starts = ir.const_shape(node.inputs[1]) if len(node.inputs) > 1 else None
            axes = list(range(starts[0] if starts else in_rank))
        return None if k in axes else (k, None)
    if op == "Gather":
        g = normalise_axis(int(node.attrs.get("axis", 0)), in_rank)
        index_rank = _rank(node.inputs[1])
        if index_rank is None or g <= k < g + index_rank:
            return None
        return (k, None) if k < g else (k - index_rank + 1, None)
    if op == "Reshape":
        return _reshape_step(ctx, node, k, length)
    return None


def _reshape_step(ctx: RuleContext, node: gs.Node, k: int, length: int) -> tuple[int, int | None] | None:
    from .rules_reshape import Merge, channel_map

    in_shape, out_shape, spec = ir.shape_of(node.inputs[0]), ir.shape_of(node.outputs[0]), ir.const_value(node.inputs[1])
    if in_shape is None or out_shape is None or spec is None:
        return None
    for k_in, size in enumerate(in_shape):
        if size != length:
            continue
        try:
            mapping = channel_map(ctx, in_shape, out_shape, k_in, length, False)
        except Barrier:
            continue
        if isinstance(mapping, Merge) and mapping.axis == k and np.array_equal(mapping.index, np.arange(length)):
            entry = int(spec.reshape(-1)[k])
            if entry == 0 and k_in != k:
                return None
            return k_in, (k if entry > 0 else None)
    return None
