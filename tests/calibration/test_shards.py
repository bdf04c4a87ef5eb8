"""Shards of a calibration add up to one full run, bit for bit, and refuse to be mixed."""

from __future__ import annotations

import numpy as np
import pytest

from onnxtrim.api import saved_requests, trim
from onnxtrim.calibration.collect import collect_stats
from onnxtrim.calibration.readers import Batch
from onnxtrim.calibration.stats import ChannelStats, TensorStats
from onnxtrim.cli.stats_command import merge_files
from onnxtrim.config import TrimConfig
from onnxtrim.errors import CalibrationError
from tests.helpers import models
from tests.helpers.plans import analysis_of


def batches(x: np.ndarray, size: int) -> list[Batch]:
    return [Batch({"x": x[i:i + size]}, f"rows {i}", np.arange(i, min(i + size, len(x)))) for i in range(0, len(x), size)]


def test_merged_shards_equal_one_run_bit_for_bit():
    model = models.CHAIN
    analysis = analysis_of(model)
    requests = saved_requests(analysis)  # float sums too, where addition order matters in floating point
    x = np.random.default_rng(0).standard_normal((70, 1, 8, 8)).astype(np.float32) * 1e3
    all_batches = batches(x, 4)
    whole = collect_stats(model, analysis, all_batches, requests, fingerprint="f")
    parts = []
    for i in range(3):
        part = collect_stats(model, analysis, all_batches[i::3], requests, fingerprint="f")
        part.parts = ((i, 3),)
        parts.append(part)
    merged = parts[2]
    merged.merge(parts[0])
    merged.merge(parts[1])
    assert merged.missing_shards == []
    for name, stats in whole.tensors.items():
        got = merged.tensors[name]
        assert (got.count, got.samples) == (stats.count, stats.samples)
        for key, value in stats.sums.items():
            assert got.sums[key].tobytes() == value.tobytes(), (name, key)
    # Float addition is not associative: the plain float64 sums of the same shards do differ somewhere.
    naive = {}
    for part in parts:
        for name, stats in part.tensors.items():
            for key, value in stats.sums.items():
                naive[(name, key)] = naive.get((name, key), 0) + value
    assert any(naive[(n, k)].tobytes() != v.tobytes() for n, t in whole.tensors.items() for k, v in t.sums.items()
               if k != "zeros")


def test_exact_sums_survive_the_statistics_file():
    stats = TensorStats(1, {"sum": np.array([0.1, 1e-300, -3.5]), "zeros": np.array([3.0, 0.0, 1.0])}, 10, 2)
    stats.add({"sum": np.array([0.2, 1e300, 1.25]), "zeros": np.array([1.0, 1.0, 1.0])}, 10, 2)
    holder = ChannelStats("f", {"t": stats}, ((1, 4),))
    again = ChannelStats.from_bytes(holder.to_bytes())
    assert again.parts == ((1, 4),) and again.missing_shards == [0, 2, 3]
    for key, value in stats.sums.items():
        assert again.tensors["t"].sums[key].tobytes() == value.tobytes()
    assert again.tensors["t"].sums["sum"][0] == 0.1 + 0.2  # correctly rounded: 0.30000000000000004


def test_merge_refuses_other_models_other_measurements_and_overlapping_shards():
    def one(fingerprint="f", key="sum", parts=((0, 2),)):
        return ChannelStats(fingerprint, {"t": TensorStats(1, {key: np.ones(2)}, 4, 1)}, parts)

    with pytest.raises(CalibrationError, match="another structure"):
        one().merge(one(fingerprint="g", parts=((1, 2),)))
    with pytest.raises(CalibrationError, match="another set of measurements"):
        one().merge(one(key="zeros", parts=((1, 2),)))
    with pytest.raises(CalibrationError, match="not disjoint shards"):
        one().merge(one())
    with pytest.raises(CalibrationError, match="not disjoint shards"):
        one().merge(one(parts=((1, 3),)))
    whole = one(parts=())
    whole.merge(one(parts=()))  # two whole runs over different data add up
    assert whole.tensors["t"].samples == 2


def test_shard_runs_through_the_api_merge_into_the_full_statistics(tmp_path, case):
    path, calib = case
    full = trim(TrimConfig(model=path, data=calib, save_stats=tmp_path / "full.npz", batch_size=8, dry_run=True,
                           output=tmp_path / "plan.json"))
    full.save()
    for i in range(2):
        trim(TrimConfig(model=path, data=calib, shard=(i, 2), save_stats=tmp_path / f"s{i}.npz",
                        batch_size=8)).save()
    merged = merge_files([tmp_path / "s0.npz", tmp_path / "s1.npz"])
    reference = ChannelStats.from_bytes((tmp_path / "full.npz").read_bytes())
    assert merged.samples == reference.samples == 32
    for name, stats in reference.tensors.items():
        for key, value in stats.sums.items():
            assert merged.tensors[name].sums[key].tobytes() == value.tobytes()
