"""Rules for ops that move channel indices: Flatten, Reshape, Transpose, Concat, Split, Slice."""

from __future__ import annotations

from dataclasses import replace
from math import prod

import numpy as np

from .. import ir
from .constant_source import slice_source
from .rule_context import Barrier, RuleContext, SliceEdit, SplitEdit, Tracked
from .rule_helpers import axes_of, normalise_axis, static_suffix


def flatten(ctx: RuleContext) -> None:
    """Flatten(axis=k): a channel becomes a block of `inner` consecutive positions of axis 1."""
    x = ctx.only_data_tracked()
    rank = ctx.rank(0)
    if rank is None:
        raise Barrier(f"Flatten node '{ctx.name}': input rank unknown")
    k = normalise_axis(int(ctx.attr("axis", 1)), rank)
    if x.axis < k:
        raise Barrier(f"Flatten node '{ctx.name}' merges the channel axis into the batch axis")
    dims = static_suffix(ctx, 0, k)
    inner = prod(dims[x.axis - k + 1:])
    outer = prod(dims[: x.axis - k])
    ctx.set_output(0, Tracked(1, np.tile(np.repeat(x.elems, inner), outer)))


def transpose(ctx: RuleContext) -> None:
    x = ctx.only_data_tracked(tiled_ok=True)
    rank = ctx.rank(0)
    perm = ctx.attr("perm")
    if rank is None:
        raise Barrier(f"Transpose node '{ctx.name}': input rank unknown")
    perm = list(range(rank))[::-1] if perm is None else [int(p) for p in perm]
    ctx.set_output(0, Tracked(perm.index(x.axis), x.elems, x.tiled))


def squeeze(ctx: RuleContext) -> None:
    x = ctx.only_data_tracked(tiled_ok=True)
    rank = ctx.rank(0)
    if rank is None:
        raise Barrier(f"Squeeze node '{ctx.name}': input rank unknown")
    axes = axes_of(ctx, rank)
    if axes is None:
        shape = ctx.shape(0)
        if shape is None or any(d is None or isinstance(d, str) for d in shape):
            raise Barrier(f"Squeeze node '{ctx.name}' squeezes unknown axes")
        axes = [i for i, d in enumerate(shape) if d == 1]
    if x.axis in axes:
        raise Barrier(f"Squeeze node '{ctx.name}' removes the channel axis")
    ctx.set_output(0, replace(x, axis=x.axis - sum(a < x.axis for a in axes)))


def unsqueeze(ctx: RuleContext) -> None:
    x = ctx.only_data_tracked(tiled_ok=True)
    rank = ctx.rank(0)
    if rank is None:
        raise Barrier(f"Unsqueeze node '{ctx.name}': input rank unknown")
    raw = ctx.attr("axes")
    given = ctx.const(1) if raw is None else None
    if raw is None and given is not None:
        raw = given.reshape(-1).tolist()
    if raw is None:
        raise Barrier(f"Unsqueeze node '{ctx.name}' has computed axes")
    axes = sorted(normalise_axis(int(a), rank + len(raw)) for a in raw)
    position = x.axis
    for a in axes:
        if a <= position:
            position += 1
    ctx.set_output(0, replace(x, axis=position))


def concat(ctx: RuleContext) -> None:
    """Concat on the channel axis lays the inputs' elements end to end (offsets); inputs that
    carry no channels there occupy fixed positions nothing may remove. Concat on another axis
    couples the inputs like an elementwise op."""
    ctx.require_single_output()
    rank = ctx.rank(ctx.tracked_inputs()[0])
    if rank is None:
        raise Barrier(f"Concat node '{ctx.name}': input rank unknown")
    axis = normalise_axis(int(ctx.attr("axis")), rank)
    tracked: dict[int, Tracked] = {i: t for i in ctx.tracked_inputs() if (t := ctx.tracked(i)) is not None}
    if any(t.axis != next(iter(tracked.values())).axis for t in tracked.values()):
        raise Barrier(f"Concat node '{ctx.name}' joins inputs with channels on different axes")
    channel_axis = next(iter(tracked.values())).axis
    if axis != channel_axis:
        first = next(iter(tracked.values()))
        for i in range(ctx.n_inputs()):  # a class token, say: a constant broadcast to the batch
            if i not in tracked and (first.tiled or not slice_source(ctx, i, channel_axis, first.elems)):
                raise Barrier(f"Concat node '{ctx.name}' joins channel-carrying and plain inputs")
        for t in tracked.values():
            if len(t.elems) != len(first.elems) or t.tiled != first.tiled:
                raise Barrier(f"Concat node '{ctx.name}' joins different channel counts")
            if t is not first:
                ctx.couple(first.elems, t.elems)
        ctx.set_output(0, first)
        return
    if any(t.tiled for t in tracked.values()):
        raise Barrier(f"Concat node '{ctx.name}' joins channels interleaved with a runtime-sized axis")
    parts = []
    for i in range(ctx.n_inputs()):
        if i in tracked:
            parts.append(tracked[i].elems)
            continue
        shape = ctx.const_shape(i) or ctx.shape(i)
        count = shape[axis] if shape is not None else None
        if not isinstance(count, int):
            raise Barrier(f"Concat node '{ctx.name}': input {i} has an unknown channel count")
        parts.append(ctx.fixed(count, f"Concat '{ctx.name}' input {i} carries channels of unknown origin"))
    ctx.set_output(0, Tracked(axis, np.concatenate(parts)))


def split(ctx: RuleContext) -> None:
    """Split along the channel axis hands each output its range of elements; the split sizes
    are rewritten to the surviving counts. Along another axis every output keeps the channels."""
    x = ctx.only_data_tracked()
    rank = ctx.rank(0)
    if rank is None:
        raise Barrier(f"Split node '{ctx.name}': input rank unknown")
    axis = normalise_axis(int(ctx.attr("axis", 0)), rank)
    n_out = len(ctx.node.outputs)
    if axis != x.axis:
        for i in range(n_out):
            ctx.set_output(i, x)
        return
    sizes = ctx.attr("split") if ctx.opset < 13 else (ctx.const(1) if ctx.input(1) is not None else None)
    if sizes is None and ctx.input(1) is not None:
        raise Barrier(f"Split node '{ctx.name}' has computed split sizes")
    if sizes is None:
        total = len(x.elems)
        chunk = -(-total // n_out)  # the last part may be smaller (opset 18 num_outputs)
        sizes = [min(chunk, total - k * chunk) for k in range(n_out)]
    sizes = [int(s) for s in np.asarray(sizes).reshape(-1)]
    if sum(sizes) != len(x.elems) or len(sizes) != n_out:
        raise Barrier(f"Split node '{ctx.name}': split sizes do not cover the channel axis")
    bounds = np.cumsum([0, *sizes])
    parts = tuple(x.elems[bounds[k]:bounds[k + 1]] for k in range(n_out))
    for i, part in enumerate(parts):
        ctx.set_output(i, Tracked(x.axis, part))
        ctx.require_survivor(part, f"output {i} of Split node '{ctx.name}' needs a channel")
    ctx.edit(SplitEdit(ctx.index, parts))


def slice_op(ctx: RuleContext) -> None:
    """Slice: axes other than the channel axis pass it through; a unit-step slice of the channel
    axis keeps a contiguous range whose start and end follow the surviving channels."""
    x = ctx.only_data_tracked()
    rank = ctx.rank(0)
    if rank is None or ctx.opset < 10:
        raise Barrier(f"Slice node '{ctx.name}': input rank unknown or opset below 10")
    starts, ends = ctx.const(1), ctx.const(2)
    given = ctx.const(3) if ctx.input(3) is not None else np.arange(len(starts) if starts is not None else 0)
    steps = ctx.const(4) if ctx.input(4) is not None else None
    if starts is None or ends is None or given is None or (ctx.input(4) is not None and steps is None):
        raise Barrier(f"Slice node '{ctx.name}' has computed bounds")
    axes = [normalise_axis(int(a), rank) for a in given.reshape(-1)]
    if x.axis not in axes:
        ctx.set_output(0, x)
        return
    k = axes.index(x.axis)
    if steps is not None and int(steps.reshape(-1)[k]) != 1:
        raise Barrier(f"Slice node '{ctx.name}' steps through the channel axis")
    start, end, _ = slice(int(starts.reshape(-1)[k]), int(ends.reshape(-1)[k])).indices(len(x.elems))
    end = max(start, end)
    ctx.edit(SliceEdit(ctx.index, k, x.elems[:start], x.elems[start:end]))
    ctx.require_survivor(x.elems[start:end], f"Slice node '{ctx.name}' needs a channel")
    ctx.set_output(0, Tracked(x.axis, x.elems[start:end]))


def shape_op(ctx: RuleContext) -> None:
    """Shape reads dimensions, not values. It is safe while no consumer reads the channel count."""
    x = ctx.only_data_tracked()
    rank = ctx.rank(0)
    if rank is None:
        raise Barrier(f"Shape node '{ctx.name}': input rank unknown")
    start = min(normalise_axis(int(ctx.attr("start", 0)), rank), rank)
    end = ctx.attr("end")
    end = rank if end is None else min(normalise_axis(int(end), rank), rank)
    if not start <= x.axis < end:
        return
    position = x.axis - start
    out = ctx.node.outputs[0]
    if out.name in ctx.graph_outputs:
        raise Barrier(f"Shape node '{ctx.name}' exposes the channel count as a graph output")
    for consumer in out.outputs:
        index = ir.const_value(consumer.inputs[1]) if consumer.op == "Gather" and len(consumer.inputs) > 1 else None
        if index is None or position in (index.reshape(-1) % (end - start)).tolist():
            raise Barrier(f"Shape node '{ctx.name}' exposes the channel count to node '{consumer.name}'")


def gather(ctx: RuleContext) -> None:
    """Gather: from a constant table with runtime indices (an embedding), a producer of the
    table's columns; from channel-carrying data along another axis (a token, a Q/K/V part),
    the channels pass to their new position. Gathering along the channel axis, or with
    channel-carrying indices, is a barrier."""
    if ctx.tracked(1) is not None:
        raise Barrier(f"Gather node '{ctx.name}': channels reach its indices")
    data = ctx.tracked(0)
    table = ctx.const_shape(0)
    index_rank = ctx.rank(1)
    if data is None:
        if table is None or len(table) != 2 or int(ctx.attr("axis", 0)) != 0 or ctx.const_shape(1) is not None:
            return  # not an embedding: nothing to do with channels
        value = ctx.input(0)
        if value is None or value.dtype is None or np.dtype(value.dtype).kind != "f" or index_rank is None:
            return
        out = ctx.new_space(int(table[1]))
        ctx.slice_param(0, 1, out, role="producer")
        ctx.set_output(0, Tracked(index_rank, out))
        return
    rank = ctx.rank(0)
    if rank is None or index_rank is None:
        raise Barrier(f"Gather node '{ctx.name}': rank unknown")
    axis = normalise_axis(int(ctx.attr("axis", 0)), rank)
    if axis == data.axis:
        raise Barrier(f"Gather node '{ctx.name}' gathers along the channel axis")
    ctx.set_output(0, replace(data, axis=data.axis if data.axis < axis else data.axis - 1 + index_rank))
