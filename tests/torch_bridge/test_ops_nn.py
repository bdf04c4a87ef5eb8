"""Weighted layers, normalisations, softmax and dropout against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

from tests.torch_bridge.helpers import assert_op_matches, rand, single

IMG = rand(2, 4, 7, 6)


@pytest.mark.parametrize("attrs", [
    {}, {"pads": [1, 1, 1, 1]}, {"pads": [0, 1, 2, 1]}, {"strides": [2, 1]}, {"dilations": [2, 1], "pads": [2, 1, 2, 1]},
    {"auto_pad": "SAME_UPPER", "strides": [2, 2]}, {"auto_pad": "SAME_LOWER", "strides": [2, 2]},
    {"auto_pad": "VALID"}, {"group": 2}, {"group": 4, "pads": [1, 1, 1, 1]},
], ids=lambda a: "-".join(f"{k}{v}" for k, v in a.items()) or "plain")
def test_conv2d(attrs):
    groups = attrs.get("group", 1)
    consts = {"w": rand(8, 4 // groups, 3, 3, seed=1), "b": rand(8, seed=2)}
    assert_op_matches(*single("Conv", {"x": IMG}, consts=consts, **attrs), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("rank", [1, 3])
def test_conv_1d_3d_without_bias(rank):
    x = rand(1, 2, *([5] * rank))
    assert_op_matches(*single("Conv", {"x": x}, consts={"w": rand(3, 2, *([3] * rank), seed=1)},
                              pads=[1] * (2 * rank)), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("attrs", [{}, {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]},
                                   {"group": 2}], ids=["plain", "strided", "grouped"])
def test_conv_transpose(attrs):
    groups = attrs.get("group", 1)
    consts = {"w": rand(4, 6 // groups, 3, 3, seed=1), "b": rand(6, seed=2)}
    assert_op_matches(*single("ConvTranspose", {"x": IMG}, consts=consts, **attrs), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("attrs", [{}, {"transB": 1}, {"transA": 1, "transB": 1}, {"alpha": 0.5, "beta": 2.0},
                                   {"transB": 1, "alpha": 2.0}])
@pytest.mark.parametrize("bias", ["vector", "matrix", "none"])
def test_gemm(attrs, bias):
    a = rand(5, 3) if not attrs.get("transA") else rand(3, 5)
    b = rand(4, 3, seed=1) if attrs.get("transB") else rand(3, 4, seed=1)
    consts = {"b": b}
    if bias == "vector":
        consts["c"] = rand(4, seed=2)
    elif bias == "matrix":
        consts["c"] = rand(5, 4, seed=2)
    assert_op_matches(*single("Gemm", {"a": a}, consts=consts, opset=13, **attrs))


@pytest.mark.parametrize("shapes", [((2, 3), (3, 4)), ((2, 5, 3), (3, 4)), ((2, 1, 5, 3), (3, 3, 2)), ((3,), (3, 2))])
def test_matmul(shapes):
    assert_op_matches(*single("MatMul", {"a": rand(*shapes[0])}, consts={"b": rand(*shapes[1], seed=1)}))


@pytest.mark.parametrize("opset", [9, 14, 15])
def test_batch_norm_inference(opset):
    c = IMG.shape[1]
    consts = {"s": rand(c, seed=1), "b": rand(c, seed=2), "m": rand(c, seed=3), "v": np.abs(rand(c, seed=4)) + 0.5}
    assert_op_matches(*single("BatchNormalization", {"x": IMG}, consts=consts, epsilon=1e-3, opset=opset),
                      rtol=1e-4, atol=1e-5)


def test_instance_norm():
    consts = {"s": rand(4, seed=1), "b": rand(4, seed=2)}
    assert_op_matches(*single("InstanceNormalization", {"x": IMG}, consts=consts, epsilon=1e-4), rtol=1e-4,
                      atol=1e-5)


@pytest.mark.parametrize(("axis", "scale_shape"), [(-1, (6,)), (2, (7, 6)), (-1, (1,)), (1, (4, 1, 6))])
@pytest.mark.parametrize("bias", [True, False])
def test_layer_norm_opset17(axis, scale_shape, bias):
    consts = {"s": rand(*scale_shape, seed=1)}
    if bias:
        consts["b"] = rand(*scale_shape, seed=2)
    assert_op_matches(*single("LayerNormalization", {"x": IMG}, consts=consts, axis=axis, epsilon=1e-5,
                              opset=17), rtol=1e-4, atol=1e-5)


def test_layer_norm_mean_and_inv_std_outputs():
    consts = {"s": rand(6, seed=1), "b": rand(6, seed=2)}
    assert_op_matches(*single("LayerNormalization", {"x": IMG}, consts=consts, outputs=3, opset=17),
                      rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax", "Hardmax"])
@pytest.mark.parametrize(("opset", "axis"), [(11, 1), (11, -1), (11, None), (13, 1), (13, None), (13, 2)])
def test_softmax_family(op, opset, axis):
    attrs = {} if axis is None else {"axis": axis}
    assert_op_matches(*single(op, {"x": IMG}, opset=opset, **attrs), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("opset", [7, 10, 12, 13, 22])
@pytest.mark.parametrize("outputs", [1, 2])
def test_dropout_is_identity_in_inference(opset, outputs):
    assert_op_matches(*single("Dropout", {"x": IMG}, opset=opset, outputs=outputs))


def test_dropout_with_ratio_and_training_false():
    consts = {"r": np.array(0.3, np.float32), "t": np.array(False)}
    assert_op_matches(*single("Dropout", {"x": IMG}, consts=consts, opset=13, outputs=2))


@pytest.mark.parametrize("axis", [0, 1, 2, 4, -1])
def test_flatten(axis):
    assert_op_matches(*single("Flatten", {"x": IMG}, axis=axis, opset=13))
