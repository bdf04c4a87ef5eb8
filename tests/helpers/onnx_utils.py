"""ONNX and onnxruntime helpers for tests: op counts, reference runs, equivalence assertions.

Reference runs use onnxruntime on CPU with every graph optimisation disabled, so what runs is the graph as
written (no fusion hides a broken tensor). Models that keep weights in external-data files are checked and
run *by path*: a path is the only form in which onnx and onnxruntime can find the data file.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx

ModelLike = onnx.ModelProto | str | Path

DEFAULT_DOMAINS = ("", "ai.onnx")


def load(model: ModelLike, *, load_external_data: bool = True) -> onnx.ModelProto:
    """Return ``model`` itself if it is a ModelProto, else load it from its path."""
    if isinstance(model, onnx.ModelProto):
        return model
    return onnx.load(str(model), load_external_data=load_external_data)


def iter_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node of ``graph``, including nodes in control-flow subgraphs (If/Loop/Scan bodies)."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from iter_nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from iter_nodes(sub)


def op_key(node: onnx.NodeProto) -> str:
    """``op_type`` for the default ONNX domain, ``"domain::op_type"`` for any other domain."""
    return node.op_type if node.domain in DEFAULT_DOMAINS else f"{node.domain}::{node.op_type}"


def op_counts(model: ModelLike) -> collections.Counter[str]:
    """Count nodes by op type (see ``op_key``), subgraphs included; functions' bodies are not expanded."""
    proto = load(model, load_external_data=False)
    return collections.Counter(op_key(node) for node in iter_nodes(proto.graph))


def uses_external_data(model: onnx.ModelProto) -> bool:
    """True if any initializer (top-level graph) still points at an external-data file."""
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)


def check(model: ModelLike) -> None:
    """``onnx.checker.check_model(..., full_check=True)``, by path when given a path.

    A ModelProto whose weights are still external cannot be checked in memory: pass its path instead.
    """
    if isinstance(model, onnx.ModelProto):
        if uses_external_data(model):
            raise ValueError("model has external data that is not loaded: check it by path")
        onnx.checker.check_model(model, full_check=True)
    else:
        onnx.checker.check_model(str(model), full_check=True)


def session(model: ModelLike):  # -> onnxruntime.InferenceSession
    """A CPU onnxruntime session with graph optimisations disabled."""
    import onnxruntime as ort

    ort.set_default_logger_severity(3)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    if isinstance(model, onnx.ModelProto):
        if uses_external_data(model):
            raise ValueError("model has external data that is not loaded: run it by path")
        source: str | bytes = model.SerializeToString()
    else:
        source = str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def run(model: ModelLike, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """Run ``model`` on ``feeds`` (CPU, optimisations disabled); outputs in graph order."""
    return session(model).run(None, dict(feeds))


def assert_equivalent(
    original: ModelLike,
    new: ModelLike,
    feeds: Mapping[str, np.ndarray],
    rtol: float,
    atol: float,
) -> list[float]:
    """Assert that ``new`` is a valid model computing what ``original`` computes on ``feeds``.

    Both pass the full checker; both run (CPU, optimisations disabled); outputs are compared pairwise in
    graph order: same count, names, dtypes and shapes; floating outputs within ``rtol``/``atol``
    (``numpy.testing.assert_allclose``), integer and boolean outputs exactly. Returns the max |delta| of
    each output (0.0 for exact ones), for logging.
    """
    check(original)
    check(new)
    sess_a, sess_b = session(original), session(new)
    names_a = [o.name for o in sess_a.get_outputs()]
    names_b = [o.name for o in sess_b.get_outputs()]
    assert names_a == names_b, f"output names differ: {names_a} vs {names_b}"
    outs_a = sess_a.run(None, dict(feeds))
    outs_b = sess_b.run(None, dict(feeds))
    return [_assert_close(name, a, b, rtol, atol) for name, a, b in zip(names_a, outs_a, outs_b, strict=True)]


def _assert_close(name: str, a: np.ndarray, b: np.ndarray, rtol: float, atol: float) -> float:
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype, f"output {name!r}: dtype {a.dtype} vs {b.dtype}"
    assert a.shape == b.shape, f"output {name!r}: shape {a.shape} vs {b.shape}"
    if np.issubdtype(a.dtype, np.inexact):
        np.testing.assert_allclose(b, a, rtol=rtol, atol=atol, err_msg=f"output {name!r}")
        return max_abs_diff(a, b)
    np.testing.assert_array_equal(b, a, err_msg=f"output {name!r} (compared exactly)")
    return 0.0


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| in float64 (0.0 for empty arrays); NaN where either side has a NaN."""
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def input_shapes(model: ModelLike) -> dict[str, list[int | str | None]]:
    """Graph input dims by name: ints for fixed dims, the symbol for named dims, None for unknown."""
    proto = load(model, load_external_data=False)
    initializers = {t.name for t in proto.graph.initializer}
    return {
        i.name: [_dim(d) for d in i.type.tensor_type.shape.dim]
        for i in proto.graph.input
        if i.name not in initializers
    }


def output_shapes(model: ModelLike) -> dict[str, list[int | str | None]]:
    """Graph output dims by name, as ``input_shapes``."""
    proto = load(model, load_external_data=False)
    return {o.name: [_dim(d) for d in o.type.tensor_type.shape.dim] for o in proto.graph.output}


def _dim(d: onnx.TensorShapeProto.Dimension) -> int | str | None:
    if d.HasField("dim_value"):
        return d.dim_value
    if d.HasField("dim_param"):
        return d.dim_param
    return None


def opset(model: ModelLike) -> int:
    """The default-domain opset version the model imports."""
    proto = load(model, load_external_data=False)
    return next(o.version for o in proto.opset_import if o.domain in DEFAULT_DOMAINS)


__all__: Sequence[str] = [
    "assert_equivalent",
    "check",
    "input_shapes",
    "iter_nodes",
    "load",
    "max_abs_diff",
    "op_counts",
    "op_key",
    "opset",
    "output_shapes",
    "run",
    "session",
]
