"""What is inside the stopwatch: plain run on CPU, IO binding on GPU.

The IO-binding runner is exercised for real on CPU memory (device_type="cpu"): the same
onnxruntime calls as on CUDA except for the device string. A fake records that inputs are
copied once and each timed call runs and synchronises. The CUDA test runs only where a
session really gets CUDAExecutionProvider.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from bench_helpers import make_matmul_chain

from onnxtrim.bench import BenchConfig, benchmark
from onnxtrim.bench.device import cpu_name, gpu_name
from onnxtrim.bench.runners import IOBindingRunner, PlainRunner, cuda_device_id, make_runner
from onnxtrim.errors import ConfigError, DependencyError
from onnxtrim.runtime import make_session


def _feeds(batch: int = 3, width: int = 16) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(0).standard_normal((batch, width)).astype(np.float32)}


def test_plain_runner_on_cpu_session() -> None:
    session = make_session(make_matmul_chain(16, 2), ["cpu"], intra_op_threads=1)
    runner = make_runner(session, _feeds())
    assert isinstance(runner, PlainRunner) and runner.io_binding is False
    runner()
    expected = session.run(None, _feeds())
    np.testing.assert_allclose(runner.fetch_outputs()[0], expected[0])


def test_io_binding_runner_for_real_on_cpu_memory() -> None:
    session = make_session(make_matmul_chain(16, 2), ["cpu"], intra_op_threads=1)
    runner = IOBindingRunner(session, _feeds(), device_type="cpu", device_id=0)
    for _ in range(3):
        runner()
    np.testing.assert_allclose(runner.fetch_outputs()[0], session.run(None, _feeds())[0], rtol=1e-6)


class _FakeBinding:
    def __init__(self, log: list[tuple]) -> None:
        self.log = log

    def bind_ortvalue_input(self, name: str, value: Any) -> None:
        self.log.append(("bind_input", name, value))

    def bind_output(self, name: str, device_type: str, device_id: int) -> None:
        self.log.append(("bind_output", name, device_type, device_id))

    def synchronize_outputs(self) -> None:
        self.log.append(("sync",))

    def copy_outputs_to_cpu(self) -> list[np.ndarray]:
        return [np.zeros(1)]


class _FakeCudaSession:
    def __init__(self, device_id: int = 0) -> None:
        self.log: list[tuple] = []
        self.device_id = device_id

    def get_providers(self) -> list[str]:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]

    def get_provider_options(self) -> dict[str, dict[str, str]]:
        return {"CUDAExecutionProvider": {"device_id": str(self.device_id)}, "CPUExecutionProvider": {}}

    def get_outputs(self) -> list[SimpleNamespace]:
        return [SimpleNamespace(name="y"), SimpleNamespace(name="z")]

    def io_binding(self) -> _FakeBinding:
        return _FakeBinding(self.log)

    def run_with_iobinding(self, binding: _FakeBinding) -> None:
        self.log.append(("run",))

    def run(self, *args: Any) -> None:  # pragma: no cover - must not be called
        raise AssertionError("a GPU session must be timed through IO binding")


def test_gpu_session_gets_io_binding_with_one_copy_per_input() -> None:
    session = _FakeCudaSession(device_id=1)
    copies: list[np.ndarray] = []
    runner = make_runner(session, _feeds(), to_device=lambda a: copies.append(a) or f"dev{len(copies)}")
    assert isinstance(runner, IOBindingRunner) and runner.io_binding is True
    assert cuda_device_id(session) == 1
    for _ in range(4):
        runner()
    assert len(copies) == 1, "inputs are copied to the device once, not per timed call"
    assert session.log[:3] == [
        ("bind_input", "x", "dev1"),
        ("bind_output", "y", "cuda", 1),
        ("bind_output", "z", "cuda", 1),
    ]
    assert session.log[3:] == [("run",), ("sync",)] * 4


def _real_cuda_session_or_skip():
    model = make_matmul_chain(64, 2)
    try:
        session = make_session(model, ["cuda"], intra_op_threads=1)
    except (ConfigError, DependencyError) as exc:
        pytest.skip(f"CUDA provider not available: {exc}")
    if "CUDAExecutionProvider" not in session.get_providers():
        pytest.skip("CUDAExecutionProvider requested but the session fell back to CPU")
    return model, session


def test_cuda_benchmark_uses_io_binding() -> None:
    model, session = _real_cuda_session_or_skip()
    runner = make_runner(session, _feeds(width=64))
    assert isinstance(runner, IOBindingRunner)
    runner()
    cpu = make_session(model, ["cpu"]).run(None, _feeds(width=64))
    np.testing.assert_allclose(runner.fetch_outputs()[0], cpu[0], rtol=1e-3, atol=1e-3)

    result = benchmark(
        [model, make_matmul_chain(64, 1)],
        BenchConfig(providers=("cuda", "cpu"), batch_sizes=(1, 8), warmup=3, runs=10),
    )
    by_provider = {(t.provider, t.io_binding) for t in result.timings}
    assert by_provider == {("CUDAExecutionProvider", True), ("CPUExecutionProvider", False)}
    assert result.io_binding is True and result.warnings == ()
    assert "cuda" in result.device.lower(), "the GPU is named in the report"


def test_device_names_never_fail() -> None:
    assert cpu_name()
    assert "0" in gpu_name(0)  # the real name on a GPU machine, "CUDA device 0" elsewhere
