"""Per-channel statistics as sums and counts, so batches, runs and machines merge exactly.

Never average averages: a tensor's statistics are the per-channel sums over every value
seen (zeros, sum, sum of |x|, sum of squares) and the number of values per channel.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field

import numpy as np

from ..errors import CalibrationError
from . import exact

STATS_VERSION = 2  # version 1 files (arrays named by kind) are still read


class TensorStats:
    """Sums over every value of each channel (each position along `axis`) of one observed tensor.

    Sums are exact (see `exact`): integer-valued ones (counts) as float64, which is exact below
    2**53, the others as scaled integers once a non-integer value arrives. `sums` reads them as
    float64.
    """

    def __init__(self, axis: int, sums: dict[str, np.ndarray] | None = None, count: int = 0,
                 samples: int = 0) -> None:
        self.axis = axis
        self.count = int(count)
        self.samples = int(samples)
        self._float: dict[str, np.ndarray] = {}  # exact as float64: integer-valued so far
        self._exact: dict[str, np.ndarray] = {}  # object arrays of scaled Python ints
        self._cache: dict[str, np.ndarray] = {}
        for key, value in (sums or {}).items():
            self._accumulate(key, np.asarray(value, dtype=np.float64))

    @property
    def keys(self) -> set[str]:
        return set(self._float) | set(self._exact)

    @property
    def sums(self) -> dict[str, np.ndarray]:
        """Request key (see StatRequest.key) -> float64 total per position."""
        for key, total in self._exact.items():
            if key not in self._cache:
                self._cache[key] = exact.to_float(total)
        return {**self._float, **{key: self._cache[key] for key in self._exact}}

    def add(self, sums: dict[str, np.ndarray], count: int, samples: int) -> None:
        for key, value in sums.items():
            self._accumulate(key, np.asarray(value, dtype=np.float64))
        self.count += int(count)
        self.samples += int(samples)

    def merge(self, other: TensorStats) -> None:
        if other.axis != self.axis or other.keys != self.keys:
            raise CalibrationError("cannot merge statistics of differently observed tensors")
        for key, total in other._float.items():
            self._accumulate(key, total)
        for key, total in other._exact.items():
            self._add_exact(key, total)
        self.count += other.count
        self.samples += other.samples

    def _accumulate(self, key: str, value: np.ndarray) -> None:
        current = self._float.get(key)
        if key not in self._exact and _integral(value) and (current is None or _integral(current + value)):
            self._float[key] = value.copy() if current is None else current + value
            return
        self._add_exact(key, exact.to_exact(value))

    def _add_exact(self, key: str, total: np.ndarray) -> None:
        if key in self._float:
            self._exact[key] = exact.to_exact(self._float.pop(key))
        self._exact[key] = self._exact[key] + total if key in self._exact else total
        self._cache.pop(key, None)

    def arrays(self) -> dict[str, tuple[str, np.ndarray]]:
        """Per key, how it is stored ("float" or "exact") and the array to save."""
        return {**{k: ("float", v) for k, v in self._float.items()},
                **{k: ("exact", exact.to_bytes(v)) for k, v in self._exact.items()}}

    @classmethod
    def from_arrays(cls, axis: int, arrays: dict[str, tuple[str, np.ndarray]], count: int,
                    samples: int) -> TensorStats:
        stats = cls(axis, None, count, samples)
        for key, (form, array) in arrays.items():
            if form == "exact":
                stats._exact[key] = exact.from_bytes(array)
            else:
                stats._float[key] = np.asarray(array, dtype=np.float64)
        return stats


def _integral(value: np.ndarray) -> bool:
    """Integer-valued and small enough that float64 sums of it stay exact."""
    return bool(np.all(np.abs(value) < 2.0**52) and np.all(value == np.round(value)))


@dataclass
class ChannelStats:
    """Statistics of every observed tensor of one model (bound to it by a fingerprint)."""

    fingerprint: str
    tensors: dict[str, TensorStats] = field(default_factory=dict)
    parts: tuple[tuple[int, int], ...] = ()  # the shards (i, n) of one calibration held; () for whole runs

    @property
    def samples(self) -> int:
        return max((t.samples for t in self.tensors.values()), default=0)

    def merge(self, other: ChannelStats) -> None:
        """Add another run's sums: exact, because statistics are sums and counts.

        Both must hold the same statistics of the same model (shards of one calibration).
        """
        if other.fingerprint != self.fingerprint:
            raise CalibrationError("statistics were gathered on a model of another structure")
        counts = {n for _, n in self.parts} | {n for _, n in other.parts}
        overlap = sorted({i for i, _ in self.parts} & {i for i, _ in other.parts})
        if (self.parts or other.parts) and (not self.parts or not other.parts or len(counts) != 1 or overlap):
            raise CalibrationError("statistics are not disjoint shards of one calibration (shards "
                                   f"{_describe(self.parts)} and {_describe(other.parts)})")
        if self.tensors and (set(other.tensors) != set(self.tensors)
                             or any(other.tensors[n].keys != t.keys for n, t in self.tensors.items())):
            raise CalibrationError("statistics hold another set of measurements (another criterion or options)")
        for name, stats in other.tensors.items():
            if name in self.tensors:
                self.tensors[name].merge(stats)
            else:
                self.tensors[name] = TensorStats(stats.axis)
                self.tensors[name].merge(stats)
        self.parts = tuple(sorted(self.parts + other.parts))

    @property
    def missing_shards(self) -> list[int]:
        """Shards of the calibration that are not in yet ([] for whole runs)."""
        if not self.parts:
            return []
        return sorted(set(range(self.parts[0][1])) - {i for i, _ in self.parts})

    def to_bytes(self) -> bytes:
        """An .npz archive: one array per (tensor, statistic) and a JSON index; no pickles."""
        tensors: dict[str, dict[str, object]] = {}
        index = {"version": STATS_VERSION, "fingerprint": self.fingerprint, "tensors": tensors,
                 "parts": [list(p) for p in self.parts]}
        buffer = io.BytesIO()
        arrays: dict[str, np.ndarray] = {}
        for k, (name, stats) in enumerate(sorted(self.tensors.items())):
            stored = stats.arrays()
            keys = sorted(stored)
            tensors[name] = {"key": k, "axis": stats.axis, "count": stats.count, "samples": stats.samples,
                             "kinds": keys, "forms": [stored[key][0] for key in keys]}
            for j, key in enumerate(keys):
                arrays[f"t{k}_s{j}"] = stored[key][1]
        arrays["index"] = np.frombuffer(json.dumps(index, sort_keys=True).encode(), dtype=np.uint8)
        np.savez(buffer, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "statistics file") -> ChannelStats:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as archive:
                index = json.loads(bytes(archive["index"]).decode())
                version = index.get("version")
                if version not in (1, STATS_VERSION):
                    raise CalibrationError(f"{source}: statistics version {version!r} not supported")
                tensors = {}
                for name, entry in index["tensors"].items():
                    k = int(entry["key"])
                    kinds = [str(kind) for kind in entry["kinds"]]
                    forms = entry.get("forms", ["float"] * len(kinds))
                    arrays = {kind: (str(form), archive[f"t{k}_{kind}" if version == 1 else f"t{k}_s{j}"])
                              for j, (kind, form) in enumerate(zip(kinds, forms))}
                    tensors[name] = TensorStats.from_arrays(int(entry["axis"]), arrays, int(entry["count"]),
                                                            int(entry["samples"]))
                parts = tuple((int(i), int(n)) for i, n in index.get("parts", []))
                return cls(str(index["fingerprint"]), tensors, parts)
        except CalibrationError:
            raise
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
            raise CalibrationError(f"{source} is not an onnxtrim statistics file: {exc}") from exc


def _describe(parts: tuple[tuple[int, int], ...]) -> str:
    return ", ".join(f"{i}/{n}" for i, n in parts) or "none (a whole run)"
