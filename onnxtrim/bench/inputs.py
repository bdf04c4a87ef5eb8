"""Benchmark inputs: read a model's input signature, check models agree, build feeds per batch.

Timing a trimmed model against its original is only fair when both see the very same arrays,
so feeds are built once per batch size from the first model's signature and handed to every
model. That is why all models must share input names, dtypes and fixed dimensions.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from ..errors import ConfigError

log = logging.getLogger(__name__)

#: Seed of the generator behind synthesised inputs, fixed so that repeated runs time the same data.
SEED = 0

Dim = int | str | None  # fixed size, symbolic name, or unnamed dynamic dimension


@dataclass(frozen=True)
class InputSpec:
    """One graph input as the benchmark needs it.

    `dims` is None when the model does not declare the input's rank at all.
    """

    name: str
    dtype: np.dtype
    dims: tuple[Dim, ...] | None

    @property
    def batched(self) -> bool:
        """The first axis is dynamic, so the benchmark chooses its size (the batch size)."""
        return bool(self.dims) and not isinstance(self.dims[0], int)

    def describe(self) -> str:
        shape = (
            "?"
            if self.dims is None
            else "[" + ", ".join("?" if d is None else str(d) for d in self.dims) + "]"
        )
        return f"{self.name}: {self.dtype} {shape}"


def _dim(d: onnx.TensorShapeProto.Dimension) -> Dim:
    if d.HasField("dim_value"):
        return int(d.dim_value)
    if d.HasField("dim_param") and d.dim_param:
        return d.dim_param
    return None


def input_specs(model: onnx.ModelProto) -> tuple[InputSpec, ...]:
    """The inputs a caller must feed: graph inputs that are not also initializers.

    Older exporters list every initializer as a graph input too; those have defaults and
    feeding them would replace the weights, so they are left out.
    """
    initializers = {init.name for init in model.graph.initializer}
    specs = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        if value.type.WhichOneof("value") != "tensor_type":
            raise ConfigError(f"input {value.name!r} is not a tensor; only tensor inputs can be benchmarked")
        tensor = value.type.tensor_type
        try:
            dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"input {value.name!r} has an unsupported element type {tensor.elem_type}"
            ) from exc
        dims = tuple(_dim(d) for d in tensor.shape.dim) if tensor.HasField("shape") else None
        specs.append(InputSpec(value.name, dtype, dims))
    return tuple(specs)


def _compatible(first: InputSpec, other: InputSpec) -> bool:
    """Same dtype and rank; fixed sizes equal; dynamic where the first is dynamic.

    Symbolic names may differ (exporters rename them freely): the feeds are sized from the
    first model's names and fit any model whose dimension is also dynamic.
    """
    if first.dtype != other.dtype or (first.dims is None) != (other.dims is None):
        return False
    if first.dims is None or other.dims is None:
        return True
    if len(first.dims) != len(other.dims):
        return False
    return all(
        isinstance(a, int) == isinstance(b, int) and (not isinstance(a, int) or a == b)
        for a, b in zip(first.dims, other.dims, strict=True)
    )


def check_same_inputs(specs: Sequence[tuple[InputSpec, ...]], names: Sequence[str]) -> None:
    """Raise ConfigError naming the first model and input that differs from the first model's."""
    first = {s.name: s for s in specs[0]}
    for model_specs, name in zip(specs[1:], names[1:], strict=True):
        other = {s.name: s for s in model_specs}
        if set(other) != set(first):
            raise ConfigError(
                f"model {name!r} has inputs {sorted(other)} but {names[0]!r} has {sorted(first)}; "
                "benchmarked models must share their inputs (a trimmed model keeps the original's)"
            )
        for key, spec in first.items():
            if not _compatible(spec, other[key]):
                raise ConfigError(
                    f"input {key!r} differs: {names[0]!r} has {spec.describe()}, "
                    f"{name!r} has {other[key].describe()}"
                )


def effective_batch(specs: Sequence[InputSpec], requested: int) -> int:
    """The batch size really run: the requested one, unless the model fixes its batch.

    A model whose inputs all have a fixed first dimension cannot run at another batch size;
    rather than time something other than what was asked, refuse with the size that works.
    """
    if any(s.batched for s in specs):
        return requested
    fixed = next((s.dims[0] for s in specs if s.dims), 1)
    if fixed != requested:
        raise ConfigError(
            f"the model's inputs have a fixed batch dimension of {fixed}; "
            f"batch size {requested} cannot be run (use batch size {fixed})"
        )
    return requested


def _shape(spec: InputSpec, batch: int, dynamic_dims: Mapping[str, int]) -> tuple[int, ...]:
    if spec.dims is None:
        raise ConfigError(f"input {spec.name!r} has no declared shape; give input data instead")
    shape = []
    for axis, d in enumerate(spec.dims):
        if isinstance(d, int):
            shape.append(d)
        elif axis == 0:
            shape.append(batch)
        elif d is not None and d in dynamic_dims:
            shape.append(int(dynamic_dims[d]))
        elif d is not None:
            raise ConfigError(
                f"input {spec.name!r} axis {axis} has the symbolic dimension {d!r}; "
                f"give its size (--dim {d}=VALUE)"
            )
        else:
            raise ConfigError(
                f"input {spec.name!r} axis {axis} is dynamic and unnamed; its size cannot be chosen "
                "by --dim, give input data instead"
            )
    return tuple(shape)


def _random(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype, name: str) -> np.ndarray:
    """Values valid for most inputs of the dtype: normal floats; 0/1 integers, which are safe
    indices into any embedding table and valid masks."""
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    if dtype.kind in "iu":
        return rng.integers(0, 2, size=shape).astype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    raise ConfigError(
        f"input {name!r} has dtype {dtype}, for which no data can be synthesised; give input data"
    )


def synthesize_feeds(
    specs: Sequence[InputSpec], batch: int, dynamic_dims: Mapping[str, int], seed: int = SEED
) -> dict[str, np.ndarray]:
    """Random inputs of the declared dtypes; the first dynamic axis is the batch axis."""
    rng = np.random.default_rng(seed)
    return {s.name: _random(rng, _shape(s, batch, dynamic_dims), s.dtype, s.name) for s in specs}


def _fit_one(spec: InputSpec, array: np.ndarray, batch: int) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype != spec.dtype:
        if not np.can_cast(array.dtype, spec.dtype, casting="same_kind"):
            raise ConfigError(f"input {spec.name!r} expects {spec.dtype}, the data given is {array.dtype}")
        log.debug("casting input %r from %s to %s", spec.name, array.dtype, spec.dtype)
        array = array.astype(spec.dtype)
    if spec.dims is not None:
        if array.ndim != len(spec.dims):
            raise ConfigError(
                f"input {spec.name!r} expects rank {len(spec.dims)}, the data given has "
                f"shape {list(array.shape)}"
            )
        for axis, (d, n) in enumerate(zip(spec.dims, array.shape, strict=True)):
            if isinstance(d, int) and d != n:
                raise ConfigError(f"input {spec.name!r} axis {axis} must be {d}, the data given has {n}")
    if spec.batched:
        if array.shape[0] == 0:
            raise ConfigError(f"the data given for input {spec.name!r} is empty along the batch axis")
        array = array[np.arange(batch) % array.shape[0]]  # slice, or tile when there is too little
    return np.ascontiguousarray(array)


def fit_feeds(
    specs: Sequence[InputSpec], feeds: Mapping[str, np.ndarray], batch: int
) -> dict[str, np.ndarray]:
    """Given arrays cut or tiled along axis 0 to `batch`, after checking names, dtypes and shapes."""
    wanted = {s.name for s in specs}
    if set(feeds) != wanted:
        raise ConfigError(f"the data given has inputs {sorted(feeds)}, the model expects {sorted(wanted)}")
    return {s.name: _fit_one(s, feeds[s.name], batch) for s in specs}
