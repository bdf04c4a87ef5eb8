"""Criteria, one module per paper, behind one interface (`base.Criterion`).

A new criterion enters by adding its module and one line to `CRITERIA`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import ConfigError
from .apoz import APoZ
from .base import Criterion, Scores
from .filter_norm import FilterNorm
from .magnitude import Magnitude
from .mean_activation import MeanActivation
from .relief import Relief
from .taylor import Taylor

CRITERIA: dict[str, Callable[..., Criterion]] = {
    "apoz": lambda **_: APoZ(),
    "mean-activation": lambda **_: MeanActivation(),
    "l1": lambda **_: FilterNorm(1),
    "l2": lambda **_: FilterNorm(2),
    "taylor": lambda **_: Taylor(),
    "relief": lambda alpha_conv=0.9, alpha_fc=0.95, **_: Relief(alpha_conv, alpha_fc),
    "magnitude": lambda sparsity=None, **_: Magnitude(_required(sparsity, "magnitude", "--sparsity S")),
}


def make_criterion(name: str, **options: Any) -> Criterion:
    """The criterion called `name`, given the options it reads (others are ignored)."""
    factory = CRITERIA.get(name)
    if factory is None:
        raise ConfigError(f"unknown criterion {name!r}: choose one of {', '.join(CRITERIA)}")
    try:
        return factory(**options)
    except ValueError as exc:
        raise ConfigError(f"--criterion {name}: {exc}") from exc


def _required(value: Any, criterion: str, flag: str) -> Any:
    if value is None:
        raise ConfigError(f"--criterion {criterion} needs {flag}")
    return value


__all__ = ["CRITERIA", "Criterion", "Scores", "make_criterion"]
