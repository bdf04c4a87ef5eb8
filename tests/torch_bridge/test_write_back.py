"""Write-back: only initializer payloads change; dtypes, names and the rest of the proto stay; external-data
models go through onnxtrim.model_io on both sides."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from onnxtrim import model_io
from onnxtrim.errors import BridgeError
from onnxtrim.torch_bridge import check_against_onnxruntime, to_torch, write_back
from tests.torch_bridge.helpers import rand, single
from tests.torch_bridge.test_module import shared_model
from tests.torch_bridge.test_zoo_bridge import without_initializer_values


def nudge(module) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.25)


def test_written_model_equals_module_and_keeps_everything_else():
    model = shared_model()
    model.graph.initializer[0].doc_string = "kept"
    module = to_torch(model)
    nudge(module)
    written = write_back(model, module)
    assert without_initializer_values(written) == without_initializer_values(model)
    assert written.graph.initializer[0].doc_string == "kept"
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(written.graph.initializer[0]),
                                  module.parameter("W").detach().numpy())
    check_against_onnxruntime(written, module, {"x": rand(3, 4)})
    assert model.graph.initializer[0].raw_data != written.graph.initializer[0].raw_data  # the input is untouched


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_dtype_preserved(dtype):
    model = single("MatMul", {"a": rand(2, 3, dtype=dtype)}, consts={"b": rand(3, 4, seed=1, dtype=dtype)})[0]
    module = to_torch(model)
    nudge(module)
    written = write_back(model, module)
    assert written.graph.initializer[0].data_type == model.graph.initializer[0].data_type
    check_against_onnxruntime(written, module, {"a": rand(2, 3, dtype=dtype)}, rtol=1e-2, atol=1e-2)


def test_external_data_round_trip(tmp_path):
    model = shared_model()
    source = tmp_path / "in.onnx"
    onnx.save(model, source, save_as_external_data=True, all_tensors_to_one_file=True, location="in.onnx.data",
              size_threshold=0)
    loaded = model_io.load_model(source).model  # weights read into memory, as the rest of onnxtrim does
    module = to_torch(loaded)
    nudge(module)
    written = write_back(loaded, module)
    paths = model_io.save_model(written, tmp_path / "out.onnx", external_data=True)
    assert [p.name for p in paths] == ["out.onnx", "out.onnx.data"]
    again = model_io.load_model(tmp_path / "out.onnx").model
    check_against_onnxruntime(again, module, {"x": rand(2, 4)})
    with pytest.raises(BridgeError, match="external data"):
        write_back(onnx.load(source, load_external_data=False), module)


def test_refuses_another_model():
    module = to_torch(shared_model())
    other = single("Relu", {"x": rand(2)})[0]
    with pytest.raises(BridgeError, match="not the model the module was built from"):
        write_back(other, module)
