"""Rules for ops that keep each channel where it is: elementwise, activations, norms, pooling."""

from __future__ import annotations

from dataclasses import replace
from math import prod

import numpy as np
import onnx_graphsurgeon as gs

from .. import ir
from .constant_source import slice_source
from .rule_context import Barrier, NormEdit, Rule, RuleContext, Tracked
from .rule_helpers import axes_of, normalise_axis, static_suffix


def elementwise(ctx: RuleContext) -> None:
    """Broadcasting ops: tracked inputs are coupled position by position; constants that
    broadcast along the channel axis are sliced with it; other activations are barriers."""
    ctx.require_single_output()
    out_shape = ctx.out_shape(0)
    maybe_ranks = [ctx.rank(i) if ctx.input(i) is not None else 0 for i in range(ctx.n_inputs())]
    if None in maybe_ranks:
        raise Barrier(f"{ctx.node.op} node '{ctx.name}': an input has unknown rank")
    ranks = [int(r) for r in maybe_ranks if r is not None]
    out_rank = max(ranks) if out_shape is None else len(out_shape)
    tracked: dict[int, Tracked] = {i: t for i in ctx.tracked_inputs() if (t := ctx.tracked(i)) is not None}
    out_axes = {t.axis + out_rank - ranks[i] for i, t in tracked.items()}
    if len(out_axes) != 1:
        raise Barrier(f"{ctx.node.op} node '{ctx.name}' combines channels on different axes")
    out_axis = out_axes.pop()
    first = next(iter(tracked.values()))
    for t in tracked.values():
        if len(t.elems) != len(first.elems) or t.tiled != first.tiled:
            raise Barrier(f"{ctx.node.op} node '{ctx.name}' broadcasts a channel axis")
    slices = []
    for i in range(ctx.n_inputs()):
        if i in tracked or ctx.input(i) is None:
            continue
        axis = out_axis - (out_rank - ranks[i])
        if axis < 0:
            continue
        const = ctx.const_shape(i)
        size: int | str | None
        if const is not None:
            size = const[axis]
        else:
            shape = ctx.shape(i)
            size = shape[axis] if shape is not None else None
        if size == 1:
            continue
        if const is not None and size == len(first.elems) and not first.tiled:
            slices.append((i, axis))
        elif first.tiled or (isinstance(size, int) and size != len(first.elems)) or not slice_source(
                ctx, i, axis, first.elems):  # a derived constant: its chain is checked, whatever the inferred size
            raise Barrier(f"{ctx.node.op} node '{ctx.name}' combines channels with {_origin(ctx.input(i))}, "
                          "which carries no removable channels")
    for t in tracked.values():
        if t is not first:
            ctx.couple(first.elems, t.elems)
    for i, axis in slices:
        ctx.slice_param(i, axis, first.elems)
    ctx.set_output(0, Tracked(out_axis, first.elems, first.tiled))


def _origin(tensor) -> str:
    """A tensor named with what made it, so a reason reads 'output of LayerNormalization ...'."""
    if isinstance(tensor, gs.Constant):
        return f"constant '{tensor.name}' of another size"
    node = ir.producer(tensor)
    if node is None:
        return f"graph input '{tensor.name}'"
    return f"'{tensor.name}' (output of {node.op} '{node.name or node.op}')"


def unary(ctx: RuleContext) -> None:
    """Per-element ops: the channel passes through unchanged. Extra inputs must be scalars."""
    ctx.require_single_output()
    x = ctx.only_data_tracked(tiled_ok=True)
    for i in range(1, ctx.n_inputs()):
        if ctx.input(i) is not None and ctx.rank(i) != 0:
            raise Barrier(f"{ctx.node.op} node '{ctx.name}' has a non-scalar parameter input {i}")
    ctx.set_output(0, x)


def channel_first(params: tuple[int, ...] = ()) -> Rule:
    """Ops defined on NCHW-style tensors that treat every channel independently.

    `params` are inputs of shape [C] (BatchNormalization's scale, bias, mean, variance)
    that are sliced with the channel.
    """

    def rule(ctx: RuleContext) -> None:
        ctx.require_single_output()
        x = ctx.only_data_tracked()
        if x.axis != 1:
            raise Barrier(f"{ctx.node.op} node '{ctx.name}' would act on a non-channel axis {x.axis}")
        for i in params:
            if ctx.input(i) is None:
                continue
            if ctx.const_shape(i) is None:
                raise Barrier(f"{ctx.node.op} node '{ctx.name}' has a non-constant parameter input {i}")
            ctx.slice_param(i, 0, x.elems)
        ctx.set_output(0, x)

    return rule


def pool(ctx: RuleContext) -> None:
    ctx.require_single_output()
    x = ctx.only_data_tracked()
    if x.axis != 1:
        raise Barrier(f"{ctx.node.op} node '{ctx.name}' pools over the channel axis")
    ctx.set_output(0, x)


def pad(ctx: RuleContext) -> None:
    x = ctx.only_data_tracked()
    rank = ctx.rank(0)
    pads = ctx.attr("pads") if ctx.opset < 11 else ctx.const(1)
    if pads is None or rank is None:
        raise Barrier(f"Pad node '{ctx.name}' has non-constant pads")
    pads = list(np.asarray(pads).reshape(-1))
    given = ctx.const(3) if ctx.n_inputs() > 3 and ctx.input(3) is not None else None
    axes = list(range(rank)) if given is None else [normalise_axis(int(a), rank) for a in given]
    if x.axis in axes:
        k = axes.index(x.axis)
        if pads[k] != 0 or pads[k + len(axes)] != 0:
            raise Barrier(f"Pad node '{ctx.name}' pads the channel axis")
    ctx.set_output(0, x)


def resize(ctx: RuleContext) -> None:
    x = ctx.only_data_tracked()
    scales_index, sizes_index = (1, None) if ctx.node.op == "Upsample" or ctx.opset < 11 else (2, 3)
    scales = ctx.const(scales_index) if ctx.input(scales_index) is not None else None
    sizes = ctx.const(sizes_index) if sizes_index is not None and ctx.input(sizes_index) is not None else None
    if ctx.attr("axes") is not None:
        raise Barrier(f"Resize node '{ctx.name}' uses the axes attribute")
    if scales is not None and scales.size and float(scales.reshape(-1)[x.axis]) != 1.0:
        raise Barrier(f"Resize node '{ctx.name}' scales the channel axis")
    if sizes is not None and sizes.size:
        if int(sizes.reshape(-1)[x.axis]) != len(x.elems):
            raise Barrier(f"Resize node '{ctx.name}' resizes the channel axis")
        ctx.count_edit(x.elems, input_index=sizes_index, position=x.axis)
    elif (scales is None or not scales.size) and ctx.input(scales_index) is not None:
        raise Barrier(f"Resize node '{ctx.name}' has non-constant scales")
    ctx.set_output(0, x)


def layer_norm(ctx: RuleContext) -> None:
    """LayerNormalization: over trailing axes before the channel axis it treats channels alike;
    over the channel axis (a transformer's residual stream, ConvNeXt's channels-last norm) its
    mean and variance span every channel, so removing one changes the others' outputs unless
    the statistics still count it. The scale and bias are sliced with the channels, and a
    `NormEdit` lets the rewrite keep the statistics over the original width (exact: what the
    original computes with the removed channels zeroed) or take them over the kept channels
    (plain), see `passes.layer_norm`.
    """
    ctx.require_single_output()
    x = ctx.only_data_tracked()
    rank = ctx.rank(0)
    if rank is None:
        raise Barrier(f"LayerNormalization '{ctx.name}': input rank unknown")
    first = normalise_axis(int(ctx.attr("axis", -1)), rank)
    if x.axis < first:
        ctx.set_output(0, x)
        return
    dims = static_suffix(ctx, 0, first)
    for i in (1, 2):
        if ctx.input(i) is None:
            continue
        shape = ctx.const_shape(i)
        if shape is None:
            raise Barrier(f"LayerNormalization '{ctx.name}' has a non-constant input {i}")
        axis = x.axis - (rank - len(shape))
        if axis >= 0 and shape[axis] != 1:
            ctx.slice_param(i, axis, x.elems)
    ctx.edit(NormEdit(ctx.index, x.elems, prod(dims)))
    ctx.kind(x.elems, "stream")
    ctx.set_output(0, x)


def softmax(ctx: RuleContext) -> None:
    x = ctx.only_data_tracked(tiled_ok=True)
    rank = ctx.rank(0)
    default = -1 if ctx.opset >= 13 else 1
    axis = normalise_axis(int(ctx.attr("axis", default)), rank or 0)
    if rank is None or axis == x.axis or (ctx.opset < 13 and axis <= x.axis):
        raise Barrier(f"{ctx.node.op} node '{ctx.name}' normalises over the channel axis")
    ctx.set_output(0, x)


def reduce(ctx: RuleContext) -> None:
    """Reductions over axes other than the channel axis keep channels independent."""
    ctx.require_single_output()
    x = ctx.only_data_tracked(tiled_ok=True)
    rank = ctx.rank(0)
    if rank is None:
        raise Barrier(f"{ctx.node.op} node '{ctx.name}': input rank unknown")
    axes = axes_of(ctx, rank)
    if not axes:
        if axes == [] and int(ctx.attr("noop_with_empty_axes", 0)):
            ctx.set_output(0, x)
            return
        raise Barrier(f"{ctx.node.op} node '{ctx.name}' reduces over every axis, the channel axis too")
    if x.axis in axes:
        raise Barrier(f"{ctx.node.op} node '{ctx.name}' reduces over the channel axis")
    keep = int(ctx.attr("keepdims", 1))
    ctx.set_output(0, replace(x, axis=x.axis if keep else x.axis - sum(a < x.axis for a in axes)))


def dropout(ctx: RuleContext) -> None:
    ctx.require_single_output()
    x = ctx.only_data_tracked(tiled_ok=True)
    ctx.set_output(0, x)
