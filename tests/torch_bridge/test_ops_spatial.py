"""Pooling, Pad, Resize and Upsample against onnxruntime, at each opset revision handled."""

from __future__ import annotations

import numpy as np
import pytest

from tests.torch_bridge.helpers import assert_op_matches, rand, single

IMG = rand(2, 3, 7, 6)


def f32(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def i64(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


POOLS = [
    {"kernel_shape": [2, 2]}, {"kernel_shape": [3, 3], "strides": [2, 2]},
    {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, {"kernel_shape": [3, 2], "pads": [0, 1, 2, 0]},
    {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1},
    {"kernel_shape": [3, 3], "auto_pad": "SAME_UPPER", "strides": [2, 2]},
    {"kernel_shape": [3, 3], "auto_pad": "SAME_LOWER", "strides": [2, 2]},
]


def _id(attrs: dict) -> str:
    return "-".join(f"{k}{v}" for k, v in attrs.items())


@pytest.mark.parametrize("attrs", [*POOLS, {"kernel_shape": [2, 2], "dilations": [2, 1]}], ids=_id)
@pytest.mark.parametrize("opset", [12, 18])
def test_max_pool(attrs, opset):
    assert_op_matches(*single("MaxPool", {"x": IMG}, opset=opset, **attrs))


@pytest.mark.parametrize("attrs", POOLS, ids=_id)
@pytest.mark.parametrize("count_include_pad", [0, 1])
@pytest.mark.parametrize("opset", [11, 19])
def test_average_pool(attrs, count_include_pad, opset):
    assert_op_matches(*single("AveragePool", {"x": IMG}, opset=opset, count_include_pad=count_include_pad,
                              **attrs))


def test_average_pool_ceil_mode_with_pads_counted():
    model = single("AveragePool", {"x": rand(1, 2, 8, 8)}, kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1,
                   pads=[1, 1, 1, 1], count_include_pad=1, opset=19)
    assert_op_matches(*model)


def test_max_pool_1d_and_3d():
    assert_op_matches(*single("MaxPool", {"x": rand(2, 3, 9)}, kernel_shape=[3], strides=[2]))
    assert_op_matches(*single("MaxPool", {"x": rand(1, 2, 4, 5, 6)}, kernel_shape=[2, 2, 2]))


@pytest.mark.parametrize("p", [1, 2, 3])
def test_lp_pool(p):
    assert_op_matches(*single("LpPool", {"x": IMG}, kernel_shape=[2, 2], p=p, pads=[1, 0, 1, 0], opset=11),
                      rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"])
def test_global_pools(op):
    assert_op_matches(*single(op, {"x": IMG}), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
@pytest.mark.parametrize("opset", [2, 11, 13, 18, 19])
def test_pad(mode, opset):
    pads = [0, 0, 1, 2, 0, 1, 2, 1]
    if opset == 2:
        model = single("Pad", {"x": IMG}, pads=pads, mode=mode, value=0.5, opset=2)
    else:
        model = single("Pad", {"x": IMG}, consts={"p": i64(*pads), "v": f32(0.5)[0]}, mode=mode, opset=opset)
    assert_op_matches(*model)


def test_pad_wrap_opset19_and_axes_opset18():
    assert_op_matches(*single("Pad", {"x": IMG}, consts={"p": i64(0, 0, 2, 1, 0, 0, 1, 3)}, mode="wrap", opset=19))
    model = single("Pad", {"x": IMG}, consts={"p": i64(1, 2, 3, 1), "v": np.array(0, np.float32), "a": i64(-1, 2)},
                   opset=18)
    assert_op_matches(*model)


def test_pad_negative_crops_and_computed_pads():
    assert_op_matches(*single("Pad", {"x": IMG}, consts={"p": i64(0, 0, -1, 1, 0, 0, 1, -2)}, opset=13))
    assert_op_matches(*single("Pad", {"x": IMG, "p": i64(0, 0, 1, 1, 0, 0, 1, 1)}, opset=13))


RESIZE_COORDS = ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"]


@pytest.mark.parametrize("coord", RESIZE_COORDS)
@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
@pytest.mark.parametrize("target", ["up", "down", "sizes"])
@pytest.mark.parametrize("opset", [11, 13, 18])
def test_resize(coord, mode, target, opset):
    roi = np.zeros(0, np.float32)
    if target == "sizes":
        consts = {"r": roi, "s": np.zeros(0, np.float32), "z": i64(2, 3, 11, 4)}
        inputs = ["x", "r", "s", "z"]
    else:
        consts = {"r": roi, "s": f32(1, 1, 2, 1.5) if target == "up" else f32(1, 1, 0.5, 0.7)}
        inputs = ["x", "r", "s"]
    assert_op_matches(*single("Resize", {"x": IMG}, consts=consts, inputs=inputs, mode=mode,
                              coordinate_transformation_mode=coord, opset=opset), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("nearest_mode", ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"])
def test_resize_nearest_modes(nearest_mode):
    consts = {"r": np.zeros(0, np.float32), "s": f32(1, 1, 3, 2.5)}
    assert_op_matches(*single("Resize", {"x": IMG}, consts=consts, mode="nearest", nearest_mode=nearest_mode,
                              coordinate_transformation_mode="half_pixel", opset=13))


def test_resize_opset19_half_pixel_symmetric_and_axes():
    consts = {"r": np.zeros(0, np.float32), "s": f32(1.7, 0.6)}
    assert_op_matches(*single("Resize", {"x": IMG}, consts=consts, mode="linear", axes=[2, 3],
                              coordinate_transformation_mode="half_pixel_symmetric", opset=19), rtol=1e-4, atol=1e-5)


def test_resize_cubic_exclude_outside():
    consts = {"r": np.zeros(0, np.float32), "s": f32(1, 1, 2, 2)}
    assert_op_matches(*single("Resize", {"x": IMG}, consts=consts, mode="cubic", exclude_outside=1,
                              cubic_coeff_a=-0.5, opset=13), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_resize_opset10_and_upsample(mode):
    assert_op_matches(*single("Resize", {"x": IMG}, consts={"s": f32(1, 1, 2, 3)}, mode=mode, opset=10),
                      rtol=1e-4, atol=1e-5)
    assert_op_matches(*single("Upsample", {"x": IMG}, consts={"s": f32(1, 1, 3, 2)}, mode=mode, opset=9),
                      rtol=1e-4, atol=1e-5)


def test_resize_computed_sizes():
    feeds = {"x": IMG, "z": i64(2, 3, 14, 12)}
    model = single("Resize", feeds, consts={"r": np.zeros(0, np.float32), "s": np.zeros(0, np.float32)},
                   inputs=["x", "r", "s", "z"], mode="nearest", opset=13)
    assert_op_matches(*model)
