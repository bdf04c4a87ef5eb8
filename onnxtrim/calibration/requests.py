"""What a criterion asks calibration to measure: one statistic of one tensor along its channel axis.

A criterion names its needs as data (`StatRequest`s) instead of calibration knowing each
criterion: APoZ asks for zero counts at ReLU outputs, mean activation for |x| sums at what
consumers read, Relief for |x| sums over the windows each kernel offset of a convolution
touches. Calibration turns requests into in-graph probes (registered by kind in
`probe_kinds`), and gradient kinds into a torch pass; the result is keyed by `request.key`.
"""

from __future__ import annotations

from dataclasses import dataclass

# Kinds computed from gradients through the torch bridge rather than by in-graph probes.
GRADIENT_KINDS = frozenset({"taylor"})


@dataclass(frozen=True)
class Window:
    """The sliding-window geometry of a convolution, as the statistic of its input needs it.

    With it, a statistic is kept per (input channel, kernel offset): for offset (u, v) the sum
    over the convolution's output positions of the input value that offset reads (zero padding
    included). That is what a connection of the convolution actually sees (Relief).
    """

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    pads: tuple[int, ...]  # ONNX order: all begins, then all ends
    dilations: tuple[int, ...]

    @property
    def size(self) -> int:
        out = 1
        for k in self.kernel:
            out *= k
        return out

    @property
    def key(self) -> str:
        def join(values: tuple[int, ...]) -> str:
            return "x".join(str(v) for v in values)

        return f"k{join(self.kernel)}s{join(self.strides)}p{join(self.pads)}d{join(self.dilations)}"


@dataclass(frozen=True, order=True)
class StatRequest:
    """`kind` of `tensor`, per position of axis `axis` (per (position, offset) with a window)."""

    tensor: str
    axis: int
    kind: str
    window: Window | None = None

    @property
    def key(self) -> str:
        """The name of this statistic in `TensorStats.sums` and in statistics files."""
        return self.kind if self.window is None else f"{self.kind}@{self.window.key}"


def basic_requests(tensor: str, axis: int) -> list[StatRequest]:
    """The four activation sums every activation criterion can be computed from (`--save-stats`)."""
    return [StatRequest(tensor, axis, kind) for kind in ("zeros", "sum", "abs_sum", "sq_sum")]
