"""The test helpers themselves: op counts, runs, and that assert_equivalent fails when it should."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from tests.helpers.export import EXPORTERS, export_torch
from tests.helpers.onnx_utils import assert_equivalent, check, op_counts, run

#   x ──Relu──┬──Mul(2)──▶ y
#             └──ArgMax──▶ idx (int64)
TWO_OUTPUTS = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4] x) => (float[N, 4] y, int64[N, 1] idx) {
    r = Relu(x)
    two = Constant<value = float {2.0}>()
    y = Mul(r, two)
    idx = ArgMax<axis = 1>(r)
}
"""


def _model(scale: float = 2.0, text: str = TWO_OUTPUTS) -> onnx.ModelProto:
    return onnx.parser.parse_model(text.replace("{2.0}", "{" + repr(scale) + "}"))


FEEDS = {"x": np.array([[1.0, -2.0, 3.0, 0.5], [-1.0, 4.0, 2.0, 3.0]], dtype=np.float32)}


def test_op_counts_and_run() -> None:
    model = _model()
    assert op_counts(model) == {"Relu": 1, "Constant": 1, "Mul": 1, "ArgMax": 1}
    y, idx = run(model, FEEDS)
    np.testing.assert_array_equal(y, 2 * np.maximum(FEEDS["x"], 0))
    np.testing.assert_array_equal(idx, [[2], [1]])


def test_equivalent_within_tolerance() -> None:
    assert assert_equivalent(_model(2.0), _model(2.0 + 1e-7), FEEDS, rtol=1e-6, atol=0.0)[1] == 0.0


def test_float_difference_fails() -> None:
    with pytest.raises(AssertionError, match="output 'y'"):
        assert_equivalent(_model(2.0), _model(2.001), FEEDS, rtol=1e-6, atol=1e-6)


def test_integer_outputs_compared_exactly() -> None:
    #   x ──Mul(s)──▶ y ──Cast(int64)──▶ idx   (s = 1.0 vs 1.4: y within atol=1, idx differs)
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N, 4] x) => (float[N, 4] y, int64[N, 4] idx) {
        s = Constant<value = float {2.0}>()
        y = Mul(x, s)
        idx = Cast<to = 7>(y)
    }
    """
    with pytest.raises(AssertionError, match="compared exactly"):
        assert_equivalent(_model(1.0, text), _model(1.4, text), FEEDS, rtol=0.0, atol=10.0)


def test_external_data_checked_and_run_by_path(tmp_path: Path) -> None:
    #   x ──MatMul(W: external data)──▶ y
    w = onnx.numpy_helper.from_array(np.arange(16, dtype=np.float32).reshape(4, 4), "W")
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("MatMul", ["x", "W"], ["y"])],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 4])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 4])],
        [w],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)], ir_version=8)
    path = tmp_path / "m.onnx"
    on_disk = onnx.ModelProto()
    on_disk.CopyFrom(model)  # onnx.save moves the weights of the proto it is given out to the file
    onnx.save(on_disk, path, save_as_external_data=True, location="m.onnx.data", size_threshold=0)
    assert (tmp_path / "m.onnx.data").exists()
    unloaded = onnx.load(path, load_external_data=False)
    with pytest.raises(ValueError, match="by path"):
        check(unloaded)
    assert assert_equivalent(path, model, FEEDS, rtol=0.0, atol=0.0) == [0.0]


class _Chatty(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        print("chatter from forward")
        raise RuntimeError("boom")


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_export_failure_is_quiet_and_carries_the_chatter(exporter, tmp_path: Path, capfd) -> None:
    with pytest.raises(RuntimeError, match="boom") as info:
        export_torch(_Chatty(), torch.zeros(2, 3), tmp_path / "m.onnx", exporter)
    out, err = capfd.readouterr()
    assert "chatter" not in out + err
    assert any("chatter from forward" in note for note in getattr(info.value, "__notes__", []))
    assert list(tmp_path.iterdir()) == []


def test_export_unknown_exporter(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown exporter"):
        export_torch(torch.nn.Identity(), torch.zeros(2, 3), tmp_path / "m.onnx", "onnx2")  # type: ignore[arg-type]
