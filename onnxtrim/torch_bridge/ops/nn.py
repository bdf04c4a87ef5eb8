"""Layers with weights: convolutions, Gemm/MatMul, normalisations, softmax, dropout.

ONNX pads list every begin then every end (`[x1_begin, x2_begin, x1_end, x2_end]`); torch's
convolutions take one symmetric pad per axis, so asymmetric pads (and `auto_pad=SAME_*`, computed
from the input's shape at run time) become an explicit `F.pad` first. BatchNormalization is
always the inference form (running statistics): the statistics stay buffers, so fine-tuning
trains scale and bias, as after BN folding. Gemm maps to `F.linear` when B is transposed (what
every torch exporter writes) and to `addmm` otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from .registry import axis_index, op, scalar, unsupported

T = torch.Tensor

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def same_pads(size: Sequence[int], kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int],
              upper: bool) -> list[int]:
    """ONNX's SAME_UPPER/SAME_LOWER pads: output = ceil(input / stride); the odd pixel at the end (UPPER)."""
    begins, ends = [], []
    for n, k, s, d in zip(size, kernel, strides, dilations):
        total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
        small = total // 2
        begins.append(small if upper else total - small)
        ends.append(total - small if upper else small)
    return begins + ends


def spatial_pads(x: T, kernel: Sequence[int], auto_pad: str, pads: Sequence[int] | None,
                 strides: Sequence[int], dilations: Sequence[int]) -> list[int]:
    rank = len(kernel)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        return same_pads(x.shape[2:], kernel, strides, dilations, auto_pad == "SAME_UPPER")
    if auto_pad == "VALID":
        return [0] * (2 * rank)
    if auto_pad != "NOTSET":
        raise unsupported(f"auto_pad={auto_pad!r}")
    return list(pads) if pads else [0] * (2 * rank)


def padded(x: T, pads: Sequence[int], value: float = 0.0) -> T:
    """`x` with ONNX-ordered spatial `pads` applied (torch's F.pad lists the last axis first)."""
    rank = len(pads) // 2
    torch_pads: list[int] = []
    for b, e in zip(reversed(pads[:rank]), reversed(pads[rank:])):
        torch_pads += [b, e]
    return F.pad(x, torch_pads, value=value) if any(torch_pads) else x


def symmetric_or_padded(x: T, pads: Sequence[int], value: float = 0.0) -> tuple[T, tuple[int, ...]]:
    """(input, torch padding): symmetric pads go to the op; others are applied here with `value`."""
    rank = len(pads) // 2
    if list(pads[:rank]) == list(pads[rank:]):
        return x, tuple(pads[:rank])
    return padded(x, pads, value), (0,) * rank


@op("Conv")
def conv(x: T, w: T, b: T | None = None, *, auto_pad: str = "NOTSET", dilations: Sequence[int] | None = None,
         group: int = 1, kernel_shape: Sequence[int] | None = None, pads: Sequence[int] | None = None,
         strides: Sequence[int] | None = None) -> T:
    rank = w.dim() - 2
    if rank not in _CONV:
        raise unsupported(f"Conv over {rank} spatial axes")
    kernel = tuple(w.shape[2:])
    strides = tuple(strides) if strides else (1,) * rank
    dilations = tuple(dilations) if dilations else (1,) * rank
    x, padding = symmetric_or_padded(x, spatial_pads(x, kernel, auto_pad, pads, strides, dilations))
    return _CONV[rank](x, w, b, strides, padding, dilations, group)


@op("ConvTranspose")
def conv_transpose(x: T, w: T, b: T | None = None, *, auto_pad: str = "NOTSET",
                   dilations: Sequence[int] | None = None, group: int = 1,
                   kernel_shape: Sequence[int] | None = None, output_padding: Sequence[int] | None = None,
                   output_shape: Sequence[int] | None = None, pads: Sequence[int] | None = None,
                   strides: Sequence[int] | None = None) -> T:
    rank = w.dim() - 2
    if rank not in _CONV_T:
        raise unsupported(f"ConvTranspose over {rank} spatial axes")
    if output_shape is not None or auto_pad != "NOTSET":
        raise unsupported("ConvTranspose with output_shape or auto_pad")
    strides = tuple(strides) if strides else (1,) * rank
    dilations = tuple(dilations) if dilations else (1,) * rank
    pads = list(pads) if pads else [0] * (2 * rank)
    if pads[:rank] != pads[rank:]:
        raise unsupported(f"ConvTranspose with asymmetric pads {pads}")
    extra = tuple(output_padding) if output_padding else (0,) * rank
    return _CONV_T[rank](x, w, b, strides, tuple(pads[:rank]), extra, group, dilations)


@op("Gemm")
def gemm(a: T, b: T, c: T | None = None, *, alpha: float = 1.0, beta: float = 1.0, transA: int = 0,
         transB: int = 0) -> T:
    if transA:
        a = a.t()
    if transB and alpha == 1.0 and beta == 1.0 and (c is None or c.dim() <= 1 or c.shape[0] == 1):
        return F.linear(a, b, None if c is None else c.reshape(-1) if c.dim() == 2 else c)
    b = b.t() if transB else b
    if c is None:
        return a @ b if alpha == 1.0 else alpha * (a @ b)
    return torch.addmm(c, a, b, beta=beta, alpha=alpha)


@op("MatMul")
def matmul(a: T, b: T) -> T:
    return torch.matmul(a, b)


@op("BatchNormalization", 9, frozen_inputs=(3, 4))
def batch_norm(x: T, scale: T, bias: T, mean: T, var: T, *, epsilon: float = 1e-5, momentum: float = 0.9,
               training_mode: int = 0, spatial: int = 1) -> T:
    if training_mode:
        raise unsupported("BatchNormalization with training_mode=1 (batch statistics)")
    # detached: an exporter may share one zero tensor between a bias (a weight) and a running mean
    return F.batch_norm(x, mean.detach(), var.detach(), scale, bias, False, 0.0, epsilon)


@op("InstanceNormalization", 6)
def instance_norm(x: T, scale: T, bias: T, *, epsilon: float = 1e-5) -> T:
    return F.instance_norm(x, weight=scale, bias=bias, eps=epsilon)


@op("LayerNormalization", 17, wants_outputs=True)
def layer_norm(x: T, scale: T, bias: T | None = None, *, axis: int = -1, epsilon: float = 1e-5,
               stash_type: int = 1, n_outputs: int = 1) -> T | tuple[T, ...]:
    start = axis_index(axis, x.dim())
    normalized = tuple(x.shape[start:])
    if n_outputs == 1 and tuple(scale.shape) == normalized and (bias is None or bias.shape == scale.shape):
        return F.layer_norm(x, normalized, scale, bias, epsilon)
    dims = tuple(range(start, x.dim()))
    work = x.float() if stash_type == 1 and x.dtype in (torch.float16, torch.bfloat16) else x
    mu = work.mean(dim=dims, keepdim=True)
    inv_std = torch.rsqrt((work - mu).pow(2).mean(dim=dims, keepdim=True) + epsilon)
    y = ((work - mu) * inv_std).to(x.dtype) * scale
    if bias is not None:
        y = y + bias
    return (y, mu, inv_std)[:n_outputs] if n_outputs > 1 else y


def _coerced_2d(fn: Any) -> Any:
    """Softmax-family before opset 13: flatten to 2-D at `axis` (default 1), apply on the last axis."""

    def handler(x: T, *, axis: int = 1) -> T:
        start = axis_index(axis, x.dim())
        flat = x.reshape(math.prod(x.shape[:start]), -1)
        return fn(flat, -1).reshape(x.shape)

    return handler


def _hardmax(x: T, axis: int) -> T:
    return F.one_hot(x.argmax(dim=axis), x.shape[axis]).movedim(-1, axis).to(x.dtype)


for _name, _fn in {"Softmax": torch.softmax, "LogSoftmax": torch.log_softmax, "Hardmax": _hardmax}.items():
    op(_name, 1)(_coerced_2d(_fn))
    op(_name, 13)(lambda x, *, axis=-1, _f=_fn: _f(x, axis))


def _dropout(x: T, n_outputs: int, mask: T | None = None) -> T | tuple[T, T]:
    if n_outputs > 1:
        return x, torch.ones_like(x, dtype=torch.bool) if mask is None else mask
    return x


@op("Dropout", 7, wants_outputs=True)
def dropout7(x: T, *, ratio: float = 0.5, n_outputs: int = 1) -> T | tuple[T, T]:
    # before opset 12 the spec leaves the inference mask open; these are onnxruntime's (float zeros here,
    # boolean False from 10)
    return _dropout(x, n_outputs, torch.zeros_like(x) if n_outputs > 1 else None)


@op("Dropout", 10, wants_outputs=True)
def dropout10(x: T, *, ratio: float = 0.5, n_outputs: int = 1) -> T | tuple[T, T]:
    return _dropout(x, n_outputs, torch.zeros_like(x, dtype=torch.bool) if n_outputs > 1 else None)


@op("Dropout", 12, shape_inputs=(1, 2), frozen_inputs=(1,), wants_outputs=True)
def dropout(x: T, ratio: Any = None, training_mode: Any = None, *, seed: int = 0,
            n_outputs: int = 1) -> T | tuple[T, T]:
    if training_mode is not None and bool(scalar(training_mode)):
        raise unsupported("Dropout with training_mode=True (random masks cannot match onnxruntime)")
    return _dropout(x, n_outputs)


@op("Flatten")
def flatten(x: T, *, axis: int = 1) -> T:
    start = axis_index(axis, x.dim())
    if start == 0:
        return x.reshape(1, -1)
    if start == x.dim():
        return x.reshape(-1, 1)
    return x.flatten(start).flatten(0, start - 1)
