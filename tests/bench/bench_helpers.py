"""Tiny models and fakes shared by the benchmark tests.

Models are built with onnx.helper at IR version 10 so that the installed onnxruntime loads them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

IR_VERSION = 10
OPSET = 17


def make_matmul_chain(
    width: int, depth: int, *, batch_dim: str | int = "N", name: str = "chain"
) -> onnx.ModelProto:
    """x[N, width] -> MatMul(W0) -> MatMul(W1) -> ... (depth times) -> y[N, width]

    Cost grows as depth * width^2, so (512, 8) is far slower than (64, 1).
    """
    rng = np.random.default_rng(width * 100 + depth)
    nodes, inits, previous = [], [], "x"
    for i in range(depth):
        weight = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
        inits.append(numpy_helper.from_array(weight, f"w{i}"))
        out = "y" if i == depth - 1 else f"h{i}"
        nodes.append(helper.make_node("MatMul", [previous, f"w{i}"], [out], name=f"matmul{i}"))
        previous = out
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch_dim, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch_dim, width])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)


def make_mixed_inputs() -> onnx.ModelProto:
    """Three inputs of three dtypes and dynamic dims, each passed through Identity.

    ids[batch, seq] int64 ──Identity──▶ ids_out
    mask[batch, seq] bool ──Identity──▶ mask_out
    feats[batch, 3, width] float16 ──Identity──▶ feats_out
    """
    inputs = [
        helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"]),
        helper.make_tensor_value_info("mask", TensorProto.BOOL, ["batch", "seq"]),
        helper.make_tensor_value_info("feats", TensorProto.FLOAT16, ["batch", 3, "width"]),
    ]
    outputs = [
        helper.make_tensor_value_info(f"{i.name}_out", i.type.tensor_type.elem_type,
                                      [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim])
        for i in inputs
    ]
    nodes = [helper.make_node("Identity", [i.name], [f"{i.name}_out"]) for i in inputs]
    graph = helper.make_graph(nodes, "mixed", inputs, outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)


class FakeClock:
    """Time that moves only when a fake session runs: timings become exact and scripted."""

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


class FakeSession:
    """Records every run in a shared log and advances the fake clock by scripted durations (ns)."""

    def __init__(
        self,
        name: str,
        log: list[str],
        clock: FakeClock,
        durations: Sequence[int],
        providers: Sequence[str] = ("CPUExecutionProvider",),
    ) -> None:
        self.name, self.log, self.clock = name, log, clock
        self.durations = list(durations)
        self.calls = 0
        self.providers = list(providers)
        self.feeds_seen: list[dict[str, np.ndarray]] = []

    def get_providers(self) -> list[str]:
        return self.providers

    def run(self, output_names: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.log.append(self.name)
        self.feeds_seen.append(feeds)
        self.clock.now += self.durations[self.calls % len(self.durations)]
        self.calls += 1
        return [np.zeros(1, np.float32)]


class FakeFactory:
    """A session_factory building FakeSessions keyed by the model's graph name."""

    def __init__(
        self,
        durations: dict[str, Sequence[int]] | None = None,
        providers: Callable[[str], Sequence[str]] | None = None,
    ) -> None:
        self.log: list[str] = []
        self.clock = FakeClock()
        self.durations = durations or {}
        self.providers = providers or (lambda requested: (requested, "CPUExecutionProvider"))
        self.sessions: list[FakeSession] = []
        self.created: list[tuple[str, str, int]] = []

    def __call__(self, model: onnx.ModelProto, provider: str, threads: int) -> FakeSession:
        name = model.graph.name
        self.created.append((name, provider, threads))
        session = FakeSession(
            name, self.log, self.clock, self.durations.get(name, [1000]), self.providers(provider)
        )
        self.sessions.append(session)
        return session
