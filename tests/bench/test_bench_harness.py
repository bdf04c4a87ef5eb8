"""The benchmark harness: interleaving, statistics, ratios, report schema, real timings.

Fake sessions (bench_helpers.FakeFactory) go through the `session_factory` and `clock` seams of
`benchmark`, so the call order and every sample are known exactly; a few tests use onnxruntime
for real to check that a clearly slower model is measured slower.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from bench_helpers import FakeFactory, make_matmul_chain, make_mixed_inputs
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from onnxtrim.bench import SCHEMA_VERSION, BenchConfig, benchmark, measure_interleaved
from onnxtrim.bench.harness import summarize
from onnxtrim.errors import ConfigError, ModelError

FAST = {"warmup": 2, "runs": 15}


def _two_models():
    return [make_matmul_chain(8, 1, name="a"), make_matmul_chain(8, 2, name="b")]


def test_runs_are_interleaved_after_per_model_warmup() -> None:
    factory = FakeFactory()
    benchmark(_two_models(), BenchConfig(warmup=3, runs=4), session_factory=factory, clock=factory.clock)
    assert factory.log == ["a", "b"] + ["a"] * 2 + ["b"] * 2 + ["a", "b"] * 4


def test_interleaving_per_provider_and_batch_with_all_sessions_built_first() -> None:
    factory = FakeFactory(providers=lambda requested: ("CPUExecutionProvider",))  # no fake IO binding
    config = BenchConfig(providers=("cpu", "cuda"), batch_sizes=(1, 4), warmup=0, runs=2, intra_op_threads=3)
    models = [make_matmul_chain(8, 1, name=n) for n in "abc"]
    benchmark(models, config, session_factory=factory, clock=factory.clock)
    assert factory.created == [
        (n, p, 3) for p in ("CPUExecutionProvider", "CUDAExecutionProvider") for n in "abc"
    ]
    assert factory.log == ["a", "b", "c"] * 2 * 4
    batches = [s.feeds_seen[i]["x"].shape[0] for s in factory.sessions for i in range(4)]
    assert batches == [1, 1, 4, 4] * 6


def test_statistics_equal_numpy_on_the_recorded_samples() -> None:
    rng = np.random.default_rng(1)
    a_ns = rng.integers(1_000, 50_000, size=37)
    b_ns = rng.integers(1_000, 90_000, size=37)
    factory = FakeFactory({"a": a_ns.tolist(), "b": b_ns.tolist()})
    result = benchmark(
        _two_models(),
        BenchConfig(warmup=0, runs=37, batch_sizes=(4,)),
        session_factory=factory,
        clock=factory.clock,
    )
    for timing, ns in zip(result.timings, (a_ns, b_ns), strict=True):
        ms = ns / 1e6
        np.testing.assert_allclose(timing.samples_ms, ms)
        assert timing.median_ms == pytest.approx(np.median(ms))
        assert timing.p90_ms == pytest.approx(np.percentile(ms, 90))
        assert timing.p99_ms == pytest.approx(np.percentile(ms, 99))
        assert timing.min_ms == pytest.approx(ms.min())
        assert timing.mean_ms == pytest.approx(ms.mean())
        assert timing.throughput == pytest.approx(4 / (np.median(ms) / 1e3))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 10**9), min_size=1, max_size=60))
def test_summarize_matches_numpy(samples: list[int]) -> None:
    t = summarize("m", "CPUExecutionProvider", 2, np.array(samples))
    ms = np.array(samples) / 1e6
    assert (t.median_ms, t.min_ms) == (pytest.approx(np.median(ms)), pytest.approx(ms.min()))
    assert t.p99_ms == pytest.approx(np.percentile(ms, 99))
    assert t.min_ms <= t.median_ms <= t.p90_ms <= t.p99_ms


def test_ratios_are_against_the_first_model() -> None:
    factory = FakeFactory({"a": [2000], "b": [1000], "c": [6000]})
    models = [make_matmul_chain(8, 1, name=n) for n in "abc"]
    result = benchmark(
        models,
        BenchConfig(batch_sizes=(1, 2), warmup=0, runs=5),
        names=["A", "B", "C"],
        session_factory=factory,
        clock=factory.clock,
    )
    ratios = result.ratios()
    assert set(ratios) == {("CPUExecutionProvider", 1), ("CPUExecutionProvider", 2)}
    for group in ratios.values():
        assert group == {"A": pytest.approx(1.0), "B": pytest.approx(0.5), "C": pytest.approx(3.0)}
    assert result.models == ("A", "B", "C")


def test_json_report_schema_and_sorted_keys() -> None:
    factory = FakeFactory({"a": [2000], "b": [1000]})
    result = benchmark(_two_models(), BenchConfig(**FAST), session_factory=factory, clock=factory.clock)
    text = result.to_json()
    report = json.loads(text)
    assert report["schema_version"] == SCHEMA_VERSION == 1
    assert set(report) == {
        "schema_version",
        "config",
        "models",
        "device",
        "io_binding",
        "warnings",
        "environment",
        "timings",
        "ratios",
    }
    assert set(report["config"]) == {
        "providers",
        "batch_sizes",
        "warmup",
        "runs",
        "intra_op_threads",
        "dynamic_dims",
    }
    assert set(report["timings"][0]) == {
        "model",
        "provider",
        "batch",
        "median_ms",
        "p90_ms",
        "p99_ms",
        "min_ms",
        "mean_ms",
        "throughput",
        "io_binding",
        "samples_ms",
    }
    assert set(report["ratios"][0]) == {"provider", "batch", "model", "ratio"}
    assert len(report["timings"][0]["samples_ms"]) == FAST["runs"]
    assert report["io_binding"] is False and report["models"] == ["model0", "model1"]
    assert text == json.dumps(report, sort_keys=True, indent=2) + "\n", "keys are sorted, output stable"


def test_unmeasurable_values_become_null_in_json() -> None:
    factory = FakeFactory({"a": [0], "b": [0]})
    result = benchmark(_two_models(), BenchConfig(**FAST), session_factory=factory, clock=factory.clock)
    report = json.loads(result.to_json())
    assert report["timings"][0]["throughput"] is None and report["ratios"][0]["ratio"] is None


def test_fallback_to_cpu_is_reported() -> None:
    factory = FakeFactory(providers=lambda requested: ("CPUExecutionProvider",))
    result = benchmark(
        _two_models(), BenchConfig(providers=("cuda",), **FAST), session_factory=factory, clock=factory.clock
    )
    assert len(result.warnings) == 2 and "fell back" in result.warnings[0]
    assert result.io_binding is False  # the CPU session was timed as what it is


def test_given_feeds_reach_every_model_identically() -> None:
    factory = FakeFactory()
    data = np.arange(16, dtype=np.float32).reshape(2, 8)
    benchmark(
        _two_models(),
        BenchConfig(batch_sizes=(3,), **FAST),
        feeds={"x": data},
        session_factory=factory,
        clock=factory.clock,
    )
    first = factory.sessions[0].feeds_seen[0]["x"]
    np.testing.assert_array_equal(first, data[[0, 1, 0]])
    assert all(s.feeds_seen[-1]["x"] is first for s in factory.sessions)


def test_bad_inputs_fail_before_any_session_is_built() -> None:
    factory = FakeFactory()
    with pytest.raises(ConfigError, match="'seq'"):
        benchmark([make_mixed_inputs()], BenchConfig(**FAST), session_factory=factory)
    with pytest.raises(ConfigError, match="differs"):
        benchmark(
            [make_matmul_chain(8, 1), make_matmul_chain(16, 1)], BenchConfig(**FAST), session_factory=factory
        )
    assert factory.created == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"runs": 0}, "runs"),
        ({"warmup": -1}, "warmup"),
        ({"batch_sizes": ()}, "batch"),
        ({"batch_sizes": (1, 0)}, "batch"),
        ({"providers": ("nosuch",)}, "unknown provider"),
        ({"providers": ()}, "provider"),
        ({"intra_op_threads": -2}, "threads"),
        ({"dynamic_dims": {"seq": 0}}, "positive"),
    ],
)
def test_config_validation(kwargs, match) -> None:
    with pytest.raises(ConfigError, match=match):
        BenchConfig(**kwargs)


def test_config_normalises_convenient_spellings() -> None:
    config = BenchConfig(providers="cpu", batch_sizes=[1, 2])  # type: ignore[arg-type]
    assert config.providers == ("cpu",) and config.batch_sizes == (1, 2)
    assert BenchConfig(providers=("cpu", "CPUExecutionProvider")).resolved_providers == (
        "CPUExecutionProvider",
    )


def test_config_is_frozen_including_dynamic_dims() -> None:
    dims = {"seq": 4}
    config = BenchConfig(dynamic_dims=dims)
    dims["seq"] = 99
    assert config.dynamic_dims["seq"] == 4
    with pytest.raises(TypeError):
        config.dynamic_dims["seq"] = 5  # type: ignore[index]


def test_model_names_default_to_file_names(tmp_path) -> None:
    paths = []
    for sub, depth in (("orig", 1), ("trim", 2)):
        (tmp_path / sub).mkdir()
        paths.append(tmp_path / sub / "model.onnx")
        onnx.save(make_matmul_chain(8, depth), paths[-1])
    result = benchmark(paths, BenchConfig(warmup=0, runs=2))
    assert result.models == tuple(str(p) for p in paths), "clashing file names fall back to paths"
    with pytest.raises(ConfigError, match="unique"):
        benchmark(paths, BenchConfig(warmup=0, runs=2), names=["x", "x"])


def test_unreadable_model_is_a_model_error(tmp_path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf at all \xff\xfe")
    with pytest.raises(ModelError):
        benchmark([bad], BenchConfig(warmup=0, runs=1))
    with pytest.raises(ModelError, match="missing.onnx: cannot open model"):
        benchmark([tmp_path / "missing.onnx"], BenchConfig(warmup=0, runs=1))


def test_a_model_that_fails_at_run_time_is_named() -> None:
    """x[N, 8] -> Reshape([3, -1]): 8 elements do not split into 3 rows at batch 1."""
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [3, -1])
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        "bad",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [shape],
    )
    bad = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    with pytest.raises(ModelError, match="'broken' failed to run on CPUExecutionProvider at batch size 1"):
        benchmark([make_matmul_chain(8, 1), bad], BenchConfig(warmup=1, runs=1), names=["ok", "broken"])


def test_measure_interleaved_returns_one_row_per_runner() -> None:
    calls: list[str] = []
    ticks = iter(range(0, 10**6, 7))
    samples = measure_interleaved(
        [lambda: calls.append("a"), lambda: calls.append("b")], 1, 3, clock=lambda: next(ticks)
    )
    assert samples.shape == (2, 3) and (samples == 7).all()
    assert calls == ["a", "b", "a", "b", "a", "b", "a", "b"]


def test_a_clearly_slower_model_is_measured_slower() -> None:
    """Real onnxruntime: 8 MatMuls of 512x512 against one, 8x the work."""
    slow, fast = make_matmul_chain(512, 8, name="slow"), make_matmul_chain(512, 1, name="fast")
    result = benchmark([fast, slow], BenchConfig(batch_sizes=(1, 4), warmup=3, runs=15))
    assert result.device and result.io_binding is False and result.warnings == ()
    for (_provider, batch), group in result.ratios().items():
        assert group["model1"] > 2.0, f"slow model not measured slower at batch {batch}: {group}"
    assert all(t.min_ms > 0 and len(t.samples_ms) == 15 for t in result.timings)


def test_real_run_with_mixed_dtypes_and_dims() -> None:
    result = benchmark(
        [make_mixed_inputs()],
        BenchConfig(batch_sizes=(2,), warmup=1, runs=3, dynamic_dims={"seq": 5, "width": 4}),
    )
    assert [t.batch for t in result.timings] == [2]
