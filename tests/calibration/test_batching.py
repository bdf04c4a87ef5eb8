"""iter_batches: re-chunking, global indices, max_samples, hold-out split, static batch dims, streaming."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onnxtrim.calibration import Batch, InputSpec, batching, held_out, iter_batches, open_data
from onnxtrim.errors import CalibrationError, ConfigError, ModelError

from .helpers import indices_of, rows_of

X = [InputSpec("x", np.dtype(np.float32), ("N", 2))]


def expected_holdout(n: int, h: str) -> list[int]:
    """Independent statement of the rule, in exact decimal arithmetic."""
    frac = Fraction(h)
    return [i for i in range(n) if math.floor((i + 1) * frac) > math.floor(i * frac)]


class CountingSource:
    """Chunks of given sizes whose rows are [global index, -global index]; counts chunks pulled."""

    description = "counting source"

    def __init__(self, sizes: list[int], rank_extra: int = 2) -> None:
        self.sizes = sizes
        self.pulled = 0
        self.closed = False

    def batches(self) -> Iterator[Batch]:
        start = 0
        try:
            for size in self.sizes:
                self.pulled += 1
                idx = np.arange(start, start + size)
                rows = np.stack([idx, -idx], axis=1).astype(np.float32)
                yield Batch({"x": rows}, f"chunk {self.pulled - 1}", idx.astype(np.int64))
                start += size
        finally:
            self.closed = True


def run(sizes: list[int], inputs: list[InputSpec] = X, **options) -> list[Batch]:
    options.setdefault("holdout", 0)
    return list(iter_batches(CountingSource(sizes), inputs, **options))


def test_rechunks_across_sources_with_global_indices() -> None:
    batches = run([3, 1, 5, 2], batch_size=4)
    assert [b.indices.tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]]
    assert [b.origin for b in batches] == ["chunk 0..chunk 1", "chunk 2", "chunk 2..chunk 3"]
    np.testing.assert_array_equal(rows_of(batches)[:, 0], np.arange(11))
    np.testing.assert_array_equal(rows_of(batches)[:, 1], -np.arange(11))


def test_max_samples_stops_reading_the_source() -> None:
    source = CountingSource([3, 1, 5, 2, 100])
    batches = list(iter_batches(source, X, batch_size=4, max_samples=6, holdout=0))
    assert indices_of(batches) == [0, 1, 2, 3, 4, 5]
    assert source.pulled == 3 and source.closed


def test_streams_lazily() -> None:
    source = CountingSource([1] * 100)
    stream = iter_batches(source, X, batch_size=4, holdout=0)
    assert source.pulled == 0
    assert next(stream).indices.tolist() == [0, 1, 2, 3]
    assert source.pulled == 4
    stream.close()
    assert source.closed


@pytest.mark.parametrize(("h", "n"), [("0.2", 20), ("0.7", 10), ("0.25", 13), ("0.1", 95), ("0.33", 50)])
def test_holdout_split_matches_the_rule(h: str, n: int) -> None:
    want = expected_holdout(n, h)
    assert len(want) == math.floor(n * Fraction(h))
    hold = indices_of(run([n], batch_size=3, holdout=float(h), part="holdout"))
    calib = indices_of(run([n], batch_size=3, holdout=float(h), part="calibration"))
    assert hold == want
    assert calib == [i for i in range(n) if i not in set(want)]
    assert held_out(np.arange(n), float(h)).nonzero()[0].tolist() == want


def test_holdout_examples_by_hand() -> None:
    assert indices_of(run([20], holdout=0.2, part="holdout")) == [4, 9, 14, 19]
    assert indices_of(run([10], holdout=0.7, part="holdout")) == [1, 2, 4, 5, 7, 8, 9]  # exactly 7 of 10
    assert run([10], holdout=0.0, part="holdout") == []  # nothing held out is not an error


def test_split_ignores_batch_size_and_chunking() -> None:
    a = indices_of(run([40], batch_size=7, holdout=0.3, part="holdout"))
    b = indices_of(run([1, 2, 3, 4, 5, 25], batch_size=2, holdout=0.3, part="holdout"))
    assert a == b == expected_holdout(40, "0.3")


def test_max_samples_counts_before_the_split() -> None:
    calib = indices_of(run([30], holdout=0.2, part="calibration", max_samples=10))
    hold = indices_of(run([30], holdout=0.2, part="holdout", max_samples=10))
    assert calib == [0, 1, 2, 3, 5, 6, 7, 8] and hold == [4, 9]


def test_static_batch_forces_size_and_drops_the_tail(static: list[InputSpec], caplog) -> None:
    inputs = [InputSpec("x", np.dtype(np.float32), (2, 2))]
    with caplog.at_level(logging.WARNING, logger="onnxtrim.calibration"):
        batches = run([3, 2], inputs, batch_size=32)
    assert [b.indices.tolist() for b in batches] == [[0, 1], [2, 3]]
    assert "dropping 1 sample(s) (indices 4..4): the model's static batch dimension is 2" in caplog.text
    assert static[0].static_batch == 2


def test_static_batch_too_few_samples(tmp_path: Path) -> None:
    inputs = [InputSpec("x", np.dtype(np.float32), (4, 2))]
    with pytest.raises(
        CalibrationError, match="no full batch: model input 'x' has a static batch dimension of 4 but only 3"
    ):
        run([3], inputs)
    # A holdout part can be too small for one static batch: also said, naming the part.
    with pytest.raises(CalibrationError, match="only 2 holdout samples were read"):
        run([10], inputs, holdout=0.2, part="holdout")


def test_a_batch_buffer_beyond_memory_is_refused_before_allocation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Declared dims bound the batch from below at the call; a symbolic dim makes the exact size known only
    from the data, and that is checked before the buffer is allocated."""
    monkeypatch.setattr(batching, "machine_memory", lambda: 1000)
    assert len(run([100], [InputSpec("x", np.dtype(np.float32), (100, 2))])) == 1  # 800 bytes: fits
    monkeypatch.setattr(batching, "machine_memory", lambda: 600)
    with pytest.raises(ModelError, match=r"static batch dimension of 100: one batch needs at least 800 bytes, "
                                         r"more than this machine's 600 bytes of memory"):
        run([100], [InputSpec("x", np.dtype(np.float32), (100, 2))])
    with pytest.raises(ModelError, match=r"static batch dimension of 100: one batch needs 800 bytes"):
        run([100], [InputSpec("x", np.dtype(np.float32), (100, "width"))])  # at the call: at least 400


def test_dynamic_batch_keeps_the_partial_tail() -> None:
    batches = run([5], batch_size=2)
    assert [len(b.indices) for b in batches] == [2, 2, 1]
    assert batches[-1].feeds["x"].shape == (1, 2)


def test_changing_sample_shapes_end_a_batch(tmp_path: Path, two: list[InputSpec]) -> None:
    np.savez(
        tmp_path / "0.npz",
        a=np.zeros((3, 2), np.float32),
        ids=np.ones((3, 5), np.int64),
        mask=np.ones((3, 5), np.int64),
    )
    np.savez(
        tmp_path / "1.npz",
        a=np.ones((3, 2), np.float32),
        ids=np.ones((3, 7), np.int64),
        mask=np.ones((3, 7), np.int64),
    )
    batches = list(iter_batches(open_data(tmp_path, two), two, batch_size=4, holdout=0))
    assert [b.indices.tolist() for b in batches] == [[0, 1, 2], [3, 4, 5]]
    assert [b.feeds["ids"].shape for b in batches] == [(3, 5), (3, 7)]


def test_inputs_with_different_static_batches() -> None:
    inputs = [InputSpec("a", np.dtype(np.float32), (2, 2)), InputSpec("b", np.dtype(np.float32), (3, 2))]
    with pytest.raises(CalibrationError, match="different static batch dimensions: 'a' 2, 'b' 3"):
        iter_batches(CountingSource([1]), inputs)


def test_no_samples(tmp_path: Path) -> None:
    np.save(tmp_path / "empty.npy", np.zeros((0, 2), np.float32))
    with pytest.raises(CalibrationError, match=r"directory .* \(1 .npy files\): no samples"):
        list(iter_batches(open_data(tmp_path, X), X))


def test_custom_source_with_bad_feeds() -> None:
    class Bad:
        description = "bad"

        def batches(self) -> Iterator[Batch]:
            yield Batch({"y": np.zeros((1, 2))}, "bad 0", np.arange(1))

    with pytest.raises(CalibrationError, match="bad 0: feeds y do not match the model inputs x"):
        list(iter_batches(Bad(), X))


@pytest.mark.parametrize(
    "options",
    [
        {"holdout": 1.0},
        {"holdout": -0.1},
        {"holdout": float("nan")},
        {"holdout": "0.2"},
        {"holdout": True},
        {"batch_size": 0},
        {"batch_size": 2.5},
        {"max_samples": 0},
        {"max_samples": -3},
        {"part": "train"},
    ],
    ids=str,
)
def test_option_errors_are_raised_at_the_call(options: dict) -> None:
    source = CountingSource([4])
    with pytest.raises(ConfigError):
        iter_batches(source, X, **options)
    assert source.pulled == 0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=st.lists(st.integers(0, 7), max_size=12),
    batch_size=st.integers(1, 9),
    holdout=st.sampled_from(["0", "0.05", "0.1", "0.2", "0.25", "1/3", "0.5", "0.7", "0.9", "0.99"]),
    max_samples=st.one_of(st.none(), st.integers(1, 60)),
)
def test_property_partition_and_rows(
    sizes: list[int], batch_size: int, holdout: str, max_samples: int | None
) -> None:
    h: float | Fraction = Fraction(holdout) if "/" in holdout else float(holdout)
    total = sum(sizes) if max_samples is None else min(sum(sizes), max_samples)
    feeds = [{"x": np.stack([np.arange(s), -np.arange(s)], axis=1).astype(np.float32)} for s in sizes]
    source = open_data(feeds, X)

    def part(name: str) -> list[Batch]:
        return list(
            iter_batches(source, X, batch_size=batch_size, max_samples=max_samples, holdout=h, part=name)
        )

    if total == 0:
        with pytest.raises(CalibrationError, match="no samples"):
            part("all")
        return
    everything, calib, hold = part("all"), part("calibration"), part("holdout")
    want_hold = expected_holdout(total, holdout)
    assert indices_of(hold) == want_hold
    assert sorted(indices_of(calib) + indices_of(hold)) == list(range(total))
    assert not set(indices_of(calib)) & set(indices_of(hold))
    assert indices_of(everything) == list(range(total))
    # Rows are the source rows in order: column 0 counts within each chunk, so rebuild it.
    source_rows = np.concatenate([f["x"] for f in feeds])[:total]
    np.testing.assert_array_equal(rows_of(everything), source_rows)
    for batches in (everything, calib, hold):
        if batches:
            np.testing.assert_array_equal(rows_of(batches), source_rows[indices_of(batches)])
            assert all(len(b.indices) == batch_size for b in batches[:-1])
            assert 0 < len(batches[-1].indices) <= batch_size


def test_holds_one_source_chunk_at_a_time(tmp_path: Path, monkeypatch) -> None:
    """When a file is loaded, every array loaded before it must already be freed (memory stays bounded)."""
    import weakref

    from onnxtrim.calibration import readers

    for k in range(6):
        np.save(tmp_path / f"{k}.npy", np.full((5, 2), k, np.float32))  # no cast: feeds are the memory maps
    loaded: list[weakref.ref] = []
    alive_at_load: list[int] = []
    real = readers.load_npy

    def tracking(path: str, origin: str) -> np.ndarray:
        alive_at_load.append(sum(ref() is not None for ref in loaded))
        array = real(path, origin)
        loaded.append(weakref.ref(array))
        return array

    monkeypatch.setattr(readers, "load_npy", tracking)
    total = 0
    for batch in iter_batches(open_data(tmp_path, X), X, batch_size=3, holdout=0):
        total += len(batch.indices)
    assert total == 30
    assert alive_at_load == [0] * 6
