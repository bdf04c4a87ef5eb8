"""InputSpec and model_input_specs: what the readers believe the model accepts."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from onnxtrim.calibration import InputSpec, model_input_specs, open_data
from onnxtrim.errors import CalibrationError

from .helpers import TWO, specs


def test_from_value_info_reads_static_symbolic_and_unknown_dims() -> None:
    vi = helper.make_tensor_value_info("x", TensorProto.FLOAT16, [4, "seq", None])
    spec = InputSpec.from_value_info(vi)
    assert spec == InputSpec("x", np.dtype(np.float16), (4, "seq", None))
    assert spec.static_batch == 4 and spec.rank == 3
    assert InputSpec("y", np.dtype(np.float32), ("N", 3)).static_batch is None


def test_model_input_specs_skips_initializers_and_keeps_order() -> None:
    #   x ──Add(W)──▶ y      W is both a graph input and an initializer (overridable constant)
    w = helper.make_tensor("W", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0])
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "W"], ["s"]), helper.make_node("Mul", ["s", "z"], ["y"])],
        "g",
        [
            helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 3]),
            helper.make_tensor_value_info("W", TensorProto.FLOAT, [3]),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        initializer=[w],
    )
    model = helper.make_model(graph)
    assert [s.name for s in model_input_specs(model)] == ["z", "x"]


def test_parsed_model_dtypes() -> None:
    a, ids, mask = specs(TWO)
    assert (a.dtype, ids.dtype, mask.dtype) == (np.float32, np.int64, np.int64)
    assert ids.shape == ("N", "seq")


@pytest.mark.parametrize(
    "vi",
    [
        helper.make_tensor_sequence_value_info("s", TensorProto.FLOAT, [3]),
        helper.make_tensor_value_info("u", TensorProto.FLOAT, None),
        helper.make_tensor_value_info("t", TensorProto.UNDEFINED, [3]),
    ],
    ids=["sequence", "unknown-rank", "undefined-type"],
)
def test_inputs_calibration_cannot_feed_are_refused(vi: onnx.ValueInfoProto) -> None:
    with pytest.raises(CalibrationError, match=f"'{vi.name}'"):
        InputSpec.from_value_info(vi)


def test_scalar_and_missing_inputs_refused(tmp_path) -> None:
    with pytest.raises(CalibrationError, match="scalar"):
        open_data(tmp_path, [InputSpec("k", np.dtype(np.float32), ())])
    with pytest.raises(CalibrationError, match="no inputs"):
        open_data(tmp_path, [])
