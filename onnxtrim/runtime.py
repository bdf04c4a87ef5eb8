"""The one place that imports onnxruntime and builds inference sessions.

onnxruntime is an optional dependency chosen by extra (`cpu` or `gpu`) because the two wheels
overwrite each other; analysis and rewriting must work without it.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import onnx

from .errors import ConfigError, DependencyError

log = logging.getLogger(__name__)

PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}

_PROTOBUF_LIMIT = 2**31 - 1


def import_ort() -> ModuleType:
    """Import onnxruntime or explain which extra installs it."""
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DependencyError(
            "onnxruntime is not installed: pip install 'onnxtrim[cpu]' (or 'onnxtrim[gpu]' for CUDA)"
        ) from exc
    ort.set_default_logger_severity(3)
    return ort


def resolve_providers(names: Sequence[str]) -> list[str]:
    """Map short names (`cpu`, `cuda`, `tensorrt`) or full provider names to provider names.

    CPU is always appended last as the fallback onnxruntime itself would use.
    """
    resolved: list[str] = []
    for name in names:
        full = PROVIDER_ALIASES.get(name.lower(), name)
        if not full.endswith("ExecutionProvider"):
            raise ConfigError(f"unknown provider {name!r}: use one of {', '.join(PROVIDER_ALIASES)}")
        if full not in resolved:
            resolved.append(full)
    if "CPUExecutionProvider" not in resolved:
        resolved.append("CPUExecutionProvider")
    return resolved


def make_session(
    model: onnx.ModelProto,
    providers: Sequence[str] = ("cpu",),
    *,
    optimize: bool = True,
    intra_op_threads: int = 0,
) -> Any:
    """Build an InferenceSession from an in-memory model.

    Models over the 2 GB protobuf limit go through a temporary directory with external data,
    since onnxruntime cannot take them as bytes.
    """
    ort = import_ort()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    if intra_op_threads:
        options.intra_op_num_threads = intra_op_threads
    wanted = resolve_providers(providers)
    available = set(ort.get_available_providers())
    missing = [p for p in wanted if p not in available]
    if missing:
        raise ConfigError(
            f"execution provider(s) {', '.join(missing)} not available in this onnxruntime "
            f"(available: {', '.join(sorted(available))}); install 'onnxtrim[gpu]' for CUDA"
        )
    if model.ByteSize() < _PROTOBUF_LIMIT:
        return ort.InferenceSession(model.SerializeToString(), options, providers=wanted)
    with tempfile.TemporaryDirectory(prefix="onnxtrim-session-") as tmp:
        path = os.path.join(tmp, "model.onnx")
        onnx.save(model, path, save_as_external_data=True, location="model.onnx.data")
        return ort.InferenceSession(path, options, providers=wanted)


def session_uses_gpu(session: Any) -> bool:
    """Decide GPU use from the providers the session really got, not from those installed."""
    return any(p in ("CUDAExecutionProvider", "TensorrtExecutionProvider") for p in session.get_providers())


def run(session: Any, output_names: Sequence[str] | None, feeds: dict[str, Any]) -> list[Any]:
    """`session.run` that Ctrl-C stops promptly.

    onnxruntime holds the GIL-free C++ run until it finishes, so the signal would only be seen
    afterwards; the run goes to a worker thread and `RunOptions.terminate` ends it early.
    """
    ort = import_ort()
    options = ort.RunOptions()
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            result["value"] = session.run(output_names, feeds, options)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            result["error"] = exc

    worker = threading.Thread(target=work, name=_WORKER_NAME, daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.1)
    except KeyboardInterrupt:
        options.terminate = True
        worker.join(5.0)
        raise
    if "error" in result:
        raise result["error"]
    return result["value"]


_WORKER_NAME = "onnxtrim-run"


def join_workers(timeout: float = 5.0) -> None:
    """Wait (up to `timeout` seconds in all) for runs still finishing after an interrupt, so that their
    sessions can be released before the process ends."""
    for worker in threading.enumerate():
        if worker.name == _WORKER_NAME and worker is not threading.current_thread():
            worker.join(timeout)
