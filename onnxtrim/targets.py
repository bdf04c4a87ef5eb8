"""The channel multiple a trim rounds kept counts to by default (`round_to="auto"`), and why.

A trimmed model must not be slower than the one it came from. Tried as a user would, the lossless
default trim of mobilenet_v2 ran 1.83x *slower* than the original on CPU: onnxruntime's CPU
convolutions work in a blocked layout (NCHWc) whose block is 16 channels with AVX-512 and 8 with
AVX2, and counts off the block fall back to slower kernels (benchmarks/speedup.py). Rounded to the
block, the same trim was 1.12x faster. CUDA kernels (tensor cores) want multiples of 8.

So `auto` resolves from where the model will run: the providers given (CPU: this machine's block,
or the block of `target_cpu`, for a model built here but deployed elsewhere; CUDA/TensorRT: 8), the
least common multiple when several are named. `round_to=1` turns rounding off.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import ConfigError

AUTO = "auto"
#: onnxruntime's NCHWc channel block per CPU instruction set (MLAS).
CPU_BLOCKS = {"avx2": 8, "avx512": 16}
#: tensor-core friendly channel multiple for GPU providers.
GPU_BLOCK = 8
_GPU_PROVIDERS = ("cuda", "cudaexecutionprovider", "tensorrt", "tensorrtexecutionprovider")
_CPU_PROVIDERS = ("cpu", "cpuexecutionprovider")


@dataclass(frozen=True)
class Rounding:
    """The multiple kept channel counts are rounded up to, and in words where it came from."""

    multiple: int
    auto: bool
    reason: str

    def to_dict(self) -> dict[str, object]:
        return {"multiple": self.multiple, "auto": self.auto, "reason": self.reason}


def check_round_to(round_to: object, target_cpu: object) -> None:
    if round_to != AUTO and (isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1):
        raise ConfigError(f"--round-to takes 'auto' or a positive integer, got {round_to!r}")
    if target_cpu is not None and target_cpu not in CPU_BLOCKS:
        raise ConfigError(f"--target-cpu takes {' or '.join(CPU_BLOCKS)}, got {target_cpu!r}")


def resolve(round_to: int | str, providers: Sequence[str], target_cpu: str | None = None) -> Rounding:
    """`round_to` as a number: itself, or for "auto" the block of every target named."""
    check_round_to(round_to, target_cpu)
    if round_to != AUTO:
        return Rounding(int(round_to), False, "given" if round_to != 1 else "off (--round-to 1)")
    blocks: list[tuple[int, str]] = []
    names = [p.lower() for p in providers]
    if any(n in _GPU_PROVIDERS for n in names):
        blocks.append((GPU_BLOCK, f"{GPU_BLOCK} for CUDA"))
    if target_cpu is not None:
        blocks.append((CPU_BLOCKS[target_cpu], (f"{CPU_BLOCKS[target_cpu]}, the CPU channel block of "
                                               f"{target_cpu.upper()} (--target-cpu)")))
    elif any(n in _CPU_PROVIDERS for n in names) or not blocks:
        from .bench.device import cpu_channel_block

        block = cpu_channel_block()
        isa = next((name.upper() for name, size in CPU_BLOCKS.items() if size == block), "this CPU")
        blocks.append((block, f"{block}, onnxruntime's CPU channel block on this machine ({isa})"))
    multiple = math.lcm(*(size for size, _ in blocks))
    return Rounding(multiple, True, "auto: " + " and ".join(why for _, why in blocks))


__all__ = ["AUTO", "CPU_BLOCKS", "GPU_BLOCK", "Rounding", "check_round_to", "resolve"]
