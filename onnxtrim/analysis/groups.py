"""Channel groups: which channels of a graph must be removed together, and which cannot be.

`analyse` walks the graph once in topological order and asks the rule table what each
node does to the channels reaching it. Channels are created by producers (Conv, Gemm,
MatMul with constant weights), united by coupling ops, and blocked by barriers, graph
outputs and control-flow subgraphs. A group is a set of producers whose channels are
united; its classes are the units a plan keeps or removes.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import onnx_graphsurgeon as gs

from .. import ir
from ..shape_values import ShapeValues
from .channel_rules import RULES
from .elements import ElementTable
from .rule_context import ROLES, AttentionMode, Barrier, Edit, ParamSlice, RuleContext, Tracked
from .rules_fused import rule_for

log = logging.getLogger(__name__)

PRODUCER_OPS = frozenset({"Conv", "Gemm", "MatMul", "Gather"})  # Gather: embedding tables


@dataclass(frozen=True)
class Space:
    """The output channels of one producer node."""

    node: str
    op: str
    elems: np.ndarray


@dataclass(frozen=True)
class Observation:
    """A tensor that carries channel elements along `axis` (`elems[i]` at position i)."""

    tensor: str
    axis: int
    elems: np.ndarray


@dataclass(frozen=True)
class Member:
    """A constant that a group's channels index, with the role it plays for them (see ParamSlice).

    `classes[i]` is the group's class at position i of `axis`, -1 where the position belongs to
    no class of this group (a consumer reading two groups concatenated, say).
    """

    role: str
    node: str
    op: str
    input_index: int
    tensor: str
    axis: int
    classes: np.ndarray


@dataclass(frozen=True)
class BarrierRecord:
    node: str
    op: str
    reason: str


@dataclass
class ChannelGroup:
    id: int
    spaces: tuple[Space, ...]
    roots: np.ndarray  # class index -> representative element
    blocked: dict[int, str]  # class index -> why it cannot be removed
    kind: str = "channels"  # "heads", "head-dims" (attention), "stream" (through a LayerNorm), "channels"

    @property
    def size(self) -> int:
        return len(self.roots)

    @property
    def members(self) -> tuple[str, ...]:
        return tuple(space.node for space in self.spaces)

    @property
    def class_width(self) -> int:
        """Channels per class in every producer (a head: its head size; a channel: 1), so that
        rounding can count channels, not classes."""
        per_space = [len(s.elems) // self.size for s in self.spaces if self.size and len(s.elems) % self.size == 0]
        return math.gcd(*per_space) if per_space else 1

    @property
    def prunable(self) -> np.ndarray:
        return np.array([c for c in range(self.size) if c not in self.blocked], dtype=np.int64)

    def reasons(self) -> list[str]:
        return sorted(set(self.blocked.values()))


@dataclass
class Analysis:
    graph: gs.Graph
    table: ElementTable
    groups: list[ChannelGroup]
    edits: list[Edit]
    consumed: list[Observation]  # what consumers read through weights that get sliced, once each
    tracked: dict[str, Tracked]
    barriers: list[BarrierRecord]
    nonempty: list[tuple[np.ndarray, str]] = field(default_factory=list)  # at least one element must survive
    # per root element: its group id and class index, -1 for fixed elements outside every group
    _class_group: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    _class_index: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def class_of(self, element: int) -> tuple[int, int] | None:
        """(group id, class index) of an element, or None for fixed elements outside every group."""
        groups, indices = self.classes_of(np.array([element], dtype=np.int64))
        return None if groups[0] < 0 else (int(groups[0]), int(indices[0]))

    def classes_of(self, elements: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Group ids and class indices of many elements at once (-1 where outside every group)."""
        roots = self.table.roots(np.asarray(elements, dtype=np.int64))
        return self._class_group[roots], self._class_index[roots]

    def removed_roots(self, keep: dict[int, np.ndarray]) -> np.ndarray:
        """Which roots a plan removes, as a mask over elements, given the kept classes per group id.

        A mask rather than a set: every edit then finds its survivors by one indexing instead of
        a set intersection (apply_plan asks for hundreds of them on a ResNet).
        """
        removed = np.zeros(len(self.table), dtype=bool)
        for group in self.groups:
            if group.id not in keep:
                continue
            kept = np.zeros(group.size, dtype=bool)
            kept[np.asarray(keep[group.id], dtype=np.int64)] = True
            removed[group.roots[~kept]] = True
        return removed

    def emptied(self, removed: np.ndarray) -> list[tuple[np.ndarray, str]]:
        """The constraints a removal would violate: outputs left without any channel."""
        return [(elems, reason) for elems, reason in self.nonempty if len(self.surviving(elems, removed)) == 0]

    def surviving(self, elems: np.ndarray, removed: np.ndarray) -> np.ndarray:
        """Positions of `elems` whose element is not removed (`removed` from `removed_roots`)."""
        return np.flatnonzero(~removed[self.table.roots(elems)])

    def observation(self, tensor: str) -> Observation:
        tracked = self.tracked[tensor]
        return Observation(tensor, tracked.axis, tracked.elems)

    def members(self, group_id: int, roles: tuple[str, ...] = ROLES) -> list[Member]:
        """Every constant indexed by the group's channels, in graph order, with its role."""
        nodes = self.graph.nodes
        out = []
        for edit in self.edits:
            if not isinstance(edit, ParamSlice) or edit.role not in roles:
                continue
            groups, classes = self.classes_of(edit.elems)
            here = groups == group_id
            if not here.any():
                continue
            node = nodes[edit.node]
            out.append(Member(edit.role, ir.node_label(node, edit.node), node.op, edit.input_index,
                              node.inputs[edit.input_index].name, edit.axis, np.where(here, classes, -1)))
        return out


def analyse(graph: gs.Graph, *, attention: AttentionMode = "heads") -> Analysis:
    """Find channel groups, the parameter edits removing them needs, and what to observe.

    `attention` chooses what a class of an attention's Q/K/V channels is (see `rules_reshape`):
    "heads" (a head: its Q, K and V slices and the output projection's rows), or "head-dims"
    (one dimension of every head's Q and K, or of every head's V, so heads stay equal in size).
    Nodes that no graph output depends on (shape computations that `shape_values` folded) are
    not analysed.
    """
    if attention not in ("heads", "head-dims"):
        raise ValueError(f"attention must be 'heads' or 'head-dims', got {attention!r}")
    ir.toposort(graph)
    table = ElementTable()
    tracked: dict[str, Tracked] = {}
    edits: list[Edit] = []
    spaces: list[Space] = []
    space_blocks: list[tuple[np.ndarray, str]] = []
    consumed: list[tuple[str, Tracked]] = []
    nonempty: list[tuple[np.ndarray, str]] = []
    barriers: list[BarrierRecord] = []
    kinds: list[tuple[np.ndarray, str]] = []
    graph_outputs = frozenset(t.name for t in graph.outputs)
    opset = ir.default_opset(graph)
    values = ShapeValues(graph, lazy=True)
    positions = {id(node): index for index, node in enumerate(graph.nodes)}
    live = _live_nodes(graph)

    for index, node in enumerate(graph.nodes):
        has_tracked = any(t.name in tracked for t in node.inputs)
        if (not has_tracked and node.op not in PRODUCER_OPS) or id(node) not in live:
            continue
        ctx = RuleContext(node, index, tracked, table, opset, graph_outputs, values, positions, attention)
        rule = rule_for(node.domain, node.op, RULES)
        try:
            if rule is None:
                raise Barrier(f"op '{node.op}' at node '{ctx.name}' has no channel rule")
            rule(ctx)
        except Barrier as barrier:
            reason = str(barrier)
            barriers.append(BarrierRecord(ctx.name, node.op, reason))
            for i in ctx.tracked_inputs():
                if (blocked := ctx.tracked(i)) is not None:
                    table.block(blocked.elems, reason)
            continue
        for i, t in ctx.outputs.items():
            tracked[node.outputs[i].name] = t
        for a, b in ctx.couples:
            table.union(a, b)
        edits.extend(ctx.edits)
        kinds.extend(ctx.kinds)
        consumed.extend(ctx.consumed)
        nonempty.extend(ctx.nonempty)
        for new in ctx.spaces:
            spaces.append(Space(ctx.name, node.op, new.elems))
            if new.blocked:
                space_blocks.append((new.elems, new.blocked))
        space_blocks.extend(ctx.blocks)

    for elems, reason in space_blocks:
        table.block(elems, reason)
    for name in graph_outputs:
        if name in tracked:
            table.block(tracked[name].elems, f"channels reach graph output '{name}'")
    for name in ir.outer_names_used_by_subgraphs(graph):
        if name in tracked:
            table.block(tracked[name].elems, f"tensor '{name}' is read inside a control-flow subgraph")

    table.freeze()
    groups, class_group, class_index = _build_groups(table, spaces)
    for elems, kind in kinds:  # a group is named by the first kind recorded for any of its channels
        for gid in np.unique(class_group[table.roots(elems)]).tolist():
            if gid >= 0 and groups[gid].kind == "channels":
                groups[gid].kind = kind
    read = list({name: Observation(name, t.axis, t.elems) for name, t in consumed}.values())
    log.debug("analysis: %d groups, %d edits, %d consumed tensors, %d barriers",
              len(groups), len(edits), len(read), len(barriers))
    return Analysis(graph, table, groups, edits, read, tracked, barriers, nonempty, class_group, class_index)


def _live_nodes(graph: gs.Graph) -> set[int]:
    """Nodes that a graph output, or a tensor read inside a control-flow subgraph, depends on (by id):
    one pass backwards over the topologically sorted nodes."""
    needed = {t.name for t in graph.outputs} | ir.outer_names_used_by_subgraphs(graph)
    live: set[int] = set()
    for node in reversed(graph.nodes):
        if any(t.name in needed or any(id(c) in live for c in t.outputs) for t in node.outputs):
            live.add(id(node))
    return live


def _build_groups(table: ElementTable,
                  spaces: list[Space]) -> tuple[list[ChannelGroup], np.ndarray, np.ndarray]:
    """Spaces sharing any class form one group; classes are numbered by first appearance."""
    class_group = np.full(len(table), -1, dtype=np.int64)
    class_index = np.full(len(table), -1, dtype=np.int64)
    if not spaces:
        return [], class_group, class_index
    space_roots = [table.roots(space.elems) for space in spaces]
    all_roots = np.concatenate(space_roots)
    owner = np.repeat(np.arange(len(spaces)), [len(r) for r in space_roots])
    unique_roots, first = np.unique(all_roots, return_index=True)
    first_owner = owner[first][np.searchsorted(unique_roots, all_roots)]
    parent = list(range(len(spaces)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    linked = owner != first_owner
    for a, b in np.unique(np.stack([owner[linked], first_owner[linked]], axis=1), axis=0).tolist():
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    members: dict[int, list[int]] = {}
    for s in range(len(spaces)):
        members.setdefault(find(s), []).append(s)
    groups: list[ChannelGroup] = []
    for gid, (_, indices) in enumerate(sorted(members.items())):
        roots_here = np.concatenate([space_roots[s] for s in indices])
        _, order = np.unique(roots_here, return_index=True)
        roots = roots_here[np.sort(order)]
        class_group[roots] = gid
        class_index[roots] = np.arange(len(roots))
        groups.append(ChannelGroup(gid, tuple(spaces[s] for s in indices), roots, {}))
    blocked, reasons = table.blocked_roots()
    for k in np.flatnonzero(class_group[blocked] >= 0).tolist():
        root = blocked[k]
        groups[class_group[root]].blocked[int(class_index[root])] = reasons[k]
    for group in groups:
        group.blocked = dict(sorted(group.blocked.items()))
    return groups, class_group, class_index


def is_zero_producing(node: gs.Node) -> bool:
    """Relu, or Clip with a lower bound of at least 0: its output is exactly zero where it is not positive."""
    if node.op == "Relu":
        return True
    if node.op == "Clip":
        low = node.attrs.get("min")
        if low is None and len(node.inputs) > 1 and node.inputs[1].name:
            value = ir.const_value(node.inputs[1])
            low = None if value is None else float(value.reshape(-1)[0])
        return low is not None and float(low) >= 0.0
    return False
