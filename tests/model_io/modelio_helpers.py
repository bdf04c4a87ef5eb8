"""Helpers shared by the model_io tests: tiny models, tampering with external data, and snapshots.

A snapshot (`tests.helpers.files.snapshot`, re-exported here) records every file under a directory, so
one equality assertion proves both that the inputs are untouched and that no output or temporary file
was left.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from onnxtrim.errors import ModelError, OutputError
from onnxtrim.model_io import load_model
from tests.helpers.files import snapshot

#   x[1,4] ──MatMul(w[4,256])──▶ y[1,256]      (w is 4 KiB: above the 1 KiB external-data threshold)
MATMUL = """
<ir_version: 8, opset_import: ["": 17]>
g (float[1,4] x) => (float[1,256] y) { y = MatMul(x, w) }
"""
WEIGHT = np.arange(4 * 256, dtype=np.float32).reshape(4, 256) / 7.0


def matmul_model() -> onnx.ModelProto:
    model = onnx.parser.parse_model(MATMUL)
    model.graph.initializer.append(numpy_helper.from_array(WEIGHT, "w"))
    return model


def parse(text: str) -> onnx.ModelProto:
    return onnx.parser.parse_model(text)


def write_model(path: Path, model: onnx.ModelProto) -> Path:
    """Serialize as is (onnx.save would try to write external data itself)."""
    path.write_bytes(model.SerializeToString())
    return path


def save_external(model: onnx.ModelProto, path: Path, location: str = "w.data") -> Path:
    """The way users make external-data models: onnx.save with everything in one file."""
    onnx.save(model, os.fspath(path), save_as_external_data=True, all_tensors_to_one_file=True,
              size_threshold=0, location=location)
    return path


def externalize(tensor: TensorProto, data_path: Path, location: str | None = None,
                **entries: str) -> None:
    """Move one tensor's data to `data_path` (appending) and point the tensor at it, in place.

    `location` defaults to the file name; extra `entries` override or add keys (offset, length, ...).
    """
    raw = numpy_helper.to_array(tensor).tobytes()
    with open(data_path, "ab") as handle:
        offset = handle.tell()
        handle.write(raw)
    for field in ("raw_data", "float_data", "int32_data", "int64_data", "double_data"):
        tensor.ClearField(field)
    tensor.data_location = TensorProto.EXTERNAL
    keys = {"location": data_path.name if location is None else location,
            "offset": str(offset), "length": str(len(raw))}
    keys.update(entries)
    del tensor.external_data[:]
    for key, value in keys.items():
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value


def assert_load_fails(path: Path, *fragments: str, root: Path | None = None) -> ModelError:
    """load_model must raise a one-line ModelError naming the file, and leave `root` exactly as it was."""
    root = root or path.parent
    before = snapshot(root)
    with pytest.raises(ModelError) as info:
        load_model(path)
    message = str(info.value)
    assert "\n" not in message and len(message) < 700, message
    assert str(path) in message, message
    for fragment in fragments:
        assert fragment in message, message
    assert snapshot(root) == before
    return info.value


def assert_one_line(error: ModelError | OutputError, *fragments: str) -> None:
    message = str(error)
    assert "\n" not in message and len(message) < 700, message
    for fragment in fragments:
        assert fragment in message, message
