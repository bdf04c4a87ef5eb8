"""Pass: zero the channels a plan drops instead of removing them.

Before:  x → Relu → y          (x carries group channels)
After:   x → Mul(x, mask) → Relu → Mul(·, mask) → y, mask = 0 at removed channels, 1 elsewhere
         (and the plan's weight masks applied, as `apply_plan` applies them)

This is the reference `apply_plan` must equal (masked equivalence): every tensor that
carries a removed channel has that channel zeroed right where it is produced. It is also a
cheap way to evaluate what a plan costs before committing to it: the model keeps its shapes.
With `layernorm="plain"` the reference is the one `apply_plan(..., layernorm="plain")` must
equal: every LayerNormalization over removed channels takes its statistics over the kept
channels only (see `passes.layer_norm`); with "exact" (default) LayerNorms are left as they are.
A channel axis that also holds a runtime-sized factor (batch × heads) gets its mask tiled to
the axis' length at run time.
Invariants: graph inputs, outputs and all shapes unchanged.
Not handled: tensors of unknown rank (refused with a PassError).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from .. import ir
from ..analysis.groups import Analysis
from ..analysis.rule_context import NormEdit, Tracked
from ..errors import PassError
from ..plan import PrunePlan
from .apply_masks import mask_weights
from .layer_norm import LAYERNORM_MODES, LayerNormMode, replace_layer_norm
from .preamble import NameSource, analysed_for


def mask_channels(model: onnx.ModelProto, plan: PrunePlan, analysis: Analysis | None = None, *,
                  layernorm: LayerNormMode = "exact", every_prunable: bool = False) -> onnx.ModelProto:
    """The plan's removal as zeros; with `every_prunable`, a mask (initializer `mask_name(tensor)`)
    on every tensor that carries a removable channel, ones where nothing is removed, so that a
    gradual schedule can change the masks while training."""
    if layernorm not in LAYERNORM_MODES:
        raise PassError(f"mask_channels: layernorm must be one of {', '.join(LAYERNORM_MODES)}, got {layernorm!r}")
    graph, analysis, removed = analysed_for(model, plan, analysis)
    names = NameSource(graph)
    mask_weights(graph, plan.masks, names.fresh)
    tensors = graph.tensors()
    if layernorm == "plain":
        for edit in analysis.edits:
            if isinstance(edit, NormEdit) and len(analysis.surviving(edit.elems, removed)) < len(edit.elems):
                _plain_reference(graph, analysis, edit, removed, names)
    removable = np.zeros(len(analysis.table), dtype=bool)  # where every_prunable adds masks of ones
    if every_prunable:
        for group in analysis.groups:
            removable[group.roots[group.prunable]] = True
    for k, (name, tracked) in enumerate(sorted(analysis.tracked.items())):
        surviving = analysis.surviving(tracked.elems, removed)
        if len(surviving) == len(tracked.elems) and not removable[analysis.table.roots(tracked.elems)].any():
            continue
        tensor = tensors[name]
        shape = ir.shape_of(tensor)
        if shape is None:
            raise PassError(f"mask_channels: tensor '{name}' has unknown rank")
        mask = np.zeros(len(tracked.elems), dtype=tensor.dtype or np.float32)
        mask[surviving] = 1
        consumers = list(tensor.outputs)
        factor = _mask_tensor(graph, tensor, tracked, mask, len(shape), f"onnxtrim_mask_{k}")
        masked = gs.Variable(f"{name}.masked", dtype=tensor.dtype, shape=tensor.shape)
        for consumer in consumers:
            for i, t in enumerate(consumer.inputs):
                if t is tensor:
                    consumer.inputs[i] = masked
        graph.nodes.append(gs.Node("Mul", f"onnxtrim_mask_{k}", inputs=[tensor, factor], outputs=[masked]))
    return ir.to_model(graph, model)


def _mask_tensor(graph: gs.Graph, tensor: gs.Tensor, tracked: Tracked, mask: np.ndarray, rank: int,
                 base: str) -> gs.Tensor:
    """The mask, shaped to broadcast along `tracked.axis`; tiled to the axis' runtime length if needed."""
    trailing = [1] * (rank - tracked.axis - 1)
    name = tensor.name
    if not tracked.tiled:
        return gs.Constant(mask_name(name), mask.reshape([len(mask), *trailing]))
    shape = gs.Variable(f"{name}.mask_shape", dtype=np.int64)
    length = gs.Variable(f"{name}.mask_length", dtype=np.int64)
    repeats = gs.Variable(f"{name}.mask_repeats", dtype=np.int64)
    tiled = gs.Variable(f"{name}.mask_tiled", dtype=mask.dtype)
    factor = gs.Variable(f"{name}.mask_factor", dtype=mask.dtype)
    axis = np.array([tracked.axis], dtype=np.int64)
    graph.nodes.extend([
        gs.Node("Shape", f"{base}_shape", inputs=[tensor], outputs=[shape]),
        gs.Node("Slice", f"{base}_length", inputs=[shape, gs.Constant(f"{name}.mask_start", axis),
                                                   gs.Constant(f"{name}.mask_end", axis + 1)], outputs=[length]),
        gs.Node("Div", f"{base}_repeats", inputs=[length, gs.Constant(f"{name}.mask_size",
                                                                      np.array([len(mask)], dtype=np.int64))],
                outputs=[repeats]),
        gs.Node("Tile", f"{base}_tile", inputs=[gs.Constant(mask_name(name), mask), repeats], outputs=[tiled]),
        gs.Node("Reshape", f"{base}_reshape", inputs=[tiled, gs.Constant(f"{name}.mask_target",
                                                                         np.array([-1, *trailing], dtype=np.int64))],
                outputs=[factor]),
    ])
    return factor


def _plain_reference(graph: gs.Graph, analysis: Analysis, edit: NormEdit, removed: np.ndarray,
                     names: NameSource) -> None:
    """A LayerNormalization whose statistics cover the kept channels only (the plain semantics)."""
    node = graph.nodes[edit.node]
    x = analysis.tracked[node.inputs[0].name]
    rank = len(ir.shape_of(node.inputs[0]) or ())
    keep = np.zeros(len(edit.elems), dtype=np.float32)
    keep[analysis.surviving(edit.elems, removed)] = 1
    mask = keep.reshape([len(keep)] + [1] * (rank - x.axis - 1))
    kept_values = edit.width * int(keep.sum()) // len(edit.elems)
    replace_layer_norm(graph, node, names.fresh, count=kept_values, mask=mask)


def mask_name(tensor: str) -> str:
    """The initializer holding the channel mask of `tensor` in a masked model."""
    return f"{tensor}.mask"
