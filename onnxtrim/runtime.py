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
from pathlib import Path
from types import ModuleType
from typing import Any

import onnx

from . import model_io
from .errors import ConfigError, DependencyError, OutputError

log = logging.getLogger(__name__)

PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


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
    allow_fallback: bool = False,
    payload: bytes | None = None,
) -> Any:
    """Build an InferenceSession from an in-memory model, on the providers asked for.

    A model over protobuf's 2 GiB is never serialized into one message (that fails, after copying the
    whole model): it is written with external data into a temporary directory, which onnxruntime reads
    by path and memory-maps. Measured on a 2.3 GB model, that costs one copy (onnxruntime's own) where
    handing it the weights as OrtValues (`add_initializer`) cost two, and `add_external_initializers`
    refuses a model given as bytes. The directory is removed once the session exists.

    A provider onnxruntime does not have, or one it has but could not start (onnxruntime-gpu without the
    CUDA libraries falls back to CPU silently), is a DependencyError (exit code 7): calibrating or
    verifying on CPU when CUDA was asked for is not what the user asked. The benchmark reports a
    fallback as a warning instead (`allow_fallback=True`), since it labels every timing with the
    provider that produced it.
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
        raise DependencyError(
            f"execution provider(s) {', '.join(missing)} not available in this onnxruntime "
            f"(available: {', '.join(sorted(available))}); install 'onnxtrim[gpu]' for CUDA"
        )
    payload = model_io.session_bytes(model, payload=payload)  # the caller's bytes of `model`, when it has them
    session = None if payload is None else ort.InferenceSession(payload, options, providers=wanted)
    if session is None:
        session = _session_from_copy(ort, model, options, wanted)
    got = session.get_providers()
    lost = [p for p in wanted if p not in got]
    if lost and not allow_fallback:
        raise DependencyError(
            f"{', '.join(lost)} is available in onnxruntime but could not be started (the session runs on "
            f"{', '.join(got)}): its runtime libraries (CUDA, cuDNN) are missing or do not match; see "
            "onnxruntime's requirements for 'onnxtrim[gpu]'"
        )
    return session


def _session_from_copy(ort: ModuleType, model: onnx.ModelProto, options: Any, providers: list[str]) -> Any:
    """A session read from a temporary copy with external data (removed once the session exists); where no
    temporary file can be written, from bytes if the model is under 2 GiB."""
    try:
        with tempfile.TemporaryDirectory(prefix="onnxtrim-session-") as tmp:
            path = model_io.write_session_copy(model, Path(tmp))
            log.debug("onnxruntime reads the model from %s with external data", path)
            return ort.InferenceSession(os.fspath(path), options, providers=providers)
    except OutputError as exc:
        problem = exc
    except OSError as exc:  # no temporary directory at all
        problem = OutputError(f"cannot create a temporary directory for onnxruntime: {exc.strerror or exc}")
    payload = model_io.session_bytes(model, model_io.PROTOBUF_LIMIT)
    if payload is None:
        raise problem
    log.warning("%s; giving onnxruntime the model as bytes instead", problem)
    return ort.InferenceSession(payload, options, providers=providers)


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
