"""Benchmark inputs: signatures, compatibility between models, synthesised and given feeds."""

from __future__ import annotations

import numpy as np
import pytest
from bench_helpers import make_matmul_chain, make_mixed_inputs
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from onnxtrim.bench.inputs import (
    InputSpec,
    check_same_inputs,
    effective_batch,
    fit_feeds,
    synthesize_feeds,
)
from onnxtrim.calibration.feeds import model_input_specs
from onnxtrim.errors import ConfigError


def test_input_specs_skip_initializers_listed_as_inputs() -> None:
    model = make_matmul_chain(8, 1)
    model.graph.input.append(helper.make_tensor_value_info("w0", TensorProto.FLOAT, [8, 8]))
    assert [s.name for s in model_input_specs(model)] == ["x"]


def test_synthesised_inputs_respect_dtypes_and_dynamic_dims() -> None:
    mixed_inputs_model = make_mixed_inputs()
    specs = model_input_specs(mixed_inputs_model)
    feeds = synthesize_feeds(specs, batch=4, dynamic_dims={"seq": 7, "width": 5})
    assert feeds["ids"].dtype == np.int64 and feeds["ids"].shape == (4, 7)
    assert feeds["mask"].dtype == np.bool_ and feeds["mask"].shape == (4, 7)
    assert feeds["feats"].dtype == np.float16 and feeds["feats"].shape == (4, 3, 5)
    assert set(np.unique(feeds["ids"])) <= {0, 1}, "integers stay valid indices into any table"


def test_synthesised_inputs_are_reproducible() -> None:
    mixed_inputs_model = make_mixed_inputs()
    specs = model_input_specs(mixed_inputs_model)
    dims = {"seq": 3, "width": 2}
    a, b = synthesize_feeds(specs, 2, dims), synthesize_feeds(specs, 2, dims)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


def test_unresolved_symbolic_dim_names_the_dim() -> None:
    mixed_inputs_model = make_mixed_inputs()
    specs = model_input_specs(mixed_inputs_model)
    with pytest.raises(ConfigError, match=r"'seq'.*--dim seq="):
        synthesize_feeds(specs, 1, {"width": 5})


def test_unnamed_dynamic_dim_beyond_batch_is_refused() -> None:
    spec = InputSpec("x", np.dtype(np.float32), (None, None))
    with pytest.raises(ConfigError, match="unnamed"):
        synthesize_feeds([spec], 1, {})
    assert synthesize_feeds([InputSpec("x", np.dtype(np.float32), (None, 4))], 3, {})["x"].shape == (3, 4)


@pytest.mark.parametrize(
    ("other", "match"),
    [
        (make_matmul_chain(16, 1), r"input 'x' differs"),  # width 16 vs 8
        (make_matmul_chain(8, 1, batch_dim=1), r"input 'x' differs"),  # fixed vs dynamic batch
        (make_mixed_inputs(), r"has inputs"),  # different names
    ],
)
def test_mismatched_inputs_are_a_config_error(other, match) -> None:
    base = make_matmul_chain(8, 1)
    with pytest.raises(ConfigError, match=match):
        check_same_inputs([model_input_specs(base), model_input_specs(other)], ["base.onnx", "other.onnx"])


def test_renamed_symbolic_dims_are_compatible() -> None:
    check_same_inputs(
        [
            model_input_specs(make_matmul_chain(8, 1, batch_dim="N")),
            model_input_specs(make_matmul_chain(8, 2, batch_dim="batch")),
        ],
        ["a", "b"],
    )


def test_static_batch_models_run_only_at_their_batch() -> None:
    specs = model_input_specs(make_matmul_chain(8, 1, batch_dim=2))
    assert effective_batch(specs, 2) == 2
    with pytest.raises(ConfigError, match="fixed batch dimension of 2"):
        effective_batch(specs, 1)


@settings(max_examples=30, deadline=None)
@given(rows=st.integers(1, 9), batch=st.integers(1, 20))
def test_given_feeds_are_cut_or_tiled_along_axis_0(rows: int, batch: int) -> None:
    spec = InputSpec("x", np.dtype(np.float32), ("N", 3))
    data = np.arange(rows * 3, dtype=np.float32).reshape(rows, 3)
    out = fit_feeds([spec], {"x": data}, batch)["x"]
    assert out.shape == (batch, 3)
    for i in range(batch):
        np.testing.assert_array_equal(out[i], data[i % rows])


def test_given_feeds_are_cast_within_kind_and_checked() -> None:
    spec = InputSpec("x", np.dtype(np.float32), ("N", 3))
    assert fit_feeds([spec], {"x": np.ones((2, 3))}, 1)["x"].dtype == np.float32  # float64 .npy files
    with pytest.raises(ConfigError, match="expects float32"):
        fit_feeds([spec], {"x": np.ones((2, 3), dtype=np.complex64)}, 1)
    with pytest.raises(ConfigError, match="axis 1 must be 3"):
        fit_feeds([spec], {"x": np.ones((2, 4), dtype=np.float32)}, 1)
    with pytest.raises(ConfigError, match="model expects"):
        fit_feeds([spec], {"y": np.ones((2, 3), dtype=np.float32)}, 1)
