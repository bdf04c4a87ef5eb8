"""Pass: remove the channels a plan drops, rewriting every weight, bias, norm and shape.

Before:  Conv(W[64,3,k,k], B[64]) → BN([64]) → Relu → Conv(W'[128,64,k,k])
After:   Conv(W[k1,3,k,k], B[k1]) → BN([k1]) → Relu → Conv(W'[128,k1,k,k]), k1 = kept count

Invariants: for every kept class the surviving tensors hold exactly the values of the
original tensors with the removed classes zeroed at every tensor of their group (masked
equivalence, see `mask_channels`); graph inputs and outputs keep names, types and shapes;
a constant shared by several nodes is never sliced in place: each distinct slicing gets its
own copy, and identical slicings share one copy.
Not handled: anything the analysis reported as a barrier is left untouched.
"""

from __future__ import annotations

import gc
import logging
from collections import defaultdict

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from .. import ir
from ..analysis.groups import Analysis, analyse
from ..analysis.rule_context import CountEdit, ParamSlice, SliceEdit, SplitEdit
from ..errors import PassError, PlanError
from ..plan import PrunePlan, structure_fingerprint

log = logging.getLogger(__name__)


def apply_plan(model: onnx.ModelProto, plan: PrunePlan, analysis: Analysis | None = None) -> onnx.ModelProto:
    """Return a new model without the channels `plan` removes; `model` is not modified.

    `analysis`, if given, must be `analyse(ir.to_graph(model))`: passing the one the plan was
    made from saves analysing the model twice. It is checked against the model, not trusted.
    """
    graph, analysis, removed = analysed_for(model, plan, analysis)
    if removed.any():
        rewrite(graph, analysis, removed)
    trimmed = ir.to_model(graph, model)
    # graphsurgeon's graph is a web of cycles (tensors <-> nodes) holding the sliced weights, as large as
    # the trimmed model: left to the cyclic collector they stayed alive through verification (+1.6 GiB on
    # a 2.3 GB model, while two onnxruntime sessions were being built).
    del graph, analysis
    gc.collect()
    return trimmed


def analysed_for(model: onnx.ModelProto, plan: PrunePlan,
                 analysis: Analysis | None = None) -> tuple[gs.Graph, Analysis, np.ndarray]:
    """Import and analyse `model`, check `plan` against it, and resolve what the plan removes.

    Every pass that carries out a plan starts here, so none can skip a check. A given
    analysis is reused for a fresh import of the model (its edits name nodes by position in
    topological order, which importing the same model reproduces) once the two graphs are
    seen to hold the same nodes wired the same way.
    """
    if plan.fingerprint != structure_fingerprint(model):
        raise PlanError("the plan was made for a model of another structure (fingerprint mismatch)")
    graph = ir.to_graph(model)
    if analysis is None:
        analysis = analyse(graph)
    else:
        ir.toposort(graph)
        if _wiring(graph) != _wiring(analysis.graph):
            raise PassError("apply_plan: the analysis given was made from another model")
    return graph, analysis, analysis.removed_roots(validated_keep(plan, analysis))


def _wiring(graph: gs.Graph) -> list[tuple]:
    return [(n.op, n.name, tuple(t.name for t in n.inputs), tuple(t.name for t in n.outputs)) for n in graph.nodes]


def validated_keep(plan: PrunePlan, analysis: Analysis) -> dict[int, np.ndarray]:
    """Check every group decision against the analysis of the model it is applied to."""
    groups = {g.id: g for g in analysis.groups}
    keep: dict[int, np.ndarray] = {}
    for decision in plan.groups:
        group = groups.get(decision.group)
        if group is None or group.members != decision.members or group.size != decision.size:
            raise PlanError(f"plan group {decision.group} ({', '.join(decision.members[:3])}) "
                            "does not match the model's channel groups")
        kept = np.asarray(decision.keep, dtype=np.int64)
        if kept.size == 0:
            raise PlanError(f"plan group {decision.group} keeps no channel; at least one must stay")
        if np.any(np.diff(kept) <= 0) or kept[0] < 0 or kept[-1] >= group.size:
            raise PlanError(f"plan group {decision.group}: keep must be sorted, unique indices below {group.size}")
        dropped_blocked = sorted(set(group.blocked) - set(kept.tolist()))
        if dropped_blocked:
            c = dropped_blocked[0]
            raise PlanError(f"plan group {decision.group} removes channel {c}, which cannot be removed: "
                            f"{group.blocked[c]}")
        keep[decision.group] = kept
    emptied = analysis.emptied(analysis.removed_roots(keep))
    if emptied:
        raise PlanError(f"the plan removes every channel of a tensor that needs one: {emptied[0][1]}")
    return keep


def rewrite(graph: gs.Graph, analysis: Analysis, removed: np.ndarray) -> None:
    """Apply the analysis' edits for the removed classes to `graph` in place."""
    nodes = graph.nodes
    slices: dict[tuple[int, int], list[tuple[int, np.ndarray]]] = defaultdict(list)
    counts: list[tuple[CountEdit, int]] = []
    names = _NameSource(graph)
    for edit in analysis.edits:
        if isinstance(edit, SplitEdit):
            sizes = [len(analysis.surviving(part, removed)) for part in edit.parts]
            if sizes != [len(part) for part in edit.parts]:
                _rewrite_split(nodes[edit.node], sizes, names, ir.default_opset(graph))
            continue
        if isinstance(edit, SliceEdit):
            start = len(analysis.surviving(edit.before, removed))
            end = start + len(analysis.surviving(edit.inside, removed))
            if (start, end) != (len(edit.before), len(edit.before) + len(edit.inside)):
                _rewrite_slice(nodes[edit.node], edit.position, start, end, names)
            continue
        surviving = analysis.surviving(edit.elems, removed)
        if len(surviving) == len(edit.elems):
            continue
        if isinstance(edit, ParamSlice):
            slices[(edit.node, edit.input_index)].append((edit.axis, surviving))
        else:
            counts.append((edit, len(surviving)))
    copies: dict[tuple, gs.Constant] = {}
    for (node_index, input_index), cuts in sorted(slices.items()):
        node = nodes[node_index]
        source = node.inputs[input_index]
        key = (id(_constant_behind(source)), tuple((axis, tuple(k.tolist())) for axis, k in cuts))
        if key not in copies:
            value = _select(ir.const_value(source), cuts)
            copies[key] = gs.Constant(names.fresh(source.name), np.ascontiguousarray(value))
        node.inputs[input_index] = copies[key]
    for edit, count in counts:
        node = nodes[edit.node]
        if edit.attr is not None:
            node.attrs[edit.attr] = count
            continue
        source = node.inputs[edit.input_index]
        value = np.array(ir.const_value(source), copy=True)
        flat = value.reshape(-1)
        flat[edit.position] = count
        node.inputs[edit.input_index] = gs.Constant(names.fresh(source.name), value)
    names.restore_original_names(graph)
    log.debug("rewrite: %d parameter tensors sliced, %d counts rewritten", len(copies), len(counts))


def _select(value: np.ndarray, cuts: list[tuple[int, np.ndarray]]) -> np.ndarray:
    """`value` keeping only the given indices along each cut axis.

    A weight cut on two neighbouring axes (a conv's outputs and inputs) is gathered in one
    pass: two `np.take`s would build an intermediate of most of the weight's size first.
    """
    cuts = [(axis % value.ndim, kept) for axis, kept in cuts]
    axes = sorted(axis for axis, _ in cuts)
    if len(cuts) == 2 and axes[1] == axes[0] + 1:
        index: list = [slice(None)] * value.ndim
        for axis, kept in cuts:
            index[axis] = kept[:, None] if axis == axes[0] else kept[None, :]
        return value[tuple(index)]
    for axis, kept in cuts:
        value = np.take(value, kept, axis=axis)
    return value


def _rewrite_split(node: gs.Node, sizes: list[int], names: _NameSource, opset: int) -> None:
    if 0 in sizes:
        raise PassError(f"apply_plan: Split node '{node.name}' would get an empty output; keep more channels")
    if opset < 13:
        node.attrs["split"] = sizes
        return
    node.attrs.pop("num_outputs", None)
    base = node.inputs[1].name if len(node.inputs) > 1 and node.inputs[1].name else f"{node.name or 'split'}.sizes"
    value = gs.Constant(names.fresh(base), np.asarray(sizes, dtype=np.int64))
    if len(node.inputs) > 1:
        node.inputs[1] = value
    else:
        node.inputs.append(value)


def _rewrite_slice(node: gs.Node, position: int, start: int, end: int, names: _NameSource) -> None:
    if end <= start:
        raise PassError(f"apply_plan: Slice node '{node.name}' would keep no channel; keep more channels")
    for index, value in ((1, start), (2, end)):
        array = np.array(ir.const_value(node.inputs[index]), copy=True)
        array.reshape(-1)[position] = value
        node.inputs[index] = gs.Constant(names.fresh(node.inputs[index].name), array)


def _constant_behind(tensor: gs.Tensor) -> gs.Tensor:
    """The tensor that holds the value (through Identity chains), so shared weights share copies."""
    while not isinstance(tensor, gs.Constant) and len(tensor.inputs) == 1 and tensor.inputs[0].op == "Identity":
        tensor = tensor.inputs[0].inputs[0]
    return tensor


class _NameSource:
    """Deterministic fresh tensor names derived from the original ones.

    A copy takes its original's name back when it is the only copy and the original is no
    longer used, so trimmed models keep the exporter's weight names wherever possible.
    """

    def __init__(self, graph: gs.Graph) -> None:
        self._taken = set(graph.tensors().keys())
        self._made: dict[str, list[str]] = defaultdict(list)

    def fresh(self, base: str) -> str:
        candidate, n = f"{base}.trim", 1
        while candidate in self._taken:
            n += 1
            candidate = f"{base}.trim{n}"
        self._taken.add(candidate)
        self._made[base].append(candidate)
        return candidate

    def restore_original_names(self, graph: gs.Graph) -> None:
        graph.cleanup(remove_unused_graph_inputs=False)
        tensors = graph.tensors()
        for base, made in self._made.items():
            live = [name for name in made if name in tensors]
            if base not in tensors and len(live) == 1:
                tensors[live[0]].name = base
