"""Benchmark inputs: read a model's input signature, check models agree, build feeds per batch.

Timing a trimmed model against its original is only fair when both see the very same arrays,
so feeds are built once per batch size from the first model's signature and handed to every
model. That is why all models must share input names, dtypes and fixed dimensions.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np

from ..calibration.feeds import InputSpec
from ..errors import ConfigError

log = logging.getLogger(__name__)

#: Seed of the generator behind synthesised inputs, fixed so that repeated runs time the same data.
SEED = 0

def _compatible(first: InputSpec, other: InputSpec) -> bool:
    """Same dtype and rank; fixed sizes equal; dynamic where the first is dynamic.

    Symbolic names may differ (exporters rename them freely): the feeds are sized from the
    first model's names and fit any model whose dimension is also dynamic.
    """
    if first.dtype != other.dtype:
        return False
    if len(first.shape) != len(other.shape):
        return False
    return all(
        isinstance(a, int) == isinstance(b, int) and (not isinstance(a, int) or a == b)
        for a, b in zip(first.shape, other.shape, strict=True)
    )


def _batched(spec: InputSpec) -> bool:
    """The first axis is dynamic, so the benchmark chooses its size (the batch size)."""
    return bool(spec.shape) and spec.static_batch is None


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
                    f"input {key!r} differs: {names[0]!r} has {spec.name}: {spec.dtype} {spec.describe_shape()}, "
                    f"{name!r} has {other[key].dtype} {other[key].describe_shape()}"
                )


def effective_batch(specs: Sequence[InputSpec], requested: int) -> int:
    """The batch size really run: the requested one, unless the model fixes its batch.

    A model whose inputs all have a fixed first dimension cannot run at another batch size;
    rather than time something other than what was asked, refuse with the size that works.
    """
    if any(_batched(s) for s in specs):
        return requested
    fixed = next((s.shape[0] for s in specs if s.shape), 1)
    if fixed != requested:
        raise ConfigError(
            f"the model's inputs have a fixed batch dimension of {fixed}; "
            f"batch size {requested} cannot be run (use batch size {fixed})"
        )
    return requested


def _shape(spec: InputSpec, batch: int, dynamic_dims: Mapping[str, int]) -> tuple[int, ...]:
    shape = []
    for axis, d in enumerate(spec.shape):
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
    if array.ndim != len(spec.shape):
        raise ConfigError(
            f"input {spec.name!r} expects rank {len(spec.shape)}, the data given has shape {list(array.shape)}"
        )
    for axis, (d, n) in enumerate(zip(spec.shape, array.shape, strict=True)):
        if isinstance(d, int) and d != n:
            raise ConfigError(f"input {spec.name!r} axis {axis} must be {d}, the data given has {n}")
    if _batched(spec):
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
