"""Rules for ops that create channels (and consume the ones they read): Conv, Gemm, MatMul."""

from __future__ import annotations

import numpy as np

from .rule_context import Barrier, RuleContext, Tracked
from .rules_attention import matmul_of_activations


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
            ctx.consume(0, 1, 1)
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
    ctx.slice_param(1, 0, out, role="producer")
    if bias is not None:
        ctx.slice_param(2, 0, out, role="bias")
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
        ctx.consume(0, 1, 1 if trans_b else 0)
    n = int(b[0] if trans_b else b[1])
    c = ctx.const_shape(2) if ctx.input(2) is not None else None
    blocked = None
    if ctx.input(2) is not None and c is None:
        blocked = f"Gemm node '{ctx.name}' has a non-constant C"
    out = ctx.new_space(n, blocked=blocked)
    ctx.slice_param(1, 0 if trans_b else 1, out, role="producer")
    if c is not None and len(c) >= 1 and c[-1] == n and n > 1:
        ctx.slice_param(2, len(c) - 1, out, role="bias")
    ctx.set_output(0, Tracked(1, out))


def matmul(ctx: RuleContext) -> None:
    """MatMul with a constant right operand: consumes A's last axis, produces B's last axis."""
    b = ctx.const_shape(1)
    if ctx.tracked(1) is not None or b is None:
        if ctx.tracked_inputs():
            matmul_of_activations(ctx)
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
        ctx.consume(0, 1, len(b) - 2)
    out = ctx.new_space(int(b[-1]))
    ctx.slice_param(1, len(b) - 1, out, role="producer")
    ctx.set_output(0, Tracked(max(rank_a, len(b)) - 1, out))
