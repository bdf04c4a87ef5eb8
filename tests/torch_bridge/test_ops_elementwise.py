"""Pointwise ops against onnxruntime: one single-node graph per case, at each opset revision handled."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tests.torch_bridge.helpers import assert_op_matches, rand, single

X = rand(2, 3, 4)
POS = np.abs(X) + 0.1
INT_A = np.array([[7, -7, 5], [-5, 9, 0]], dtype=np.int64)
INT_B = np.array([[2, 2, -3], [3, -4, 1]], dtype=np.int64)

UNARY = ["Relu", "Sigmoid", "Tanh", "Erf", "Neg", "Abs", "Exp", "Sign", "Floor", "Ceil", "Round", "Sin", "Cos",
         "Softsign", "Mish", "HardSwish", "Identity", "Atan", "Sinh", "Asinh", "Softplus"]


@pytest.mark.parametrize("op", UNARY)
def test_unary(op):
    assert_op_matches(*single(op, {"x": X * 3}, opset=18))


@pytest.mark.parametrize("op", ["Sqrt", "Log", "Reciprocal", "Acosh"])
def test_unary_positive(op):
    assert_op_matches(*single(op, {"x": POS + (1 if op == "Acosh" else 0)}))


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Mean"])
@pytest.mark.parametrize("shapes", [((2, 3, 4), (2, 3, 4)), ((2, 3, 4), (4,)), ((1, 3, 1), (2, 1, 4))],
                         ids=["same", "trailing", "both"])
def test_binary_broadcast(op, shapes):
    feeds = {"a": rand(*shapes[0], seed=1), "b": rand(*shapes[1], seed=2) + (3 if op == "Div" else 0)}
    assert_op_matches(*single(op, feeds, opset=13))


@pytest.mark.parametrize("op", ["Sum", "Mean", "Max", "Min"])
def test_variadic_three(op):
    assert_op_matches(*single(op, {"a": rand(2, 3), "b": rand(3, seed=1), "c": rand(2, 1, seed=2)}))


def test_integer_div_truncates_like_onnx():
    assert_op_matches(*single("Div", {"a": INT_A, "b": INT_B}))


@pytest.mark.parametrize("fmod", [0, 1])
def test_mod_integers(fmod):
    assert_op_matches(*single("Mod", {"a": INT_A, "b": INT_B}, fmod=fmod, opset=13))


def test_mod_floats_fmod():
    assert_op_matches(*single("Mod", {"a": X * 5, "b": POS}, fmod=1))


@pytest.mark.parametrize("opset", [13, 15])
@pytest.mark.parametrize("exponent", [np.array(2.0, np.float32), np.array(3, np.int64), np.array([0.5, 2, 1.5, 3],
                                                                                                   np.float32)],
                         ids=["float", "int", "vector"])
def test_pow(opset, exponent):
    assert_op_matches(*single("Pow", {"x": POS}, consts={"y": exponent}, opset=opset))


@pytest.mark.parametrize("op", ["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"])
def test_comparisons(op):
    a = np.round(X * 2)
    assert_op_matches(*single(op, {"a": a, "b": np.round(rand(4, seed=3) * 2)}, opset=16))


@pytest.mark.parametrize("op", ["And", "Or", "Xor"])
def test_logic(op):
    a, b = X > 0, rand(2, 3, 4, seed=5) > 0
    assert_op_matches(*single(op, {"a": a, "b": b}))


def test_not_and_where():
    assert_op_matches(*single("Not", {"c": X > 0}))
    assert_op_matches(*single("Where", {"c": X > 0, "a": X, "b": rand(3, 4, seed=1)}, opset=16))


@pytest.mark.parametrize("opset", [13, 19, 21])
@pytest.mark.parametrize("to", [1, 6, 7, 9, 10, 11])
def test_cast(opset, to):
    assert_op_matches(*single("Cast", {"x": X * 3}, to=to, opset=opset))


def test_cast_like():
    assert_op_matches(*single("CastLike", {"x": X * 3}, consts={"like": np.zeros(1, np.int32)}, opset=15))


def test_clip_attributes_opset6():
    assert_op_matches(*single("Clip", {"x": X}, min=-0.5, max=0.7, opset=6))


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("bounds", [("lo", "hi"), ("lo", ""), ("", "hi"), ()], ids=["both", "min", "max", "none"])
def test_clip_inputs(opset, bounds):
    consts = {"lo": np.array(-0.5, np.float32), "hi": np.array(0.7, np.float32)}
    used = {k: v for k, v in consts.items() if k in bounds}
    assert_op_matches(*single("Clip", {"x": X}, consts=used, inputs=["x", *bounds], opset=opset))


def test_clip_computed_bound():
    assert_op_matches(*single("Clip", {"x": X, "lo": np.array(-0.2, np.float32)}, opset=13))


@pytest.mark.parametrize(("op", "attrs"), [
    ("LeakyRelu", {"alpha": 0.2}), ("Elu", {"alpha": 0.7}), ("Celu", {"alpha": 1.3}), ("Selu", {}),
    ("Selu", {"alpha": 1.2, "gamma": 0.9}), ("ThresholdedRelu", {"alpha": 0.3}), ("HardSigmoid", {}),
    ("HardSigmoid", {"alpha": 1 / 6, "beta": 0.5}), ("IsNaN", {}), ("IsInf", {"detect_negative": 0}),
])
def test_activations_with_coefficients(op, attrs):
    assert_op_matches(*single(op, {"x": X * 4}, opset=13, **attrs))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_opset20(approximate):
    assert_op_matches(*single("Gelu", {"x": X * 3}, opset=20, approximate=approximate))


def test_prelu_channel_slope():
    assert_op_matches(*single("PRelu", {"x": X}, consts={"s": rand(3, 1, seed=4)}, opset=16))


@settings(max_examples=25, deadline=None)
@given(hnp.array_shapes(min_dims=1, max_dims=4, max_side=4).flatmap(
    lambda s: st.tuples(hnp.array_shapes(min_dims=1, max_dims=4, max_side=4), st.just(s))))
def test_broadcasting_property(shapes):
    try:
        np.broadcast_shapes(*shapes)
    except ValueError:
        return
    a, b = rand(*shapes[0], seed=1), rand(*shapes[1], seed=2)
    assert_op_matches(*single("Mul", {"a": a, "b": b}), grad=False)
