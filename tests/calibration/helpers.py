"""Helpers for the calibration-reader tests: tiny models, an input-untouched check, row gathering."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
import onnx.parser

from onnxtrim.calibration import Batch, InputSpec, model_input_specs

# x[N,3] ──Relu──▶ y          (dynamic batch)
DYNAMIC = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 3] x) => (float[N, 3] y) { y = Relu(x) }
"""
# x[2,3] ──Relu──▶ y          (static batch of 2)
STATIC = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[2, 3] x) => (float[2, 3] y) { y = Relu(x) }
"""
# a[N,2] ──Relu──▶ y ; ids[N,seq] ──Identity──▶ z ; mask[N,seq] ──Identity──▶ m   (three inputs, int ones)
TWO = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 2] a, int64[N, seq] ids, int64[N, seq] mask)
  => (float[N, 2] y, int64[N, seq] z, int64[N, seq] m) {
    y = Relu(a)
    z = Identity(ids)
    m = Identity(mask)
}
"""


def specs(text: str) -> list[InputSpec]:
    return model_input_specs(onnx.parser.parse_model(text))


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """sha256 and mtime of every file under root (links not followed), to prove inputs are untouched."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(filenames + dirnames):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if os.path.isfile(path) and not os.path.islink(path) and st.st_mode & 0o444:
                try:
                    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
                except PermissionError:
                    digest = "unreadable"
            else:
                digest = "not-a-file"
            out[os.path.relpath(path, root)] = (digest, st.st_mtime_ns)
    return out


@contextmanager
def untouched(root: Path) -> Iterator[None]:
    before = snapshot(root)
    yield
    assert snapshot(root) == before, "input files changed"


def rows_of(batches: list[Batch], name: str = "x") -> np.ndarray:
    return np.concatenate([b.feeds[name] for b in batches])


def indices_of(batches: list[Batch]) -> list[int]:
    return [int(i) for b in batches for i in b.indices]


def collect(spec: object, inputs: list[InputSpec], **options: object) -> list[Batch]:
    """Open `spec` and read every batch of one pass (batch_size 1000 and no hold-out unless given)."""
    from onnxtrim.calibration import iter_batches, open_data

    options = {"batch_size": 1000, "holdout": 0.0, **options}
    return list(iter_batches(open_data(spec, inputs), inputs, **options))  # type: ignore[arg-type]


def save_pb(path: Path, array: np.ndarray, name: str = "") -> None:
    from onnx import numpy_helper

    path.write_bytes(numpy_helper.from_array(array, name=name or None).SerializeToString())
