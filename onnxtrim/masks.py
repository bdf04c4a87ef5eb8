"""Weight masks: single weights an unstructured criterion sets to zero (magnitude, Relief connections).

A mask names the constant by the node that reads it and the input position, since one
initializer may feed several nodes; the pass that applies masks gives a masked copy to that
node alone when the constant is shared. In a plan a mask is stored as packed bits in base64,
so a 25M-weight model's masks take about 4 MB of JSON.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import PlanError


@dataclass(frozen=True, eq=False)
class WeightMask:
    node: str  # node label (ir.node_label)
    input_index: int
    tensor: str  # the constant's name when the mask was made (for reports)
    keep: np.ndarray  # bool, the constant's shape: False where the weight becomes zero

    @property
    def zeros(self) -> int:
        return int(self.keep.size - np.count_nonzero(self.keep))

    @property
    def sparsity(self) -> float:
        return self.zeros / max(self.keep.size, 1)

    def to_json(self) -> dict[str, Any]:
        bits = np.packbits(self.keep.reshape(-1).astype(np.uint8))
        return {"node": self.node, "input": self.input_index, "tensor": self.tensor, "shape": list(self.keep.shape),
                "keep_bits": base64.b64encode(bits.tobytes()).decode("ascii")}

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> WeightMask:
        try:
            shape = tuple(int(d) for d in body["shape"])
            if any(d < 0 for d in shape):
                raise ValueError("negative dimension")
            size = int(np.prod(shape, dtype=np.int64))
            bits = np.frombuffer(base64.b64decode(body["keep_bits"], validate=True), dtype=np.uint8)
            if len(bits) != (size + 7) // 8:
                raise ValueError(f"{len(bits)} bytes of mask bits for {size} weights")
            keep = np.unpackbits(bits, count=size).astype(bool).reshape(shape)
            return cls(str(body["node"]), int(body["input"]), str(body["tensor"]), keep)
        except (KeyError, TypeError, ValueError) as exc:
            raise PlanError(f"plan holds an invalid weight mask: {exc}") from exc
