"""Reductions and arg-reductions.

The axes of every Reduce* op moved from an attribute to an optional input (ReduceSum at opset 13,
the others at 18), with `noop_with_empty_axes` saying what no axes means; both revisions share
one function per op here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from .registry import axis_index, ints, op

T = torch.Tensor


def _prod(x: T, dims: tuple[int, ...], keep: bool) -> T:
    for d in sorted(dims, reverse=True):
        x = torch.prod(x, d, keepdim=keep)
    return x


_REDUCERS: dict[str, Callable[[T, tuple[int, ...], bool], T]] = {
    "ReduceMean": lambda x, d, k: x.mean(dim=d, keepdim=k),
    "ReduceSum": lambda x, d, k: x.sum(dim=d, keepdim=k),
    "ReduceMax": lambda x, d, k: x.amax(dim=d, keepdim=k),
    "ReduceMin": lambda x, d, k: x.amin(dim=d, keepdim=k),
    "ReduceProd": _prod,
    "ReduceL1": lambda x, d, k: x.abs().sum(dim=d, keepdim=k),
    "ReduceL2": lambda x, d, k: x.square().sum(dim=d, keepdim=k).sqrt(),
    "ReduceSumSquare": lambda x, d, k: x.square().sum(dim=d, keepdim=k),
    "ReduceLogSum": lambda x, d, k: x.sum(dim=d, keepdim=k).log(),
    "ReduceLogSumExp": lambda x, d, k: torch.logsumexp(x, dim=d, keepdim=k),
}


def _reduce(fn: Callable[[T, tuple[int, ...], bool], T], x: T, axes: Sequence[int] | None, keepdims: int,
            noop_with_empty_axes: int) -> T:
    if not axes:
        if noop_with_empty_axes:
            return x
        dims = tuple(range(x.dim()))
    else:
        dims = tuple(axis_index(a, x.dim()) for a in axes)
    return fn(x, dims, bool(keepdims))


def _register(name: str, moved_at: int) -> None:
    fn = _REDUCERS[name]

    def with_attribute(x: T, *, axes: Sequence[int] | None = None, keepdims: int = 1,
                       noop_with_empty_axes: int = 0) -> T:
        return _reduce(fn, x, axes, keepdims, noop_with_empty_axes)

    def with_input(x: T, axes: Any = None, *, keepdims: int = 1, noop_with_empty_axes: int = 0) -> T:
        return _reduce(fn, x, None if axes is None else ints(axes), keepdims, noop_with_empty_axes)

    op(name, 1)(with_attribute)
    op(name, moved_at, shape_inputs=(1,))(with_input)


for _name in _REDUCERS:
    _register(_name, 13 if _name == "ReduceSum" else 18)


def _arg(fn: Callable[..., T]) -> Callable[..., T]:
    def handler(x: T, *, axis: int = 0, keepdims: int = 1, select_last_index: int = 0) -> T:
        a = axis_index(axis, x.dim())
        if select_last_index:
            return x.shape[a] - 1 - fn(x.flip(a), dim=a, keepdim=bool(keepdims))
        return fn(x, dim=a, keepdim=bool(keepdims))

    return handler


op("ArgMax", 1, frozen_inputs=(0,))(_arg(torch.argmax))
op("ArgMin", 1, frozen_inputs=(0,))(_arg(torch.argmin))
