"""In-graph probes: per-channel reductions added as extra outputs.

Like onnxruntime's own calibrators (`augment_graph`), the statistics are computed inside the
graph, so each batch returns C numbers per observed tensor instead of the activation itself:
calibration then costs about what inference costs, whatever the dataset size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import onnx
from onnx import helper

from .. import ir
from ..errors import CalibrationError
from .probe_kinds import KINDS, ObservedTensor, ProbeBuilder, ProbeOutput
from .requests import StatRequest


@dataclass(frozen=True)
class Probe:
    """The graph outputs holding the statistics of one observed tensor."""

    tensor: str
    axis: int
    outputs: dict[str, ProbeOutput]  # request key -> output
    size: str | None  # output holding the tensor's element count (general form), None when blocked
    guard: str | None = None  # a sum that turns NaN/Inf anywhere in the tensor into a non-finite value


def add_probes(model: onnx.ModelProto, observed: Sequence[ObservedTensor],
               requests: Sequence[StatRequest]) -> tuple[onnx.ModelProto, list[Probe]]:
    """Return a copy of `model` whose outputs are the requested statistics of each observed tensor.

    `observed` must be in the order the model computes the tensors. The model's own outputs
    are dropped, and the probes appended in reverse (the first observed tensor's last),
    because that decides when onnxruntime runs them: its default execution order is a
    depth-first walk back from the graph's leaves, starting with the leaf of highest node
    index. With the probes as the only leaves, each probe runs as soon as its tensor exists,
    and the tensor can then be freed or overwritten. Behind the model's output (whose layout
    conversions onnxruntime numbers last), every probe ran after the whole model: every
    observed activation stayed alive to the end, residual sums could not accumulate in place,
    and resnet50's convolutions took twice as long. Statistics never need the outputs, so
    nothing is lost by not computing them.
    """
    augmented = onnx.ModelProto()
    augmented.CopyFrom(model)
    graph = augmented.graph
    del graph.output[:]
    opset = ir.default_opset(model)
    by_tensor: dict[str, list[StatRequest]] = {}
    for request in requests:
        by_tensor.setdefault(request.tensor, []).append(request)
    probes: list[Probe] = []
    probe_nodes: list[list[onnx.NodeProto]] = []
    for k, obs in enumerate(o for o in observed if o.name in by_tensor):
        builder = ProbeBuilder(graph, f"onnxtrim_probe_{k}", obs, opset)
        probe = _build(builder, obs, by_tensor[obs.name])
        for out in dict.fromkeys([o.name for o in probe.outputs.values()] + [probe.size, probe.guard]):
            if out is not None:
                graph.output.append(helper.make_empty_tensor_value_info(out))
        probes.append(probe)
        probe_nodes.append(builder.nodes)
    for nodes in reversed(probe_nodes):
        graph.node.extend(nodes)
    _keep_only_ancestors_of_outputs(graph)
    return augmented, probes


def _build(builder: ProbeBuilder, obs: ObservedTensor, requests: list[StatRequest]) -> Probe:
    kinds = []
    for request in requests:
        kind = KINDS.get(request.kind)
        if kind is None:
            raise CalibrationError(f"no probe computes statistic kind {request.kind!r} (known: {', '.join(KINDS)})")
        kinds.append(kind)
    blocked = obs.blocked_layout and all(kind.blocked is not None for kind in kinds)
    outputs = {}
    for request, kind in zip(requests, kinds):
        build = kind.blocked if blocked and kind.blocked is not None else kind.general
        outputs[request.key] = build(builder, request)
    if blocked:
        return Probe(obs.name, obs.axis, outputs, size=None)
    size = builder.node("Size", [obs.name], "size")
    guard = None
    if not any(kind.propagates_nan for kind in kinds):
        guard = builder.reduce_to_channels("ReduceSum", builder.as_float(), "guard")
    return Probe(obs.name, obs.axis, outputs, size=size, guard=guard)


def _keep_only_ancestors_of_outputs(graph: onnx.GraphProto) -> None:
    """Drop the nodes no output depends on (onnxruntime would run them, and run them first)."""
    needed = {o.name for o in graph.output}
    kept: list[onnx.NodeProto] = []
    for node in reversed(graph.node):
        if not needed.intersection(node.output):
            continue
        kept.append(node)
        needed.update(node.input)
        needed.update(_names_read_by_subgraphs(node))
    del graph.node[:]
    graph.node.extend(reversed(kept))


def _names_read_by_subgraphs(node: onnx.NodeProto) -> set[str]:
    names: set[str] = set()
    for attr in node.attribute:
        for sub in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)):
            for inner in sub.node:
                names.update(inner.input)
                names.update(_names_read_by_subgraphs(inner))
    return names
