"""Neural Network Relief (Dekhovich et al. 2021): keep the connections that carry a neuron's activity.

The importance of the connection from input j to neuron i is the mean over the data of the
activity it carries, |x_j · w_ij| (the bias is one more input with x = 1, importance |b_i|).
Per neuron, the connections are sorted by importance and the smallest set that carries `alpha`
of the neuron's total is kept (alpha 0.9 for convolutions, 0.95 for fully connected layers, the
paper's defaults); the rest are masked to zero. A convolution's connection is one (filter,
input channel) kernel slice: its importance sums, over kernel offsets, |w| times the mean |x|
that offset reads over the output positions (zero padding included), and the bias counts
|b| once per output position.

Neurons that are zero wherever they are read, or whose outgoing connections were all masked,
carry nothing on: they are removed whole, as channels. Their score is the share of their
outgoing connections kept (0: removed at the default threshold 0).

Where this differs from the authors' code (NNrelief, MIT): ties at the cut are broken by input
index instead of dropping every connection equal to the threshold, and a neuron whose strongest
connections alone reach alpha keeps exactly those (the reference always drops at least the
weakest one). Depthwise and grouped convolutions are left unmasked: each filter reads one
input, so its connections are its channels. One pass; the iterative prune/retrain of the paper
is the fine-tuning loop's.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from .. import ir
from ..analysis.groups import Analysis
from ..calibration.requests import StatRequest, Window
from ..calibration.stats import ChannelStats
from ..masks import WeightMask
from .base import Criterion, Scores, ratios_per_group, weighted_layers


class Relief(Criterion):
    name = "relief"
    unit = "outgoing connections kept"
    removes = "low"
    default_threshold = 0.0
    paper = "Dekhovich et al. 2021, Neural Network Relief"

    def __init__(self, alpha_conv: float = 0.9, alpha_fc: float = 0.95) -> None:
        for alpha in (alpha_conv, alpha_fc):
            if not 0.0 < alpha <= 1.0:
                raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        self.alpha_conv, self.alpha_fc = alpha_conv, alpha_fc

    def requests(self, analysis: Analysis) -> list[StatRequest]:
        requests = [StatRequest(read.tensor, read.axis, "abs_sum") for read in analysis.consumed]
        requests += [request for _, _, _, request in _layers(analysis)]
        return list(dict.fromkeys(requests))

    def scores(self, analysis: Analysis, stats: ChannelStats) -> Scores:
        masks = []
        for label, node, weight, request in _layers(analysis):
            tensor_stats = stats.tensors.get(request.tensor)
            if tensor_stats is None or request.key not in tensor_stats.sums or not tensor_stats.samples:
                continue
            importance = _importance(node, weight, tensor_stats.sums[request.key], tensor_stats.count,
                                     tensor_stats.samples)
            weight_keep, bias_keep = _keep_carrying(importance, self.alpha_conv if node.op == "Conv" else self.alpha_fc)
            masks.append(WeightMask(label, 1, node.inputs[1].name, _to_weight_layout(node, weight, weight_keep)))
            if bias_keep is not None and _bias(node) is not None:
                masks.append(WeightMask(label, 2, node.inputs[2].name, bias_keep))
        return Scores(_outgoing_kept(analysis, stats, masks), masks=tuple(masks))


def _layers(analysis: Analysis) -> list[tuple[str, gs.Node, np.ndarray, StatRequest]]:
    """Layers whose connections are single weights (dense convolutions, Gemm, 2-D MatMul weights),
    with the statistic of their input that scores the connections."""
    layers = []
    for label, node, w in weighted_layers(analysis):
        dense = ((node.op == "Conv" and int(node.attrs.get("group", 1)) == 1 and w.ndim >= 3)
                 or (node.op == "Gemm" and not node.attrs.get("transA", 0)) or (node.op == "MatMul" and w.ndim == 2))
        request = _input_request(node) if dense else None
        if request is not None:
            layers.append((label, node, w, request))
    return layers


def _input_request(node: gs.Node) -> StatRequest | None:
    x = node.inputs[0].name
    if node.op == "Conv":
        weight = ir.const_shape(node.inputs[1]) or ()
        spatial = len(weight) - 2
        kernel = tuple(int(k) for k in node.attrs.get("kernel_shape", weight[2:]))
        pads = tuple(int(p) for p in node.attrs.get("pads", [0] * (2 * spatial)))
        if node.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            same = _same_pads(node, kernel)
            if same is None:
                return None
            pads = same
        window = Window(kernel, tuple(int(s) for s in node.attrs.get("strides", [1] * spatial)), pads,
                        tuple(int(d) for d in node.attrs.get("dilations", [1] * spatial)))
        return StatRequest(x, 1, "window_abs", window)
    rank = len(ir.shape_of(node.inputs[0]) or ()) or 2
    return StatRequest(x, rank - 1, "abs_sum")


def _same_pads(node: gs.Node, kernel: tuple[int, ...]) -> tuple[int, ...] | None:
    """Explicit pads of SAME_UPPER/SAME_LOWER from the static input size (None if not static)."""
    shape = ir.shape_of(node.inputs[0]) or ()
    strides = [int(s) for s in node.attrs.get("strides", [1] * len(kernel))]
    dilations = [int(d) for d in node.attrs.get("dilations", [1] * len(kernel))]
    begins, ends = [], []
    for size, k, s, d in zip(shape[2:], kernel, strides, dilations):
        if not isinstance(size, int):
            return None
        total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
        small, large = total // 2, total - total // 2
        begins.append(small if node.attrs.get("auto_pad") == "SAME_UPPER" else large)
        ends.append(large if node.attrs.get("auto_pad") == "SAME_UPPER" else small)
    return tuple(begins + ends)


def _bias(node: gs.Node) -> np.ndarray | None:
    if len(node.inputs) < 3 or not node.inputs[2].name:
        return None
    bias = ir.const_value(node.inputs[2])
    return None if bias is None or bias.ndim > 1 and bias.shape[0] != 1 else bias


def _importance(node: gs.Node, weight: np.ndarray, sums: np.ndarray, count: int, samples: int) -> np.ndarray:
    """[neurons, inputs + 1]: mean activity per connection, the bias as the last input."""
    w = np.abs(np.asarray(weight, dtype=np.float64))
    bias = _bias(node)
    if node.op == "Conv":
        per_offset = np.asarray(sums, dtype=np.float64).reshape(w.shape[1], *w.shape[2:]) / samples
        connections = (w * per_offset[None]).reshape(w.shape[0], w.shape[1], -1).sum(axis=2)
        out = ir.shape_of(node.outputs[0]) or ()
        positions = int(np.prod([d if isinstance(d, int) else 1 for d in out[2:]]))
        bias_activity = np.zeros(w.shape[0]) if bias is None else np.abs(bias.reshape(-1)) * positions
    else:
        mean_abs_x = np.asarray(sums, dtype=np.float64) / max(count, 1)
        neuron_major = w if node.op == "Gemm" and node.attrs.get("transB", 0) else w.T
        alpha = abs(float(node.attrs.get("alpha", 1.0))) if node.op == "Gemm" else 1.0
        beta = abs(float(node.attrs.get("beta", 1.0))) if node.op == "Gemm" else 1.0
        connections = alpha * neuron_major * mean_abs_x[None, :]
        bias_activity = np.zeros(len(connections)) if bias is None else beta * np.abs(
            np.broadcast_to(bias.reshape(-1), (len(connections),)))
    return np.concatenate([connections, bias_activity[:, None]], axis=1)


def _keep_carrying(importance: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray | None]:
    """Per neuron, the smallest set of connections (strongest first, ties by index) whose
    importance reaches `alpha` of the neuron's total. Returns (weights kept [neurons, inputs], bias kept)."""
    order = np.argsort(-importance, axis=1, kind="stable")
    sorted_importance = np.take_along_axis(importance, order, axis=1)
    totals = sorted_importance.sum(axis=1, keepdims=True)
    reached = np.cumsum(sorted_importance, axis=1) >= alpha * totals * (1 - 1e-12)
    count = np.argmax(reached, axis=1) + 1  # entries up to and including the first that reaches alpha
    keep_sorted = np.arange(importance.shape[1])[None, :] < count[:, None]
    keep = np.zeros_like(keep_sorted)
    np.put_along_axis(keep, order, keep_sorted, axis=1)
    keep[totals[:, 0] == 0] = False  # a neuron that carries nothing keeps nothing
    return keep[:, :-1], keep[:, -1]


def _to_weight_layout(node: gs.Node, weight: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Connection keep-mask [neurons, inputs] back to the weight's own shape."""
    if node.op == "Conv":
        return np.broadcast_to(keep[:, :, None], (*keep.shape, int(np.prod(weight.shape[2:])))).reshape(weight.shape)
    if node.op == "Gemm" and node.attrs.get("transB", 0):
        return keep.copy()
    return keep.T.copy()


def _outgoing_kept(analysis: Analysis, stats: ChannelStats, masks: list[WeightMask]) -> dict[int, np.ndarray]:
    """Per group and class: the share of its outgoing connections the masks keep (0 if never active)."""
    by_node = {(m.node, m.input_index): m.keep for m in masks}
    activity = ratios_per_group(analysis, stats, analysis.consumed, "abs_sum")
    values: dict[int, np.ndarray] = {}
    for group in analysis.groups:
        kept, total = np.zeros(group.size), np.zeros(group.size)
        for member in analysis.members(group.id, roles=("consumer",)):
            keep = by_node.get((member.node, member.input_index))
            if keep is None:  # an unmasked consumer keeps every connection
                per_position = np.ones(len(member.classes))
            else:
                per_position = np.moveaxis(keep, member.axis, 0).reshape(keep.shape[member.axis], -1).mean(axis=1)
            here = member.classes >= 0
            np.add.at(kept, member.classes[here], per_position[here])
            np.add.at(total, member.classes[here], 1.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(total > 0, kept / np.maximum(total, 1), np.nan)
        if group.id in activity:
            silent = np.fmax.reduce(np.vstack(activity[group.id]), axis=0) == 0
            share = np.where(silent, 0.0, share)
        values[group.id] = share
    return values
