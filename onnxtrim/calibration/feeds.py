"""What a feed is: model input specs, the Batch and DataSource types, and the check that makes one
chunk of user data fit the inputs.

Every source (directory, file, Python reader) funnels its raw dicts through :func:`conform`, so the rules
live in one place and every refusal is a one-line :class:`CalibrationError` naming the origin (file or
reader batch) and the input. The rules are strict where a silent fix would corrupt the statistics (a float
fed to an int input, uint8 images fed to a float model, NaN) and lenient where the intent is unambiguous
(float64 data for a float32 input, one sample without its batch axis).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import onnx
from onnx import helper

from ..errors import CalibrationError

log = logging.getLogger(__name__)

#: NaN/Inf checks walk the data in blocks of about this many bytes, so a memory-mapped file is never
#: materialised as a whole boolean mask.
_FINITE_BLOCK_BYTES = 16 * 2**20


@dataclass(frozen=True)
class InputSpec:
    """What one graph input accepts: name, numpy dtype and dims (int static, str symbolic, None unknown)."""

    name: str
    dtype: np.dtype
    shape: tuple[int | str | None, ...]

    @classmethod
    def from_value_info(cls, vi: onnx.ValueInfoProto) -> InputSpec:
        """Read a graph input; refuses what calibration data cannot feed (non-tensors, unknown rank)."""
        kind = vi.type.WhichOneof("value")
        if kind != "tensor_type":
            raise CalibrationError(f"model input '{vi.name}' is a {kind or 'value of no type'}, not a tensor")
        tensor_type = vi.type.tensor_type
        try:
            dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
        except Exception as exc:
            raise CalibrationError(
                f"model input '{vi.name}' has unsupported element type {tensor_type.elem_type}"
            ) from exc
        if not tensor_type.HasField("shape"):
            raise CalibrationError(
                f"model input '{vi.name}' has no shape (unknown rank): cannot tell samples from batches"
            )
        dims: list[int | str | None] = []
        for dim in tensor_type.shape.dim:
            if dim.HasField("dim_value"):
                dims.append(int(dim.dim_value))
            else:
                dims.append(dim.dim_param or None)
        return cls(vi.name, dtype, tuple(dims))

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def static_batch(self) -> int | None:
        """The leading dim when it is a fixed number, else None (dynamic or symbolic)."""
        first = self.shape[0] if self.shape else None
        return first if isinstance(first, int) else None

    def describe_shape(self) -> str:
        return "[" + ", ".join("?" if d is None else str(d) for d in self.shape) + "]"


@dataclass
class Batch:
    """Feeds for every model input (leading batch axis), where they came from, and their sample indices."""

    feeds: dict[str, np.ndarray]
    origin: str  # for messages: "calib/x_003.npy", "reader batch 4", "calib/a.npy..calib/b.npy"
    indices: np.ndarray  # global sample indices (int64) of the rows, in stream order


@runtime_checkable
class DataSource(Protocol):
    """Anything that can make repeated, identical passes over calibration chunks."""

    description: str

    def batches(self) -> Iterator[Batch]: ...


def model_input_specs(model: onnx.ModelProto) -> list[InputSpec]:
    """Graph inputs that are not initializers (overridable constants are not fed), in graph order."""
    initializers = {init.name for init in model.graph.initializer}
    initializers |= {init.values.name for init in model.graph.sparse_initializer}
    return [InputSpec.from_value_info(vi) for vi in model.graph.input if vi.name not in initializers]


def check_inputs(inputs: Sequence[InputSpec]) -> None:
    """Refuse input lists no batch can be built for: none, duplicates, or scalars without a batch axis."""
    if not inputs:
        raise CalibrationError("the model has no inputs to feed calibration data to")
    names = [spec.name for spec in inputs]
    if len(set(names)) != len(names):
        raise CalibrationError(f"model inputs have duplicate names: {', '.join(names)}")
    for spec in inputs:
        if spec.rank == 0:
            raise CalibrationError(f"model input '{spec.name}' is a scalar (rank 0): it has no batch axis")


def _family(dtype: np.dtype) -> str:
    """Groups within which a cast keeps the meaning of the data."""
    kind = dtype.kind
    if kind in "iu":
        return "integer"
    families = {"b": "bool", "f": "float", "c": "complex", "U": "string", "S": "string", "O": "object"}
    return families.get(kind, dtype.name)  # ml_dtypes (bfloat16, float8...) only match themselves


def _coerce_dtype(arr: np.ndarray, spec: InputSpec, origin: str) -> np.ndarray:
    """Cast within a family (float64 → float32, int32 → int64); refuse across families or out of range."""
    src, dst = arr.dtype, spec.dtype
    if src == dst:
        return arr
    src_family, dst_family = _family(src), _family(dst)
    if dst_family == "object" and src_family in ("string", "object"):
        return _as_strings(arr, spec, origin)
    if src_family != dst_family:
        hint = "; scale and cast images yourself" if src_family == "integer" and dst_family == "float" else ""
        raise CalibrationError(
            f"{origin}: input '{spec.name}' expects {dst} but the data is {src} "
            f"({src_family} to {dst_family} is not cast implicitly{hint})"
        )
    if src_family == "integer" and not np.can_cast(src, dst, casting="safe") and arr.size:
        info = np.iinfo(dst)
        low, high = int(arr.min()), int(arr.max())
        if low < info.min or high > info.max:
            raise CalibrationError(
                f"{origin}: input '{spec.name}' expects {dst} but the {src} data spans {low}..{high}"
            )
    log.debug("%s: casting input '%s' from %s to %s", origin, spec.name, src, dst)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow to Inf is reported by _check_finite
        return arr.astype(dst)


def _as_strings(arr: np.ndarray, spec: InputSpec, origin: str) -> np.ndarray:
    """String inputs take str objects; numpy 'U'/'S' arrays are decoded, object arrays must hold str."""
    if arr.dtype.kind == "S":
        arr = np.char.decode(arr, "utf-8")
    out = arr.astype(object)
    if not all(isinstance(item, str) for item in out.flat):
        raise CalibrationError(
            f"{origin}: input '{spec.name}' expects strings but the data holds other objects"
        )
    return out


def _check_finite(arr: np.ndarray, spec: InputSpec, origin: str, cast_from: np.dtype | None) -> None:
    """NaN/Inf would turn every statistic downstream into NaN without a word: refuse them here."""
    if _family(arr.dtype) not in ("float", "complex") and "float" not in arr.dtype.name:
        return
    rows = arr.shape[0]
    row_bytes = max(1, arr.dtype.itemsize * (arr.size // max(rows, 1)))
    step = max(1, _FINITE_BLOCK_BYTES // row_bytes)
    for start in range(0, rows, step):
        block = np.asarray(arr[start : start + step])
        finite = np.isfinite(block).reshape(block.shape[0], -1).all(axis=1)
        if not finite.all():
            row = start + int(np.argmin(finite))
            after = f" after casting from {cast_from}" if cast_from is not None else ""
            raise CalibrationError(f"{origin}: input '{spec.name}' contains NaN or Inf{after} (sample {row})")


def _check_dims(arr: np.ndarray, spec: InputSpec, origin: str) -> None:
    """Static non-batch dims must match; the batch axis is re-chunked later, so any row count fits."""
    for axis in range(1, spec.rank):
        want = spec.shape[axis]
        if isinstance(want, int) and arr.shape[axis] != want:
            raise CalibrationError(
                f"{origin}: input '{spec.name}' has shape {list(arr.shape)} but the model expects "
                f"{spec.describe_shape()} (axis {axis}: {arr.shape[axis]} != {want})"
            )


def _check_symbolic(feeds: Mapping[str, np.ndarray], inputs: Sequence[InputSpec], origin: str) -> None:
    """The same symbolic dim (e.g. 'seq' on input_ids and attention_mask) must have one size per chunk."""
    seen: dict[str, tuple[int, str]] = {}
    for spec in inputs:
        for axis in range(1, spec.rank):
            dim = spec.shape[axis]
            if not isinstance(dim, str):
                continue
            size = feeds[spec.name].shape[axis]
            if dim in seen and seen[dim][0] != size:
                size0, where = seen[dim]
                raise CalibrationError(
                    f"{origin}: dim '{dim}' is {size0} in {where} "
                    f"but {size} in input '{spec.name}' axis {axis}"
                )
            seen.setdefault(dim, (size, f"input '{spec.name}' axis {axis}"))


def _to_array(value: Any, spec: InputSpec, origin: str) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    try:
        return np.asarray(value)
    except Exception as exc:
        raise CalibrationError(
            f"{origin}: input '{spec.name}' is not array-like ({type(value).__name__})"
        ) from exc


def conform(feeds: Any, inputs: Sequence[InputSpec], origin: str) -> tuple[dict[str, np.ndarray], int]:
    """Check one chunk against the model inputs and return (feeds with a batch axis and model dtypes, rows).

    An array whose rank equals the input's is a batch; one rank lower is a single sample and gets a
    batch axis. Arrays whose dtype already matches are returned as they are (memory maps stay mapped).
    """
    if not isinstance(feeds, Mapping):
        raise CalibrationError(
            f"{origin}: expected a dict of input name to array, got {type(feeds).__name__}"
        )
    names = [spec.name for spec in inputs]
    missing = [name for name in names if name not in feeds]
    extra = sorted(str(key) for key in feeds if key not in set(names))
    if missing or extra:
        problems = [
            f"missing input {', '.join(map(repr, missing))}" if missing else "",
            f"unknown input {', '.join(map(repr, extra))}" if extra else "",
        ]
        raise CalibrationError(
            f"{origin}: {'; '.join(p for p in problems if p)} (model inputs: {', '.join(names)})"
        )
    out: dict[str, np.ndarray] = {}
    for spec in inputs:
        arr = _to_array(feeds[spec.name], spec, origin)
        if arr.ndim == spec.rank - 1:
            arr = arr[np.newaxis]
        elif arr.ndim != spec.rank:
            raise CalibrationError(
                f"{origin}: input '{spec.name}' has rank {arr.ndim} but the model expects rank {spec.rank} "
                f"(a batch {spec.describe_shape()}) or {spec.rank - 1} (one sample)"
            )
        _check_dims(arr, spec, origin)
        original = arr.dtype
        arr = _coerce_dtype(arr, spec, origin)
        _check_finite(arr, spec, origin, original if original != arr.dtype else None)
        out[spec.name] = arr
    rows = {name: arr.shape[0] for name, arr in out.items()}
    if len(set(rows.values())) > 1:
        detail = ", ".join(f"'{name}' has {count}" for name, count in rows.items())
        raise CalibrationError(f"{origin}: inputs disagree on the number of samples: {detail}")
    _check_symbolic(out, inputs, origin)
    return out, rows[names[0]]
