"""The bridge's equivalence check: the torch module against onnxruntime on the same feeds.

onnxruntime runs with graph optimisations disabled (fused kernels would move the reference by
their own rounding). Floats must agree elementwise within `atol + rtol·|reference|` (numpy's
`allclose`); integer and boolean outputs (labels, argmax) must be equal. A ZipMap output (a
sequence of maps in onnxruntime) is compared as the probability tensor the module returns.
The relative difference reported is the largest |Δ| over the output's largest |reference| value,
which stays meaningful where single reference values are near zero.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import torch

from .. import runtime
from ..errors import BridgeError
from .module import OnnxModule, to_torch


@dataclass(frozen=True)
class OutputAgreement:
    name: str
    max_abs: float
    max_rel: float  # max |Δ| / max |reference|


@dataclass(frozen=True)
class Agreement:
    """How closely the module matched onnxruntime, per output and overall (for the report)."""

    outputs: tuple[OutputAgreement, ...]

    @property
    def max_abs(self) -> float:
        return max((o.max_abs for o in self.outputs), default=0.0)

    @property
    def max_rel(self) -> float:
        return max((o.max_rel for o in self.outputs), default=0.0)


def onnxruntime_outputs(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray],
                        providers: Sequence[str] = ("cpu",)) -> list[np.ndarray]:
    """Every graph output as an array, ZipMap maps turned into their probability columns."""
    session = runtime.make_session(model, providers, optimize=False)
    values = runtime.run(session, None, dict(feeds))
    return [_as_array(model, out.name, v) for out, v in zip(model.graph.output, values)]


def _as_array(model: onnx.ModelProto, name: str, value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, list) and (not value or isinstance(value[0], dict)):
        labels = _zipmap_labels(model, name)
        return np.array([[row[k] for k in (labels or list(row))] for row in value], dtype=np.float32)
    return np.asarray(value)


def _zipmap_labels(model: onnx.ModelProto, name: str) -> list[Any] | None:
    for node in model.graph.node:
        if node.op_type == "ZipMap" and name in node.output:
            for attr in node.attribute:
                values = onnx.helper.get_attribute_value(attr)
                return [v.decode() if isinstance(v, bytes) else v for v in values]
    return None


def module_outputs(module: OnnxModule, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    with torch.no_grad():
        outs = module(dict(feeds))
    return [o.detach().cpu().numpy() if isinstance(o, torch.Tensor) else np.asarray(o) for o in outs]


def compare(names: Sequence[str], got: Sequence[np.ndarray], expected: Sequence[np.ndarray], *,
            rtol: float, atol: float, what: str = "onnxruntime") -> Agreement:
    """Agreement of `got` with `expected`, output by output; BridgeError naming the first that differs."""
    rows = []
    for name, a, b in zip(names, got, expected):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            raise BridgeError(f"output '{name}' has shape {list(a.shape)} in torch, {list(b.shape)} in {what}")
        if b.dtype.kind not in "fc":
            bad = int(np.count_nonzero(a != b))
            if bad:
                raise BridgeError(f"output '{name}' differs from {what} in {bad} of {b.size} values "
                                  f"({b.dtype}, compared exactly)")
            rows.append(OutputAgreement(name, 0.0, 0.0))
            continue
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        diff = np.where(np.isnan(a64) & np.isnan(b64), 0.0, np.abs(a64 - b64))
        diff = np.nan_to_num(diff, nan=np.inf)
        max_abs = float(diff.max()) if diff.size else 0.0
        scale = float(np.abs(np.nan_to_num(b64)).max()) if b.size else 0.0
        max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
        if diff.size and np.any(diff > atol + rtol * np.abs(b64)):
            worst = np.unravel_index(int(np.argmax(diff - rtol * np.abs(b64))), diff.shape)
            raise BridgeError(
                f"output '{name}' differs from {what}: max |Δ| {max_abs:.3g} (relative {max_rel:.3g}); at "
                f"index {list(map(int, worst))} torch {a64[worst]:.6g} vs {b64[worst]:.6g}, beyond "
                f"rtol {rtol:g} / atol {atol:g}")
        rows.append(OutputAgreement(name, max_abs, max_rel))
    return Agreement(tuple(rows))


def check_against_onnxruntime(model: onnx.ModelProto, module: OnnxModule, feeds: Mapping[str, np.ndarray], *,
                              rtol: float = 1e-4, atol: float = 1e-5) -> Agreement:
    """Run both on `feeds`; return the measured differences, or raise BridgeError on a mismatch."""
    expected = onnxruntime_outputs(model, feeds)
    return compare(module.output_names, module_outputs(module, feeds), expected, rtol=rtol, atol=atol)


def bridge(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], *, rtol: float = 1e-4, atol: float = 1e-5,
           trainable: Any = None) -> tuple[OnnxModule, Agreement]:
    """`to_torch` and the check in one call: the module, and how closely it matched onnxruntime."""
    module = to_torch(model, trainable=trainable)
    return module, check_against_onnxruntime(model, module, feeds, rtol=rtol, atol=atol)
