"""What removing channels saves, computed from the analysis without rewriting the model.

Budgets (`--target-macs`), FLOPs regularisation (Molchanov et al.) and a dry run's projected
cost need the parameters and MACs of a model that does not exist yet. Every count onnxtrim
reports (`metrics`) is a product of dimensions: a constant's size is the product of its dims,
and a Conv/Gemm/MatMul's MACs are its output size times its weight's reduced dims (or, for a
MatMul of two activations such as attention's, times the shared axis). Removing channels
shrinks some of those dims, so the new totals follow from the kept share of each cut axis (for
attention MatMuls, of the heads or head dims their `ScaledMacs` record names). A constant shared by several nodes and cut differently for each becomes one copy per
distinct cut, as the rewrite makes them; its original stays while some use is not cut.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from math import prod

import numpy as np

from .. import ir
from ..metrics import Cost, graph_cost, is_parameter, node_macs
from .groups import Analysis
from .rule_context import ParamSlice, ScaledMacs


@dataclass(frozen=True)
class _Use:
    """One node input whose constant has cut axes."""

    constant: int  # id() of the constant tensor (a key of CostModel._constants)
    cuts: tuple[tuple[int, np.ndarray], ...]  # (axis, elements along it)
    macs: int  # the node's MACs when this is its weight, else 0


class CostModel:
    def __init__(self, analysis: Analysis) -> None:
        self.analysis = analysis
        self.base: Cost = graph_cost(analysis.graph)
        nodes = analysis.graph.nodes
        cuts: dict[tuple[int, int], list[tuple[int, np.ndarray]]] = defaultdict(list)
        for edit in analysis.edits:
            if isinstance(edit, ParamSlice):
                cuts[(edit.node, edit.input_index)].append((edit.axis, edit.elems))
        reads: Counter[int] = Counter(id(ir.constant_behind(t)) for n in nodes if n.op != "Identity" for t in n.inputs)
        self._constants: dict[int, tuple[tuple[int, ...], int]] = {}  # id -> (shape, node inputs reading it)
        self._uses: list[_Use] = []
        # MatMuls of two activations (attention scores and context) scale with the kept heads or head dims
        self._scaled = [(node_macs(nodes[e.node]), e.elems) for e in analysis.edits if isinstance(e, ScaledMacs)]
        for (node_index, input_index), node_cuts in sorted(cuts.items(), key=lambda kv: kv[0]):
            node = nodes[node_index]
            constant = ir.constant_behind(node.inputs[input_index])
            if not is_parameter(constant):
                continue
            self._constants[id(constant)] = (tuple(int(d) for d in constant.shape), reads[id(constant)])
            weight = input_index == 1 and node.op in ("Conv", "Gemm", "MatMul", "ConvTranspose")
            self._uses.append(_Use(id(constant), tuple(node_cuts), node_macs(node) if weight else 0))

    def projected(self, removed: np.ndarray) -> Cost:
        """Parameters and MACs per sample once the elements in `removed` (a mask from
        `Analysis.removed_roots`) are gone, as `passes.apply_plan` would leave them."""
        macs = self.base.macs
        copies: dict[int, dict[bytes, int]] = defaultdict(dict)  # constant -> distinct cut -> size
        copied: Counter[int] = Counter()  # constant -> node inputs that read a copy instead
        for use in self._uses:
            shape, _ = self._constants[use.constant]
            dims = list(shape)
            signature = []
            for axis, elems in use.cuts:
                kept = self.analysis.surviving(elems, removed)
                dims[axis] -= len(elems) - len(kept)
                signature.append(bytes([axis % 256]) + kept.tobytes())
            if dims == list(shape):
                continue  # nothing removed here: the node keeps reading the original
            macs -= use.macs - round(use.macs * prod(dims) / max(prod(shape), 1))
            copies[use.constant][b"|".join(signature)] = prod(dims)
            copied[use.constant] += 1
        for count, elems in self._scaled:
            n_kept = len(self.analysis.surviving(elems, removed))
            macs -= count - round(count * n_kept / max(len(elems), 1))
        params = self.base.params
        for constant, sizes in copies.items():
            shape, reads = self._constants[constant]
            params += sum(sizes.values()) - (prod(shape) if copied[constant] >= reads else 0)
        return Cost(int(params), int(macs))

    def class_costs(self, group_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Parameters and MACs one class of the group accounts for (to first order: each removed
        alone), from every constant its channels index."""
        size = next(g.size for g in self.analysis.groups if g.id == group_id)
        params, macs = np.zeros(size), np.zeros(size)
        for use in self._uses:
            shape, _ = self._constants[use.constant]
            total = prod(shape)
            for axis, elems in use.cuts:
                groups, classes = self.analysis.classes_of(elems)
                here = groups == group_id
                if here.any():
                    np.add.at(params, classes[here], total / len(elems))
                    np.add.at(macs, classes[here], use.macs / len(elems))
        for count, elems in self._scaled:
            groups, classes = self.analysis.classes_of(elems)
            here = groups == group_id
            np.add.at(macs, classes[here], count / max(len(elems), 1))
        return params, macs
