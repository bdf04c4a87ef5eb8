"""The boundary between protobuf and the graph IR the analysis and passes work on.

Passes see `onnx_graphsurgeon.Graph`; only this module converts. Shapes come from onnx's
shape inference with data propagation, so rules can ask for static dimensions; exporters'
stored intermediate shapes go stale once channels are removed, so `to_model` clears every
intermediate shape and infers them again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import onnx
import onnx_graphsurgeon as gs

log = logging.getLogger(__name__)

Dim = int | str | None


def to_graph(model: onnx.ModelProto, *, fold_shapes: bool = True) -> gs.Graph:
    """Import with fresh shape inference (stored shapes are ignored: they may be stale).

    Integer values computed from `Shape` on static sizes (Reshape targets, pads, scales) are
    folded into constants first (`shape_values.fold`), so that the analysis can rewrite the
    channel counts they hold and shape inference sees through them.

    An initializer that is also a graph input is a default the caller may override, not a
    constant: graphsurgeon would fold it into a constant and drop the input, so it is
    imported as a plain input and restored by `to_model`.
    """
    overridable = _overridable_names(model)
    if overridable:
        stripped = onnx.ModelProto()
        stripped.CopyFrom(model)
        del stripped.graph.initializer[:]
        stripped.graph.initializer.extend(t for t in model.graph.initializer if t.name not in overridable)
        model = stripped
    graph = gs.import_onnx(model)
    _set_shapes(graph, model, _inferred_shapes(model, data_prop=True))
    if fold_shapes:
        from .shape_values import fold

        folded: dict[tuple[int, int], np.ndarray] = {}
        for _ in range(_FOLD_ROUNDS):  # each round's shapes can make more values known
            more = fold(graph)
            if not more:
                break
            folded.update(more)
            renames, constants = _with_folds(graph, folded)
            _set_shapes(graph, model, _inferred_shapes(model, data_prop=True, renames=renames, extra=constants))
    return graph


_FOLD_ROUNDS = 32  # a round per block where exporters chain shape computations (TorchScript ShuffleNet)


def _set_shapes(graph: gs.Graph, model: onnx.ModelProto, inferred: list[onnx.ValueInfoProto]) -> None:
    fresh = {vi.name: vi for vi in inferred}
    boundary = {t.name for t in model.graph.input} | {t.name for t in model.graph.output}
    for tensor in graph.tensors().values():
        if isinstance(tensor, gs.Variable) and tensor.name not in boundary:
            info = fresh.get(tensor.name)
            tensor.shape = None if info is None else _dims(info)
            tensor.dtype = None if info is None else _dtype(info)


def _with_folds(graph: gs.Graph,
                folded: dict[tuple[int, int], np.ndarray]) -> tuple[dict[tuple[int, int], str], list[onnx.TensorProto]]:
    """The folded inputs as protobuf edits: (node, input) -> new name, and the new initializers.

    graphsurgeon imports nodes in file order, so node k of the graph is node k of the protobuf.
    """
    renames: dict[tuple[int, int], str] = {}
    added: dict[str, onnx.TensorProto] = {}
    for (node_index, input_index), value in folded.items():
        name = graph.nodes[node_index].inputs[input_index].name
        renames[(node_index, input_index)] = name
        if name not in added:
            added[name] = onnx.numpy_helper.from_array(value, name)
    return renames, list(added.values())


def _dims(info: onnx.ValueInfoProto) -> list[int | str | None] | None:
    tensor_type = info.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor_type.shape.dim]


def _dtype(info: onnx.ValueInfoProto) -> np.dtype | None:
    elem_type = info.type.tensor_type.elem_type
    try:
        return onnx.helper.tensor_dtype_to_np_dtype(elem_type) if elem_type else None
    except (KeyError, ValueError):
        return None


def toposort(graph: gs.Graph) -> gs.Graph:
    """Sort the nodes topologically, unless they already are (ONNX requires it, so they usually are).

    Checking is one pass; graphsurgeon's sort is several and took a quarter of the analysis
    of a 2,000-node transformer. Graphs with subgraphs always take graphsurgeon's sort, which
    knows what subgraphs read from outside.
    """
    seen: set[int] = set()
    for node in graph.nodes:
        if any(t.inputs and id(t.inputs[0]) not in seen for t in node.inputs) or next(node.subgraphs(), None):
            return graph.toposort()
        seen.add(id(node))
    return graph


def to_model(graph: gs.Graph, template: onnx.ModelProto) -> onnx.ModelProto:
    """Export, keeping the original model's metadata, and re-infer intermediate shapes."""
    toposort(graph.cleanup(remove_unused_graph_inputs=False))
    model = _export_with_weights_in_place(graph)
    overridable = _overridable_names(template)
    model.graph.initializer.extend(t for t in template.graph.initializer if t.name in overridable)
    model.ir_version = template.ir_version
    del model.opset_import[:]
    model.opset_import.extend(template.opset_import)
    for field in ("producer_name", "producer_version", "domain", "model_version", "doc_string"):
        setattr(model, field, getattr(template, field))
    del model.metadata_props[:]
    model.metadata_props.extend(template.metadata_props)
    del model.functions[:]
    model.functions.extend(template.functions)
    del model.graph.value_info[:]
    model.graph.value_info.extend(_inferred_shapes(model, data_prop=False))
    return model


# Weights at least this large are written into the exported model directly (see below).
_DIRECT_WEIGHT_BYTES = 4096


def _export_with_weights_in_place(graph: gs.Graph) -> onnx.ModelProto:
    """graphsurgeon's export, with large weights written once into the exported model.

    graphsurgeon serialises each new weight to a TensorProto and then copies every weight
    into the graph it builds; on a ResNet-50 those copies were most of the rewrite's time.
    Here graphsurgeon exports payload-free stand-ins, which are then filled in place:
    imported weights by one protobuf copy, new ones from their array.
    """
    payloads: dict[str, onnx.TensorProto | np.ndarray] = {}
    swapped: list[tuple[gs.Constant, object]] = []
    for tensor in graph.tensors().values():
        if not isinstance(tensor, gs.Constant):
            continue
        values = tensor._values
        if isinstance(values, gs.ir.tensor.LazyValues) and isinstance(values.tensor, onnx.TensorProto):
            proto = values.tensor
            if proto.data_location == onnx.TensorProto.EXTERNAL or values.nbytes < _DIRECT_WEIGHT_BYTES:
                continue
            payloads[tensor.name] = proto
            stub = onnx.TensorProto(name=tensor.name, data_type=proto.data_type, dims=proto.dims)
        elif isinstance(values, np.ndarray) and values.nbytes >= _DIRECT_WEIGHT_BYTES and values.dtype.kind in "biuf":
            if tensor.export_dtype != tensor.dtype:
                continue
            payloads[tensor.name] = values
            stub = onnx.TensorProto(name=tensor.name, dims=values.shape,
                                    data_type=onnx.helper.np_dtype_to_tensor_dtype(values.dtype))
        else:
            continue
        swapped.append((tensor, values))
        tensor._values = gs.ir.tensor.LazyValues(stub)
    try:
        model = gs.export_onnx(graph, do_type_check=False)
    finally:
        for tensor, values in swapped:
            tensor._values = values
    for init in model.graph.initializer:
        payload = payloads.get(init.name)
        if isinstance(payload, onnx.TensorProto):
            name = init.name  # the graph's name for it, which a rewrite may have changed
            init.CopyFrom(payload)
            init.name = name
        elif payload is not None:
            init.raw_data = np.ascontiguousarray(payload).tobytes()
    return model


# Initializers up to this many elements keep their values during shape inference: shape
# tensors, axes and split sizes are small, and data propagation needs their values.
_SHAPE_DATA_LIMIT = 64


def _inferred_shapes(model: onnx.ModelProto, *, data_prop: bool, renames: dict[tuple[int, int], str] | None = None,
                     extra: Sequence[onnx.TensorProto] = ()) -> list[onnx.ValueInfoProto]:
    """Intermediate shapes of `model`, inferred on a copy without its weights.

    Shape inference serialises the whole model twice; weights only contribute their shapes,
    so large ones are declared as typed inputs instead. That makes inference cost
    independent of the model's size in bytes. `renames` and `extra` apply folded inputs
    (node k's input i reads the new constant of that name) to the copy only.
    """
    skeleton = onnx.ModelProto()
    skeleton.ir_version = model.ir_version
    skeleton.opset_import.extend(model.opset_import)
    skeleton.functions.extend(model.functions)
    graph = skeleton.graph
    graph.node.extend(model.graph.node)
    for (node_index, input_index), name in (renames or {}).items():
        graph.node[node_index].input[input_index] = name
    graph.initializer.extend(extra)
    graph.input.extend(model.graph.input)
    graph.output.extend(model.graph.output)
    declared = {i.name for i in model.graph.input}
    for init in model.graph.initializer:
        if int(np.prod(init.dims, dtype=np.int64)) <= _SHAPE_DATA_LIMIT:
            graph.initializer.append(init)
        elif init.name not in declared:
            graph.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    try:
        inferred = onnx.shape_inference.infer_shapes(skeleton, data_prop=data_prop)
        for _ in range(_CONTRIB_ROUNDS):  # onnx has no schemas for onnxruntime's contrib ops
            hints = _contrib_hints(skeleton, inferred.graph.value_info)
            if not hints:
                break
            skeleton.graph.value_info.extend(hints)
            inferred = onnx.shape_inference.infer_shapes(skeleton, data_prop=data_prop)
    except Exception as exc:  # noqa: BLE001 - inference is best-effort; rules then see unknown shapes
        log.debug("shape inference failed: %s", exc)
        return []
    return list(inferred.graph.value_info)


# com.microsoft ops whose output has the shape and type of their first input (onnx cannot infer them)
_SAME_SHAPE_CONTRIB = frozenset({"BiasGelu", "FastGelu", "Gelu", "QuickGelu"})
_CONTRIB_ROUNDS = 8


def _contrib_hints(skeleton: onnx.ModelProto, known: Sequence[onnx.ValueInfoProto]) -> list[onnx.ValueInfoProto]:
    types = {vi.name: vi.type for vi in (*known, *skeleton.graph.input, *skeleton.graph.value_info)}
    hints = []
    for node in skeleton.graph.node:
        if node.domain == "com.microsoft" and node.op_type in _SAME_SHAPE_CONTRIB and node.input[0] in types:
            out = node.output[0]
            if out not in types:
                hint = onnx.ValueInfoProto(name=out)
                hint.type.CopyFrom(types[node.input[0]])
                hints.append(hint)
    return hints


def _overridable_names(model: onnx.ModelProto) -> set[str]:
    inputs = {i.name for i in model.graph.input}
    return {t.name for t in model.graph.initializer if t.name in inputs}


def node_label(node: gs.Node, index: int) -> str:
    """A node's name, or `Op#index` when it has none: its position in the model's node list, which
    ONNX requires to be topologically sorted (positions after sorting where it was not)."""
    return node.name or f"{node.op}#{index}"


def default_opset(model_or_graph: onnx.ModelProto | gs.Graph) -> int:
    if isinstance(model_or_graph, gs.Graph):
        return int(model_or_graph.opset)
    for entry in model_or_graph.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 1


def shape_of(tensor: gs.Tensor) -> tuple[Dim, ...] | None:
    shape = tensor.shape
    if shape is None:
        return None
    return tuple(d if isinstance(d, int) and d >= 0 else (d if isinstance(d, str) and d else None) for d in shape)


def const_value(tensor: gs.Tensor) -> np.ndarray | None:
    """The constant behind a tensor, looking through Identity and Constant nodes.

    TorchScript exports share identical weights through Identity nodes; treating them as
    constants here is what lets a rewrite give each user its own sliced copy.
    """
    seen = 0
    while seen < 64:
        if isinstance(tensor, gs.Constant):
            return _constant_array(tensor)
        if len(tensor.inputs) != 1:
            return None
        producer = tensor.inputs[0]
        if producer.op == "Identity" and producer.inputs:
            tensor = producer.inputs[0]
        elif producer.op == "Constant" and "value" in producer.attrs:
            value = producer.attrs["value"]
            return np.asarray(value.values if isinstance(value, gs.Constant) else value)
        else:
            return None
        seen += 1
    return None


def _constant_array(tensor: gs.Constant) -> np.ndarray:
    """A constant's values, read straight from its TensorProto when it still has one.

    graphsurgeon's own loading copies the weights twice and caches the copy in the Constant,
    which then makes its exporter serialise them again; reading the proto leaves the Constant
    as imported. The array may be read-only: callers that write copy first.
    """
    lazy = tensor._values
    if isinstance(lazy, gs.ir.tensor.LazyValues) and isinstance(lazy.tensor, onnx.TensorProto):
        return onnx.numpy_helper.to_array(lazy.tensor)
    return np.asarray(tensor.values)


def const_shape(tensor: gs.Tensor) -> tuple[int, ...] | None:
    """The shape of the constant behind a tensor, without loading its values.

    Rules that only need a weight's shape use this, so analysing a large model does not read
    its weights at all.
    """
    seen = 0
    while seen < 64:
        if isinstance(tensor, gs.Constant):
            return tuple(int(d) for d in tensor.shape)
        if len(tensor.inputs) != 1 or tensor.inputs[0].op != "Identity" or not tensor.inputs[0].inputs:
            value = const_value(tensor)
            return None if value is None else tuple(value.shape)
        tensor = tensor.inputs[0].inputs[0]
        seen += 1
    return None


def constant_behind(tensor: gs.Tensor) -> gs.Tensor:
    """The tensor that holds the value (through Identity chains), so uses of one shared weight
    can be recognised as such."""
    while not isinstance(tensor, gs.Constant) and len(tensor.inputs) == 1 and tensor.inputs[0].op == "Identity":
        tensor = tensor.inputs[0].inputs[0]
    return tensor


def producer(tensor: gs.Tensor) -> gs.Node | None:
    return tensor.inputs[0] if len(tensor.inputs) == 1 else None


def outer_names_used_by_subgraphs(graph: gs.Graph) -> set[str]:
    """Names a control-flow subgraph reads from an enclosing scope without listing them as inputs."""
    used: set[str] = set()
    for node in graph.nodes:
        for sub in node.subgraphs(recursive=True):
            local = {t.name for n in sub.nodes for t in n.outputs} | {t.name for t in sub.inputs}
            for n in sub.nodes:
                for t in n.inputs:
                    if t.name and t.name not in local and not isinstance(t, gs.Constant):
                        used.add(t.name)
    return used
