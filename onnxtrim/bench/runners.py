"""One timed call per model: what exactly is inside the stopwatch.

On a GPU the interesting number is the model's compute, not PCIe copies of inputs and outputs,
which are the same for a trimmed and an untrimmed model and would dilute the difference.
So GPU sessions use IO binding: inputs are copied to the device once, outputs stay on the
device, and each timed call is `run_with_iobinding` plus an output synchronisation so the
stopwatch does not stop before the kernels have finished. CPU sessions use plain `run`, where
there are no copies to exclude.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np

from ..runtime import import_ort, session_uses_gpu

log = logging.getLogger(__name__)


class Runner(Protocol):
    """A zero-argument callable that runs the model once on fixed inputs."""

    io_binding: bool

    def __call__(self) -> None: ...

    def fetch_outputs(self) -> list[np.ndarray]:
        """The outputs of the last call, on the host (for checks; never timed)."""
        ...


class PlainRunner:
    """`session.run` on host arrays: what a CPU user's code does."""

    io_binding = False

    def __init__(self, session: Any, feeds: Mapping[str, np.ndarray]) -> None:
        self._session = session
        self._feeds = dict(feeds)
        self._last: list[np.ndarray] = []

    def __call__(self) -> None:
        self._last = self._session.run(None, self._feeds)

    def fetch_outputs(self) -> list[np.ndarray]:
        return list(self._last)


def _device_copier(device_type: str, device_id: int) -> Callable[[np.ndarray], Any]:
    ort = import_ort()

    def copy(array: np.ndarray) -> Any:
        return ort.OrtValue.ortvalue_from_numpy(array, device_type, device_id)

    return copy


class IOBindingRunner:
    """`run_with_iobinding` with inputs already on the device and outputs left there.

    `to_device` copies one host array to the device and returns an OrtValue; it is called once
    per input at construction, never inside the timed call. It defaults to
    `OrtValue.ortvalue_from_numpy(array, device_type, device_id)`.
    """

    io_binding = True

    def __init__(
        self,
        session: Any,
        feeds: Mapping[str, np.ndarray],
        *,
        device_type: str = "cuda",
        device_id: int = 0,
        to_device: Callable[[np.ndarray], Any] | None = None,
    ) -> None:
        copy = to_device or _device_copier(device_type, device_id)
        self._session = session
        self._binding = session.io_binding()
        # Keep references: the binding must not outlive the device buffers it points to.
        self._inputs = {name: copy(np.ascontiguousarray(array)) for name, array in feeds.items()}
        for name, value in self._inputs.items():
            self._binding.bind_ortvalue_input(name, value)
        for output in session.get_outputs():
            self._binding.bind_output(output.name, device_type, device_id)

    def __call__(self) -> None:
        self._session.run_with_iobinding(self._binding)
        self._binding.synchronize_outputs()

    def fetch_outputs(self) -> list[np.ndarray]:
        return list(self._binding.copy_outputs_to_cpu())


def cuda_device_id(session: Any) -> int:
    """The CUDA device the session runs on, from its provider options (0 when not stated)."""
    try:
        all_options = session.get_provider_options()
        for provider in ("CUDAExecutionProvider", "TensorrtExecutionProvider"):
            if provider in all_options:
                return int(all_options[provider].get("device_id", 0))
    except (AttributeError, TypeError, ValueError):
        pass
    return 0


def make_runner(
    session: Any,
    feeds: Mapping[str, np.ndarray],
    *,
    to_device: Callable[[np.ndarray], Any] | None = None,
) -> Runner:
    """IO binding when the session really got a GPU provider, plain `run` otherwise.

    The decision reads `session.get_providers()`, not what was requested or installed: a CUDA
    request that fell back to CPU must be timed as the CPU run it is.
    """
    if session_uses_gpu(session):
        device_id = cuda_device_id(session)
        log.debug("session uses %s: IO binding on cuda:%d", session.get_providers()[0], device_id)
        return IOBindingRunner(session, feeds, device_type="cuda", device_id=device_id, to_device=to_device)
    return PlainRunner(session, feeds)
