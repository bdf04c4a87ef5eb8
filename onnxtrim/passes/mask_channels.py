"""Pass: zero the channels a plan drops instead of removing them.

Before:  x → Relu → y          (x carries group channels)
After:   x → Mul(x, mask) → Relu → Mul(·, mask) → y, mask = 0 at removed channels, 1 elsewhere
         (and the plan's weight masks applied, as `apply_plan` applies them)

This is the reference `apply_plan` must equal (masked equivalence): every tensor that
carries a removed channel has that channel zeroed right where it is produced. It is also a
cheap way to evaluate what a plan costs before committing to it: the model keeps its shapes.
Invariants: graph inputs, outputs and all shapes unchanged.
Not handled: tensors of unknown rank (refused with a PassError).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from .. import ir
from ..errors import PassError
from ..plan import PrunePlan
from .apply_masks import mask_weights
from .preamble import NameSource, analysed_for


def mask_channels(model: onnx.ModelProto, plan: PrunePlan, *, every_prunable: bool = False) -> onnx.ModelProto:
    """The plan's removal as zeros; with `every_prunable`, a mask (initializer `mask_name(tensor)`)
    on every tensor that carries a removable channel, ones where nothing is removed, so that a
    gradual schedule can change the masks while training."""
    graph, analysis, removed = analysed_for(model, plan)
    mask_weights(graph, plan.masks, NameSource(graph).fresh)
    tensors = graph.tensors()
    removable = np.zeros(len(analysis.table), dtype=bool)
    for group in analysis.groups:
        removable[group.roots[group.prunable]] = True
    for k, (name, tracked) in enumerate(sorted(analysis.tracked.items())):
        surviving = analysis.surviving(tracked.elems, removed)
        if len(surviving) == len(tracked.elems) and not (every_prunable and removable[analysis.table.roots(tracked.elems)].any()):
            continue
        tensor = tensors[name]
        shape = ir.shape_of(tensor)
        if shape is None:
            raise PassError(f"mask_channels: tensor '{name}' has unknown rank")
        mask_shape = [len(tracked.elems)] + [1] * (len(shape) - tracked.axis - 1)
        mask = np.zeros(len(tracked.elems), dtype=tensor.dtype or np.float32)
        mask[surviving] = 1
        masked = gs.Variable(f"{name}.masked", dtype=tensor.dtype, shape=tensor.shape)
        for consumer in list(tensor.outputs):
            for i, t in enumerate(consumer.inputs):
                if t is tensor:
                    consumer.inputs[i] = masked
        graph.nodes.append(gs.Node("Mul", f"onnxtrim_mask_{k}",
                                   inputs=[tensor, gs.Constant(mask_name(name), mask.reshape(mask_shape))],
                                   outputs=[masked]))
    return ir.to_model(graph, model)


def mask_name(tensor: str) -> str:
    """The initializer holding the channel mask of `tensor` in a masked model."""
    return f"{tensor}.mask"
