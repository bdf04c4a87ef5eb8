"""Rules for the attention core: MatMul of two activations, and the ONNX Attention op (opset 23).

Decomposed attention, as both torch exporters write it: scores = Q·Kᵀ (scaled), softmax over
the keys, context = P·V. By then the Reshape rule has made the head axis (mode "heads") or the
head-size axis (mode "head-dims") the channel axis of Q, K and V.

MatMul(A, B) with both operands activations, A [..., M, K], B [..., K, N]:
- channels on the same batch axis of both (the heads): united position by position, and the
  output carries them there. Removing head h from Q and K removes exactly scores[h]; from P
  and V exactly context[h]; zeroing them instead makes scores[h] zero, so softmax gives
  uniform weights, and context[h] = P[h]·0 = 0: the same values wherever head h survives.
- channels on the contraction axis of both (head size of Q and K): united position by
  position; the output carries none. Σ_d q_d·k_d over the kept d equals the full sum with the
  removed d zeroed.
- channels on A's row axis or B's column axis (V's head size) go to the output unchanged.
- a batch axis with channels on one side only is fine where the other side broadcasts (size 1).
Everything else (channels on the contraction axis of one side only, channels on two axes of
the output) is a barrier. The node's MACs scale with the surviving share (`ScaledMacs`).
"""

from __future__ import annotations

import numpy as np

from .rule_context import AttrEdit, Barrier, RuleContext, ScaledMacs, Tracked
from .rule_helpers import normalise_axis


def matmul_of_activations(ctx: RuleContext) -> None:
    a, b = ctx.tracked(0), ctx.tracked(1)
    ra, rb = ctx.rank(0), ctx.rank(1)
    if ra is None or rb is None or ra < 2 or rb < 2:
        raise Barrier(f"MatMul node '{ctx.name}' multiplies activations of unknown rank or rank 1")
    rank = max(ra, rb)
    role_a = None if a is None else _role(a.axis + rank - ra, rank, "M", "K")
    role_b = None if b is None else _role(b.axis + rank - rb, rank, "K", "N")
    if a is not None and b is not None:
        if role_a != role_b or len(a.elems) != len(b.elems) or a.tiled != b.tiled:
            raise Barrier(f"MatMul node '{ctx.name}' multiplies activations whose channels do not line up "
                          f"({role_a} of the left, {role_b} of the right operand)")
        ctx.couple(a.elems, b.elems)
        _scaled(ctx, a)
        if role_a != "K":
            ctx.set_output(0, Tracked(a.axis + rank - ra, a.elems, a.tiled))
        return
    one, side, role = (a, 0, role_a) if a is not None else (b, 1, role_b)
    assert one is not None
    if role == "K":
        raise Barrier(f"MatMul node '{ctx.name}' contracts channels of one operand with an activation")
    out_axis = one.axis + rank - (ra if side == 0 else rb)
    if role not in ("M", "N"):  # a batch axis: the other operand must broadcast along it
        other = ctx.shape(1 - side)
        other_rank = rb if side == 0 else ra
        k = out_axis - (rank - other_rank)
        if other is None or (k >= 0 and other[k] != 1):
            raise Barrier(f"MatMul node '{ctx.name}' batches channels with an activation that has no channels")
    _scaled(ctx, one)
    ctx.set_output(0, Tracked(out_axis, one.elems, one.tiled))


def _role(axis: int, rank: int, second_last: str, last: str) -> str:
    if axis == rank - 1:
        return last
    if axis == rank - 2:
        return second_last
    return f"batch axis {axis}"


def _scaled(ctx: RuleContext, tracked: Tracked) -> None:
    if not tracked.tiled:  # a runtime-sized axis counts as 1 in the MACs, whatever its channels
        ctx.edit(ScaledMacs(ctx.index, tracked.elems))


def attention(ctx: RuleContext) -> None:
    """ONNX Attention (opset 23) on 4-D Q, K, V [batch, heads, sequence, head size].

    Heads (axis 1 of Q, K, V and of the output) are united and follow the rule above; head
    size: Q's and K's (axis 3) are united, V's goes to the output. The op's default scale is
    1/√(head size), which removing head dims would change: the original value is then written
    into its `scale` attribute. 3-D inputs (heads folded into the hidden axis), a mask or past
    key/values with channels, and the extra outputs are barriers.
    """
    used = ctx.used_outputs()
    if used != [0]:
        raise Barrier(f"Attention node '{ctx.name}' uses outputs {used} (present key/values or scores)")
    q, k, v = (ctx.tracked(i) for i in range(3))
    if any(ctx.rank(i) != 4 for i in range(3)):
        raise Barrier(f"Attention node '{ctx.name}' has 3-D inputs (heads inside the hidden axis)")
    if any(ctx.tracked(i) is not None for i in range(3, ctx.n_inputs())):
        raise Barrier(f"Attention node '{ctx.name}': channels reach its mask or past key/values")
    mask = ctx.shape(3) if ctx.input(3) is not None else None
    axes = {i: t.axis for i, t in ((0, q), (1, k), (2, v)) if t is not None}
    if any(t is not None and t.tiled for t in (q, k, v)):
        raise Barrier(f"Attention node '{ctx.name}' reads channels interleaved with a runtime-sized axis")
    if set(axes.values()) == {1} and len(axes) == 3:
        assert q is not None and k is not None and v is not None
        if mask is not None and len(mask) == 4 and mask[1] != 1:
            raise Barrier(f"Attention node '{ctx.name}' has a mask per head")
        ctx.couple(q.elems, k.elems)
        ctx.couple(q.elems, v.elems)
        ctx.set_output(0, Tracked(1, q.elems))
        return
    if axes.get(0) == 3 and axes.get(1) == 3 and q is not None and k is not None:
        ctx.couple(q.elems, k.elems)
        if ctx.attr("scale") is None:
            ctx.edit(AttrEdit(ctx.index, q.elems, "scale", float(1.0 / np.sqrt(len(q.elems)))))
        if v is not None and v.axis == 3:
            ctx.set_output(0, Tracked(3, v.elems))
        elif v is not None:
            raise Barrier(f"Attention node '{ctx.name}': V's channels are not on its head-size axis")
        return
    if axes == {2: 3} and v is not None:
        ctx.set_output(0, Tracked(3, v.elems))
        return
    raise Barrier(f"Attention node '{ctx.name}': Q, K and V carry channels on axes "
                  f"{ {i: normalise_axis(a, 4) for i, a in axes.items()} } that do not line up")
