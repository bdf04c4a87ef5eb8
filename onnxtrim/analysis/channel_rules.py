"""How each ONNX op treats a channel axis: the rule table of the analysis.

An op that is not in `RULES` is a barrier: channels that reach it are left alone and the
reason is reported. Every rule states an equivalence it preserves: removing a set of
channel elements from the rewritten graph computes the same values as zeroing those
elements at every tensor that carries them in the original graph.
"""

from __future__ import annotations

from collections.abc import Callable
from math import prod

import numpy as np
import onnx_graphsurgeon as gs

from .. import ir
from .rule_context import Barrier, RuleContext, SliceEdit, SplitEdit, Tracked

Rule = Callable[[RuleContext], None]


def _normalise_axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def _static_suffix(ctx: RuleContext, i: int, start: int) -> tuple[int, ...]:
    shape = ctx.shape(i)
    if shape is None or not all(isinstance(d, int) for d in shape[start:]):
        raise Barrier(f"{ctx.node.op} node '{ctx.name}': dimensions after the channel axis are not static")
    return tuple(int(d) for d in shape[start:])  # type: ignore[arg-type]


# ---- producers and consumers -------------------------------------------------------------


def conv(ctx: RuleContext) -> None:
    """Conv: consumes input channels (weight axis 1) and produces output channels (axis 0).

    A grouped conv (group = G > 1) reads C_in/G input channels per group and writes C_out/G
    output channels per group, so only whole groups can go: the channels of one group, input
    and output side, are united into one class and `group` follows the surviving groups.
    Depthwise convolution is the case C_in/G = 1. A conv with one output channel is not
    depthwise: only the `group` attribute decides.
    """
    ctx.require_single_output()
    weight = ctx.const_shape(1)
    if weight is None:
        raise Barrier(f"Conv node '{ctx.name}' has non-constant weights")
    if ctx.tracked(1) or ctx.tracked(2):
        raise Barrier(f"Conv node '{ctx.name}': channels reach its weights")
    bias = ctx.input(2)
    if bias is not None and ctx.const_shape(2) is None:
        raise Barrier(f"Conv node '{ctx.name}' has a non-constant bias")
    group = int(ctx.attr("group", 1))
    c_out, per_group_in = int(weight[0]), int(weight[1])
    x = ctx.tracked(0)
    if x is not None and x.axis != 1:
        raise Barrier(f"Conv node '{ctx.name}' reads channels on axis {x.axis}, not 1")
    if group == 1:
        if x is not None:
            ctx.consume(0)
            ctx.slice_param(1, 1, x.elems)
        out = ctx.new_space(c_out)
    elif x is None:
        out = ctx.new_space(c_out, blocked=f"grouped Conv '{ctx.name}' reads channels that cannot be removed")
    else:
        if len(x.elems) != group * per_group_in:
            raise Barrier(f"grouped Conv '{ctx.name}': {len(x.elems)} input channels do not fill {group} groups")
        leaders = x.elems[::per_group_in]
        for j in range(1, per_group_in):
            ctx.couple(leaders, x.elems[j::per_group_in])
        out = np.repeat(leaders, c_out // group)
        ctx.count_edit(leaders, attr="group")
    ctx.slice_param(1, 0, out)
    if bias is not None:
        ctx.slice_param(2, 0, out)
    ctx.set_output(0, Tracked(1, out))


def gemm(ctx: RuleContext) -> None:
    """Gemm: Y = alpha·A'·B' + beta·C; consumes A's K axis and produces B's N axis."""
    ctx.require_single_output()
    b = ctx.const_shape(1)
    if ctx.tracked(1) is not None or ctx.tracked(2) is not None:
        raise Barrier(f"Gemm node '{ctx.name}': channels reach B or C")
    if b is None or len(b) != 2:
        raise Barrier(f"Gemm node '{ctx.name}' has a non-constant B")
    trans_a, trans_b = int(ctx.attr("transA", 0)), int(ctx.attr("transB", 0))
    a = ctx.tracked(0)
    if a is not None:
        if a.axis != (0 if trans_a else 1):
            raise Barrier(f"Gemm node '{ctx.name}' reads channels on its M axis")
        ctx.consume(0)
        ctx.slice_param(1, 1 if trans_b else 0, a.elems)
    n = int(b[0] if trans_b else b[1])
    c = ctx.const_shape(2) if ctx.input(2) is not None else None
    blocked = None
    if ctx.input(2) is not None and c is None:
        blocked = f"Gemm node '{ctx.name}' has a non-constant C"
    out = ctx.new_space(n, blocked=blocked)
    ctx.slice_param(1, 0 if trans_b else 1, out)
    if c is not None and len(c) >= 1 and c[-1] == n and n > 1:
        ctx.slice_param(2, len(c) - 1, out)
    ctx.set_output(0, Tracked(1, out))


def matmul(ctx: RuleContext) -> None:
    """MatMul with a constant right operand: consumes A's last axis, produces B's last axis."""
    b = ctx.const_shape(1)
    if ctx.tracked(1) is not None or b is None:
        if ctx.tracked_inputs():
            raise Barrier(f"MatMul node '{ctx.name}' multiplies two activations (attention-like)")
        return
    if len(b) < 2:
        raise Barrier(f"MatMul node '{ctx.name}' has a 1-D right operand")
    a = ctx.tracked(0)
    rank_a = ctx.rank(0)
    if rank_a is None or rank_a < 2:
        raise Barrier(f"MatMul node '{ctx.name}': left operand rank unknown or below 2")
    if a is not None:
        if a.axis != rank_a - 1:
            raise Barrier(f"MatMul node '{ctx.name}' reads channels on an axis other than the last")
        ctx.consume(0)
        ctx.slice_param(1, len(b) - 2, a.elems)
    out = ctx.new_space(int(b[-1]))
    ctx.slice_param(1, len(b) - 1, out)
    ctx.set_output(0, Tracked(max(rank_a, len(b)) - 1, out))


# ---- channel-preserving ops ---------------------------------------------------------------


def elementwise(ctx: RuleContext) -> None:
    """Broadcasting ops: tracked inputs are coupled position by position; constants that
    broadcast along the channel axis are sliced with it; other activations are barriers."""
    ctx.require_single_output()
    out_shape = ctx.out_shape(0)
    ranks = [ctx.rank(i) if ctx.input(i) is not None else 0 for i in range(ctx.n_inputs())]
    if None in ranks:
        raise Barrier(f"{ctx.node.op} node '{ctx.name}': an input has unknown rank")
    out_rank = max(ranks) if out_shape is None else len(out_shape)
    tracked = {i: ctx.tracked(i) for i in ctx.tracked_inputs()}
    out_axes = {t.axis + out_rank - ranks[i] for i, t in tracked.items()}
    if len(out_axes) != 1:
        raise Barrier(f"{ctx.node.op} node '{ctx.name}' combines channels on different axes")
    out_axis = out_axes.pop()
    first = next(iter(tracked.values()))
    for t in tracked.values():
        if len(t.elems) != len(first.elems):
            raise Barrier(f"{ctx.node.op} node '{ctx.name}' broadcasts a channel axis")
    slices = []
    for i in range(ctx.n_inputs()):
        if i in tracked or ctx.input(i) is None:
            continue
        axis = out_axis - (out_rank - ranks[i])
        if axis < 0:
            continue
        const = ctx.const_shape(i)
        if const is not None:
            size = const[axis]
        else:
            shape = ctx.shape(i)
            size = shape[axis] if shape is not None else None
        if size == 1:
            continue
        if const is None or size != len(first.elems):
            raise Barrier(f"{ctx.node.op} node '{ctx.name}' combines channels with {_origin(ctx.input(i))}, "
                          "which carries no removable channels")
        slices.append((i, axis))
    for t in tracked.values():
        if t is not first:
            ctx.couple(first.elems, t.elems)
    for i, axis in slices:
        ctx.slice_param(i, axis, first.elems)
    ctx.set_output(0, Tracked(out_axis, first.elems))


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
    x = ctx.only_data_tracked()
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
    axes = ctx.const(3) if ctx.n_inputs() > 3 and ctx.input(3) is not None else None
    axes = list(range(rank)) if axes is None else [_normalise_axis(int(a), rank) for a in axes]
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
    """LayerNormalization normalises over the trailing axes from `axis` on: a channel among
    them changes the mean and variance of the others when removed, so that is a barrier."""
    ctx.require_single_output()
    x = ctx.only_data_tracked()
    rank = ctx.rank(0)
    if rank is None or x.axis >= _normalise_axis(int(ctx.attr("axis", -1)), rank):
        raise Barrier(f"LayerNormalization '{ctx.name}' normalises over the channel axis")
    ctx.set_output(0, x)


def softmax(ctx: RuleContext) -> None:
    x = ctx.only_data_tracked()
    rank = ctx.rank(0)
    default = -1 if ctx.opset >= 13 else 1
    axis = _normalise_axis(int(ctx.attr("axis", default)), rank or 0)
    if rank is None or axis == x.axis or (ctx.opset < 13 and axis <= x.axis):
        raise Barrier(f"{ctx.node.op} node '{ctx.name}' normalises over the channel axis")
    ctx.set_output(0, x)


# ---- index-mapping ops --------------------------------------------------------------------


def flatten(ctx: RuleContext) -> None:
    """Flatten(axis=k): a channel becomes a block of `inner` consecutive positions of axis 1."""
    x = ctx.only_data_tracked()
    rank = ctx.rank(0)
    if rank is None:
        raise Barrier(f"Flatten node '{ctx.name}': input rank unknown")
    k = _normalise_axis(int(ctx.attr("axis", 1)), rank)
    if x.axis < k:
        raise Barrier(f"Flatten node '{ctx.name}' merges the channel axis into the batch axis")
    dims = _static_suffix(ctx, 0, k)
    inner = prod(dims[x.axis - k + 1:])
    outer = prod(dims[: x.axis - k])
    ctx.set_output(0, Tracked(1, np.tile(np.repeat(x.elems, inner), outer)))


def reshape(ctx: RuleContext) -> None:
    """Reshape that keeps each channel's block of values contiguous on one output axis.

    With input dims d and channel axis a, the block d[a:] becomes out[b:] when their
    products agree; then each channel covers `inner / prod(out[b+1:])` positions of axis b.
    A constant shape entry for axis b is rewritten to the surviving count. Reshapes that
    split a channel across axes (attention head splits) are barriers.
    """
    x = ctx.only_data_tracked()
    shape_spec = ctx.const(1)
    if shape_spec is None:
        raise Barrier(f"Reshape node '{ctx.name}' has a computed target shape")
    dims = _static_suffix(ctx, 0, x.axis)
    block = prod(dims)
    inner = prod(dims[1:])
    out = ctx.out_shape(0)
    if out is None:
        raise Barrier(f"Reshape node '{ctx.name}': output shape unknown")
    for b in range(len(out) - 1, -1, -1):
        suffix = out[b:]
        if not all(isinstance(d, int) for d in suffix) or prod(suffix) != block:  # type: ignore[arg-type]
            continue
        inner_out = prod(suffix[1:])  # type: ignore[arg-type]
        if inner % inner_out != 0 or out[b] <= 1:
            continue
        elems = np.repeat(x.elems, inner // inner_out)
        spec = shape_spec.reshape(-1)
        if int(spec[b]) > 0:
            ctx.count_edit(elems, input_index=1, position=b)
        elif int(spec[b]) == 0 and (ctx.attr("allowzero", 0) or b != x.axis or inner_out != inner):
            raise Barrier(f"Reshape node '{ctx.name}' copies a dimension that changes meaning")
        ctx.set_output(0, Tracked(b, elems))
        return
    raise Barrier(f"Reshape node '{ctx.name}' splits or mixes channels across axes")


def transpose(ctx: RuleContext) -> None:
    x = ctx.only_data_tracked()
    rank = ctx.rank(0)
    perm = ctx.attr("perm")
    if rank is None:
        raise Barrier(f"Transpose node '{ctx.name}': input rank unknown")
    perm = list(range(rank))[::-1] if perm is None else [int(p) for p in perm]
    ctx.set_output(0, Tracked(perm.index(x.axis), x.elems))


def _axes(ctx: RuleContext, rank: int) -> list[int] | None:
    """Axes from the attribute (older opsets) or the second input (newer), normalised to `rank`."""
    axes = ctx.attr("axes")
    if axes is None and ctx.n_inputs() > 1 and ctx.input(1) is not None:
        const = ctx.const(1)
        if const is None:
            raise Barrier(f"{ctx.node.op} node '{ctx.name}' has computed axes")
        axes = const.reshape(-1).tolist()
    return None if axes is None else [_normalise_axis(int(a), rank) for a in axes]


def squeeze(ctx: RuleContext) -> None:
    x = ctx.only_data_tracked()
    rank = ctx.rank(0)
    if rank is None:
        raise Barrier(f"Squeeze node '{ctx.name}': input rank unknown")
    axes = _axes(ctx, rank)
    if axes is None:
        shape = ctx.shape(0)
        if shape is None or any(d is None or isinstance(d, str) for d in shape):
            raise Barrier(f"Squeeze node '{ctx.name}' squeezes unknown axes")
        axes = [i for i, d in enumerate(shape) if d == 1]
    if x.axis in axes:
        raise Barrier(f"Squeeze node '{ctx.name}' removes the channel axis")
    ctx.set_output(0, Tracked(x.axis - sum(a < x.axis for a in axes), x.elems))


def unsqueeze(ctx: RuleContext) -> None:
    x = ctx.only_data_tracked()
    rank = ctx.rank(0)
    if rank is None:
        raise Barrier(f"Unsqueeze node '{ctx.name}': input rank unknown")
    raw = ctx.attr("axes")
    if raw is None and ctx.const(1) is not None:
        raw = ctx.const(1).reshape(-1).tolist()
    if raw is None:
        raise Barrier(f"Unsqueeze node '{ctx.name}' has computed axes")
    axes = sorted(_normalise_axis(int(a), rank + len(raw)) for a in raw)
    position = x.axis
    for a in axes:
        if a <= position:
            position += 1
    ctx.set_output(0, Tracked(position, x.elems))


def reduce(ctx: RuleContext) -> None:
    """Reductions over axes other than the channel axis keep channels independent."""
    ctx.require_single_output()
    x = ctx.only_data_tracked()
    rank = ctx.rank(0)
    if rank is None:
        raise Barrier(f"{ctx.node.op} node '{ctx.name}': input rank unknown")
    axes = _axes(ctx, rank)
    if not axes:
        if axes == [] and int(ctx.attr("noop_with_empty_axes", 0)):
            ctx.set_output(0, x)
            return
        raise Barrier(f"{ctx.node.op} node '{ctx.name}' reduces over every axis, the channel axis too")
    if x.axis in axes:
        raise Barrier(f"{ctx.node.op} node '{ctx.name}' reduces over the channel axis")
    keep = int(ctx.attr("keepdims", 1))
    ctx.set_output(0, Tracked(x.axis if keep else x.axis - sum(a < x.axis for a in axes), x.elems))


def concat(ctx: RuleContext) -> None:
    """Concat on the channel axis lays the inputs' elements end to end (offsets); inputs that
    carry no channels there occupy fixed positions nothing may remove. Concat on another axis
    couples the inputs like an elementwise op."""
    ctx.require_single_output()
    rank = ctx.rank(ctx.tracked_inputs()[0])
    if rank is None:
        raise Barrier(f"Concat node '{ctx.name}': input rank unknown")
    axis = _normalise_axis(int(ctx.attr("axis")), rank)
    tracked = {i: ctx.tracked(i) for i in ctx.tracked_inputs()}
    if any(t.axis != next(iter(tracked.values())).axis for t in tracked.values()):
        raise Barrier(f"Concat node '{ctx.name}' joins inputs with channels on different axes")
    channel_axis = next(iter(tracked.values())).axis
    if axis != channel_axis:
        if len(tracked) != ctx.n_inputs():
            raise Barrier(f"Concat node '{ctx.name}' joins channel-carrying and plain inputs")
        first = next(iter(tracked.values()))
        for t in tracked.values():
            if len(t.elems) != len(first.elems):
                raise Barrier(f"Concat node '{ctx.name}' joins different channel counts")
            if t is not first:
                ctx.couple(first.elems, t.elems)
        ctx.set_output(0, first)
        return
    parts = []
    for i in range(ctx.n_inputs()):
        if i in tracked:
            parts.append(tracked[i].elems)
            continue
        shape = ctx.const_shape(i) or ctx.shape(i)
        if shape is None or not isinstance(shape[axis], int):
            raise Barrier(f"Concat node '{ctx.name}': input {i} has an unknown channel count")
        parts.append(ctx.fixed(int(shape[axis]), f"Concat '{ctx.name}' input {i} carries channels of unknown origin"))
    ctx.set_output(0, Tracked(axis, np.concatenate(parts)))


def split(ctx: RuleContext) -> None:
    """Split along the channel axis hands each output its range of elements; the split sizes
    are rewritten to the surviving counts. Along another axis every output keeps the channels."""
    x = ctx.only_data_tracked()
    rank = ctx.rank(0)
    if rank is None:
        raise Barrier(f"Split node '{ctx.name}': input rank unknown")
    axis = _normalise_axis(int(ctx.attr("axis", 0)), rank)
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
    axes = ctx.const(3) if ctx.input(3) is not None else np.arange(len(starts) if starts is not None else 0)
    steps = ctx.const(4) if ctx.input(4) is not None else None
    if starts is None or ends is None or axes is None or (ctx.input(4) is not None and steps is None):
        raise Barrier(f"Slice node '{ctx.name}' has computed bounds")
    axes = [_normalise_axis(int(a), rank) for a in axes.reshape(-1)]
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
    start = min(_normalise_axis(int(ctx.attr("start", 0)), rank), rank)
    end = ctx.attr("end")
    end = rank if end is None else min(_normalise_axis(int(end), rank), rank)
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


def dropout(ctx: RuleContext) -> None:
    ctx.require_single_output()
    x = ctx.only_data_tracked()
    ctx.set_output(0, x)


UNARY_OPS = (
    "Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu", "Celu",
    "Softplus", "Softsign", "ThresholdedRelu", "Erf", "Gelu", "Mish", "Identity", "Neg", "Abs", "Sqrt",
    "Exp", "Log", "Reciprocal", "Sign", "Floor", "Ceil", "Round", "Cast", "Sin", "Cos",
)
ELEMENTWISE_OPS = ("Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Mean", "Pow", "PRelu", "Where")
POOL_OPS = ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool", "GlobalLpPool")
REDUCE_OPS = ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
              "ReduceSumSquare", "ReduceLogSumExp", "ReduceLogSum")

RULES: dict[str, Rule] = {
    "Conv": conv,
    "Gemm": gemm,
    "MatMul": matmul,
    "BatchNormalization": channel_first(params=(1, 2, 3, 4)),
    "InstanceNormalization": channel_first(params=(1, 2)),
    "Pad": pad,
    "Resize": resize,
    "Upsample": resize,
    "LayerNormalization": layer_norm,
    "Softmax": softmax,
    "LogSoftmax": softmax,
    "Flatten": flatten,
    "Reshape": reshape,
    "Transpose": transpose,
    "Squeeze": squeeze,
    "Unsqueeze": unsqueeze,
    "Concat": concat,
    "Shape": shape_op,
    "Split": split,
    "Slice": slice_op,
    "Dropout": dropout,
    **{op: unary for op in UNARY_OPS},
    **{op: elementwise for op in ELEMENTWISE_OPS},
    **{op: pool for op in POOL_OPS},
    **{op: reduce for op in REDUCE_OPS},
}

# Ops through which an all-zero channel stays all zero: an activation's zero statistics
# observed before them are the statistics of what the consumer reads.
ZERO_PRESERVING_OPS = frozenset(
    {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Flatten", "Reshape", "Transpose",
     "Squeeze", "Unsqueeze", "Identity", "Dropout", "Resize", "Upsample", "Relu", "LeakyRelu"}
)
# Activations whose output has exact zeros worth counting (APoZ is measured there).
ZERO_PRODUCING_ACTIVATIONS = frozenset({"Relu", "Clip"})
