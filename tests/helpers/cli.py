"""Run the command line as a user does: a subprocess of `python -m onnxtrim`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx

from tests.helpers.dead import dead_chain, write_npy_batches

ROOT = Path(__file__).resolve().parents[2]


def onnxtrim(*args, cwd=None, env=None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "onnxtrim", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=environment, timeout=300, check=False)


def chain_case(directory: Path) -> tuple[Path, Path]:
    """CHAIN with 2 dead conv channels and 3 dead hidden units, and 40 samples in 2 .npy files."""
    path = directory / "chain.onnx"
    onnx.save(dead_chain([1, 4], [0, 3, 7]), path)
    x = np.random.default_rng(0).standard_normal((40, 1, 8, 8)).astype(np.float32)
    write_npy_batches(directory / "calib", x, per_file=20)
    return path, directory / "calib"
