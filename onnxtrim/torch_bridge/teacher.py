"""Teacher outputs from onnxruntime, computed once per sample and kept within a byte bound.

Fine-tuning reads the teacher's outputs for every sample in every epoch; running the original
model each time would cost as much as a second forward pass. Outputs are cached per sample
index (onnxtrim's global sample numbering, `Batch.indices`), so any batching or batch order
finds them. Chunks stay in memory up to `max_bytes`; later chunks are written to a temporary
directory (removed by `close()`) and read back memory-mapped.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from .. import runtime
from ..calibration.feeds import Batch
from ..errors import BridgeError
from .check import _as_array


class TeacherCache:
    def __init__(self, model: onnx.ModelProto, outputs: Sequence[str], *, max_bytes: int = 256 * 2**20,
                 providers: Sequence[str] = ("cpu",)) -> None:
        known = [o.name for o in model.graph.output]
        missing = [n for n in outputs if n not in known]
        if missing:
            raise BridgeError(f"the teacher model has no output '{missing[0]}' (it has {', '.join(known)})")
        self._model = model
        self._names = list(outputs)
        self._providers = tuple(providers)
        self._session: Any = None
        self.max_bytes = max_bytes
        self.bytes_in_memory = 0
        self.bytes_on_disk = 0
        self.runs = 0
        self._chunks: list[list[np.ndarray]] = []
        self._where: dict[int, tuple[int, int]] = {}  # sample index -> (chunk, row)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def outputs(self, batch: Batch) -> dict[str, np.ndarray]:
        """The teacher's outputs for the batch's samples, in the batch's row order."""
        indices = [int(i) for i in batch.indices]
        if any(i not in self._where for i in indices):
            self._compute(batch.feeds, indices)
        rows = [self._where[i] for i in indices]
        return {name: np.stack([self._chunks[c][k][r] for c, r in rows]) for k, name in enumerate(self._names)}

    def _compute(self, feeds: Mapping[str, np.ndarray], indices: list[int]) -> None:
        if self._session is None:
            self._session = runtime.make_session(self._model, self._providers, optimize=False)
        values = runtime.run(self._session, self._names, dict(feeds))
        self.runs += 1
        arrays = [np.ascontiguousarray(_as_array(self._model, n, v)) for n, v in zip(self._names, values)]
        size = sum(a.nbytes for a in arrays)
        if self.bytes_in_memory + size > self.max_bytes:
            arrays = self._spill(arrays)
            self.bytes_on_disk += size
        else:
            self.bytes_in_memory += size
        chunk = len(self._chunks)
        self._chunks.append(arrays)
        for row, i in enumerate(indices):
            self._where[i] = (chunk, row)

    def _spill(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="onnxtrim-teacher-")
        base = Path(self._tmp.name) / f"chunk{len(self._chunks)}"
        spilled = []
        for k, a in enumerate(arrays):
            path = base.with_name(f"{base.name}_{k}.npy")
            np.save(path, a)
            spilled.append(np.load(path, mmap_mode="r"))
        return spilled

    def close(self) -> None:
        self._chunks.clear()
        self._where.clear()
        self._session = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
