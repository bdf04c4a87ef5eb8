"""The gradual pruning schedule of Zhu & Gupta 2017 ("To prune or not to prune").

Sparsity rises from s_i to s_f over training steps t0..t1 on a cubic:

    s_t = s_f + (s_i − s_f) · (1 − (t − t0) / (t1 − t0))³

fast at first, while many weights are redundant, then slowing as fewer remain; masks are
recomputed every Δt steps (`every`) and a weight or channel once pruned is never revived.
Before t0 the sparsity is s_i, after t1 it is s_f. Pure arithmetic: no torch here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class CubicSchedule:
    final: float  # s_f
    initial: float = 0.0  # s_i
    start: int = 0  # t0, the first step that prunes
    end: int = 0  # t1, the step at which s_f is reached
    every: int = 1  # Δt, steps between mask updates

    def __post_init__(self) -> None:
        if not 0.0 <= self.initial <= self.final < 1.0:
            raise ConfigError(f"sparsities must satisfy 0 <= initial <= final < 1, got {self.initial} and {self.final}")
        if self.start < 0 or self.end < self.start:
            raise ConfigError(f"--prune-start/--prune-end must satisfy 0 <= start <= end, got {self.start}, {self.end}")
        if self.every < 1:
            raise ConfigError("--prune-every must be at least 1")

    def sparsity(self, step: int) -> float:
        if step <= self.start:
            return self.initial
        if step >= self.end:
            return self.final
        remaining = 1.0 - (step - self.start) / (self.end - self.start)
        return self.final + (self.initial - self.final) * remaining ** 3

    def updates(self, step: int) -> bool:
        """Whether masks are recomputed after this step: every Δt from t0, and always at t1."""
        if step < self.start or step > self.end:
            return False
        return (step - self.start) % self.every == 0 or step == self.end

    def count(self, step: int, total: int) -> int:
        """How many of `total` weights (or channels) are pruned at `step`: floor(s_t · total)."""
        return math.floor(self.sparsity(step) * total + 1e-9)
