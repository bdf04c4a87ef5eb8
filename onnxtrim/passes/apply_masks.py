"""Pass: set the weights a plan's masks drop to zero, keeping every shape.

Before:  Conv(x, W)            W dense
After:   Conv(x, W ⊙ M)        M the plan's 0/1 mask of W's shape

Invariants: graph inputs, outputs, shapes and structure unchanged; a constant shared by
several nodes is never written in place: the masked node gets its own copy (named like the
original when the original is no longer used). Masks apply to the weights as the plan saw
them, so `apply_plan` applies them before removing channels.
Not handled: a mask whose shape differs from its constant's (refused with a PassError).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from .. import ir
from ..errors import PassError
from ..masks import WeightMask
from ..plan import PrunePlan
from .preamble import NameSource, analysed_for


def apply_masks(model: onnx.ModelProto, plan: PrunePlan) -> onnx.ModelProto:
    """Only the plan's weight masks (its channel decisions are left to `apply_plan`)."""
    graph, _, _ = analysed_for(model, plan)
    names = NameSource(graph)
    mask_weights(graph, plan.masks, names.fresh)
    names.restore_original_names(graph)
    return ir.to_model(graph, model)


def mask_weights(graph: gs.Graph, masks: Sequence[WeightMask], fresh: Callable[[str], str], *,
                 as_masks: bool = False) -> list[tuple[gs.Node, int]]:
    """Give each masked node input a zeroed copy of its constant, in place; the (node, input) pairs
    masked. `graph` must be sorted. With `as_masks` the copy holds the mask itself (1 kept, 0
    dropped), so that a rewrite of that graph shows where the masked entries end up."""
    if not masks:
        return []
    done: list[tuple[gs.Node, int]] = []
    nodes = {ir.node_label(node, index): node for index, node in enumerate(graph.nodes)}
    for mask in masks:
        node = nodes.get(mask.node)
        if node is None or mask.input_index >= len(node.inputs):
            raise PassError(f"apply_masks: the plan masks input {mask.input_index} of node '{mask.node}', "
                            "which the model does not have")
        source = node.inputs[mask.input_index]
        value = ir.const_value(source)
        if value is None or value.shape != mask.keep.shape:
            raise PassError(f"apply_masks: mask of shape {list(mask.keep.shape)} does not fit input "
                            f"{mask.input_index} of node '{mask.node}'")
        if as_masks:
            masked = mask.keep.astype(value.dtype)
        else:
            masked = np.where(mask.keep, value, np.zeros((), dtype=value.dtype)).astype(value.dtype, copy=False)
        node.inputs[mask.input_index] = gs.Constant(fresh(source.name), np.ascontiguousarray(masked))
        done.append((node, mask.input_index))
    return done
