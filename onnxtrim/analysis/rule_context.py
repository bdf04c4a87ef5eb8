"""What a channel rule sees of one node, and the effects it may record.

A rule validates first and records second: it raises `Barrier` before it records
anything, so a node is either understood completely or not at all. Effects are only
committed to the analysis when the rule returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import onnx_graphsurgeon as gs

from .. import ir
from ..shape_values import ShapeValues
from .elements import ElementTable


class Barrier(Exception):
    """A node whose effect on channels cannot be proven; its channels are left alone."""


@dataclass(frozen=True)
class Tracked:
    """A tensor carrying channel elements along one axis (`elems[i]` is at position i).

    A tensor carries channels along one axis only. Where a Reshape splits a channel axis into
    several (attention heads × head size, a channel shuffle's groups), the elements along all
    but one of the new axes are united (see `rules_reshape`), so whatever a plan removes, every
    tensor stays rectangular. `tiled` marks an axis that also holds a runtime-sized outer
    factor (the batch × heads axis of torch's MultiheadAttention): position p holds
    `elems[p % len(elems)]`.
    """

    axis: int
    elems: np.ndarray
    tiled: bool = False


ROLES = ("producer", "bias", "consumer", "param")


@dataclass(frozen=True)
class ParamSlice:
    """Keep, along `axis` of the constant at `node.inputs[input_index]`, the positions whose element survives.

    `role` says what the constant is to the channels: a producer's weight (output axis) or
    bias, a consumer's weight (input axis), or another per-channel parameter (a norm's scale,
    a broadcast constant). Criteria read weights by role (filter magnitude reads producers,
    Relief consumers); the rewrite treats every role alike.
    """

    node: int
    input_index: int
    axis: int
    elems: np.ndarray
    role: str = "param"


@dataclass(frozen=True)
class CountEdit:
    """A shape-like value that must become the number of surviving elements.

    `input_index` names a constant input and `position` the entry in it; with `attr` set
    the edit targets that integer attribute instead (Conv's `group`).
    """

    node: int
    elems: np.ndarray
    input_index: int | None = None
    position: int | None = None
    attr: str | None = None


@dataclass(frozen=True)
class SplitEdit:
    """Split sizes along the channel axis become the surviving count of each part."""

    node: int
    parts: tuple[np.ndarray, ...]


@dataclass(frozen=True)
class SliceEdit:
    """A unit-step Slice of the channel axis: start and end move to the survivors' positions."""

    node: int
    position: int  # index into starts/ends/axes
    before: np.ndarray  # elements in front of the slice
    inside: np.ndarray  # elements the slice keeps


@dataclass(frozen=True)
class NormEdit:
    """A LayerNormalization over the channel axis: its statistics span `width` values (the
    product of the normalised dimensions) of which `elems` are the channel positions. The
    rewrite keeps the statistics over the original width (exact) or over the kept channels
    (plain), see `passes.layer_norm`."""

    node: int
    elems: np.ndarray
    width: int


@dataclass(frozen=True)
class ScaledMacs:
    """A node whose multiply-accumulates scale with the surviving share of `elems` (a MatMul
    of two activations: attention scores and context). Nothing to rewrite; the cost model
    reads it."""

    node: int
    elems: np.ndarray


@dataclass(frozen=True)
class AttrEdit:
    """Set a float attribute to `value` once any of `elems` is removed (the ONNX Attention
    op's default scale is computed from the head size, which removing head dims changes)."""

    node: int
    elems: np.ndarray
    attr: str
    value: float


Edit = ParamSlice | CountEdit | SplitEdit | SliceEdit | NormEdit | ScaledMacs | AttrEdit


@dataclass
class NewSpace:
    node: int
    size: int
    elems: np.ndarray
    blocked: str | None = None


AttentionMode = Literal["heads", "head-dims"]


@dataclass
class RuleContext:
    node: gs.Node
    index: int
    tracked_by_name: dict[str, Tracked]
    table: ElementTable
    opset: int
    graph_outputs: frozenset[str]
    values: ShapeValues | None = None  # known and partial values of shape tensors
    node_index: dict[int, int] = field(default_factory=dict)  # id(node) -> position in graph.nodes
    attention: AttentionMode = "heads"
    outputs: dict[int, Tracked] = field(default_factory=dict)
    couples: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    edits: list[Edit] = field(default_factory=list)
    spaces: list[NewSpace] = field(default_factory=list)
    blocks: list[tuple[np.ndarray, str]] = field(default_factory=list)
    nonempty: list[tuple[np.ndarray, str]] = field(default_factory=list)
    consumed: list[tuple[str, Tracked]] = field(default_factory=list)
    kinds: list[tuple[np.ndarray, str]] = field(default_factory=list)

    # ---- reading the node -------------------------------------------------------------
    @property
    def name(self) -> str:
        return ir.node_label(self.node, self.index)

    def n_inputs(self) -> int:
        return len(self.node.inputs)

    def input(self, i: int) -> gs.Tensor | None:
        if i >= len(self.node.inputs):
            return None
        tensor = self.node.inputs[i]
        return None if (tensor.name == "" and not isinstance(tensor, gs.Constant)) else tensor

    def tracked(self, i: int) -> Tracked | None:
        tensor = self.input(i)
        return None if tensor is None else self.tracked_by_name.get(tensor.name)

    def const(self, i: int) -> np.ndarray | None:
        tensor = self.input(i)
        return None if tensor is None else ir.const_value(tensor)

    def const_shape(self, i: int) -> tuple[int, ...] | None:
        """Shape of a constant input (None if not constant); never loads weight values."""
        tensor = self.input(i)
        return None if tensor is None else ir.const_shape(tensor)

    def shape(self, i: int) -> tuple[ir.Dim, ...] | None:
        tensor = self.input(i)
        return None if tensor is None else ir.shape_of(tensor)

    def rank(self, i: int) -> int | None:
        const = self.const_shape(i)
        if const is not None:
            return len(const)
        shape = self.shape(i)
        return None if shape is None else len(shape)

    def out_shape(self, i: int = 0) -> tuple[ir.Dim, ...] | None:
        return ir.shape_of(self.node.outputs[i]) if i < len(self.node.outputs) else None

    def attr(self, name: str, default=None):
        return self.node.attrs.get(name, default)

    def tracked_inputs(self) -> list[int]:
        return [i for i in range(len(self.node.inputs)) if self.tracked(i) is not None]

    def untiled(self, tracked: Tracked) -> Tracked:
        """`tracked`, refusing an axis that also holds a runtime-sized factor (see Tracked)."""
        if tracked.tiled:
            raise Barrier(f"{self.node.op} node '{self.name}' reads channels interleaved with a runtime-sized axis")
        return tracked

    def only_data_tracked(self, data_inputs: tuple[int, ...] = (0,), *, tiled_ok: bool = False) -> Tracked:
        """The tracked data input, refusing nodes where a non-data input carries channels (and,
        unless the rule handles them, channel axes interleaved with a runtime-sized factor)."""
        for i in self.tracked_inputs():
            if i not in data_inputs:
                raise Barrier(f"input {i} of {self.node.op} node '{self.name}' carries channels")
        tracked = self.tracked(data_inputs[0])
        if tracked is None:
            raise Barrier(f"{self.node.op} node '{self.name}': channels reach an unsupported input")
        return tracked if tiled_ok else self.untiled(tracked)

    def used_outputs(self) -> list[int]:
        return [i for i, t in enumerate(self.node.outputs) if t.outputs or t.name in self.graph_outputs]

    def require_single_output(self) -> None:
        extra = [i for i in self.used_outputs() if i != 0]
        if extra:
            raise Barrier(f"{self.node.op} node '{self.name}' uses its output {extra[0]}")

    # ---- recording effects ------------------------------------------------------------
    def set_output(self, i: int, tracked: Tracked) -> None:
        self.outputs[i] = tracked

    def couple(self, a: np.ndarray, b: np.ndarray) -> None:
        self.couples.append((a, b))

    def slice_param(self, input_index: int, axis: int, elems: np.ndarray, role: str = "param") -> None:
        self.edits.append(ParamSlice(self.index, input_index, axis, elems, role))

    def count_edit(self, elems: np.ndarray, *, input_index: int | None = None, position: int | None = None,
                   attr: str | None = None, node: int | None = None) -> None:
        self.edits.append(CountEdit(self.index if node is None else node, elems, input_index, position, attr))

    def index_of(self, node: gs.Node) -> int:
        return self.node_index[id(node)]

    def entries(self, i: int) -> tuple[int | str | None, ...] | None:
        """What is known of a 1-D integer input entry by entry (see `shape_values`)."""
        tensor = self.input(i)
        if tensor is None:
            return None
        if self.values is not None:
            return self.values.entries(tensor)
        value = ir.const_value(tensor)
        return None if value is None or value.ndim != 1 else tuple(int(v) for v in value)

    def kind(self, elems: np.ndarray, kind: str) -> None:
        """Name what these channels are ("heads", "head-dims", "stream"), for reports and selection."""
        self.kinds.append((elems, kind))

    def require_survivor(self, elems: np.ndarray, reason: str) -> None:
        """At least one of `elems` must survive (an output that may not become empty)."""
        self.nonempty.append((elems, reason))

    def edit(self, edit: Edit) -> None:
        self.edits.append(edit)

    def new_space(self, size: int, *, blocked: str | None = None) -> np.ndarray:
        elems = self.table.new(size)
        self.spaces.append(NewSpace(self.index, size, elems, blocked))
        return elems

    def fixed(self, size: int, reason: str) -> np.ndarray:
        """Positions holding channels that nothing may remove (e.g. a graph input concatenated in)."""
        elems = self.table.new(size)
        self.blocks.append((elems, reason))
        return elems

    def consume(self, i: int, weight_input: int, weight_axis: int) -> None:
        """This node reads the channels of input i through the weight at `weight_input`, whose
        `weight_axis` is sliced with them."""
        tracked = self.tracked(i)
        tensor = self.input(i)
        assert tracked is not None and tensor is not None
        self.untiled(tracked)
        self.consumed.append((tensor.name, tracked))
        self.slice_param(weight_input, weight_axis, tracked.elems, role="consumer")


Rule = Callable[[RuleContext], None]
