"""A numpy table of the ops exporters compute shapes with, on known and partly known values.

Used by `shape_values.ShapeValues`: each rule takes the node and what is known of its inputs
(a numpy array, a `Partial` shape vector, or None) and returns what is known of its output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx_graphsurgeon as gs

from . import ir

LIMIT = 4096  # largest known value kept (shape vectors, pads and scales are tiny)
Entry = int | str | None


@dataclass(frozen=True)
class Partial:
    """A rank-0 or rank-1 integer tensor known entry by entry (int, symbol, or None: unknown)."""

    entries: tuple[Entry, ...]
    scalar: bool = False

    @property
    def known(self) -> bool:
        return all(isinstance(e, int) for e in self.entries)

    def array(self) -> np.ndarray:
        values = np.array([int(e) for e in self.entries], dtype=np.int64)  # type: ignore[arg-type]
        return values.reshape(()) if self.scalar else values


Value = np.ndarray | Partial


Inputs = list  # list[Value | None]
Rule = Callable[[gs.Node, Inputs], Value | None]


def _known(inputs: Inputs, count: int | None = None) -> list[np.ndarray] | None:
    used = inputs if count is None else inputs[:count]
    out = []
    for v in used:
        if isinstance(v, Partial):
            if not v.known:
                return None
            v = v.array()
        if v is None:
            return None
        out.append(v)
    return out


def _shape(node: gs.Node, inputs: Inputs) -> Value | None:
    dims = ir.shape_of(node.inputs[0])
    if dims is None:
        return None
    rank = len(dims)
    start = int(node.attrs.get("start", 0))
    end = node.attrs.get("end")
    start = max(0, min(rank, start + rank if start < 0 else start))
    end = rank if end is None else max(0, min(rank, int(end) + rank if int(end) < 0 else int(end)))
    part = Partial(tuple(dims[start:end]))
    return part.array() if part.known else part


def _size(node: gs.Node, inputs: Inputs) -> Value | None:
    dims = ir.shape_of(node.inputs[0])
    if dims is None or not all(isinstance(d, int) for d in dims):
        return None
    return np.array(int(np.prod(dims)), dtype=np.int64)  # type: ignore[arg-type]


def _identity(node: gs.Node, inputs: Inputs) -> Value | None:
    return inputs[0]


def _cast(node: gs.Node, inputs: Inputs) -> Value | None:
    import onnx

    dtype = onnx.helper.tensor_dtype_to_np_dtype(int(node.attrs["to"]))
    if isinstance(inputs[0], Partial):
        return inputs[0] if dtype.kind in "iu" else (inputs[0].array().astype(dtype) if inputs[0].known else None)
    return None if inputs[0] is None else inputs[0].astype(dtype)


def _gather(node: gs.Node, inputs: Inputs) -> Value | None:
    data, indices = inputs[0], inputs[1]
    axis = int(node.attrs.get("axis", 0))
    if isinstance(indices, Partial):
        indices = indices.array() if indices.known else None
    if indices is None:
        return None
    if isinstance(data, Partial):
        if axis != 0 or data.scalar:
            return None
        flat = [data.entries[int(i)] for i in np.asarray(indices).reshape(-1)]
        part = Partial(tuple(flat), scalar=np.ndim(indices) == 0)
        return part.array() if part.known else part
    return None if data is None else np.take(data, indices, axis=axis)


def _slice_bounds(node: gs.Node, inputs: Inputs, rank: int) -> list[slice] | None:
    if len(node.inputs) > 1:
        present = [v if (k < len(node.inputs) and node.inputs[k].name) else None for k, v in enumerate(inputs)]
        known = _known(present[1:3])
        if known is None:
            return None
        starts, ends = known[0].reshape(-1), known[1].reshape(-1)
        optional = [_known([v]) if v is not None else None for v in present[3:5]]
        if any(v is not None and o is None for v, o in zip(present[3:5], optional)):
            return None
        axes = optional[0][0].reshape(-1) if len(optional) > 0 and optional[0] else np.arange(len(starts))
        steps = (optional[1][0].reshape(-1) if len(optional) > 1 and optional[1]
                 else np.ones(len(starts), dtype=np.int64))
    else:
        starts, ends = np.array(node.attrs["starts"]), np.array(node.attrs["ends"])
        axes = np.array(node.attrs.get("axes", list(range(len(starts)))))
        steps = np.ones(len(starts), dtype=np.int64)
    index = [slice(None)] * rank
    for s, e, a, st in zip(starts.tolist(), ends.tolist(), axes.tolist(), steps.tolist()):
        index[a + rank if a < 0 else a] = slice(max(min(s, 2**62), -2**62), max(min(e, 2**62), -2**62), st)
    return index


def _slice(node: gs.Node, inputs: Inputs) -> Value | None:
    data = inputs[0]
    if isinstance(data, Partial):
        if data.scalar:
            return None
        index = _slice_bounds(node, inputs, 1)
        if index is None:
            return None
        part = Partial(tuple(data.entries[index[0]]))
        return part.array() if part.known else part
    if data is None:
        return None
    index = _slice_bounds(node, inputs, data.ndim)
    return None if index is None else data[tuple(index)]


def _concat(node: gs.Node, inputs: Inputs) -> Value | None:
    if any(v is None for v in inputs):
        return None
    if not any(isinstance(v, Partial) for v in inputs):
        return np.concatenate([np.atleast_1d(v) if v.ndim == 0 else v for v in inputs], axis=int(node.attrs["axis"]))
    entries: list[Entry] = []
    for v in inputs:
        if isinstance(v, Partial):
            if v.scalar:
                return None
            entries.extend(v.entries)
        elif v.ndim == 1:
            entries.extend(int(x) for x in v)
        else:
            return None
    return Partial(tuple(entries))


def _axes(node: gs.Node, inputs: Inputs) -> list[int] | None:
    if "axes" in node.attrs:
        return [int(a) for a in node.attrs["axes"]]
    if len(inputs) > 1 and inputs[1] is not None:
        known = _known(inputs[1:2])
        return None if known is None else [int(a) for a in known[0].reshape(-1)]
    return []


def _unsqueeze(node: gs.Node, inputs: Inputs) -> Value | None:
    axes = _axes(node, inputs)
    data = inputs[0]
    if axes is None or data is None:
        return None
    if isinstance(data, Partial):
        return Partial(data.entries) if data.scalar and axes in ([0], [-1]) else None
    rank = data.ndim + len(axes)
    out = data
    for a in sorted(a + rank if a < 0 else a for a in axes):
        out = np.expand_dims(out, a)
    return out


def _squeeze(node: gs.Node, inputs: Inputs) -> Value | None:
    axes = _axes(node, inputs)
    data = inputs[0]
    if axes is None or data is None:
        return None
    if isinstance(data, Partial):
        return Partial(data.entries, scalar=True) if not data.scalar and len(data.entries) == 1 else None
    return np.squeeze(data, axis=tuple(axes)) if axes else np.squeeze(data)


def _reshape(node: gs.Node, inputs: Inputs) -> Value | None:
    known = _known(inputs[1:2])
    data = inputs[0]
    if known is None or data is None:
        return None
    target = [int(d) for d in known[0].reshape(-1)]
    if isinstance(data, Partial):
        if target in ([-1], [len(data.entries)]):
            return Partial(data.entries)
        if target == [] and len(data.entries) == 1:
            return Partial(data.entries, scalar=True)
        return None
    if not int(node.attrs.get("allowzero", 0)):
        target = [data.shape[k] if d == 0 else d for k, d in enumerate(target)]
    return data.reshape(target)


def _int_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":
        q = np.abs(a) // np.abs(b)
        return np.where((a < 0) != (b < 0), -q, q).astype(np.result_type(a, b))
    return a / b


_BINARY: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": _int_div, "Pow": np.power,
    "Max": np.maximum, "Min": np.minimum, "Equal": np.equal, "Less": np.less, "Greater": np.greater,
    "LessOrEqual": np.less_equal, "GreaterOrEqual": np.greater_equal, "And": np.logical_and,
    "Or": np.logical_or,
}


def _binary(node: gs.Node, inputs: Inputs) -> Value | None:
    op = _BINARY[node.op]
    if node.op in ("Max", "Min") and len(inputs) != 2:
        known = _known(inputs)
        return None if known is None else op.reduce(np.broadcast_arrays(*known))  # type: ignore[attr-defined]
    a, b = inputs[0], inputs[1]
    if isinstance(a, Partial) or isinstance(b, Partial):
        return _partial_binary(op, a, b)
    if a is None or b is None:
        return None
    out = op(a, b)
    return out.astype(np.result_type(a, b)) if node.op not in _COMPARISONS else out


_COMPARISONS = frozenset({"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or"})


def _partial_binary(op, a: Value | None, b: Value | None) -> Value | None:
    """Entry by entry: known op known is known, anything with a symbol is unknown."""
    parts = []
    for v in (a, b):
        if v is None:
            return None
        if isinstance(v, Partial):
            parts.append(v)
        elif v.size == 1:
            parts.append(Partial((int(v.reshape(-1)[0]),), scalar=True))
        elif v.ndim == 1:
            parts.append(Partial(tuple(int(x) for x in v)))
        else:
            return None
    pa, pb = parts
    n = max(len(pa.entries), len(pb.entries))
    if len(pa.entries) not in (1, n) or len(pb.entries) not in (1, n):
        return None
    entries: list[Entry] = []
    for k in range(n):
        x = pa.entries[k if len(pa.entries) > 1 else 0]
        y = pb.entries[k if len(pb.entries) > 1 else 0]
        entries.append(int(op(np.int64(x), np.int64(y))) if isinstance(x, int) and isinstance(y, int) else None)
    return Partial(tuple(entries), scalar=pa.scalar and pb.scalar)


def _mod(node: gs.Node, inputs: Inputs) -> Value | None:
    known = _known(inputs)
    if known is None:
        return None
    return (np.fmod if int(node.attrs.get("fmod", 0)) else np.mod)(known[0], known[1])


_UNARY: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "Neg": np.negative, "Abs": np.abs, "Ceil": np.ceil, "Floor": np.floor, "Sqrt": np.sqrt,
    "Reciprocal": np.reciprocal, "Not": np.logical_not, "Relu": lambda x: np.maximum(x, 0),
}


def _unary(node: gs.Node, inputs: Inputs) -> Value | None:
    known = _known(inputs, 1)
    return None if known is None else _UNARY[node.op](known[0]).astype(known[0].dtype)


def _where(node: gs.Node, inputs: Inputs) -> Value | None:
    known = _known(inputs)
    if known is not None:
        return np.where(*known)
    vectors = [v for v in map(_as_entries, inputs) if v is not None]  # a shape vector, entry by entry
    if len(vectors) != 3:
        return None
    n = max(len(v) for v in vectors)
    if any(len(v) not in (1, n) for v in vectors):
        return None
    cond, x, y = ([v[k if len(v) > 1 else 0] for k in range(n)] for v in vectors)
    return Partial(tuple((a if c else b) if isinstance(c, int) else None for c, a, b in zip(cond, x, y)))


def _as_entries(value: Value | None) -> tuple[Entry, ...] | None:
    if isinstance(value, Partial):
        return value.entries
    if value is None or value.ndim > 1:
        return None
    return tuple(int(v) for v in value.reshape(-1))


def _constant_of_shape(node: gs.Node, inputs: Inputs) -> Value | None:
    known = _known(inputs, 1)
    if known is None or int(np.prod(known[0])) > LIMIT:
        return None
    value = node.attrs.get("value")
    fill = np.asarray(value.values if isinstance(value, gs.Constant) else (value if value is not None else
                                                                           np.zeros(1, np.float32)))
    return np.full(tuple(int(d) for d in known[0]), fill.reshape(-1)[0], dtype=fill.dtype)


def _range(node: gs.Node, inputs: Inputs) -> Value | None:
    known = _known(inputs)
    if known is None:
        return None
    start, limit, delta = (k.reshape(()) for k in known)
    count = int(max(np.ceil((limit - start) / delta), 0))
    return None if count > LIMIT else (start + delta * np.arange(count)).astype(start.dtype)


def _transpose(node: gs.Node, inputs: Inputs) -> Value | None:
    known = _known(inputs, 1)
    return None if known is None else np.transpose(known[0], node.attrs.get("perm"))


def _expand(node: gs.Node, inputs: Inputs) -> Value | None:
    known = _known(inputs)
    if known is None or int(np.prod(np.maximum(known[1], 1))) > LIMIT:
        return None
    return known[0] * np.ones(tuple(int(d) for d in known[1]), dtype=known[0].dtype)


def _tile(node: gs.Node, inputs: Inputs) -> Value | None:
    known = _known(inputs)
    return None if known is None else np.tile(known[0], [int(r) for r in known[1]])


def _reduce(node: gs.Node, inputs: Inputs) -> Value | None:
    known = _known(inputs[:1])
    axes = _axes(node, inputs)
    if known is None or axes is None:
        return None
    keep = bool(node.attrs.get("keepdims", 1))
    return np.asarray(_REDUCERS[node.op](known[0], axis=tuple(axes) if axes else None, keepdims=keep))


_REDUCERS: dict[str, Callable[..., np.ndarray]] = {"ReduceProd": np.prod, "ReduceSum": np.sum, "ReduceMax": np.max,
                                                  "ReduceMin": np.min}


RULES: dict[str, Rule] = {
    "Shape": _shape, "Size": _size, "Identity": _identity, "Cast": _cast, "Gather": _gather, "Slice": _slice,
    "Concat": _concat, "Unsqueeze": _unsqueeze, "Squeeze": _squeeze, "Reshape": _reshape, "Mod": _mod,
    "Where": _where, "ConstantOfShape": _constant_of_shape, "Range": _range, "Transpose": _transpose,
    "Expand": _expand, "Tile": _tile,
    **{op: _binary for op in _BINARY}, **{op: _unary for op in _UNARY},
    **{op: _reduce for op in ("ReduceProd", "ReduceSum", "ReduceMax", "ReduceMin")},
}
