"""Every criterion against an independent computation: activations exposed with onnxruntime, weights in numpy.

The references here are written from the papers' formulas, per neuron and per connection, with
plain loops over numpy arrays, not with any of onnxtrim's statistics or group helpers.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from onnxtrim import stages
from onnxtrim.calibration.readers import Batch
from onnxtrim.criteria import make_criterion
from onnxtrim.criteria.relief import Relief
from tests.helpers import models
from tests.helpers.plans import analysis_of, run


def weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def exposed(model: onnx.ModelProto, names: list[str], feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    copy.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in names)
    return dict(zip(names, run(copy, feeds)[1:]))


def measured(model: onnx.ModelProto, criterion, x: np.ndarray, name: str = "x", batch: int = 5):
    analysis = analysis_of(model)
    batches = [Batch({name: x[i:i + batch]}, f"rows {i}", np.arange(i, min(i + batch, len(x))))
               for i in range(0, len(x), batch)]
    stats = stages.measure(model, analysis, criterion.requests(analysis), batches)
    return analysis, criterion.scores(analysis, stats)


def group_by_members(analysis, members: tuple[str, ...]):
    return next(g for g in analysis.groups if g.members == members)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    x = np.random.default_rng(3).standard_normal((12, 1, 8, 8)).astype(np.float32)
    x[:, :, :3] = 0
    return x


def test_apoz_is_the_share_of_zeros_after_each_relu(images):
    model = models.CHAIN
    analysis, scores = measured(model, make_criterion("apoz"), images)
    acts = exposed(model, ["r", "hr"], {"x": images})
    conv = group_by_members(analysis, ("Conv#0",))
    hidden = group_by_members(analysis, ("Gemm#5",))
    np.testing.assert_allclose(scores.values[conv.id], (acts["r"] == 0).mean(axis=(0, 2, 3)))
    np.testing.assert_allclose(scores.values[hidden.id], (acts["hr"] == 0).mean(axis=0))


def test_mean_activation_is_mean_abs_where_consumers_read(images):
    model = models.CHAIN
    analysis, scores = measured(model, make_criterion("mean-activation"), images)
    acts = exposed(model, ["f", "hr"], {"x": images})
    conv = group_by_members(analysis, ("Conv#0",))
    # Gemm#5 reads the flattened pooled activation: 16 positions per channel, pooled per channel.
    per_channel = np.abs(acts["f"]).reshape(len(images), 8, -1).mean(axis=(0, 2))
    np.testing.assert_allclose(scores.values[conv.id], per_channel, rtol=1e-5)
    hidden = group_by_members(analysis, ("Gemm#5",))
    np.testing.assert_allclose(scores.values[hidden.id], np.abs(acts["hr"]).mean(axis=0), rtol=1e-5)


def test_apoz_has_no_signal_where_no_relu_follows_and_mean_activation_does():
    model = models.MLP  # MatMul → Add → GELU → MatMul: no ReLU anywhere
    x = np.random.default_rng(0).standard_normal((6, 4, 6)).astype(np.float32)
    analysis, apoz = measured(model, make_criterion("apoz"), x)
    prunable = [g.id for g in analysis.groups if len(g.prunable)]
    assert prunable and set(prunable) <= set(apoz.no_signal) and not set(prunable) & set(apoz.values)
    assert "ReLU" in apoz.no_signal[prunable[0]]
    _, activation = measured(model, make_criterion("mean-activation"), x)
    assert all(np.all(activation.values[g] > 0) for g in prunable)


@pytest.mark.parametrize("order", [1, 2])
def test_filter_norms_sum_over_every_coupled_producer(order):
    model = models.RESIDUAL  # Conv0 and Conv2 write the same residual channels
    analysis = analysis_of(model)
    scores = make_criterion(f"l{order}").scores(analysis, None)
    w = weights(model)
    residual = group_by_members(analysis, ("Conv#0", "Conv#4"))
    expected = np.zeros(8)
    for weight in (w["w0"], w["w2"]):  # the convolutions writing `a` and `c`, added by the residual Add
        for k in range(8):
            expected[k] += np.abs(weight[k]).sum() if order == 1 else (weight[k] ** 2).sum()
    np.testing.assert_allclose(scores.values[residual.id], expected if order == 1 else np.sqrt(expected))


def test_magnitude_zeroes_exactly_the_smallest_share_of_every_layer():
    model = models.CHAIN
    analysis = analysis_of(model)
    scores = make_criterion("magnitude", sparsity=0.7).scores(analysis, None)
    w = weights(model)
    assert {m.tensor for m in scores.masks} == {"w1", "w2", "w3"} and scores.values == {}
    for mask in scores.masks:
        weight = np.abs(w[mask.tensor])
        assert mask.zeros == int(0.7 * weight.size)
        assert weight[~mask.keep].max() <= weight[mask.keep].min()


# ---- Relief: a direct implementation of Dekhovich et al.'s formulas --------------------------------

def keep_carrying(importance: np.ndarray, alpha: float) -> np.ndarray:
    """Per neuron (row): strongest first, ties by index, the fewest connections reaching alpha of the total."""
    keep = np.zeros(importance.shape, dtype=bool)
    for i, row in enumerate(importance):
        total = row.sum()
        if total == 0:
            continue
        carried = 0.0
        for j in sorted(range(len(row)), key=lambda j: (-row[j], j)):
            keep[i, j] = True
            carried += row[j]
            if carried >= alpha * total * (1 - 1e-12):
                break
    return keep


def relief_fc(x: np.ndarray, w: np.ndarray, b: np.ndarray, alpha: float) -> np.ndarray:
    """x [samples, in], w [out, in]: importance_ij = mean_n |x_nj w_ij|, bias |b_i| as the last input."""
    importance = np.zeros((w.shape[0], w.shape[1] + 1))
    for i in range(w.shape[0]):
        for j in range(w.shape[1]):
            importance[i, j] = np.mean(np.abs(x[:, j] * w[i, j]))
        importance[i, -1] = abs(b[i])
    return keep_carrying(importance, alpha)


def relief_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, pad: int, alpha: float) -> np.ndarray:
    """A (filter k, input channel c) slice's importance: over output positions p, the mean over samples of
    sum over the kernel of |x window| * |w_kc|; the bias counts |b_k| once per output position."""
    _, c_in, h, width = x.shape
    kh, kw = w.shape[2:]
    padded = np.pad(np.abs(x), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out_h, out_w = h + 2 * pad - kh + 1, width + 2 * pad - kw + 1
    importance = np.zeros((w.shape[0], c_in + 1))
    for k in range(w.shape[0]):
        for c in range(c_in):
            for i in range(out_h):
                for j in range(out_w):
                    window = padded[:, c, i:i + kh, j:j + kw]
                    importance[k, c] += np.mean((window * np.abs(w[k, c])).sum(axis=(1, 2)))
        importance[k, -1] = abs(b[k]) * out_h * out_w
    return keep_carrying(importance, alpha)


CNN = models.build("""
cnn (float[N,2,6,6] x, float[4,2,3,3] w1, float[4] b1, float[3,4,3,3] w2, float[3] b2, float[5,12] wf, float[5] bf)
    => (float[N,5] y) {
  c1 = Conv<pads=[1,1,1,1]>(x, w1, b1)
  r1 = Relu(c1)
  c2 = Conv<pads=[1,1,1,1]>(r1, w2, b2)
  r2 = Relu(c2)
  g = MaxPool<kernel_shape=[3,3], strides=[3,3]>(r2)
  f = Flatten<axis=1>(g)
  p = Gemm<transB=1>(f, wf, bf)
  y = Relu(p)
}""", ["w1", "b1", "w2", "b2", "wf", "bf"], seed=4)


def test_relief_masks_equal_a_direct_implementation_on_a_small_cnn():
    x = np.random.default_rng(5).standard_normal((7, 2, 6, 6)).astype(np.float32)
    criterion = Relief(alpha_conv=0.8, alpha_fc=0.9)
    _, scores = measured(CNN, criterion, x, batch=3)
    masks = {(m.node, m.input_index): m.keep for m in scores.masks}
    w = weights(CNN)
    acts = exposed(CNN, ["r1", "f"], {"x": x})
    for label, inputs, weight, bias, pad in (("Conv#0", x, "w1", "b1", 1), ("Conv#2", acts["r1"], "w2", "b2", 1)):
        want = relief_conv(inputs.astype(np.float64), w[weight].astype(np.float64), w[bias], pad, 0.8)
        np.testing.assert_array_equal(masks[(label, 1)][:, :, 0, 0], want[:, :-1])
        assert np.all(masks[(label, 1)] == masks[(label, 1)][:, :, :1, :1])  # whole kernel slices
        np.testing.assert_array_equal(masks[(label, 2)], want[:, -1])
    want = relief_fc(acts["f"].astype(np.float64), w["wf"].astype(np.float64), w["bf"], 0.9)
    np.testing.assert_array_equal(masks[("Gemm#6", 1)], want[:, :-1])
    np.testing.assert_array_equal(masks[("Gemm#6", 2)], want[:, -1])


def test_relief_masks_equal_a_direct_implementation_on_an_mlp_and_removes_disconnected_neurons():
    model = models.build("""
mlp (float[N,6] x, float[8,6] w1, float[8] b1, float[4,8] w2, float[4] b2) => (float[N,4] y) {
  h = Gemm<transB=1>(x, w1, b1)
  r = Relu(h)
  y = Gemm<transB=1>(r, w2, b2)
}""", ["w1", "b1", "w2", "b2"], seed=6)
    w = weights(model)
    w2 = w["w2"].copy()
    w2[:, 5] = 1e-6  # neuron 5 barely reaches the outputs: Relief cuts every one of its outgoing connections
    b1 = w["b1"].copy()
    b1[2] = -1e4  # neuron 2 never fires
    w1 = w["w1"].copy()
    w1[2] = 0.0
    for name, value in (("w2", w2), ("b1", b1), ("w1", w1)):
        next(t for t in model.graph.initializer if t.name == name).CopyFrom(numpy_helper.from_array(value, name))
    x = np.random.default_rng(7).standard_normal((20, 6)).astype(np.float32)
    analysis, scores = measured(model, Relief(alpha_fc=0.9), x)
    masks = {(m.node, m.input_index): m.keep for m in scores.masks}
    np.testing.assert_array_equal(masks[("Gemm#0", 1)], relief_fc(x.astype(np.float64), w1, b1, 0.9)[:, :-1])
    hidden = exposed(model, ["r"], {"x": x})["r"].astype(np.float64)
    want = relief_fc(hidden, w2, w["b2"], 0.9)
    np.testing.assert_array_equal(masks[("Gemm#2", 1)], want[:, :-1])
    group = group_by_members(analysis, ("Gemm#0",))
    outgoing = scores.values[group.id]
    np.testing.assert_allclose(outgoing, want[:, :-1].mean(axis=0) * (hidden.sum(axis=0) > 0))
    assert outgoing[2] == 0 and outgoing[5] == 0  # dead, and disconnected: both removed at threshold 0
