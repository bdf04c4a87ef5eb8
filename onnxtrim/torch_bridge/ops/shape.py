"""Shape and indexing ops: Shape arithmetic, Reshape, Slice, Split, Gather/Scatter, Expand...

Shape-like inputs arrive as tuples of ints when they were constants at build time and as int64
tensors when they were computed from `Shape` (`ints()` reads those back once per call), which is
what keeps a TorchScript export's Shape → Gather → Unsqueeze → Concat → Reshape chain correct for
any batch size. `Shape` returns a tensor on the input's device, so that computed shapes meet
constants (buffers, which follow the module's device) on one device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from .registry import axis_index, ints, op, scalar, unsupported

T = torch.Tensor


@op("Identity")
def identity(x: T) -> T:
    return x


@op("Constant")
def constant(**attrs: Any) -> T:
    (name, value), = attrs.items()
    if name in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        return value if isinstance(value, T) else torch.tensor(value)
    raise unsupported(f"Constant with a {name} attribute")


@op("Shape", 1, frozen_inputs=(0,))
def shape(x: T, *, start: int = 0, end: int | None = None) -> T:
    return torch.tensor(x.shape[start:end], dtype=torch.int64, device=x.device)


@op("Size", frozen_inputs=(0,))
def size(x: T) -> T:
    return torch.tensor(x.numel(), dtype=torch.int64, device=x.device)


@op("Reshape", 5, shape_inputs=(1,))
def reshape(x: T, target: Any, *, allowzero: int = 0) -> T:
    dims = ints(target)
    if not allowzero and 0 in dims:
        dims = tuple(x.shape[i] if d == 0 else d for i, d in enumerate(dims))
    return x.reshape(dims)


@op("Transpose")
def transpose(x: T, *, perm: Sequence[int] | None = None) -> T:
    return x.permute(tuple(perm) if perm is not None else tuple(range(x.dim() - 1, -1, -1)))


def _squeeze(x: T, axes: Sequence[int] | None) -> T:
    if axes is None:
        return x.squeeze()
    return x.squeeze(tuple(axis_index(a, x.dim()) for a in axes)) if axes else x


def _unsqueeze(x: T, axes: Sequence[int]) -> T:
    rank = x.dim() + len(axes)
    for a in sorted(axis_index(a, rank) for a in axes):
        x = x.unsqueeze(a)
    return x


@op("Squeeze", 1)
def squeeze_attr(x: T, *, axes: Sequence[int] | None = None) -> T:
    return _squeeze(x, axes)


@op("Squeeze", 13, shape_inputs=(1,))
def squeeze(x: T, axes: Any = None) -> T:
    return _squeeze(x, None if axes is None else ints(axes))


@op("Unsqueeze", 1)
def unsqueeze_attr(x: T, *, axes: Sequence[int]) -> T:
    return _unsqueeze(x, axes)


@op("Unsqueeze", 13, shape_inputs=(1,))
def unsqueeze(x: T, axes: Any) -> T:
    return _unsqueeze(x, ints(axes))


@op("Concat", 4)
def concat(*xs: T, axis: int) -> T:
    return torch.cat(xs, dim=axis)


def _split(x: T, axis: int, sizes: Sequence[int] | None, parts: int) -> tuple[T, ...]:
    if sizes is None:
        length = x.shape[axis]
        if length % parts:
            raise unsupported(f"Split of {length} into {parts} equal parts")
        sizes = [length // parts] * parts
    return tuple(torch.split(x, list(sizes), dim=axis))


@op("Split", 2, wants_outputs=True)
def split_attr(x: T, *, axis: int = 0, split: Sequence[int] | None = None, n_outputs: int = 1) -> tuple[T, ...]:
    return _split(x, axis, split, n_outputs)


@op("Split", 13, shape_inputs=(1,), wants_outputs=True)
def split13(x: T, sizes: Any = None, *, axis: int = 0, n_outputs: int = 1) -> tuple[T, ...]:
    return _split(x, axis, None if sizes is None else ints(sizes), n_outputs)


@op("Split", 18, shape_inputs=(1,), wants_outputs=True)
def split18(x: T, sizes: Any = None, *, axis: int = 0, num_outputs: int | None = None,
            n_outputs: int = 1) -> tuple[T, ...]:
    if sizes is not None:
        return _split(x, axis, ints(sizes), n_outputs)
    parts = num_outputs or n_outputs
    chunk = -(-x.shape[axis] // parts)  # ceil: the last part is the smaller one
    return tuple(torch.split(x, chunk, dim=axis))


def _slice(x: T, starts: Sequence[int], ends: Sequence[int], axes: Sequence[int] | None,
           steps: Sequence[int] | None) -> T:
    rank = x.dim()
    axes = range(len(starts)) if axes is None else axes
    steps = (1,) * len(starts) if steps is None else steps
    index: list[slice] = [slice(None)] * rank
    flips: list[int] = []
    for start, end, axis, step in zip(starts, ends, axes, steps):
        a = axis_index(axis, rank)
        d = x.shape[a]
        start = start + d if start < 0 else start
        end = end + d if end < 0 else end
        if step > 0:
            index[a] = slice(min(max(start, 0), d), min(max(end, 0), d), step)
        elif step < 0:  # torch has no negative steps: flip the axis, then slice forwards
            start, end = min(max(start, 0), d - 1), min(max(end, -1), d - 1)
            flips.append(a)
            index[a] = slice(d - 1 - start, d - 1 - end, -step)
        else:
            raise unsupported("Slice with step 0")
    if flips:
        x = x.flip(flips)
    return x[tuple(index)]


@op("Slice", 1)
def slice_attr(x: T, *, starts: Sequence[int], ends: Sequence[int], axes: Sequence[int] | None = None) -> T:
    return _slice(x, starts, ends, axes, None)


@op("Slice", 10, shape_inputs=(1, 2, 3, 4))
def slice_(x: T, starts: Any, ends: Any, axes: Any = None, steps: Any = None) -> T:
    return _slice(x, ints(starts), ints(ends), None if axes is None else ints(axes),
                  None if steps is None else ints(steps))


@op("Gather", 1, shape_inputs=(1,))
def gather(x: T, indices: Any, *, axis: int = 0) -> T:
    a = axis_index(axis, x.dim())
    if isinstance(indices, int):
        return x.select(a, indices)
    if not isinstance(indices, T):
        indices = torch.tensor(indices, dtype=torch.int64, device=x.device)
    indices = torch.where(indices < 0, indices + x.shape[a], indices)
    if a == 0 and x.dim() == 2 and x.dtype.is_floating_point:
        return F.embedding(indices, x)  # the efficient backward for token embeddings
    picked = x.index_select(a, indices.reshape(-1))
    return picked.reshape(x.shape[:a] + indices.shape + x.shape[a + 1:])


@op("GatherElements", 11)
def gather_elements(x: T, indices: T, *, axis: int = 0) -> T:
    a = axis_index(axis, x.dim())
    return torch.gather(x, a, torch.where(indices < 0, indices + x.shape[a], indices))


def _nd_index(data: T, indices: T, batch_dims: int) -> tuple[T, ...]:
    """The advanced index that GatherND/ScatterND's `indices` (last axis: coordinates) stand for."""
    k = indices.shape[-1]
    lead: list[T] = []
    for b in range(batch_dims):
        shape = [1] * (indices.dim() - 1)
        shape[b] = data.shape[b]
        lead.append(torch.arange(data.shape[b], device=data.device).reshape(shape))
    coords = [indices[..., i] for i in range(k)]
    coords = [torch.where(c < 0, c + data.shape[batch_dims + i], c) for i, c in enumerate(coords)]
    return tuple(lead + coords)


@op("GatherND", 11)
def gather_nd(x: T, indices: T, *, batch_dims: int = 0) -> T:
    return x[_nd_index(x, indices, batch_dims)]


@op("ScatterND", 11, frozen_inputs=(0, 2))
def scatter_nd(data: T, indices: T, updates: T, *, reduction: str = "none") -> T:
    if reduction not in ("none", "add"):
        raise unsupported(f"ScatterND reduction={reduction!r}")
    return data.index_put(_nd_index(data, indices, 0), updates, accumulate=reduction == "add")


_SCATTER_REDUCE = {"add": "sum", "mul": "prod", "max": "amax", "min": "amin"}


@op("ScatterElements", 11, frozen_inputs=(0, 2))
def scatter_elements(data: T, indices: T, updates: T, *, axis: int = 0, reduction: str = "none") -> T:
    a = axis_index(axis, data.dim())
    indices = torch.where(indices < 0, indices + data.shape[a], indices)
    if reduction == "none":
        return data.scatter(a, indices, updates)
    if reduction not in _SCATTER_REDUCE:
        raise unsupported(f"ScatterElements reduction={reduction!r}")
    return data.scatter_reduce(a, indices, updates, _SCATTER_REDUCE[reduction], include_self=True)


@op("Expand", 8, shape_inputs=(1,))
def expand(x: T, target: Any) -> T:
    return x.expand(torch.broadcast_shapes(x.shape, ints(target)))


@op("Tile", 6, shape_inputs=(1,))
def tile(x: T, repeats: Any) -> T:
    return x.repeat(ints(repeats))


@op("ConstantOfShape", 9, shape_inputs=(0,))
def constant_of_shape(target: Any, *, value: T | None = None) -> T:
    device = target.device if isinstance(target, T) else None
    fill = torch.zeros((), dtype=torch.float32) if value is None else value.reshape(())
    return torch.full(ints(target), fill.item(), dtype=fill.dtype, device=device)


@op("Range", 11, shape_inputs=(0, 1, 2))
def range_(start: Any, limit: Any, delta: Any) -> T:
    tensors = [v for v in (start, limit, delta) if isinstance(v, T)]
    dtype = tensors[0].dtype if tensors else (torch.float32 if isinstance(scalar(start), float) else torch.int64)
    device = tensors[0].device if tensors else None
    return torch.arange(scalar(start), scalar(limit), scalar(delta), dtype=dtype, device=device)


@op("CumSum", 11, shape_inputs=(1,))
def cumsum(x: T, axis: Any, *, exclusive: int = 0, reverse: int = 0) -> T:
    a = axis_index(int(scalar(axis)), x.dim())
    y = x.flip(a) if reverse else x
    out = torch.cumsum(y, a)
    if exclusive:
        out = out - y
    return out.flip(a) if reverse else out


@op("Trilu", 14, shape_inputs=(1,))
def trilu(x: T, k: Any = None, *, upper: int = 1) -> T:
    diagonal = 0 if k is None else int(scalar(k))
    return torch.triu(x, diagonal) if upper else torch.tril(x, diagonal)


@op("Einsum", 12)
def einsum(*xs: T, equation: str) -> T:
    return torch.einsum(equation, *xs)
