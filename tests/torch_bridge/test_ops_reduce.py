"""Reductions against onnxruntime: the axes attribute before their revision, the axes input after."""

from __future__ import annotations

import numpy as np
import pytest

from onnxtrim.torch_bridge.ops.reduce import _REDUCERS
from tests.torch_bridge.helpers import assert_op_matches, rand, single

X = np.abs(rand(2, 3, 4)) + 0.2
OPS = sorted(_REDUCERS)


def moved_at(op: str) -> int:
    return 13 if op == "ReduceSum" else 18


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("axes", [[1], [0, -1], None])
def test_axes_attribute(op, keepdims, axes):
    attrs = {"keepdims": keepdims} | ({} if axes is None else {"axes": axes})
    assert_op_matches(*single(op, {"x": X}, opset=moved_at(op) - 1, **attrs), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("axes", [[1], [0, -1], None, "computed"])
def test_axes_input(op, keepdims, axes):
    opset = max(moved_at(op), 18)
    if axes == "computed":
        model = single(op, {"x": X, "a": np.array([2], np.int64)}, keepdims=keepdims, opset=opset)
    elif axes is None:
        model = single(op, {"x": X}, keepdims=keepdims, opset=opset)
    else:
        model = single(op, {"x": X}, consts={"a": np.array(axes, np.int64)}, keepdims=keepdims, opset=opset)
    assert_op_matches(*model, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op", ["ReduceMean", "ReduceSum"])
def test_noop_with_empty_axes(op):
    assert_op_matches(*single(op, {"x": X}, noop_with_empty_axes=1, opset=18))


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize(("axis", "keepdims", "last"), [(0, 1, 0), (-1, 0, 0), (1, 1, 1)])
def test_arg_reductions_with_ties(op, axis, keepdims, last):
    ties = np.round(rand(3, 4, 5) * 1.5).astype(np.float32)
    assert_op_matches(*single(op, {"x": ties}, axis=axis, keepdims=keepdims, select_last_index=last, opset=13))
