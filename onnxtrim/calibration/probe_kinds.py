"""The statistic kinds calibration can compute inside the graph, registered by name.

Each kind builds the nodes that reduce one tensor to a few numbers per channel, in one of two
forms. The general form sums over every axis but the channel axis with Reduce* ops and works
for any layout, sign and dtype. The blocked form applies to non-negative float NCHW tensors
(ReLU outputs of a convnet) and uses only ops onnxruntime runs in its blocked (NCHWc) layout,
returning per-sample channel means: reading an activation with any other op makes onnxruntime
convert it out of that layout first, a full copy per observed tensor (on resnet50 those copies
and the reductions cost 0.4x of a plain run). A new statistic enters by adding a `ProbeKind`
to `KINDS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .requests import StatRequest, Window


@dataclass(frozen=True)
class ObservedTensor:
    """What the probe builders need to know of a tensor: layout, dtype and static sizes."""

    name: str
    axis: int
    rank: int
    elem_type: int  # onnx TensorProto data type
    channels: int | None = None
    spatial: int | None = None  # product of the static dims after the channel axis
    nonnegative: bool = False  # a ReLU's output: zero exactly where it is not positive

    @property
    def blocked_layout(self) -> bool:
        """Whether the statistics can be computed with blocked-layout ops (see the module docstring)."""
        return (self.nonnegative and self.axis == 1 and self.rank == 4 and self.channels is not None
                and self.spatial is not None and self.elem_type == TensorProto.FLOAT)


@dataclass(frozen=True)
class ProbeOutput:
    """A graph output holding one statistic.

    `scale` None: the output is the per-channel total over the batch. Otherwise it holds
    per-sample means, [N, C'], to be multiplied by `scale` and summed over the batch outside
    the graph (in float64; rounded per sample where `counts` is set, so counts stay exact).
    """

    name: str
    scale: int | None = None
    counts: bool = False


@dataclass
class ProbeBuilder:
    """Accumulates the nodes and initializers of the probes of one tensor."""

    graph: onnx.GraphProto
    prefix: str
    tensor: ObservedTensor
    opset: int
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    _made: dict[str, str] = field(default_factory=dict)  # memo: one node per derived tensor

    def node(self, op: str, inputs: list[str], suffix: str, **attrs) -> str:
        out = f"{self.prefix}_{suffix}"
        if out not in self._made:
            self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
            self._made[out] = out
        return out

    def constant(self, suffix: str, array: np.ndarray) -> str:
        name = f"{self.prefix}_{suffix}"
        if name not in self._made:
            self.graph.initializer.append(numpy_helper.from_array(array, name))
            self._made[name] = name
        return name

    def reduce_to_channels(self, op: str, source: str, suffix: str, rank: int | None = None,
                           axis: int | None = None) -> str:
        """Sum `source` over every axis but the channel axis. Reduce* ops took `axes` as an input
        from opset 13 (ReduceSum) or 18 (the others), an attribute before."""
        rank = self.tensor.rank if rank is None else rank
        axis = self.tensor.axis if axis is None else axis
        axes = [i for i in range(rank) if i != axis]
        since = 13 if op == "ReduceSum" else 18
        if self.opset >= since:
            axes_name = self.constant(f"axes_{rank}_{axis}", np.asarray(axes, dtype=np.int64))
            return self.node(op, [source, axes_name], suffix, keepdims=0)
        return self.node(op, [source], suffix, keepdims=0, axes=axes)

    def mean_per_sample(self, source: str, suffix: str) -> str:
        """[N, C, H, W] -> [N, C] channel means. Flatten is not a blocked-layout op, so it keeps
        its place in the node list: the execution order `add_probes` arranges depends on it."""
        pooled = self.node("GlobalAveragePool", [source], f"{suffix}_gap")
        return self.node("Flatten", [pooled], suffix, axis=1)

    def as_float(self) -> str:
        if self.tensor.elem_type == TensorProto.FLOAT:
            return self.tensor.name
        return self.node("Cast", [self.tensor.name], "as_float", to=TensorProto.FLOAT)


Build = Callable[[ProbeBuilder, StatRequest], ProbeOutput]


@dataclass(frozen=True)
class ProbeKind:
    """How one statistic is computed: always in the general form, where possible blocked too.

    `propagates_nan`: in the general form, a NaN or Inf anywhere in the tensor makes the output
    non-finite, so the collector can refuse it; kinds that do not (counts) get a guard sum
    beside them. Every blocked form propagates NaN (the per-sample mean of a NaN is NaN).
    """

    name: str
    general: Build
    blocked: Build | None = None
    propagates_nan: bool = True


def _zeros_general(b: ProbeBuilder, request: StatRequest) -> ProbeOutput:
    """Zero counts in int32 (exact far beyond float32's 2**24). Cast to bool and Not are valid at
    every opset onnxtrim accepts, where Equal took floats only from opset 11."""
    nonzero = b.node("Cast", [b.tensor.name], "nonzero", to=TensorProto.BOOL)
    zero = b.node("Not", [nonzero], "is_zero")
    as_int = b.node("Cast", [zero], "is_zero_i", to=TensorProto.INT32)
    return ProbeOutput(b.reduce_to_channels("ReduceSum", as_int, request.key))


def _zeros_blocked(b: ProbeBuilder, request: StatRequest) -> ProbeOutput:
    """Relu(1 - 1e30·x) from a depthwise 1x1 Conv with a fused Relu is 1 exactly where x is 0
    (and where 0 < x < 1e-30, which no ReLU output in practice holds)."""
    channels = int(b.tensor.channels or 0)
    weight = b.constant("zw", np.full((channels, 1, 1, 1), -1e30, np.float32))
    bias = b.constant("zb", np.ones(channels, np.float32))
    conv = b.node("Conv", [b.tensor.name, weight, bias], "zc", group=channels, kernel_shape=[1, 1])
    indicator = b.node("Relu", [conv], "zr")
    return ProbeOutput(b.mean_per_sample(indicator, request.key), scale=b.tensor.spatial, counts=True)


def _reduction(op: str) -> Build:
    def build(b: ProbeBuilder, request: StatRequest) -> ProbeOutput:
        return ProbeOutput(b.reduce_to_channels(op, b.tensor.name, request.key))

    return build


def _sum_blocked(b: ProbeBuilder, request: StatRequest) -> ProbeOutput:
    """The mean of x gives its sum, and, x being non-negative, the sum of |x| too (one node)."""
    return ProbeOutput(b.mean_per_sample(b.tensor.name, "mean_x"), scale=b.tensor.spatial)


def _sq_sum_blocked(b: ProbeBuilder, request: StatRequest) -> ProbeOutput:
    square = b.node("Mul", [b.tensor.name, b.tensor.name], "sq")
    return ProbeOutput(b.mean_per_sample(square, request.key), scale=b.tensor.spatial)


def _offset_sums(b: ProbeBuilder, window: Window, source: str) -> str:
    """A depthwise Conv with one one-hot kernel per offset: output channel c·K + k holds, at each
    output position, the input value that offset k of channel c reads there."""
    channels = int(b.tensor.channels or 0)
    k = window.size
    onehot = np.zeros((channels * k, 1, *window.kernel), np.float32)
    flat = onehot.reshape(channels, k, k)
    flat[:, np.arange(k), np.arange(k)] = 1.0
    weight = b.constant(f"onehot_{window.key}", onehot)
    return b.node("Conv", [source, weight], f"windows_{window.key}", group=channels,
                  kernel_shape=list(window.kernel), strides=list(window.strides), pads=list(window.pads),
                  dilations=list(window.dilations))


def _window_abs_general(b: ProbeBuilder, request: StatRequest) -> ProbeOutput:
    assert request.window is not None
    source = b.as_float()
    if not b.tensor.nonnegative:
        source = b.node("Abs", [source], "abs")
    windows = _offset_sums(b, request.window, source)
    return ProbeOutput(b.reduce_to_channels("ReduceSum", windows, request.key, axis=1))


KINDS: dict[str, ProbeKind] = {
    "zeros": ProbeKind("zeros", _zeros_general, _zeros_blocked, propagates_nan=False),
    "sum": ProbeKind("sum", _reduction("ReduceSum"), _sum_blocked),
    "abs_sum": ProbeKind("abs_sum", _reduction("ReduceL1"), _sum_blocked),
    "sq_sum": ProbeKind("sq_sum", _reduction("ReduceSumSquare"), _sq_sum_blocked),
    "window_abs": ProbeKind("window_abs", _window_abs_general),
}
