"""The op table: one torch function per ONNX op revision, chosen by the model's opset.

A handler takes the node's ONNX inputs positionally (an omitted optional input is None) and its
attributes as keywords named as in the ONNX spec; it returns one tensor, or a tuple for ops with
several outputs. Registering a handler at `since=N` covers opsets N and up, until a later
registration of the same op: handlers are written per revision that changes semantics (Split at 13
and 18, Reduce* axes moving to an input at 18...), not per version number.

`shape_inputs` names the input positions that are shape-like (Reshape's shape, Slice's bounds,
axes, pads, sizes...): when such an input is a constant the module receives a Python value
(a tuple of ints, or an int or float for a scalar) once, at build time, so that no tensor is read
back per call; when it is computed (Shape → Gather → Concat chains over a dynamic batch) the
handler gets a tensor and `ints()` converts it at run time. `frozen_inputs` names inputs that are
statistics or settings, never weights (BatchNormalization's running mean and variance, Clip's
bounds, Pow's exponent), and inputs no gradient flows through (comparisons, Where's condition,
ScatterND's data and updates: exporters build attention masks that way): a float initializer from
which no graph output can be reached but through such inputs becomes a buffer, not a Parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import onnx
import torch

from ...errors import BridgeError

Handler = Callable[..., Any]


@dataclass(frozen=True)
class OpSpec:
    op: str
    domain: str
    since: int
    fn: Handler
    shape_inputs: frozenset[int]
    frozen_inputs: frozenset[int]
    wants_outputs: bool  # the handler takes `n_outputs`: how many outputs the node asks for


_TABLE: dict[tuple[str, str], list[OpSpec]] = {}


def op(name: str, since: int = 1, *, domain: str = "", shape_inputs: Sequence[int] = (),
       frozen_inputs: Sequence[int] = (), wants_outputs: bool = False) -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler of `name` from opset `since` on."""

    def register(fn: Handler) -> Handler:
        spec = OpSpec(name, domain, since, fn, frozenset(shape_inputs), frozenset(frozen_inputs), wants_outputs)
        revisions = _TABLE.setdefault((domain, name), [])
        revisions.append(spec)
        revisions.sort(key=lambda s: s.since)
        return fn

    return register


def lookup(name: str, domain: str, opset: int) -> OpSpec | None:
    """The handler for `name` at `opset` of its domain, or None when none is registered."""
    revisions = _TABLE.get(("" if domain == "ai.onnx" else domain, name))
    if not revisions:
        return None
    found = None
    for spec in revisions:
        if spec.since <= opset:
            found = spec
    return found


def registered() -> dict[tuple[str, str], list[int]]:
    """Every (domain, op) with the opsets at which its handler changes: for documentation and tests."""
    return {key: [s.since for s in specs] for key, specs in sorted(_TABLE.items())}


# ----------------------------------------------------------------------------------------------------
# Helpers shared by the handler modules


def unsupported(what: str) -> BridgeError:
    """An attribute value or input combination with no torch mapping; the caller names op and node."""
    return BridgeError(what)


def ints(value: Any) -> tuple[int, ...]:
    """A shape-like input as a tuple of ints: baked at build time, or read from a computed tensor."""
    if isinstance(value, torch.Tensor):
        return tuple(int(v) for v in value.reshape(-1).tolist())
    if isinstance(value, (int, float)):
        return (int(value),)
    return tuple(int(v) for v in value)


def scalar(value: Any) -> float | int:
    """A scalar input (a Range bound, a Clip bound, a pad value) as a Python number."""
    if isinstance(value, torch.Tensor):
        return value.reshape(-1)[0].item()
    if isinstance(value, (tuple, list)):
        return value[0]
    return value


def axis_index(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


_DTYPES: dict[int, torch.dtype] = {
    onnx.TensorProto.FLOAT: torch.float32,
    onnx.TensorProto.DOUBLE: torch.float64,
    onnx.TensorProto.FLOAT16: torch.float16,
    onnx.TensorProto.BFLOAT16: torch.bfloat16,
    onnx.TensorProto.INT8: torch.int8,
    onnx.TensorProto.INT16: torch.int16,
    onnx.TensorProto.INT32: torch.int32,
    onnx.TensorProto.INT64: torch.int64,
    onnx.TensorProto.UINT8: torch.uint8,
    onnx.TensorProto.BOOL: torch.bool,
}


def torch_dtype(onnx_type: int) -> torch.dtype:
    try:
        return _DTYPES[onnx_type]
    except KeyError:
        name = onnx.TensorProto.DataType.Name(onnx_type) if onnx_type in onnx.TensorProto.DataType.values() \
            else str(onnx_type)
        raise unsupported(f"element type {name} has no torch dtype here") from None


def is_float(t: torch.Tensor) -> bool:
    return t.dtype.is_floating_point
