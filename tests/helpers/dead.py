"""Make channels provably dead, so removing them must leave every output unchanged."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper


def set_initializer(model: onnx.ModelProto, name: str, update) -> None:
    for i, t in enumerate(model.graph.initializer):
        if t.name == name:
            array = numpy_helper.to_array(t).copy()
            update(array)
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(array, name))
            return
    raise KeyError(name)


def dead_chain(conv_channels: list[int], hidden_units: list[int]) -> onnx.ModelProto:
    """CHAIN with BN weight 0 / bias -1e4 on `conv_channels` and dead `hidden_units` before the ReLUs.

    Every other channel gets a positive bias, so none is dead by accident of random weights.
    """
    from tests.helpers import models

    model = onnx.ModelProto()
    model.CopyFrom(models.CHAIN)

    def kill(values, channels, value, alive=None):
        if alive is not None:
            values[...] = alive
        values[channels] = value

    set_initializer(model, "s", lambda a: kill(a, conv_channels, 0.0))
    set_initializer(model, "bb", lambda a: kill(a, conv_channels, -1e4, alive=1.0))
    set_initializer(model, "w2", lambda a: kill(a, hidden_units, 0.0))
    set_initializer(model, "b2", lambda a: kill(a, hidden_units, -1e4, alive=30.0))
    return model


def write_npy_batches(directory, x: np.ndarray, per_file: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for k, start in enumerate(range(0, len(x), per_file)):
        np.save(directory / f"batch_{k:03d}.npy", x[start:start + per_file])
