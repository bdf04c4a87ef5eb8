"""Small helpers shared by the channel rules."""

from __future__ import annotations

from .rule_context import Barrier, RuleContext


def normalise_axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def static_suffix(ctx: RuleContext, i: int, start: int) -> tuple[int, ...]:
    shape = ctx.shape(i)
    if shape is None or not all(isinstance(d, int) for d in shape[start:]):
        raise Barrier(f"{ctx.node.op} node '{ctx.name}': dimensions after the channel axis are not static")
    return tuple(int(d) for d in shape[start:])  # type: ignore[arg-type]


def axes_of(ctx: RuleContext, rank: int) -> list[int] | None:
    """Axes from the attribute (older opsets) or the second input (newer), normalised to `rank`."""
    axes = ctx.attr("axes")
    if axes is None and ctx.n_inputs() > 1 and ctx.input(1) is not None:
        const = ctx.const(1)
        if const is None:
            raise Barrier(f"{ctx.node.op} node '{ctx.name}' has computed axes")
        axes = const.reshape(-1).tolist()
    return None if axes is None else [normalise_axis(int(a), rank) for a in axes]
