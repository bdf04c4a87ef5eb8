"""The cubic schedule against its formula, monotone, and reaching the final sparsity exactly."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onnxtrim.errors import ConfigError
from onnxtrim.recovery.schedule import CubicSchedule


def test_the_formula_at_chosen_points():
    s = CubicSchedule(final=0.9, initial=0.1, start=100, end=500, every=50)
    assert s.sparsity(0) == 0.1 and s.sparsity(100) == 0.1
    assert s.sparsity(300) == pytest.approx(0.9 + (0.1 - 0.9) * 0.5 ** 3)  # half-way: 0.8
    assert s.sparsity(400) == pytest.approx(0.9 + (0.1 - 0.9) * 0.25 ** 3)
    assert s.sparsity(500) == 0.9 and s.sparsity(10_000) == 0.9
    assert [t for t in range(600) if s.updates(t)] == list(range(100, 501, 50))


@given(final=st.floats(0.0, 0.99), initial_share=st.floats(0.0, 1.0), start=st.integers(0, 50),
       length=st.integers(0, 300), every=st.integers(1, 40), total=st.integers(1, 5000))
def test_monotone_and_exact_at_the_end(final, initial_share, start, length, every, total):
    s = CubicSchedule(final=final, initial=final * initial_share, start=start, end=start + length, every=every)
    counts = [s.count(t, total) for t in range(start + length + 3)]
    assert all(a <= b for a, b in itertools.pairwise(counts))
    assert counts[-1] == int(final * total + 1e-9) and s.updates(start + length)


@pytest.mark.parametrize("kwargs", [{"final": 1.0}, {"final": 0.5, "initial": 0.6}, {"final": 0.5, "start": 5, "end": 4},
                                    {"final": 0.5, "every": 0}])
def test_bad_schedules_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        CubicSchedule(**kwargs)
