"""Fixtures for the calibration-reader tests: input specs of the tiny models in helpers.py."""

from __future__ import annotations

import pytest

from onnxtrim.calibration import InputSpec

from .helpers import DYNAMIC, STATIC, TWO, specs


@pytest.fixture
def dyn() -> list[InputSpec]:
    return specs(DYNAMIC)


@pytest.fixture
def static() -> list[InputSpec]:
    return specs(STATIC)


@pytest.fixture
def two() -> list[InputSpec]:
    return specs(TWO)
