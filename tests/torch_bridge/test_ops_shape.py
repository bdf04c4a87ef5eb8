"""Shape and indexing ops against onnxruntime, with constant and computed shape-like inputs.

A shape-like input given as an initializer is baked into Python ints when the module is built; given
as a graph input it is computed at run time. Both paths are tested for the ops that take one.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.torch_bridge.helpers import assert_op_matches, rand, single

X = rand(2, 3, 4, 5)


def i64(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def shape_input(op: str, x: np.ndarray, name: str, value: np.ndarray, computed: bool, **kw):
    """`value` as an initializer (baked) or as a fed input (computed at run time)."""
    if computed:
        return single(op, {"x": x, name: value}, **kw)
    return single(op, {"x": x}, consts={name: value}, **kw)


COMPUTED = pytest.mark.parametrize("computed", [False, True], ids=["baked", "computed"])


@COMPUTED
@pytest.mark.parametrize("opset", [13, 14, 19, 21])
@pytest.mark.parametrize("target", [(6, 20), (-1, 5), (0, 3, -1), (2, 0, 0, 5)])
def test_reshape(computed, opset, target):
    assert_op_matches(*shape_input("Reshape", X, "s", i64(*target), computed, opset=opset))


def test_reshape_allowzero():
    x = np.zeros((0, 3), np.float32)
    assert_op_matches(*single("Reshape", {"x": x}, consts={"s": i64(3, 0)}, allowzero=1, opset=14))


@pytest.mark.parametrize("perm", [None, [0, 2, 1, 3], [3, 1, 0, 2]])
def test_transpose(perm):
    attrs = {} if perm is None else {"perm": perm}
    assert_op_matches(*single("Transpose", {"x": X}, **attrs))


def test_squeeze_unsqueeze_attribute_forms_opset11():
    x = rand(2, 1, 3, 1)
    assert_op_matches(*single("Squeeze", {"x": x}, axes=[1, -1], opset=11))
    assert_op_matches(*single("Squeeze", {"x": x}, opset=11))
    assert_op_matches(*single("Unsqueeze", {"x": rand(2, 3)}, axes=[0, -1], opset=11))


@COMPUTED
@pytest.mark.parametrize("opset", [13, 21])
def test_squeeze_unsqueeze_input_forms(computed, opset):
    x = rand(2, 1, 3, 1)
    assert_op_matches(*shape_input("Squeeze", x, "a", i64(1, -1), computed, opset=opset))
    assert_op_matches(*shape_input("Unsqueeze", rand(2, 3), "a", i64(0, 3, -1), computed, opset=opset))
    assert_op_matches(*single("Squeeze", {"x": x}, opset=opset))


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat(axis):
    assert_op_matches(*single("Concat", {"a": X, "b": rand(2, 3, 4, 5, seed=1)}, axis=axis))


@pytest.mark.parametrize(("opset", "how"), [(11, "attr"), (11, "equal"), (13, "input"), (13, "equal"),
                                            (18, "input"), (18, "num_outputs"), (18, "uneven")])
def test_split(opset, how):
    x = rand(2, 7 if how == "uneven" else 6, 3)
    if how == "attr":
        model = single("Split", {"x": x}, axis=1, split=[1, 2, 3], outputs=3, opset=opset)
    elif how == "input":
        model = single("Split", {"x": x}, consts={"s": i64(1, 2, 3)}, axis=1, outputs=3, opset=opset)
    elif how == "equal":
        model = single("Split", {"x": x}, axis=1, outputs=3, opset=opset)
    else:
        model = single("Split", {"x": x}, axis=1, outputs=3, num_outputs=3, opset=opset)
    assert_op_matches(*model)


SLICES = [
    ((0,), (2,), (1,), (1,)), ((1, 0), (-1, 100), (1, 3), (1, 2)), ((-1,), (-100,), (2,), (-1,)),
    ((3, 0), (0, 2), (3, 0), (-2, 1)), ((0,), (9223372036854775807,), (-1,), (3,)), ((5,), (1,), (2,), (1,)),
]


@COMPUTED
@pytest.mark.parametrize("opset", [10, 13])
@pytest.mark.parametrize("bounds", SLICES)
def test_slice(computed, opset, bounds):
    starts, ends, axes, steps = (i64(*b) for b in bounds)
    values = {"s": starts, "e": ends, "a": axes, "t": steps}
    if computed:
        model = single("Slice", {"x": X, **values}, opset=opset)
    else:
        model = single("Slice", {"x": X}, consts=values, opset=opset)
    assert_op_matches(*model)


def test_slice_attribute_form_opset1():
    assert_op_matches(*single("Slice", {"x": X}, starts=[1, 0], ends=[3, -1], axes=[2, 3], opset=1))


def test_slice_omitted_axes_and_steps():
    model = single("Slice", {"x": X}, consts={"s": i64(0, 1), "e": i64(1, 3)}, inputs=["x", "s", "e"], opset=13)
    assert_op_matches(*model)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(-7, 7), st.integers(-7, 7), st.sampled_from([-3, -2, -1, 1, 2, 3])),
                min_size=1, max_size=3),
       st.permutations([0, 1, 2, 3]))
def test_slice_property(bounds, axes):
    starts, ends, steps = zip(*bounds)
    values = {"s": i64(*starts), "e": i64(*ends), "a": i64(*axes[:len(bounds)]), "t": i64(*steps)}
    assert_op_matches(*single("Slice", {"x": X}, consts=values, opset=13), grad=False)


@pytest.mark.parametrize(("indices", "axis"), [(np.array(1), 0), (np.array(-1), 2), (i64(0, 2, -1), 1),
                                               (np.array([[0, 1], [1, 0]], np.int64), 3)])
@COMPUTED
def test_gather(indices, axis, computed):
    assert_op_matches(*shape_input("Gather", X, "i", indices, computed, axis=axis))


def test_gather_as_embedding_gives_weight_gradients():
    ids = np.array([[1, 4, 4], [0, -1, 2]], np.int64)
    assert_op_matches(*single("Gather", {"i": ids}, consts={"w": rand(5, 3)}, inputs=["w", "i"]))


def test_gather_elements_and_nd():
    idx = np.random.default_rng(0).integers(-3, 3, size=(2, 3, 4, 5))
    assert_op_matches(*single("GatherElements", {"x": X, "i": idx.astype(np.int64)}, axis=1))
    nd = np.array([[0, 1], [1, 2], [-1, 0]], np.int64)
    assert_op_matches(*single("GatherND", {"x": X, "i": nd}, opset=13))
    batched = np.array([[[1], [2]], [[0], [0]]], np.int64)
    assert_op_matches(*single("GatherND", {"x": X, "i": batched}, batch_dims=1, opset=13))


@pytest.mark.parametrize(("opset", "reduction"), [(11, None), (16, "add"), (18, "none")])
def test_scatter_nd(opset, reduction):
    idx = np.array([[0, 1], [1, 2]], np.int64)
    attrs = {} if reduction is None else {"reduction": reduction}
    assert_op_matches(*single("ScatterND", {"x": X, "i": idx, "u": rand(2, 4, 5, seed=1)}, opset=opset, **attrs))


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
def test_scatter_elements(reduction):
    idx = np.array([[[[0, 2, 1, 0, 2]]]], np.int64).repeat(2, 0).repeat(3, 1)
    feeds = {"x": X, "i": idx, "u": rand(2, 3, 1, 5, seed=1)}
    attrs = {} if reduction == "none" else {"reduction": reduction}
    assert_op_matches(*single("ScatterElements", feeds, axis=2, opset=18, **attrs))


@COMPUTED
@pytest.mark.parametrize("target", [(2, 3, 4, 5), (3, 1, 1, 1, 1), (1, 4, 5), (1,)])
def test_expand(computed, target):
    assert_op_matches(*shape_input("Expand", rand(1, 3, 1, 5) if target != (1, 4, 5) else X, "s",
                                   i64(*target), computed))


@COMPUTED
def test_tile(computed):
    assert_op_matches(*shape_input("Tile", X, "r", i64(1, 2, 1, 3), computed))


@pytest.mark.parametrize("start_end", [{}, {"start": 1}, {"end": -1}, {"start": -3, "end": 3}])
@pytest.mark.parametrize("opset", [13, 15, 19])
def test_shape(start_end, opset):
    attrs = start_end if opset >= 15 else {}
    assert_op_matches(*single("Shape", {"x": X}, opset=opset, **attrs))
    assert_op_matches(*single("Size", {"x": X}, opset=opset))


@pytest.mark.parametrize("value", [None, np.array([2.5], np.float32), np.array([3], np.int64)])
def test_constant_of_shape(value):
    attrs = {} if value is None else {"value": __import__("onnx").numpy_helper.from_array(value)}
    assert_op_matches(*single("ConstantOfShape", {"s": i64(2, 3)}, **attrs))


@pytest.mark.parametrize("dtype", [np.int64, np.float32])
def test_range(dtype):
    feeds = {"a": np.array(1, dtype), "b": np.array(10, dtype), "d": np.array(3, dtype)}
    assert_op_matches(*single("Range", feeds))


@pytest.mark.parametrize(("exclusive", "reverse"), [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_cumsum(exclusive, reverse):
    assert_op_matches(*single("CumSum", {"x": X}, consts={"a": np.array(2, np.int64)}, exclusive=exclusive,
                              reverse=reverse), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("upper", [0, 1])
def test_trilu(upper):
    assert_op_matches(*single("Trilu", {"x": X}, consts={"k": np.array(1, np.int64)}, upper=upper))


def test_einsum():
    assert_op_matches(*single("Einsum", {"a": rand(2, 3, 4), "b": rand(2, 4, 5, seed=1)}, equation="bij,bjk->bik"),
                      rtol=1e-5, atol=1e-5)


def test_constant_forms():
    from onnx import helper, numpy_helper

    for attrs in ({"value": numpy_helper.from_array(rand(2, 2))}, {"value_float": 1.5}, {"value_ints": [1, 2]},
                  {"value_int": 3}, {"value_floats": [1.0, 2.0]}):
        node = helper.make_node("Constant", [], ["c"], **attrs)
        add = helper.make_node("Identity", ["c"], ["y"])
        graph = helper.make_graph([node, add], "g", [], [helper.make_empty_tensor_value_info("y")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=10)
        assert_op_matches(model, {}, grad=False)


def test_split_into_one_output():
    assert_op_matches(*single("Split", {"x": X}, axis=1, outputs=1, opset=13))
