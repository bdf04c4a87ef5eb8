"""What every pass that carries out a plan shares: checking the plan, and naming new tensors."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from .. import ir
from ..analysis.groups import Analysis, analyse
from ..errors import PassError, PlanError
from ..plan import PrunePlan, structure_fingerprint


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


class NameSource:
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
