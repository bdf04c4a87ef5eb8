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
from .probes import STAT_KINDS

STATS_VERSION = 1


@dataclass
class TensorStats:
    """Sums over every value of each channel of one observed tensor."""

    axis: int
    sums: dict[str, np.ndarray]  # stat kind -> float64 [C]
    count: int = 0  # values per channel seen so far
    samples: int = 0

    @classmethod
    def empty(cls, axis: int, channels: int, kinds: tuple[str, ...] = STAT_KINDS) -> TensorStats:
        return cls(axis, {k: np.zeros(channels, dtype=np.float64) for k in kinds})

    def add(self, sums: dict[str, np.ndarray], count: int, samples: int) -> None:
        for kind, value in sums.items():
            self.sums[kind] += np.asarray(value, dtype=np.float64)
        self.count += int(count)
        self.samples += int(samples)

    def merge(self, other: TensorStats) -> None:
        if other.axis != self.axis or set(other.sums) != set(self.sums):
            raise CalibrationError("cannot merge statistics of differently observed tensors")
        self.add(other.sums, other.count, other.samples)

    @property
    def apoz(self) -> np.ndarray:
        """Average percentage of zeros per channel (Hu et al. 2016)."""
        return self.sums["zeros"] / max(self.count, 1)


@dataclass
class ChannelStats:
    """Statistics of every observed tensor of one model (bound to it by a fingerprint)."""

    fingerprint: str
    tensors: dict[str, TensorStats] = field(default_factory=dict)

    @property
    def samples(self) -> int:
        return max((t.samples for t in self.tensors.values()), default=0)

    def merge(self, other: ChannelStats) -> None:
        if other.fingerprint != self.fingerprint:
            raise CalibrationError("statistics were gathered on a model of another structure")
        for name, stats in other.tensors.items():
            if name in self.tensors:
                self.tensors[name].merge(stats)
            else:
                self.tensors[name] = stats

    def to_bytes(self) -> bytes:
        """An .npz archive: one array per (tensor, kind) and a JSON index; no pickles."""
        index = {"version": STATS_VERSION, "fingerprint": self.fingerprint, "tensors": {}}
        buffer = io.BytesIO()
        arrays: dict[str, np.ndarray] = {}
        for k, (name, stats) in enumerate(sorted(self.tensors.items())):
            index["tensors"][name] = {"key": k, "axis": stats.axis, "count": stats.count,
                                      "samples": stats.samples, "kinds": sorted(stats.sums)}
            for kind, value in stats.sums.items():
                arrays[f"t{k}_{kind}"] = value
        arrays["index"] = np.frombuffer(json.dumps(index, sort_keys=True).encode(), dtype=np.uint8)
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "statistics file") -> ChannelStats:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as archive:
                index = json.loads(bytes(archive["index"]).decode())
                if index.get("version") != STATS_VERSION:
                    raise CalibrationError(f"{source}: statistics version {index.get('version')!r} not supported")
                tensors = {}
                for name, entry in index["tensors"].items():
                    k = int(entry["key"])
                    sums = {kind: np.asarray(archive[f"t{k}_{kind}"], dtype=np.float64) for kind in entry["kinds"]}
                    tensors[name] = TensorStats(int(entry["axis"]), sums, int(entry["count"]), int(entry["samples"]))
                return cls(str(index["fingerprint"]), tensors)
        except CalibrationError:
            raise
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
            raise CalibrationError(f"{source} is not an onnxtrim statistics file: {exc}") from exc
