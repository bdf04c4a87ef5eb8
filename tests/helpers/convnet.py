"""A small convnet whose trim is certainly faster: most channels of both convolutions are dead.

    x[N,3,32,32] ─Conv 3→32─Relu─Conv 32→64─Relu─GlobalAveragePool─Flatten─Gemm 64→10─▶ logits

Channels listed dead get zero weights and bias -1e4 before their ReLU, so they are exactly zero on any
data; every other channel has bias 1 and small weights, so it is active on any data of order one.
Removing the dead channels (24 of 32, 48 of 64) leaves every output unchanged and cuts the second
convolution's MACs by 12x (4x at a 16-channel rounding), so `--min-speedup 1.2` holds with room.
Labels are the original's own predictions: accuracy 100% before and after.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def dead_convnet(seed: int = 0, dead: tuple[int, int] = (24, 48)) -> onnx.ModelProto:
    """`dead`: how many of conv1's 32 and conv2's 64 channels are dead (the last ones)."""
    rng = np.random.default_rng(seed)

    def layer(out: int, inp: int, dead: int) -> tuple[np.ndarray, np.ndarray]:
        w = (rng.standard_normal((out, inp, 3, 3)) * 0.1 / np.sqrt(inp * 9)).astype(np.float32)
        b = np.ones(out, np.float32)
        w[out - dead:] = 0.0
        b[out - dead:] = -1e4
        return w, b

    w1, b1 = layer(32, 3, dead[0])
    w2, b2 = layer(64, 32, dead[1])
    w3 = (rng.standard_normal((10, 64)) / 8).astype(np.float32)
    b3 = np.zeros(10, np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], "conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], "relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], "conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], "relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["p"], "pool"),
        helper.make_node("Flatten", ["p"], ["f"], "flatten"),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["logits"], "fc", transB=1),
    ]
    inits = [numpy_helper.from_array(a, n) for n, a in (("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2),
                                                       ("w3", w3), ("b3", b3))]
    graph = helper.make_graph(nodes, "dead_convnet", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                    ["N", 3, 32, 32])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def write_case(directory: Path, samples: int = 160, per_file: int = 32,
               dead: tuple[int, int] = (24, 48)) -> tuple[Path, Path, Path]:
    """models/model.onnx, calib/*.npy and calib/labels.npy under `directory`, as docs/ci.md lays them out."""
    import onnxruntime as ort

    model = dead_convnet(dead=dead)
    (directory / "models").mkdir(parents=True, exist_ok=True)
    path = directory / "models" / "model.onnx"
    onnx.save(model, path)
    x = np.random.default_rng(1).standard_normal((samples, 3, 32, 32)).astype(np.float32)
    calib = directory / "calib"
    calib.mkdir(exist_ok=True)
    for k, start in enumerate(range(0, samples, per_file)):
        np.save(calib / f"batch_{k:03d}.npy", x[start:start + per_file])
    logits = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.save(calib / "labels.npy", logits.argmax(axis=1).astype(np.int64))
    return path, calib, calib / "labels.npy"
