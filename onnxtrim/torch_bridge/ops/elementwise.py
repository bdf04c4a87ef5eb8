"""Pointwise ops: arithmetic, comparisons, logic, casts and activations.

ONNX broadcasts like numpy, and so does torch, so binary ops map one to one. Where the two
disagree it is on integers: ONNX's integer Div truncates toward zero (torch's `/` returns floats),
Mod follows the divisor's sign unless `fmod=1`, and Pow keeps the base's type. Activations with
non-default coefficients use the ONNX formula rather than the torch function with fixed ones.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from .registry import op, scalar, torch_dtype, unsupported

T = torch.Tensor

# ----------------------------------------------------------------------------------------------------
# Arithmetic


@op("Add")
def add(a: T, b: T) -> T:
    return a + b


@op("Sub")
def sub(a: T, b: T) -> T:
    return a - b


@op("Mul")
def mul(a: T, b: T) -> T:
    return a * b


@op("Div")
def div(a: T, b: T) -> T:
    if a.dtype.is_floating_point:
        return a / b
    return torch.div(a, b, rounding_mode="trunc")


@op("Mod", 10)
def mod(a: T, b: T, *, fmod: int = 0) -> T:
    if fmod:
        return torch.fmod(a, b)
    if a.dtype.is_floating_point:
        raise unsupported("Mod with fmod=0 on floating-point inputs is invalid ONNX")
    return torch.remainder(a, b)


@op("Pow", 7, frozen_inputs=(1,))
def pow_(x: T, y: T) -> T:
    out = torch.pow(x, y)
    return out if out.dtype == x.dtype else out.to(x.dtype)


@op("Neg")
def neg(x: T) -> T:
    return -x


@op("Abs")
def abs_(x: T) -> T:
    return torch.abs(x)


@op("Reciprocal")
def reciprocal(x: T) -> T:
    return torch.reciprocal(x)


@op("Sum")
def sum_(*xs: T) -> T:
    out = xs[0]
    for x in xs[1:]:
        out = out + x
    return out


@op("Mean")
def mean(*xs: T) -> T:
    return sum_(*xs) / len(xs)


@op("Max")
def max_(*xs: T) -> T:
    out = xs[0]
    for x in xs[1:]:
        out = torch.maximum(out, x)
    return out


@op("Min")
def min_(*xs: T) -> T:
    out = xs[0]
    for x in xs[1:]:
        out = torch.minimum(out, x)
    return out


# no gradient flows through these (piecewise constant, or boolean): an initializer read only through them
# is a constant, not a weight
_NO_GRADIENT = frozenset({"Sign", "Floor", "Ceil", "Round", "IsNaN", "Not"})


def _unary(name: str, fn: Any) -> None:
    op(name, frozen_inputs=(0,) if name in _NO_GRADIENT else ())(lambda x: fn(x))


for _name, _fn in {
    "Sqrt": torch.sqrt, "Exp": torch.exp, "Log": torch.log, "Sign": torch.sign, "Floor": torch.floor,
    "Ceil": torch.ceil, "Round": torch.round, "Sin": torch.sin, "Cos": torch.cos, "Tan": torch.tan,
    "Asin": torch.asin, "Acos": torch.acos, "Atan": torch.atan, "Sinh": torch.sinh, "Cosh": torch.cosh,
    "Asinh": torch.asinh, "Acosh": torch.acosh, "Atanh": torch.atanh, "Erf": torch.erf, "Tanh": torch.tanh,
    "Sigmoid": torch.sigmoid, "Relu": torch.relu, "Softsign": F.softsign, "Mish": F.mish,
    "HardSwish": F.hardswish, "IsNaN": torch.isnan, "Not": torch.logical_not,
}.items():
    _unary(_name, _fn)


@op("IsInf", 10, frozen_inputs=(0,))
def is_inf(x: T, *, detect_negative: int = 1, detect_positive: int = 1) -> T:
    if detect_negative and detect_positive:
        return torch.isinf(x)
    if detect_positive:
        return torch.isposinf(x)
    if detect_negative:
        return torch.isneginf(x)
    return torch.zeros_like(x, dtype=torch.bool)


# ----------------------------------------------------------------------------------------------------
# Comparisons and logic


for _name, _fn in {
    "Equal": torch.eq, "Less": torch.lt, "Greater": torch.gt, "LessOrEqual": torch.le,
    "GreaterOrEqual": torch.ge, "And": torch.logical_and, "Or": torch.logical_or, "Xor": torch.logical_xor,
}.items():
    op(_name, frozen_inputs=(0, 1))(lambda a, b, _f=_fn: _f(a, b))


@op("Where", 9, frozen_inputs=(0,))
def where(cond: T, x: T, y: T) -> T:
    return torch.where(cond, x, y)


@op("Cast", 6)
def cast(x: T, *, to: int, saturate: int = 1, round_mode: str = "up") -> T:
    return x.to(torch_dtype(to))


@op("CastLike", 15)
def cast_like(x: T, like: T, *, saturate: int = 1, round_mode: str = "up") -> T:
    return x.to(like.dtype)


@op("Clip", 6)
def clip_attrs(x: T, *, min: float = -math.inf, max: float = math.inf) -> T:
    return torch.clamp(x, min, max)


@op("Clip", 11, shape_inputs=(1, 2), frozen_inputs=(1, 2))
def clip(x: T, low: Any = None, high: Any = None) -> T:
    low = low if isinstance(low, T) or low is None else scalar(low)
    high = high if isinstance(high, T) or high is None else scalar(high)
    if low is None and high is None:
        return x
    return torch.clamp(x, low, high)


# ----------------------------------------------------------------------------------------------------
# Activations with coefficients


@op("LeakyRelu", 6)
def leaky_relu(x: T, *, alpha: float = 0.01) -> T:
    return F.leaky_relu(x, alpha)


@op("PRelu", 9)
def prelu(x: T, slope: T) -> T:
    return torch.where(x < 0, x * slope, x)


@op("Elu", 6)
def elu(x: T, *, alpha: float = 1.0) -> T:
    return F.elu(x, alpha)


@op("Celu", 12)
def celu(x: T, *, alpha: float = 1.0) -> T:
    return F.celu(x, alpha)


_SELU_ALPHA, _SELU_GAMMA = 1.67326319217681884765625, 1.05070102214813232421875


@op("Selu", 6)
def selu(x: T, *, alpha: float = _SELU_ALPHA, gamma: float = _SELU_GAMMA) -> T:
    return gamma * torch.where(x > 0, x, alpha * torch.expm1(x))


@op("ThresholdedRelu", 10)
def thresholded_relu(x: T, *, alpha: float = 1.0) -> T:
    return torch.where(x > alpha, x, torch.zeros((), dtype=x.dtype, device=x.device))


@op("HardSigmoid", 6)
def hard_sigmoid(x: T, *, alpha: float = 0.2, beta: float = 0.5) -> T:
    return torch.clamp(x * alpha + beta, 0.0, 1.0)


@op("Softplus")
def softplus(x: T) -> T:
    # no linear cut-off (torch's default threshold=20 switches to x), so large inputs match ONNX's formula
    return torch.logaddexp(x, torch.zeros((), dtype=x.dtype, device=x.device))


@op("Gelu", 20)
def gelu(x: T, *, approximate: str = "none") -> T:
    if approximate not in ("none", "tanh"):
        raise unsupported(f"Gelu approximate={approximate!r}")
    return F.gelu(x, approximate=approximate)
