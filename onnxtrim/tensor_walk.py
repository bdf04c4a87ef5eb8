"""Walking every tensor of a model (subgraphs, functions, sparse and attribute tensors included)
and checking the sizes each one declares before anything is allocated or read.

Split from `external_data` so that the data-file logic reads on its own; `model_io` and
`external_data` both walk models through here.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from onnx import AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto

from .errors import ModelError

#: Largest accepted dimension and largest accepted tensor, in bytes (1 TiB): anything above is hostile.
MAX_DIM = 2**40
MAX_BYTES = 2**40

# Bits per element of every fixed-size type (sub-byte types are packed). getattr: older onnx lacks some.
_BITS: dict[int, int] = {
    value: bits
    for name, bits in (
        ("FLOAT", 32), ("UINT8", 8), ("INT8", 8), ("UINT16", 16), ("INT16", 16), ("INT32", 32),
        ("INT64", 64), ("BOOL", 8), ("FLOAT16", 16), ("DOUBLE", 64), ("UINT32", 32), ("UINT64", 64),
        ("COMPLEX64", 64), ("COMPLEX128", 128), ("BFLOAT16", 16), ("FLOAT8E4M3FN", 8),
        ("FLOAT8E4M3FNUZ", 8), ("FLOAT8E5M2", 8), ("FLOAT8E5M2FNUZ", 8), ("UINT4", 4), ("INT4", 4),
        ("FLOAT4E2M1", 4), ("FLOAT8E8M0", 8), ("UINT2", 2), ("INT2", 2), ("FLOAT6E2M3", 6),
        ("FLOAT6E3M2", 6),
    )
    if (value := getattr(TensorProto, name, None)) is not None
}
# Typed (non-raw) storage: data type -> (field, values per element). Packed sub-byte types are left to onnx.
_TYPED_FIELD: dict[int, tuple[str, int]] = {
    TensorProto.FLOAT: ("float_data", 1), TensorProto.COMPLEX64: ("float_data", 2),
    TensorProto.DOUBLE: ("double_data", 1), TensorProto.COMPLEX128: ("double_data", 2),
    TensorProto.INT64: ("int64_data", 1), TensorProto.UINT32: ("uint64_data", 1),
    TensorProto.UINT64: ("uint64_data", 1), TensorProto.STRING: ("string_data", 1),
    **{
        t: ("int32_data", 1)
        for t in (TensorProto.INT32, TensorProto.INT16, TensorProto.INT8, TensorProto.UINT16,
                  TensorProto.UINT8, TensorProto.BOOL, TensorProto.FLOAT16, TensorProto.BFLOAT16)
    },
}
DATA_FIELDS = ("float_data", "int32_data", "string_data", "int64_data", "double_data", "uint64_data")


def q(name: str, limit: int = 80) -> str:
    """Quote a name taken from a (possibly hostile) model so that an error message stays one short line."""
    return repr(name if len(name) <= limit else name[:limit] + "...")


def dtype_name(data_type: int) -> str:
    try:
        return TensorProto.DataType.Name(data_type)
    except ValueError:
        return str(data_type)


def dims_text(dims: Sequence[int]) -> str:
    return str(list(dims[:8])) if len(dims) <= 8 else f"[{', '.join(map(str, dims[:8]))}, ...]"


@dataclass
class Scope:
    """A node list with its own names: a graph (main, subgraph, training) or a local function."""

    label: str
    nodes: Sequence[NodeProto]
    graph: GraphProto | None = None
    attributes: Sequence[AttributeProto] = field(default_factory=tuple)


def _subgraphs(attr: AttributeProto) -> Iterator[GraphProto]:
    # Walk whatever is present, whatever `attr.type` claims: the checker judges consistency later.
    if attr.HasField("g"):
        yield attr.g
    yield from attr.graphs


def iter_scopes(model: ModelProto) -> Iterator[Scope]:
    """Yield every graph and function of the model, outermost first (iteratively: nesting can be deep)."""
    todo: collections.deque[Scope] = collections.deque()
    if model.HasField("graph"):
        todo.append(Scope(f"graph {q(model.graph.name)}", model.graph.node, model.graph))
    for i, info in enumerate(model.training_info):
        for part in ("initialization", "algorithm"):
            if info.HasField(part):
                graph = getattr(info, part)
                todo.append(Scope(f"training_info[{i}].{part}", graph.node, graph))
    for func in model.functions:
        label = f"function {q(func.domain + '.' + func.name)}"
        todo.append(Scope(label, func.node, None, func.attribute_proto))
    yield from walk_scopes(todo)


def walk_scopes(todo: collections.deque[Scope]) -> Iterator[Scope]:
    while todo:
        scope = todo.popleft()
        yield scope
        owned: list[tuple[NodeProto | None, AttributeProto]] = [
            (node, attr) for node in scope.nodes for attr in node.attribute]
        owned += [(None, attr) for attr in scope.attributes]
        for node, attr in owned:
            owner = f"node {q(node.name or node.op_type)}" if node is not None else "function attribute"
            for sub in _subgraphs(attr):
                todo.append(Scope(f"subgraph {q(sub.name)} of {owner}", sub.node, sub))


@dataclass(frozen=True)
class TensorRef:
    """A tensor and where it lives, for error messages; `kind` is initializer, sparse or attribute."""

    tensor: TensorProto
    where: str
    kind: str


def _attribute_tensors(attr: AttributeProto, where: str) -> Iterator[TensorRef]:
    label = f"attribute {q(attr.name)} of {where}"
    if attr.HasField("t"):
        yield TensorRef(attr.t, label, "attribute")
    for t in attr.tensors:
        yield TensorRef(t, label, "attribute")
    sparse = ([attr.sparse_tensor] if attr.HasField("sparse_tensor") else []) + list(attr.sparse_tensors)
    for sp in sparse:
        for part in ("values", "indices"):
            if sp.HasField(part):
                yield TensorRef(getattr(sp, part), f"sparse {part} of {label}", "attribute")


def iter_tensors(model: ModelProto) -> Iterator[TensorRef]:
    """Yield every TensorProto in the model: initializers, sparse parts and attribute tensors, everywhere."""
    for scope in iter_scopes(model):
        if scope.graph is not None:
            for t in scope.graph.initializer:
                yield TensorRef(t, f"initializer {q(t.name)} in {scope.label}", "initializer")
            for sp in scope.graph.sparse_initializer:
                for part in ("values", "indices"):
                    if sp.HasField(part):
                        name = q(sp.values.name)
                        yield TensorRef(getattr(sp, part), f"sparse initializer {name} ({part}) in "
                                        f"{scope.label}", "sparse")
        for node in scope.nodes:
            for attr in node.attribute:
                yield from _attribute_tensors(attr, f"node {q(node.name or node.op_type)} in {scope.label}")
        for attr in scope.attributes:
            yield from _attribute_tensors(attr, scope.label)


def tensor_nbytes(tensor: TensorProto, where: str) -> int | None:
    """Bytes that `tensor.dims` and `data_type` declare (None for strings); refuse hostile dims and types."""
    dims = list(tensor.dims)
    for d in dims:
        if d < 0:
            raise ModelError(f"{where}: negative dimension in dims {dims_text(dims)}")
        if d > MAX_DIM:
            raise ModelError(f"{where}: dimension {d} in dims {dims_text(dims)} is over the 2**40 limit")
    count = 0 if 0 in dims else 1
    for d in dims if count else ():  # stop early: a product of thousands of 2**40s takes ages to compute
        count *= d
        if count > MAX_DIM:
            raise ModelError(f"{where}: dims {dims_text(dims)} declare more than 2**40 elements")
    if tensor.data_type == TensorProto.STRING:
        return None
    bits = _BITS.get(tensor.data_type)
    if bits is None:
        raise ModelError(f"{where}: unsupported tensor data type {tensor.data_type}")
    nbytes = (count * bits + 7) // 8
    if nbytes > MAX_BYTES:
        raise ModelError(f"{where}: dims {dims_text(dims)} declare {nbytes} bytes, over the 2**40 limit")
    return nbytes


def uses_external_data(tensor: TensorProto) -> bool:
    """True if the tensor's data lives in a file; refuse `external_data` entries on an inline tensor."""
    if tensor.data_location == TensorProto.EXTERNAL:
        return True
    if len(tensor.external_data):
        raise ModelError(f"tensor {q(tensor.name)} has external_data entries but data_location is not "
                         "EXTERNAL (ambiguous: is its data inline or in a file?)")
    return False


def check_inline_tensor(ref: TensorRef) -> int:
    """Refuse an in-memory tensor whose data does not match its dims (the checker lets a long raw_data and
    long typed fields through; a sliced weight would then silently carry garbage). Returns the raw_data
    size, so that callers learn the model's size without a (slow, failing) 2 GiB serialization."""
    t = ref.tensor
    if uses_external_data(t):
        raise ModelError(f"{ref.where}: still references external data (not loaded); load it with "
                         "onnxtrim.model_io.load_model")
    nbytes = tensor_nbytes(t, ref.where)
    if t.HasField("raw_data"):
        size = len(t.raw_data)
        if nbytes is not None and size != nbytes:
            raise ModelError(f"{ref.where}: raw_data has {size} bytes but dims {dims_text(t.dims)} of "
                             f"{dtype_name(t.data_type)} need {nbytes}")
        return size
    field_name, per_element = _TYPED_FIELD.get(t.data_type, (None, 0))
    if field_name is not None:
        have = len(getattr(t, field_name))
        need = math.prod(t.dims) * per_element
        if have and have != need:
            raise ModelError(f"{ref.where}: {field_name} has {have} values but dims {dims_text(t.dims)} need "
                             f"{need}")
    return 0


def raw_data_bytes(model: ModelProto) -> int:
    """Total raw_data bytes of the model's tensors, as their dims declare them (`check_inline_tensor`
    checks the two agree when a model is loaded or checked), without serializing anything.

    Not `len(raw_data)`: the protobuf runtime copies a bytes field on every read, 3 s per call on a 2.3 GB
    model. Callers use the total to choose between in-memory and external-data paths, and still check
    the size of what they serialize."""
    total = 0
    for ref in iter_tensors(model):
        tensor = ref.tensor
        if tensor.HasField("raw_data"):
            declared = tensor_nbytes(tensor, ref.where)
            total += len(tensor.raw_data) if declared is None else declared
    return total
