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
from ..analysis.groups import Analysis
from ..analysis.rule_context import (
    AttrEdit,
    CountEdit,
    NormEdit,
    ParamSlice,
    ScaledMacs,
    SliceEdit,
    SplitEdit,
)
from ..errors import PassError
from ..plan import PrunePlan
from ..shape_values import literal_entry, rewrite_literal
from .apply_masks import mask_weights
from .layer_norm import LAYERNORM_MODES, LayerNormMode, replace_layer_norm
from .preamble import NameSource, analysed_for

log = logging.getLogger(__name__)


def apply_plan(model: onnx.ModelProto, plan: PrunePlan, analysis: Analysis | None = None, *,
               layernorm: LayerNormMode = "exact") -> onnx.ModelProto:
    """Return a new model without the channels `plan` removes; `model` is not modified.

    `analysis`, if given, must be `analyse(ir.to_graph(model))`: passing the one the plan was
    made from saves analysing the model twice. It is checked against the model, not trusted.
    `layernorm` chooses how a LayerNormalization over removed channels is rewritten
    (`passes.layer_norm`: "exact" keeps its statistics over the original width).
    """
    graph, _ = _trimmed_graph(model, plan, analysis, layernorm, as_masks=False)
    trimmed = ir.to_model(graph, model)
    # graphsurgeon's graph is a web of cycles (tensors <-> nodes) holding the sliced weights, as large as
    # the trimmed model: left to the cyclic collector they stayed alive through verification (+1.6 GiB on
    # a 2.3 GB model, while two onnxruntime sessions were being built).
    del graph
    gc.collect()
    return trimmed


def masked_weights(model: onnx.ModelProto, plan: PrunePlan, analysis: Analysis | None = None, *,
                   layernorm: LayerNormMode = "exact") -> dict[str, np.ndarray]:
    """Where the model `apply_plan` returns holds the plan's weight masks: initializer name → keep
    (False at the entries set to zero), for fine-tuning that must keep them zero. The same rewrite
    runs on the masks themselves (1 kept, 0 dropped), so names and slicing are exactly its own."""
    if not plan.masks:
        return {}
    graph, masked = _trimmed_graph(model, plan, analysis, layernorm, as_masks=True)
    held: dict[str, np.ndarray] = {}
    alive = {id(node) for node in graph.nodes}
    for node, index in masked:
        if id(node) not in alive:  # the rewrite removed the node, and its weight with it
            continue
        value = ir.const_value(node.inputs[index])
        if value is None:
            raise PassError(f"masked_weights: input {index} of node '{node.name}' is no longer a constant")
        held[node.inputs[index].name] = np.asarray(value) != 0
    del graph
    gc.collect()
    return held


def _trimmed_graph(model: onnx.ModelProto, plan: PrunePlan, analysis: Analysis | None, layernorm: LayerNormMode, *,
                   as_masks: bool) -> tuple[gs.Graph, list[tuple[gs.Node, int]]]:
    if layernorm not in LAYERNORM_MODES:
        raise PassError(f"apply_plan: layernorm must be one of {', '.join(LAYERNORM_MODES)}, got {layernorm!r}")
    graph, analysis, removed = analysed_for(model, plan, analysis)
    names = NameSource(graph)
    masked = mask_weights(graph, plan.masks, names.fresh, as_masks=as_masks)
    if removed.any():
        rewrite(graph, analysis, removed, names, layernorm=layernorm)
    names.restore_original_names(graph)
    return graph, masked


def rewrite(graph: gs.Graph, analysis: Analysis, removed: np.ndarray, names: NameSource, *,
            layernorm: LayerNormMode = "exact") -> None:
    """Apply the analysis' edits for the removed classes to `graph` in place."""
    nodes = graph.nodes
    slices: dict[tuple[int, int], list[tuple[int, np.ndarray]]] = defaultdict(list)
    counts: list[tuple[CountEdit, int]] = []
    norms: list[tuple[NormEdit, int]] = []
    for edit in analysis.edits:
        if isinstance(edit, ScaledMacs):
            continue
        if isinstance(edit, NormEdit):
            kept = len(analysis.surviving(edit.elems, removed))
            if kept < len(edit.elems):
                norms.append((edit, kept))
            continue
        if isinstance(edit, AttrEdit):
            if len(analysis.surviving(edit.elems, removed)) < len(edit.elems):
                nodes[edit.node].attrs[edit.attr] = edit.value
            continue
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
        key = (id(ir.constant_behind(source)), tuple((axis, tuple(k.tolist())) for axis, k in cuts))
        if key not in copies:
            original = ir.const_value(source)
            if original is None:  # the analysis only records cuts of constants
                raise PassError(f"apply_plan: input {input_index} of node '{node.name}' is no longer a constant")
            value = _select(original, cuts)
            copies[key] = gs.Constant(names.fresh(source.name), np.ascontiguousarray(value))
        node.inputs[input_index] = copies[key]
    for edit, count in counts:
        node = nodes[edit.node]
        if edit.attr is not None:
            node.attrs[edit.attr] = count
            continue
        source = node.inputs[edit.input_index]
        current = ir.const_value(source)
        if current is None:  # a shape computed at run time: a copy of it, with the literal entry changed
            literal = literal_entry(source, edit.position)  # type: ignore[arg-type]
            if literal is None:
                raise PassError(f"apply_plan: node '{node.name}' computes the count it needs rewritten")
            node.inputs[edit.input_index] = rewrite_literal(literal, count, graph, names.fresh)
            continue
        value = np.array(current, copy=True)
        flat = value.reshape(-1)
        flat[edit.position] = count
        node.inputs[edit.input_index] = gs.Constant(names.fresh(source.name), value)
    if layernorm == "exact":
        for norm, kept in norms:  # after the slices: the decomposition reads the sliced scale and bias
            width = norm.width
            removed_values = width - width * kept // len(norm.elems)
            replace_layer_norm(graph, nodes[norm.node], names.fresh, count=width, extra=removed_values)
    log.debug("rewrite: %d parameter tensors sliced, %d counts rewritten, %d LayerNorms kept exact",
              len(copies), len(counts), len(norms) if layernorm == "exact" else 0)


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


def _rewrite_split(node: gs.Node, sizes: list[int], names: NameSource, opset: int) -> None:
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


def _rewrite_slice(node: gs.Node, position: int, start: int, end: int, names: NameSource) -> None:
    if end <= start:
        raise PassError(f"apply_plan: Slice node '{node.name}' would keep no channel; keep more channels")
    for index, value in ((1, start), (2, end)):
        array = np.array(ir.const_value(node.inputs[index]), copy=True)
        array.reshape(-1)[position] = value
        node.inputs[index] = gs.Constant(names.fresh(node.inputs[index].name), array)
