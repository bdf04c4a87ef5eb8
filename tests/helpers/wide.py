"""Wide Gemm stacks with external data, written a layer at a time (a 2.3 GB model needs no 2.3 GB proto).

    x[N,W] ─Gemm─Relu─Gemm─Relu─ ... ─Gemm─▶ y[N,10]       (`layers` hidden Gemms of W×W, then W→10)

Hidden units listed in `dead` get zero weights and bias -1e4 in every hidden layer, so their ReLU
output is exactly zero on any data: a trim must remove them and leave the outputs unchanged. Every other
unit is active on any data of order one (bias 1 against weights of scale 0.1/sqrt(W)), so the dead units
are all that a default trim (`--apoz 1.0`) removes, whatever the number of calibration samples.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper

#: Large tensors start at multiples of 64 KiB in the data file (onnxruntime can map them).
_ALIGN = 1 << 16


def wide_gemm_model(path: Path, *, layers: int, width: int, dead: tuple[int, ...] = (0, 1, 2),
                    seed: int = 0, classes: int = 10) -> Path:
    """Write `path` and `path.data`: the model above."""
    rng = np.random.default_rng(seed)
    data_name = path.name + ".data"
    nodes, initializers = [], []
    with open(path.with_name(data_name), "xb") as data:

        def external(name: str, array: np.ndarray) -> None:
            start = -(-data.tell() // _ALIGN) * _ALIGN
            data.write(b"\0" * (start - data.tell()))
            array.tofile(data)
            tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=array.shape,
                                 data_location=TensorProto.EXTERNAL)
            for key, value in (("location", data_name), ("offset", str(start)),
                               ("length", str(array.nbytes))):
                tensor.external_data.add(key=key, value=value)
            initializers.append(tensor)

        previous = "x"
        for k in range(layers):
            w = rng.standard_normal((width, width), dtype=np.float32) * np.float32(0.1 / np.sqrt(width))
            b = np.ones(width, np.float32)
            w[list(dead)] = 0.0
            b[list(dead)] = -1e4
            external(f"w{k}", w)
            del w
            external(f"b{k}", b)
            nodes.append(helper.make_node("Gemm", [previous, f"w{k}", f"b{k}"], [f"h{k}"], f"gemm{k}", transB=1))
            nodes.append(helper.make_node("Relu", [f"h{k}"], [f"r{k}"], f"relu{k}"))
            previous = f"r{k}"
        external("w_out", rng.standard_normal((classes, width), dtype=np.float32) / np.float32(np.sqrt(width)))
        external("b_out", np.zeros(classes, np.float32))
        nodes.append(helper.make_node("Gemm", [previous, "w_out", "b_out"], ["y"], "gemm_out", transB=1))
        data.flush()
        os.fsync(data.fileno())
    graph = helper.make_graph(nodes, "wide", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", classes])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path.write_bytes(model.SerializeToString())
    return path


def wide_model_bytes(layers: int, width: int, classes: int = 10) -> int:
    """Bytes of weights `wide_gemm_model` writes (before alignment padding)."""
    return 4 * (layers * (width * width + width) + classes * width + classes)


def write_samples(directory: Path, width: int, samples: int, seed: int = 1) -> Path:
    """`samples` rows of N(0, 1) in one .npy file under `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    x = np.random.default_rng(seed).standard_normal((samples, width), dtype=np.float32)
    np.save(directory / "x.npy", x)
    return directory
