"""What is known, before running a model, of the small integer tensors it computes from shapes.

Exporters compute Reshape targets, Pad amounts, Expand shapes and attention scales from
`Shape` at run time: the TorchScript exporter for every `x.size(i)` in Python, the dynamo
exporter where a size is symbolic. Where the sizes involved are static (every size but the
batch, usually), these values are constants in disguise; left computed, they hide channel
counts from the analysis (a Reshape whose target is computed cannot have its head count
rewritten) and from onnx's shape inference (which gives up at the first `Mod` or `Where` of
such a chain, so everything after it has unknown shapes).

`ShapeValues` evaluates them once, in topological order, from the inferred shapes:

- a *known* value is a numpy array (at most `LIMIT` elements), computed by a small numpy
  table of the ops such chains use;
- a *partial* value is a shape vector (or scalar) whose entries are each a known int, a
  symbolic dimension (the dim_param string shape inference gives it), or unknown.

`fold` then rewrites the graph so that what is known is constant: every integer input computed
from `Shape` whose value is known becomes a constant (so does a single float that scales or
shifts a tensor: an attention scale 1/√d read from a head size; other float values are data
and stay computed), and a Reshape target that is partly dynamic becomes a constant in
Reshape's own notation (0 copies the input's dimension at the same position, -1 is inferred)
when at most one entry is neither known nor such a copy. Both are exact for every input the
model accepts: static sizes are fixed by the model's declared input shapes, and equal symbols
are equal sizes. Values that depend on runtime sizes in more than one entry stay computed (a
Reshape can still have a literal entry rewritten, `literal_entry`; other rules report a barrier).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from math import prod

import numpy as np
import onnx_graphsurgeon as gs

from . import ir
from .shape_ops import LIMIT, RULES, Entry, Partial, Value

__all__ = ["LIMIT", "Entry", "LiteralEntry", "Partial", "ShapeValues", "Value", "fold", "literal_entry",
           "reshape_target", "rewrite_literal"]

log = logging.getLogger(__name__)


class ShapeValues:
    """Known and partial values of a graph's small integer tensors (see the module docstring).

    `value(tensor)` answers for any tensor: None when nothing is known. `from_shape(name)` tells
    whether a known value was computed from a `Shape` (only those are folded: a constant
    subgraph the exporter left is not this pass's business).
    """

    def __init__(self, graph: gs.Graph, *, lazy: bool = False) -> None:
        self._graph: gs.Graph | None = graph
        self._values: dict[str, Value] = {}
        self._constants: dict[str, np.ndarray | None] = {}
        self._from_shape: set[str] = set()
        if not lazy:  # lazy: evaluated at the first question (the analysis rarely asks one)
            self._evaluate()

    def _evaluate(self) -> None:
        graph, self._graph = self._graph, None
        if graph is None:
            return
        for node in graph.nodes:
            rule = RULES.get(node.op)
            if rule is None or node.domain not in (None, "", "ai.onnx"):
                continue
            inputs = [self.value(t) if t.name or isinstance(t, gs.Constant) else None for t in node.inputs]
            try:
                out = rule(node, inputs)
            except (ValueError, TypeError, IndexError, ZeroDivisionError, OverflowError):
                out = None
            if out is None or not node.outputs:
                continue
            if isinstance(out, (np.ndarray, np.generic)):  # numpy returns scalars from 0-d arithmetic
                out = np.asarray(out)
                if out.size > LIMIT:
                    continue
            name = node.outputs[0].name
            self._values[name] = out
            if node.op in ("Shape", "Size") or any(t.name in self._from_shape for t in node.inputs):
                self._from_shape.add(name)

    def value(self, tensor: gs.Tensor) -> Value | None:
        self._evaluate()
        name = tensor.name
        if name in self._values:
            return self._values[name]
        if name in self._constants:
            return self._constants[name]
        constant = None
        if isinstance(tensor, gs.Constant) or (tensor.inputs and tensor.inputs[0].op in ("Constant", "Identity")):
            shape = ir.const_shape(tensor)
            if shape is not None and prod(shape) <= LIMIT:
                constant = ir.const_value(tensor)
        if name:
            self._constants[name] = constant
        return constant

    def entries(self, tensor: gs.Tensor) -> tuple[Entry, ...] | None:
        """A 1-D integer tensor's entries (known ints, symbols, None), or None when nothing is known."""
        value = self.value(tensor)
        if isinstance(value, Partial):
            return None if value.scalar else value.entries
        if value is None or value.ndim != 1 or value.dtype.kind not in "iu":
            return None
        return tuple(int(v) for v in value)

    def from_shape(self, name: str) -> bool:
        self._evaluate()
        return name in self._from_shape


# ---- folding --------------------------------------------------------------------------


def fold(graph: gs.Graph) -> dict[tuple[int, int], np.ndarray]:
    """Replace node inputs computed from shapes by constants where their value is known.

    Returns what was replaced, as {(node index, input index): value}, so that the caller can
    make the same change to the protobuf it infers shapes from. Nodes are not removed (node
    positions name unnamed nodes); the ones left without consumers go at export.
    """
    values = ShapeValues(graph)
    folded: dict[tuple[int, int], np.ndarray] = {}
    made: dict[tuple[str, bytes, str], gs.Constant] = {}
    taken = set(graph.tensors().keys())

    def constant(base: str, value: np.ndarray) -> gs.Constant:
        key = (base, value.tobytes(), str(value.dtype) + str(value.shape))
        if key not in made:
            name, n = f"{base}.folded", 1
            while name in taken:
                n += 1
                name = f"{base}.folded{n}"
            taken.add(name)
            made[key] = gs.Constant(name, np.array(value))  # a copy that keeps rank 0
        return made[key]

    for index, node in enumerate(graph.nodes):
        if node.outputs and all(values.from_shape(t.name) and isinstance(values.value(t), np.ndarray)
                                for t in node.outputs):
            continue  # folded itself: its consumers get the constant
        for i, tensor in enumerate(node.inputs):
            if isinstance(tensor, gs.Constant) or not tensor.inputs or not values.from_shape(tensor.name):
                continue
            value = values.value(tensor)
            if isinstance(value, Partial) and value.known:
                value = value.array()
            if node.op == "Reshape" and i == 1 and isinstance(value, Partial):
                value = reshape_target(node, value)
            if isinstance(value, np.ndarray) and value.dtype.kind not in "biu":
                value = _scalar_operand(node, i, value)
            if isinstance(value, np.ndarray):
                node.inputs[i] = constant(tensor.name, value)
                folded[(index, i)] = value
    if folded:
        log.debug("folded %d shape computations into constants", len(folded))
    return folded


def _scalar_operand(node: gs.Node, i: int, value: np.ndarray) -> np.ndarray | None:
    """A single float computed from shapes (an attention scale 1/√d), as the rank-0 operand of an
    elementwise op whose other operand has rank ≥ 1 (broadcasting gives the same result), so it
    is neither a parameter nor a hidden read of a head size. Other float values stay computed."""
    other = [t for k, t in enumerate(node.inputs) if k != i]
    if node.op not in ("Mul", "Div", "Add", "Sub") or value.size != 1 or len(other) != 1:
        return None
    shape = ir.shape_of(other[0])
    return value.reshape(()) if shape is not None and len(shape) >= 1 else None


def reshape_target(node: gs.Node, target: Partial) -> np.ndarray | None:
    """A partly dynamic Reshape target in Reshape's notation, if at most one entry stays unknown.

    An entry equal to the input's symbolic dimension at the same position becomes 0 (copy);
    one entry that is neither known nor such a copy becomes -1 (inferred from the others).
    """
    if target.scalar:
        return None
    allowzero = int(node.attrs.get("allowzero", 0))
    shape = ir.shape_of(node.inputs[0])
    out: list[int] = []
    inferred = 0
    for k, entry in enumerate(target.entries):
        if isinstance(entry, int):
            if entry == -1:
                inferred += 1
            out.append(entry)
        elif (isinstance(entry, str) and not allowzero and shape is not None and k < len(shape)
              and shape[k] == entry):
            out.append(0)
        else:
            inferred += 1
            out.append(-1)
    return np.array(out, dtype=np.int64) if inferred <= 1 else None


# ---- where a computed shape writes an entry -------------------------------------------------


@dataclass(frozen=True)
class LiteralEntry:
    """Entry `offset` of constant input `path[-1][1]` of Concat `path[-1][0]`, reached through the
    Concats in `path` (outermost first), is where a computed 1-D shape writes one of its entries."""

    path: tuple[tuple[gs.Node, int], ...]
    offset: int


def literal_entry(tensor: gs.Tensor, position: int) -> LiteralEntry | None:
    """Where entry `position` of a computed shape vector is a literal (a constant, or an
    Unsqueeze of one, inside nested Concats), so that a rewrite can change it; else None."""
    path: list[tuple[gs.Node, int]] = []
    for _ in range(8):
        node = ir.producer(tensor)
        if node is None or node.op != "Concat":
            return None
        offset = position
        for j, part in enumerate(node.inputs):
            shape = ir.const_shape(part) if isinstance(part, gs.Constant) else ir.shape_of(part)
            if shape is None and ir.const_value(part) is not None:
                shape = ir.const_value(part).shape  # type: ignore[union-attr]
            if shape is None or len(shape) != 1 or not isinstance(shape[0], int):
                return None
            if offset < shape[0]:
                break
            offset -= shape[0]
        else:
            return None
        path.append((node, j))
        if ir.const_value(part) is not None:
            return LiteralEntry(tuple(path), offset)
        inner = ir.producer(part)
        if inner is not None and inner.op == "Unsqueeze" and ir.const_value(inner.inputs[0]) is not None:
            return LiteralEntry(tuple(path), 0)
        tensor, position = part, offset
    return None


def rewrite_literal(entry: LiteralEntry, value: int, graph: gs.Graph, fresh: Callable[[str], str]) -> gs.Tensor:
    """A copy of the computed shape with the entry set to `value` (the Concats on the path are
    cloned, so other users of the original shape computation are not affected); returns the
    copy's output, which the caller wires in place of the original."""
    node, j = entry.path[-1]
    part = node.inputs[j]
    array = np.array(ir.const_value(part), copy=True).reshape(-1)  # an Unsqueeze of a scalar gives [v]
    array[entry.offset] = value
    replacement: gs.Tensor = gs.Constant(fresh(part.name), array.astype(np.int64))
    for node, j in reversed(entry.path):
        inputs = list(node.inputs)
        inputs[j] = replacement
        out = gs.Variable(fresh(node.outputs[0].name), dtype=np.int64, shape=node.outputs[0].shape)
        graph.nodes.append(gs.Node("Concat", fresh(node.name or "Concat"), dict(node.attrs), inputs, [out]))
        replacement = out
    return replacement
