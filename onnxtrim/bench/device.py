"""Name the hardware a benchmark ran on, so a report is never read without its context.

Best effort and dependency-free: a latency from an unnamed machine is still a latency, so
failures here give a generic name instead of an error.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import sys

log = logging.getLogger(__name__)


def cpu_name() -> str:
    """The CPU model name and the logical cores this process may use."""
    name = _cpuinfo_value(("model name", "hardware")) or platform.processor() or platform.machine() or "unknown CPU"
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 0
    return f"{name} ({cores} logical cores)" if cores else name


def cpu_channel_block() -> int:
    """The channel block of onnxruntime's CPU convolutions (its NCHWc layout) on this machine.

    Its kernels work on 16 channels at a time where the CPU has AVX-512 and on 8 with AVX2;
    benchmarks/speedup.py measured depthwise and concat-heavy nets trimmed to multiples of 8
    on an AVX-512 machine 20-25% slower than their MACs predict, and within 10% at multiples
    of 16. Where the flags cannot be read, 8 is the safe answer.
    """
    return 16 if "avx512f" in (_cpuinfo_value(("flags",)) or "").split() else 8


def _cpuinfo_value(keys: tuple[str, ...]) -> str | None:
    """The value of the first /proc/cpuinfo line starting with one of `keys` (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.lower().startswith(keys):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def gpu_name(device_id: int = 0) -> str:
    """The CUDA device's name from the driver API (libcuda), which numbers devices as
    onnxruntime does, CUDA_VISIBLE_DEVICES included (nvidia-smi does not)."""
    try:
        lib = ctypes.CDLL("nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1")
        device = ctypes.c_int()
        buffer = ctypes.create_string_buffer(256)
        if (
            lib.cuInit(0) == 0
            and lib.cuDeviceGet(ctypes.byref(device), device_id) == 0
            and lib.cuDeviceGetName(buffer, len(buffer), device) == 0
        ):
            return f"{buffer.value.decode(errors='replace')} (cuda:{device_id})"
    except (OSError, AttributeError) as exc:
        log.debug("cannot name CUDA device %d: %s", device_id, exc)
    return f"CUDA device {device_id}"
