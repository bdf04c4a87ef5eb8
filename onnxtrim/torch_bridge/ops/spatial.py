"""Pooling, Pad, Resize and Upsample.

torch's pooling takes symmetric pads of at most half the kernel; other pads are applied first
(with -inf for MaxPool, and as a ratio of two sums for AveragePool without `count_include_pad`).
Resize is written per axis (coordinate transform → index_select and weights, the ONNX spec's
formulas) rather than through `F.interpolate`, whose modes cover only some of ONNX's coordinate
transforms and rounding rules; every combination is then exact, and gradients flow to the input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from .nn import padded, spatial_pads
from .registry import axis_index, ints, op, scalar, unsupported

T = torch.Tensor
_MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def _pool_setup(x: T, kernel: Sequence[int], auto_pad: str, pads: Sequence[int] | None,
                strides: Sequence[int] | None,
                dilations: Sequence[int] | None) -> tuple[int, tuple[int, ...], tuple[int, ...], list[int], bool]:
    rank = len(kernel)
    if rank not in _MAX:
        raise unsupported(f"pooling over {rank} spatial axes")
    step = tuple(strides) if strides else (1,) * rank
    dilation = tuple(dilations) if dilations else (1,) * rank
    full = spatial_pads(x, kernel, auto_pad, pads, step, dilation)
    fits = full[:rank] == full[rank:] and all(2 * p <= k for p, k in zip(full[:rank], kernel))
    return rank, step, dilation, full, fits


@op("MaxPool", 1, wants_outputs=True)
def max_pool(x: T, *, auto_pad: str = "NOTSET", ceil_mode: int = 0, dilations: Sequence[int] | None = None,
             kernel_shape: Sequence[int], pads: Sequence[int] | None = None, storage_order: int = 0,
             strides: Sequence[int] | None = None, n_outputs: int = 1) -> T:
    if n_outputs > 1:
        raise unsupported("MaxPool's Indices output")
    rank, step, dilation, full, fits = _pool_setup(x, kernel_shape, auto_pad, pads, strides, dilations)
    if fits:
        padding = tuple(full[:rank])
    else:
        x, padding = padded(x, full, value=-math.inf), (0,) * rank
    return _MAX[rank](x, tuple(kernel_shape), step, padding, dilation, bool(ceil_mode))


@op("AveragePool", 1)
def average_pool(x: T, *, auto_pad: str = "NOTSET", ceil_mode: int = 0, count_include_pad: int = 0,
                 dilations: Sequence[int] | None = None, kernel_shape: Sequence[int],
                 pads: Sequence[int] | None = None, strides: Sequence[int] | None = None) -> T:
    rank, step, dilation, full, fits = _pool_setup(x, kernel_shape, auto_pad, pads, strides, dilations)
    if any(d != 1 for d in dilation):
        raise unsupported(f"AveragePool with dilations {list(dilation)}")
    kernel = tuple(kernel_shape)
    pool: Any = _AVG[rank]
    if fits:
        return pool(x, kernel, step, tuple(full[:rank]), bool(ceil_mode), bool(count_include_pad))
    summed = pool(padded(x, full), kernel, step, 0, bool(ceil_mode), True)
    if count_include_pad:
        return summed
    ones = padded(torch.ones_like(x[:1, :1]), full)
    return summed / pool(ones, kernel, step, 0, bool(ceil_mode), True)


@op("LpPool", 2)
def lp_pool(x: T, *, auto_pad: str = "NOTSET", ceil_mode: int = 0, dilations: Sequence[int] | None = None,
            kernel_shape: Sequence[int], p: int = 2, pads: Sequence[int] | None = None,
            strides: Sequence[int] | None = None) -> T:
    rank, step, dilation, full, _ = _pool_setup(x, kernel_shape, auto_pad, pads, strides, dilations)
    if any(d != 1 for d in dilation):
        raise unsupported(f"LpPool with dilations {list(dilation)}")
    powered = padded(x.abs().pow(p), full)
    pool: Any = _AVG[rank]
    summed = pool(powered, tuple(kernel_shape), step, 0, bool(ceil_mode), True) * math.prod(kernel_shape)
    return summed.pow(1.0 / p)


def _spatial(x: T) -> tuple[int, ...]:
    return tuple(range(2, x.dim()))


@op("GlobalAveragePool")
def global_average_pool(x: T) -> T:
    return x.mean(dim=_spatial(x), keepdim=True)


@op("GlobalMaxPool")
def global_max_pool(x: T) -> T:
    return x.amax(dim=_spatial(x), keepdim=True)


@op("GlobalLpPool", 2)
def global_lp_pool(x: T, *, p: int = 2) -> T:
    return x.abs().pow(p).sum(dim=_spatial(x), keepdim=True).pow(1.0 / p)


# ----------------------------------------------------------------------------------------------------
# Pad


def _pad(x: T, pads: Sequence[int], mode: str, value: float, axes: Sequence[int] | None = None) -> T:
    rank = x.dim()
    axes = list(range(rank)) if axes is None else [axis_index(a, rank) for a in axes]
    n = len(axes)
    if len(pads) != 2 * n:
        raise unsupported(f"Pad with {len(pads)} pads for {n} axes")
    begins, ends = [0] * rank, [0] * rank
    for i, a in enumerate(axes):
        begins[a], ends[a] = pads[i], pads[n + i]
    if mode == "constant":
        torch_pads: list[int] = []
        for b, e in zip(reversed(begins), reversed(ends)):
            torch_pads += [b, e]
        while torch_pads and torch_pads[-1] == 0 and torch_pads[-2] == 0:
            del torch_pads[-2:]
        return F.pad(x, torch_pads, value=value) if torch_pads else x
    if mode not in ("reflect", "edge", "wrap"):
        raise unsupported(f"Pad mode={mode!r}")
    for a, (b, e) in enumerate(zip(begins, ends)):
        if b or e:
            d = x.shape[a]
            index = [_source(i, d, mode) for i in range(-b, d + e)]
            x = x.index_select(a, torch.tensor(index, dtype=torch.int64, device=x.device))
    return x


def _source(i: int, d: int, mode: str) -> int:
    if mode == "edge":
        return min(max(i, 0), d - 1)
    if mode == "wrap":
        return i % d
    if d == 1:
        return 0
    period = 2 * (d - 1)
    i %= period
    return i if i < d else period - i


@op("Pad", 2)
def pad_attr(x: T, *, pads: Sequence[int], mode: str = "constant", value: float = 0.0) -> T:
    return _pad(x, pads, mode, value)


@op("Pad", 11, shape_inputs=(1, 2, 3), frozen_inputs=(2,))
def pad(x: T, pads: Any, constant_value: Any = None, axes: Any = None, *, mode: str = "constant") -> T:
    value = 0.0 if constant_value is None else scalar(constant_value)
    return _pad(x, ints(pads), mode, value, None if axes is None else ints(axes))


# ----------------------------------------------------------------------------------------------------
# Resize and Upsample

_COORDINATE_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric")


def _source_coords(out_len: int, in_len: int, scale: float, mode: str, device: torch.device) -> T:
    x = torch.arange(out_len, dtype=torch.float32, device=device)
    if mode == "half_pixel":
        return (x + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        adjustment = out_len / (scale * in_len)
        offset = in_len / 2 * (1 - adjustment)
        return offset + (x + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (x + 0.5) / scale - 0.5 if out_len > 1 else torch.zeros_like(x)
    if mode == "align_corners":
        return x * ((in_len - 1) / (out_len - 1)) if out_len > 1 else torch.zeros_like(x)
    if mode == "asymmetric":
        return x / scale
    raise unsupported(f"Resize coordinate_transformation_mode={mode!r}")


def _nearest(coords: T, rule: str) -> T:
    if rule == "round_prefer_floor":
        return torch.ceil(coords - 0.5)
    if rule == "round_prefer_ceil":
        return torch.floor(coords + 0.5)
    if rule == "floor":
        return torch.floor(coords)
    if rule == "ceil":
        return torch.ceil(coords)
    raise unsupported(f"Resize nearest_mode={rule!r}")


def _cubic_weights(t: T, a: float) -> list[T]:
    def far(s: T) -> T:  # |s| in [1, 2)
        return ((a * s - 5 * a) * s + 8 * a) * s - 4 * a

    def near(s: T) -> T:  # |s| in [0, 1)
        return ((a + 2) * s - (a + 3)) * s * s + 1

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def _resize_axis(x: T, axis: int, out_len: int, scale: float, mode: str, coord: str, rule: str,
                 cubic_a: float, exclude_outside: int) -> T:
    in_len = x.shape[axis]
    coords = _source_coords(out_len, in_len, scale, coord, x.device)
    shape = [1] * x.dim()
    shape[axis] = out_len
    if mode == "nearest":
        index = _nearest(coords, rule).clamp(0, in_len - 1).long()
        return x.index_select(axis, index)
    base = torch.floor(coords)
    t = (coords - base).to(x.dtype)
    base = base.long()
    if mode == "linear":
        taps, weights = [base, base + 1], [1 - t, t]
    elif mode == "cubic":
        taps, weights = [base + k for k in (-1, 0, 1, 2)], _cubic_weights(t, cubic_a)
    else:
        raise unsupported(f"Resize mode={mode!r}")
    if exclude_outside:
        weights = [w * ((i >= 0) & (i < in_len)).to(x.dtype) for w, i in zip(weights, taps)]
        total = sum(weights)
        weights = [w / total for w in weights]
    out = x.index_select(axis, taps[0].clamp(0, in_len - 1)) * weights[0].reshape(shape)
    for i, w in zip(taps[1:], weights[1:]):
        out = out + x.index_select(axis, i.clamp(0, in_len - 1)) * w.reshape(shape)
    return out


def _resize(x: T, scales: Sequence[float] | None, sizes: Sequence[int] | None, axes: Sequence[int] | None,
            mode: str, coord: str, rule: str, cubic_a: float, exclude_outside: int) -> T:
    rank = x.dim()
    axes = list(range(rank)) if axes is None else [axis_index(a, rank) for a in axes]
    for i, a in enumerate(axes):
        in_len = x.shape[a]
        if sizes is not None:
            out_len = int(sizes[i])
            scale = out_len / in_len
        else:
            assert scales is not None  # the caller passes one of the two
            scale = float(scales[i])
            out_len = math.floor(in_len * scale)
        if out_len == in_len and scale == 1.0:
            continue
        x = _resize_axis(x, a, out_len, scale, mode, coord, rule, cubic_a, exclude_outside)
    return x


def _floats(value: Any) -> tuple[float, ...] | None:
    if value is None:
        return None
    if isinstance(value, T):
        return tuple(float(v) for v in value.reshape(-1).tolist()) or None
    items = tuple(float(v) for v in (value if isinstance(value, (tuple, list)) else (value,)))
    return items or None


@op("Resize", 10, shape_inputs=(1,))
def resize10(x: T, scales: Any, *, mode: str = "nearest") -> T:
    return _resize(x, _floats(scales), None, None, mode, "asymmetric", "floor", -0.75, 0)


@op("Resize", 11, shape_inputs=(1, 2, 3))
def resize(x: T, roi: Any = None, scales: Any = None, sizes: Any = None, *, antialias: int = 0,
           axes: Sequence[int] | None = None, coordinate_transformation_mode: str = "half_pixel",
           cubic_coeff_a: float = -0.75, exclude_outside: int = 0, extrapolation_value: float = 0.0,
           keep_aspect_ratio_policy: str = "stretch", mode: str = "nearest",
           nearest_mode: str = "round_prefer_floor") -> T:
    if antialias:
        raise unsupported("Resize antialias=1")
    if keep_aspect_ratio_policy != "stretch":
        raise unsupported(f"Resize keep_aspect_ratio_policy={keep_aspect_ratio_policy!r}")
    if coordinate_transformation_mode not in _COORDINATE_MODES:
        raise unsupported(f"Resize coordinate_transformation_mode={coordinate_transformation_mode!r}")
    scale_values, size_values = _floats(scales), None if sizes is None else (ints(sizes) or None)
    if scale_values is None and size_values is None:
        raise unsupported("Resize without scales or sizes")
    return _resize(x, None if size_values else scale_values, size_values, axes, mode,
                   coordinate_transformation_mode, nearest_mode, cubic_coeff_a, exclude_outside)


@op("Upsample", 7)
def upsample_attr(x: T, *, mode: str = "nearest", scales: Sequence[float]) -> T:
    return _resize(x, scales, None, None, "linear" if mode == "bilinear" else mode, "asymmetric", "floor",
                   -0.75, 0)


@op("Upsample", 9, shape_inputs=(1,))
def upsample(x: T, scales: Any, *, mode: str = "nearest") -> T:
    return upsample_attr(x, mode=mode, scales=_floats(scales) or ())
