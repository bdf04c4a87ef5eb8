"""The Reshape rule: where a channel axis goes when a tensor is reshaped.

Reshape is row-major, so the values of one channel (with the `u` values of the axes after it)
stay a contiguous block. Reading the output shape from the end, the output axis `b` where that
block boundary falls decides the case:

- **merge** (the channel axis, possibly with axes before and after it, becomes one output
  axis): position q of axis b holds channel `(q // r) % L`, r = u / (static size after b).
  Flatten, `[B, T, H, D] -> [B, T, H·D]`, `[B, C, H, W] -> [B, C, H·W]`. When axis b also
  holds a runtime-sized factor (the batch merged with the heads), the result is *tiled*.
- **split** (the channel axis becomes several output axes): `[B, T, H·D] -> [B, T, H, D]`,
  `[T, B, 3·E] -> [T, B, 3, E]` (a fused QKV projection), `[B, C, H, W] -> [B, g, C/g, H, W]`
  (a channel shuffle), `[T, B, H·D] -> [T, B·H, D]` (torch's MultiheadAttention: the heads
  merge into the batch, a tiled sub-axis). A tensor carries channels along one axis only, so
  one sub-axis keeps the channel classes and the elements along all the others are united:
  then any removal is a product set and the reshaped tensor stays rectangular. Which sub-axis:
    * not one that is later selected from (Gather/Slice/Split on it: the Q, K, V parts);
    * for a channel shuffle (the sub-axes are merged back in another order by a later
      Reshape) the inner one, so a class is "channel j of every branch", and channels keep
      their identity through the permutation;
    * otherwise, with two candidates (heads × head size), the analysis mode decides:
      "heads" keeps the outer axis (a head is one class), "head-dims" the inner one (the
      d-th dimension of every head is one class, which keeps every head the same size).

Equivalence: a merge only relabels positions; a split's unions make the removed set a product
of kept sub-indices, so removing it equals zeroing it. The target's entry for the axis that
carries the classes is rewritten to the surviving count (literal entries; -1 is inferred and
needs no edit). Targets computed at run time in more than one entry (after `shape_values`
folded what is static) are barriers.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

import numpy as np
import onnx_graphsurgeon as gs

from .. import ir
from ..shape_values import literal_entry
from .rule_context import Barrier, RuleContext, Tracked
from .rule_helpers import normalise_axis

LAYOUT_OPS = frozenset({"Transpose", "Unsqueeze", "Squeeze", "Identity", "Cast", "Dropout", "Mul", "Div"})


@dataclass(frozen=True)
class Merge:
    axis: int
    index: np.ndarray  # position q of the output axis holds channel index[q] (of the input's axis)
    tiled: bool


@dataclass(frozen=True)
class Split:
    start: int  # first output axis of the split
    sizes: tuple[int, ...]  # sub-axis sizes (the first holds `sizes[0]` channel sub-indices when composite)
    composite: bool  # the first sub-axis also holds a runtime-sized outer factor


def reshape(ctx: RuleContext) -> None:
    x = ctx.only_data_tracked(tiled_ok=True)
    in_shape, out_shape = ctx.shape(0), ctx.out_shape(0)
    if in_shape is None or out_shape is None:
        raise Barrier(f"Reshape node '{ctx.name}': input or output shape unknown")
    spec = ctx.const(1)
    mapping = channel_map(ctx, in_shape, out_shape, x.axis, len(x.elems), x.tiled)
    if isinstance(mapping, Merge):
        elems = x.elems[mapping.index]
        same = mapping.axis == x.axis and np.array_equal(mapping.index, np.arange(len(x.elems)))
        _count_entry(ctx, spec, mapping.axis, elems, copy_ok=same, dynamic=mapping.tiled)
        ctx.set_output(0, Tracked(mapping.axis, elems, mapping.tiled))
        return
    split_channels(ctx, x, mapping, spec)


def channel_map(ctx: RuleContext, in_shape: tuple[ir.Dim, ...], out: tuple[ir.Dim, ...], axis: int, length: int,
                tiled: bool) -> Merge | Split:
    """Where channel axis `axis` (of `length` elements) of `in_shape` lands in `out`."""
    after = in_shape[axis + 1:]
    if not all(isinstance(d, int) for d in after):
        raise Barrier(f"Reshape node '{ctx.name}': dimensions after the channel axis are not static")
    u = prod(after)  # type: ignore[arg-type]
    b, p = len(out) - 1, 1
    while b >= 0:
        dim = out[b]
        if not isinstance(dim, int) or p * dim > u:
            break
        p *= dim
        b -= 1
    if b < 0 or u % p:
        raise Barrier(f"Reshape node '{ctx.name}' splits a channel's values across axes")
    r, size_or_symbol = u // p, out[b]
    elems = np.arange(length)
    if not isinstance(size_or_symbol, int):
        _check_prefix(ctx, in_shape[:axis], out[:b])
        return Merge(b, np.repeat(elems, r), True)
    size = size_or_symbol
    if (size * p) % (length * u) == 0:
        return Merge(b, np.tile(np.repeat(elems, r), size * p // (length * u)), False)
    if tiled or r != 1 or length % size:
        raise Barrier(f"Reshape node '{ctx.name}' splits or mixes channels across axes")
    sizes, rest, j = [size], length // size, b - 1
    while rest > 1:
        if j < 0:
            raise Barrier(f"Reshape node '{ctx.name}' splits or mixes channels across axes")
        d = out[j]
        if not isinstance(d, int):
            _check_prefix(ctx, in_shape[:axis], out[:j])
            return Split(j, (rest, *sizes), True)
        if d != 1 and rest % d:
            raise Barrier(f"Reshape node '{ctx.name}' mixes channels with the axes before them")
        sizes.insert(0, d)
        rest //= max(d, 1)
        j -= 1
    return Split(j + 1, tuple(sizes), False)


def _check_prefix(ctx: RuleContext, before: tuple[ir.Dim, ...], out_before: tuple[ir.Dim, ...]) -> None:
    """A runtime-sized output axis holding channels: the axes before it must be input axes copied
    unchanged, so that the axis holds whole channel blocks."""
    if len(out_before) > len(before) or any(
            a is None or a != o for a, o in zip(before[:len(out_before)], out_before)):
        raise Barrier(f"Reshape node '{ctx.name}' merges channels into a runtime-sized axis of unknown layout")


def _count_entry(ctx: RuleContext, spec: np.ndarray | None, position: int, elems: np.ndarray, *, copy_ok: bool,
                 dynamic: bool) -> None:
    """Make the target's entry for the channel-carrying output axis follow the surviving count.

    A target computed at run time (a Concat of sizes read with Shape and literals, as the
    dynamo exporter writes `view(b, t, heads, d)`) is fine where the entry is one of the
    literals: the rewrite gives this Reshape its own copy of the Concat with the entry changed.
    """
    if spec is None:
        entries = ctx.entries(1)
        entry_value = entries[position] if entries is not None and position < len(entries) else None
        literal = literal_entry(ctx.node.inputs[1], position)
        if isinstance(entry_value, int) and entry_value > 0 and not dynamic and literal is not None:
            ctx.count_edit(elems, input_index=1, position=position)
            return
        if entry_value != -1:
            raise Barrier(f"Reshape node '{ctx.name}' has a target shape computed from runtime sizes")
        return
    entry = int(spec.reshape(-1)[position])
    if entry > 0 and not dynamic:
        ctx.count_edit(elems, input_index=1, position=position)
    elif entry == 0 and (int(ctx.attr("allowzero", 0)) or not copy_ok):
        raise Barrier(f"Reshape node '{ctx.name}' copies a dimension that changes meaning")
    elif entry > 0:
        raise Barrier(f"Reshape node '{ctx.name}' fixes the size of an axis holding channels and runtime sizes")


def split_channels(ctx: RuleContext, x: Tracked, split: Split, spec: np.ndarray | None) -> None:
    """Unite the elements along every sub-axis but the one that keeps the classes (module docstring)."""
    sizes = split.sizes
    candidates = [k for k, s in enumerate(sizes) if s > 1]
    selected, permuted = _fates(ctx, split)
    free = [k for k in candidates if k not in selected]
    kind = None
    if len(free) == 1:
        keep = free[0]
    elif len(free) == 2 and permuted:
        keep = free[1]
    elif len(free) == 2:
        keep = free[0] if ctx.attention == "heads" else free[1]
        kind = ctx.attention
    else:
        raise Barrier(f"Reshape node '{ctx.name}' splits the channel axis into {len(free)} axes it cannot tell apart")
    grid = np.moveaxis(x.elems.reshape(sizes), keep, -1).reshape(-1, sizes[keep])
    reps = grid[0]
    if len(grid) > 1:
        ctx.couple(np.tile(reps, len(grid) - 1), grid[1:].reshape(-1))
    if kind is not None:
        ctx.kind(reps, kind)
    tiled = split.composite and keep == 0
    _count_entry(ctx, spec, split.start + keep, reps, copy_ok=False, dynamic=tiled)
    ctx.set_output(0, Tracked(split.start + keep, reps, tiled))


def _fates(ctx: RuleContext, split: Split) -> tuple[set[int], bool]:
    """Which sub-axes are later selected from, and whether they are merged back in another order.

    Follows the Reshape's output through ops that only move axes (and scalings), at most a few
    steps: this is a look at the pattern the exporter wrote, not an analysis of its own.
    """
    selected: set[int] = set()
    permuted = False
    todo: list[tuple[gs.Tensor, list[int], int]] = [
        (ctx.node.outputs[0], [split.start + k for k in range(len(split.sizes))], 0)]
    while todo:
        tensor, positions, depth = todo.pop()
        rank = len(ir.shape_of(tensor) or ())
        for node in tensor.outputs:
            op = node.op
            if node.inputs[0] is not tensor:  # read as indices or a shape, not as data
                continue
            if op in ("Gather", "Split", "Slice"):
                axes = _selected_axes(node, rank)
                selected.update(k for k, p in enumerate(positions) if p in axes)
            elif op == "Reshape":
                order = sorted(range(len(positions)), key=lambda k: positions[k])
                inner = [k for k in order if split.sizes[k] > 1]
                permuted |= inner != sorted(inner)
            elif op in LAYOUT_OPS and depth < 8 and node.outputs:
                moved = _moved(node, positions, rank)
                if moved is not None:
                    todo.append((node.outputs[0], moved, depth + 1))
    return selected, permuted


def _selected_axes(node: gs.Node, rank: int) -> set[int]:
    """The axes a Gather, Split or Slice selects along."""
    if node.op in ("Gather", "Split"):
        return {normalise_axis(int(node.attrs.get("axis", 0)), rank)}
    axes = ir.const_value(node.inputs[3]) if len(node.inputs) > 3 and node.inputs[3].name else None
    if axes is None:
        starts = ir.const_value(node.inputs[1]) if len(node.inputs) > 1 else None
        return set(range(0 if starts is None else len(starts.reshape(-1))))
    return {normalise_axis(int(a), rank) for a in axes.reshape(-1)}


def _moved(node: gs.Node, positions: list[int], rank: int) -> list[int] | None:
    """The sub-axes' positions after a layout op, or None when it is not one we follow."""
    if node.op == "Transpose":
        perm = node.attrs.get("perm") or list(range(rank))[::-1]
        return [list(perm).index(p) for p in positions]
    if node.op in ("Unsqueeze", "Squeeze"):
        raw = node.attrs.get("axes")
        if raw is None and len(node.inputs) > 1:
            value = ir.const_value(node.inputs[1])
            raw = None if value is None else value.reshape(-1).tolist()
        if raw is None:
            return None
        if node.op == "Unsqueeze":
            axes = sorted(normalise_axis(int(a), rank + len(raw)) for a in raw)
            out = list(positions)
            for a in axes:
                out = [p + 1 if p >= a else p for p in out]
            return out
        axes = sorted(normalise_axis(int(a), rank) for a in raw)
        if any(p in axes for p in positions):
            return None
        return [p - sum(a < p for a in axes) for p in positions]
    out_shape = ir.shape_of(node.outputs[0])
    return list(positions) if out_shape is not None and len(out_shape) == rank else None
