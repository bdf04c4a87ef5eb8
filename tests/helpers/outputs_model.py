"""A model with one output of every kind the fidelity report tells apart.

    x[N,16] ─Gemm 16→32─Relu─h─┬─Gemm 32→10─▶ logits ──ArgMax─▶ label (int64)     class scores, integer
                               ├─Gemm 32→8─LayerNormalization─▶ emb               embedding
                               └─Gemm 32→1─▶ value [N,1]                          regression

`scale` multiplies every output weight (1e-6 makes outputs of order 1e-6: tiny absolute differences,
large relative ones). Units listed in `dead` of h are exactly zero on any data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def multi_output(scale: float = 1.0, dead: tuple[int, ...] = (0, 1, 2, 3), outputs: tuple[str, ...] | None = None,
                 seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((32, 16)) / 4).astype(np.float32)
    b1 = np.full(32, 0.5, np.float32)
    w1[list(dead)] = 0.0
    b1[list(dead)] = -1e4
    arrays = {"w1": w1, "b1": b1}
    for name, rows in (("w2", 10), ("w3", 8), ("w4", 1)):
        arrays[name] = (rng.standard_normal((rows, 32)) * scale / 4).astype(np.float32)
    arrays["scale"] = np.ones(8, np.float32)
    arrays["bias"] = np.zeros(8, np.float32)
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["g"], "hidden", transB=1),
        helper.make_node("Relu", ["g"], ["h"], "relu"),
        helper.make_node("Gemm", ["h", "w2"], ["logits"], "classifier", transB=1),
        helper.make_node("ArgMax", ["logits"], ["label"], "argmax", axis=1, keepdims=0),
        helper.make_node("Gemm", ["h", "w3"], ["e"], "project", transB=1),
        helper.make_node("LayerNormalization", ["e", "scale", "bias"], ["emb"], "norm", axis=-1),
        helper.make_node("Gemm", ["h", "w4"], ["value"], "regressor", transB=1),
    ]
    declared = {"logits": helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10]),
                "label": helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
                "emb": helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["N", 8]),
                "value": helper.make_tensor_value_info("value", TensorProto.FLOAT, ["N", 1])}
    chosen = outputs or tuple(declared)
    graph = helper.make_graph(nodes, "multi", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
                              [declared[name] for name in chosen],
                              [numpy_helper.from_array(a, n) for n, a in arrays.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    model = onnx.utils.Extractor(model).extract_model(["x"], list(chosen)) if outputs else model
    onnx.checker.check_model(model, full_check=True)
    return model


def write(directory: Path, model: onnx.ModelProto, samples: int = 200) -> tuple[Path, Path]:
    path = directory / "multi.onnx"
    onnx.save(model, path)
    calib = directory / "calib"
    calib.mkdir()
    x = np.random.default_rng(1).standard_normal((samples, 16)).astype(np.float32)
    np.save(calib / "x.npy", x)
    return path, calib
