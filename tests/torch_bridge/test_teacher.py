"""The teacher cache: onnxruntime's outputs, computed once per sample, within the byte bound."""

from __future__ import annotations

import os

import numpy as np

from onnxtrim.calibration.feeds import Batch
from onnxtrim.torch_bridge import TeacherCache
from onnxtrim.torch_bridge.check import onnxruntime_outputs
from tests.torch_bridge.helpers import rand
from tests.torch_bridge.test_module import shared_model


def batches(n: int, size: int) -> list[Batch]:
    x = rand(n * size, 4)
    return [Batch({"x": x[i * size:(i + 1) * size]}, f"b{i}", np.arange(i * size, (i + 1) * size)) for i in range(n)]


def test_outputs_equal_onnxruntime_and_are_computed_once():
    model = shared_model()
    data = batches(4, 8)
    cache = TeacherCache(model, ["y", "h"])
    for _ in range(3):
        for b in data:
            got = cache.outputs(b)
            expected = onnxruntime_outputs(model, b.feeds)
            np.testing.assert_array_equal(got["y"], expected[0])
            np.testing.assert_array_equal(got["h"], expected[1])
    assert cache.runs == 4
    # rows of other batchings are found per sample
    mixed = Batch({"x": np.concatenate([data[2].feeds["x"][3:], data[0].feeds["x"][:2]])}, "mixed",
                  np.concatenate([data[2].indices[3:], data[0].indices[:2]]))
    np.testing.assert_array_equal(cache.outputs(mixed)["y"], onnxruntime_outputs(model, mixed.feeds)[0])
    assert cache.runs == 4
    cache.close()


def test_byte_bound_spills_to_a_temporary_directory_removed_on_close():
    model = shared_model()
    per_batch = 2 * 8 * 4 * 4  # two outputs of 8 x 4 float32
    cache = TeacherCache(model, ["y", "h"], max_bytes=per_batch * 2)
    data = batches(5, 8)
    for b in data:
        cache.outputs(b)
    assert cache.bytes_in_memory == per_batch * 2 <= cache.max_bytes
    assert cache.bytes_on_disk == per_batch * 3
    spill = cache._tmp.name
    assert len(os.listdir(spill)) == 6
    np.testing.assert_array_equal(cache.outputs(data[4])["y"], onnxruntime_outputs(model, data[4].feeds)[0])
    cache.close()
    assert not os.path.exists(spill)
