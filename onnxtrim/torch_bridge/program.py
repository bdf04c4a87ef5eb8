"""From an ONNX graph to a flat program of torch calls, decided once when the module is built.

Every tensor of the graph gets a slot in one list. What is known before any input arrives is
settled here: weights become Parameters, other initializers and Constant nodes become buffers,
nodes whose inputs are all constants are run once (constant folding: the TorchScript exporter's
Constant → Unsqueeze → Concat chains disappear), and shape-like constants (Reshape's shape,
Slice's bounds, axes, pads) are baked into Python ints. What is left is a list of steps, each one
handler with its attributes bound, reading and writing slots: the forward pass is a loop over
it with no graph walking, dictionary lookups or attribute parsing per call.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from ..errors import BridgeError, one_line
from .ops import OpSpec, lookup
from .ops.registry import torch_dtype

#: Shape-like constants up to this many elements become Python values; larger ones stay tensors.
_BAKE_LIMIT = 64
_FLOAT_TYPES = frozenset({onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
                          onnx.TensorProto.BFLOAT16})


@dataclass(frozen=True)
class Step:
    fn: Callable[..., Any]
    inputs: tuple[int, ...]  # slots; -1 is an omitted optional input (None)
    outputs: tuple[int, ...]
    op: str
    label: str  # the node's name, or Op#index


@dataclass
class Program:
    steps: list[Step]
    slots: dict[str, int]  # tensor name -> slot
    n_slots: int
    inputs: list[str]  # fed by position, in graph order
    optional_inputs: dict[str, int]  # overridable initializers: name -> slot of the default buffer
    outputs: list[str]
    parameters: dict[str, torch.Tensor]  # ONNX initializer name -> value (becomes a Parameter)
    buffers: dict[str, torch.Tensor]  # tensor name -> value (becomes a buffer)
    baked: dict[int, Any]  # slot -> Python value known at build time
    release: list[tuple[int, ...]] = field(default_factory=list)  # per step: slots dead after it


def node_label(node: onnx.NodeProto, index: int) -> str:
    return node.name or f"{node.op_type}#{index}"


def where(node: onnx.NodeProto, index: int) -> str:
    domain = f" (domain {node.domain!r})" if node.domain not in ("", "ai.onnx") else ""
    return f"op '{node.op_type}'{domain} at node '{node_label(node, index)}'"


def opsets(model: onnx.ModelProto) -> dict[str, int]:
    found = {("" if o.domain == "ai.onnx" else o.domain): int(o.version) for o in model.opset_import}
    found.setdefault("", 1)
    return found


def tensor_value(proto: onnx.TensorProto, what: str) -> torch.Tensor:
    if proto.data_location == onnx.TensorProto.EXTERNAL:
        raise BridgeError(f"{what} '{proto.name}' is still in an external data file: load the model with "
                          "onnxtrim.model_io.load_model (or onnx.load, which loads external data) first")
    if proto.data_type == onnx.TensorProto.STRING:
        raise BridgeError(f"{what} '{proto.name}' holds strings, which have no torch dtype")
    torch_dtype(proto.data_type)  # refuses types torch lacks, naming the type
    array = numpy_helper.to_array(proto)
    if array.dtype == np.uint16 and proto.data_type == onnx.TensorProto.BFLOAT16:
        return torch.from_numpy(array.astype(np.int16)).view(torch.bfloat16).clone()
    return torch.from_numpy(np.array(array, copy=True))


def attributes(node: onnx.NodeProto, label: str) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    for attr in node.attribute:
        if attr.ref_attr_name:
            raise BridgeError(f"{label}: attribute '{attr.name}' refers to a function attribute")
        if attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
            raise BridgeError(f"{label}: attribute '{attr.name}' is a subgraph (control flow has no mapping)")
        if attr.type == onnx.AttributeProto.SPARSE_TENSOR:
            raise BridgeError(f"{label}: attribute '{attr.name}' is a sparse tensor")
        value = onnx.helper.get_attribute_value(attr)
        if isinstance(value, onnx.TensorProto):
            value = tensor_value(value, f"{label}: attribute '{attr.name}'")
        elif isinstance(value, bytes):
            value = value.decode("utf-8")
        elif isinstance(value, list):
            value = [v.decode("utf-8") if isinstance(v, bytes) else v for v in value]
        attrs[attr.name] = value
    return attrs


def bind(spec: OpSpec, attrs: dict[str, Any], n_inputs: int, n_outputs: int, label: str) -> Callable[..., Any]:
    """The handler with the node's attributes bound; attributes it does not know are refused here."""
    params = inspect.signature(spec.fn).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [name for name in attrs if name not in params and not takes_any]
    if unknown:
        raise BridgeError(f"{label}: attribute '{unknown[0]}' has no torch mapping")
    positional = [p for p in params.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if n_inputs > len(positional) and not any(p.kind is p.VAR_POSITIONAL for p in params.values()):
        raise BridgeError(f"{label}: {n_inputs} inputs, the mapping takes at most {len(positional)}")
    if spec.wants_outputs:
        attrs = {**attrs, "n_outputs": n_outputs}
    return functools.partial(spec.fn, **attrs) if attrs else spec.fn


def bake(value: torch.Tensor) -> Any:
    """A constant for a shape-like input as a Python value: scalar → number, vector → tuple."""
    if value.numel() > _BAKE_LIMIT or value.dim() > 1:
        return value
    return value.item() if value.dim() == 0 else tuple(value.tolist())


def sanitize(names: Iterable[str]) -> dict[str, str]:
    """ONNX names → unique identifiers usable as ParameterDict keys and buffer names."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for name in names:
        key = re.sub(r"\W", "_", name) or "_"
        key = "_" + key if key[0].isdigit() else key
        base, n = key, 1
        while key in taken:
            n += 1
            key = f"{base}_{n}"
        taken.add(key)
        out[name] = key
    return out


def default_trainable(init: onnx.TensorProto, data_use: bool) -> bool:
    """A weight: a float tensor of two or more elements from which an output is reached as data.

    Single-element floats are constants the dynamo exporter materialises (attention scales,
    epsilons), and floats read only at shape-like or frozen positions (Resize scales, Clip bounds,
    BatchNormalization statistics) are settings: both become buffers.
    """
    return init.data_type in _FLOAT_TYPES and int(np.prod(init.dims, dtype=np.int64)) >= 2 and data_use


def _data_uses(model: onnx.ModelProto, versions: dict[str, int]) -> set[str]:
    """Names from which some graph output is reached through inputs that are neither shape-like nor frozen.

    One backward walk over the (topologically sorted) nodes: Identity chains, exporters' shared
    weights and any other differentiable path count; paths through a comparison, Where's condition,
    Shape or a ScatterND's updates do not.
    """
    reached = {o.name for o in model.graph.output}
    for node in reversed(model.graph.node):
        if not any(name in reached for name in node.output):
            continue
        spec = lookup(node.op_type, node.domain, versions.get(node.domain or "", 1))
        for i, name in enumerate(node.input):
            if name and (spec is None or (i not in spec.shape_inputs and i not in spec.frozen_inputs)):
                reached.add(name)
    return reached


def compile_graph(model: onnx.ModelProto, trainable: Callable[[onnx.TensorProto], bool] | None = None) -> Program:
    graph = model.graph
    if graph.sparse_initializer:
        raise BridgeError(f"sparse initializer '{graph.sparse_initializer[0].values.name}' has no mapping")
    versions = opsets(model)
    init_names = {t.name for t in graph.initializer}
    overridable = [i.name for i in graph.input if i.name in init_names]
    data_uses = _data_uses(model, versions)
    prog = Program(steps=[], slots={}, n_slots=0, inputs=[i.name for i in graph.input if i.name not in init_names],
                   optional_inputs={}, outputs=[o.name for o in graph.output], parameters={}, buffers={}, baked={})
    static: dict[str, torch.Tensor] = {}  # values known at build time (buffers and folded results)

    def slot(name: str) -> int:
        if name not in prog.slots:
            prog.slots[name] = prog.n_slots
            prog.n_slots += 1
        return prog.slots[name]

    for name in prog.inputs:
        slot(name)
    for init in graph.initializer:
        value = tensor_value(init, "initializer")
        if init.name in overridable:
            slot(init.name)
            prog.buffers[init.name + ":default"] = value
            prog.optional_inputs[init.name] = slot(init.name + ":default")
            continue
        choose = trainable or (lambda t: default_trainable(t, t.name in data_uses))
        if choose(init) and init.data_type in _FLOAT_TYPES:
            prog.parameters[init.name] = value
            slot(init.name)
        else:
            static[init.name] = value
    for index, node in enumerate(graph.node):
        _compile_node(prog, static, node, index, versions, slot)
    for name in prog.outputs:
        if name in static and name not in prog.slots:
            slot(name)
    for name, value in static.items():
        if name in prog.slots and prog.slots[name] not in prog.baked:
            prog.buffers[name] = value
    prog.release = _releases(prog)
    return prog


def _compile_node(prog: Program, static: dict[str, torch.Tensor], node: onnx.NodeProto, index: int,
                  versions: dict[str, int], slot: Callable[[str], int]) -> None:
    label = where(node, index)
    domain = "" if node.domain == "ai.onnx" else node.domain
    spec = lookup(node.op_type, domain, versions.get(domain, 1))
    if spec is None:
        opset = versions.get(domain)
        raise BridgeError(f"{label}: no torch mapping for this op at opset {opset}")
    names = list(node.input)
    while names and not names[-1]:
        names.pop()
    outputs = list(node.output)
    fn = bind(spec, attributes(node, label), len(names), len(outputs), label)
    known = [bool(n) and n in static for n in names]
    missing = [n for n in names if n and n not in static and n not in prog.slots]
    if missing:
        raise BridgeError(f"{label}: input '{missing[0]}' is produced by nothing before it")
    if all(k or not n for k, n in zip(known, names)):
        args = [None if not n else (bake(static[n]) if i in spec.shape_inputs else static[n])
                for i, n in enumerate(names)]
        try:
            with torch.no_grad():
                result = fn(*args)
        except BridgeError as exc:
            raise BridgeError(f"{label}: {exc}") from None
        except Exception as exc:  # any torch failure while folding, named by node
            raise BridgeError(f"{label}: failed while folding constants: {one_line(exc)}") from exc
        for name, value in zip(outputs, result if isinstance(result, tuple) else (result,)):
            if name:
                static[name] = value
        return
    ins: list[int] = []
    for i, name in enumerate(names):
        if not name:
            ins.append(-1)
        elif name in static and i in spec.shape_inputs:
            value = bake(static[name])
            baked_slot = prog.n_slots
            prog.n_slots += 1
            if isinstance(value, torch.Tensor):
                prog.buffers[f"{name}:{baked_slot}"] = value
                prog.slots[f"{name}:{baked_slot}"] = baked_slot
            else:
                prog.baked[baked_slot] = value
            ins.append(baked_slot)
        else:
            ins.append(slot(name))
    outs = tuple(slot(n) if n else -1 for n in outputs)
    prog.steps.append(Step(fn, tuple(ins), outs, node.op_type, node_label(node, index)))


def _releases(prog: Program) -> list[tuple[int, ...]]:
    """Per step, the slots no later step reads and that are not outputs: freed during inference."""
    keep = {prog.slots[n] for n in prog.outputs}
    keep |= {prog.slots[n] for n in prog.parameters} | {prog.slots[n] for n in prog.buffers if n in prog.slots}
    keep |= set(prog.baked)
    last: dict[int, int] = {}
    for i, step in enumerate(prog.steps):
        for s in step.inputs:
            last[s] = i
    per_step: list[list[int]] = [[] for _ in prog.steps]
    for s, i in last.items():
        if s >= 0 and s not in keep:
            per_step[i].append(s)
    return [tuple(x) for x in per_step]
