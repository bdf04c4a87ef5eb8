"""What becomes a Parameter, a buffer or an input; calling conventions; capture; errors; no torch import
where none is needed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import helper, numpy_helper

from onnxtrim.errors import BridgeError
from onnxtrim.torch_bridge import bridge, check_against_onnxruntime, to_torch
from tests.torch_bridge.helpers import IR_VERSION, rand, single

ROOT = Path(__file__).resolve().parents[2]


def model_from_text(text: str, **inits: np.ndarray) -> onnx.ModelProto:
    model = onnx.parser.parse_model(text)
    model.graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in inits.items())
    model.ir_version = IR_VERSION
    return model


#   x ─ MatMul(W) ─ Add(b) ─ Relu ─ h ─ MatMul(W via Identity) ─ y
#                                 └───────────────────────────── h (second output)
SHARED = """
<ir_version: 10, opset_import: ["" : 17]>
g (float[N, 4] x) => (float[N, 4] y, float[N, 4] h) {
    a = MatMul(x, W)
    pre = Add(a, b)
    h = Relu(pre)
    W2 = Identity(W)
    y = MatMul(h, W2)
}
"""


def shared_model() -> onnx.ModelProto:
    return model_from_text(SHARED, W=rand(4, 4, seed=1), b=rand(4, seed=2))


def test_a_shared_initializer_is_one_tied_parameter():
    module = to_torch(shared_model())
    assert sorted(module.onnx_parameters()) == ["W", "b"]
    w = module.parameter("W")
    y, _ = module(rand(3, 4))
    y.sum().backward()
    x = torch.from_numpy(rand(3, 4))
    w_ = w.detach().clone().requires_grad_(True)
    b_ = module.parameter("b").detach()
    (torch.relu(x @ w_ + b_) @ w_).sum().backward()
    assert torch.allclose(w.grad, w_.grad, atol=1e-6)  # both uses contribute to the one gradient


def test_outputs_in_graph_order_by_position_or_name():
    model = shared_model()
    module = to_torch(model)
    x = rand(2, 4)
    by_position, by_name = module(x), module({"x": x})
    assert module.output_names == ["y", "h"]
    for a, b in zip(by_position, by_name):
        assert torch.equal(a, b)
    check_against_onnxruntime(model, module, {"x": x})


def test_capture_returns_intermediates_with_gradients():
    module = to_torch(shared_model())
    (y, _), seen = module(rand(2, 4), capture=["pre", "h"])
    y.pow(2).sum().backward()
    assert set(seen) == {"pre", "h"} and seen["h"].grad is not None
    taylor = (seen["h"] * seen["h"].grad).mean(0)  # a · ∂L/∂a, per unit
    assert taylor.shape == (4,)
    with pytest.raises(KeyError, match="nope"):
        module(rand(2, 4), capture=["nope"])


def test_what_becomes_a_buffer():
    #   x ─ BatchNormalization(s, b, mean, var) ─ Mul(k) ─ Add(Constant) ─ Reshape(shape) ─ y
    text = """
    <ir_version: 10, opset_import: ["" : 17]>
    g (float[N, 3, 2, 2] x) => (float[N, 12] y) {
        n = BatchNormalization(x, s, b, mean, var)
        m = Mul(n, k)
        c = Constant<value = float[1] {0.5}>()
        a = Add(m, c)
        y = Reshape(a, shape)
    }
    """
    model = model_from_text(text, s=rand(3, seed=1), b=rand(3, seed=2), mean=rand(3, seed=3),
                            var=np.ones(3, np.float32), k=np.array([2.0], np.float32),
                            shape=np.array([-1, 12], np.int64))
    module = to_torch(model)
    assert sorted(module.onnx_parameters()) == ["b", "s"]  # statistics, a one-element scale, ints: buffers
    check_against_onnxruntime(model, module, {"x": rand(2, 3, 2, 2)})


def test_trainable_override():
    module = to_torch(shared_model(), trainable=lambda init: init.name == "b")
    assert list(module.onnx_parameters()) == ["b"]


def test_an_initializer_that_is_also_an_input_is_an_optional_input():
    model = shared_model()
    model.graph.input.append(helper.make_tensor_value_info("b", onnx.TensorProto.FLOAT, [4]))
    module = to_torch(model)
    assert "b" not in module.onnx_parameters() and module.optional_input_names == ["b"]
    x, other = rand(2, 4), rand(4, seed=9)
    check_against_onnxruntime(model, module, {"x": x})
    check_against_onnxruntime(model, module, {"x": x, "b": other})


def test_dynamic_batch_through_shape_arithmetic():
    #   x ─ Shape ─ Gather(0) ─ Unsqueeze ─ Concat(-1) ─ Reshape(x) ─ y   (the TorchScript exporter's flatten)
    text = """
    <ir_version: 10, opset_import: ["" : 13]>
    g (float[N, 3, 4] x) => (float[N, 12] y) {
        s = Shape(x)
        zero = Constant<value = int64 {0}>()
        n = Gather(s, zero)
        axes = Constant<value = int64[1] {0}>()
        n1 = Unsqueeze(n, axes)
        minus = Constant<value = int64[1] {-1}>()
        target = Concat<axis = 0>(n1, minus)
        y = Reshape(x, target)
    }
    """
    model = model_from_text(text)
    module = to_torch(model)
    for batch in (1, 3, 8):
        check_against_onnxruntime(model, module, {"x": rand(batch, 3, 4)})


def test_unsupported_op_names_op_and_node():
    node = helper.make_node("NonMaxSuppression", ["b", "s"], ["y"], name="nms_1")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("b", 1, [1, 4, 4]),
                                            helper.make_tensor_value_info("s", 1, [1, 1, 4])],
                              [helper.make_tensor_value_info("y", 7, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION)
    with pytest.raises(BridgeError, match=r"op 'NonMaxSuppression' at node 'nms_1'.*no torch mapping"):
        to_torch(model)


def test_unknown_attribute_and_unsupported_value_are_errors():
    model, feeds = single("Relu", {"x": rand(2)})
    model.graph.node[0].attribute.append(helper.make_attribute("bogus", 1))
    with pytest.raises(BridgeError, match=r"op 'Relu' at node 'Relu#0': attribute 'bogus'"):
        to_torch(model)
    model, feeds = single("Resize", {"x": rand(1, 1, 4, 4)}, consts={"r": np.zeros(0, np.float32),
                                                                  "s": np.array([1, 1, .5, .5], np.float32)},
                          antialias=1, mode="linear", opset=18)
    model.graph.node[0].name = "down"
    with pytest.raises(BridgeError, match=r"op 'Resize' at node 'down'.*antialias"):
        to_torch(model)(feeds)


def test_external_data_must_be_loaded(tmp_path):
    model = shared_model()
    onnx.save(model, tmp_path / "m.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
              location="m.data", size_threshold=0)
    unloaded = onnx.load(tmp_path / "m.onnx", load_external_data=False)
    with pytest.raises(BridgeError, match="external data"):
        to_torch(unloaded)


def test_a_wrong_result_is_caught_naming_the_output():
    model = shared_model()
    module, agreement = bridge(model, {"x": rand(2, 4)})
    assert agreement.max_abs < 1e-5 and [o.name for o in agreement.outputs] == ["y", "h"]
    with torch.no_grad():
        module.parameter("W")[0, 0] += 1.0
    with pytest.raises(BridgeError, match=r"output 'y' differs from onnxruntime: max \|Δ\|"):
        check_against_onnxruntime(model, module, {"x": rand(2, 4)})


def test_wrong_inputs_are_errors():
    module = to_torch(shared_model())
    with pytest.raises(BridgeError, match="input 'x' not given"):
        module({})
    with pytest.raises(BridgeError, match="unknown input"):
        module({"x": rand(2, 4), "z": rand(1)})
    with pytest.raises(BridgeError, match=r"op 'MatMul' at node 'MatMul#0' failed in torch"):
        module(rand(2, 5))


def test_module_follows_the_device_and_dtype_of_float16_weights():
    model = single("MatMul", {"a": rand(2, 3, dtype=np.float16)}, consts={"b": rand(3, 4, seed=1, dtype=np.float16)})[0]
    module = to_torch(model)
    assert module.parameter("b").dtype == torch.float16
    check_against_onnxruntime(model, module, {"a": rand(2, 3, dtype=np.float16)}, rtol=1e-2, atol=1e-2)


def test_trimming_never_imports_torch(tmp_path):
    """`import onnxtrim`, `onnxtrim.api` and a trim without fine-tuning leave torch out of sys.modules."""
    from tests.helpers.cli import chain_case

    path, calib = chain_case(tmp_path)
    script = textwrap.dedent(f"""
        import sys
        import onnxtrim
        from onnxtrim.api import trim
        from onnxtrim.config import TrimConfig
        result = trim(TrimConfig(model={str(path)!r}, data={str(calib)!r}))
        assert result.fidelity is not None
        loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
        print("torch modules:", loaded)
        assert not loaded, loaded
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "torch modules: []" in done.stdout
