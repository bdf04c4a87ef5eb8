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


def _environment(env=None) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}


def onnxtrim(*args, cwd=None, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "onnxtrim", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=_environment(env), timeout=300, check=False)


def start(*args, cwd=None, env=None) -> subprocess.Popen:
    """`onnxtrim ARGS` running in the background (to signal it), stdout and stderr piped as text."""
    return subprocess.Popen([sys.executable, "-m", "onnxtrim", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd, env=_environment(env))


def with_fault(fault: list[str], *args, cwd=None) -> subprocess.CompletedProcess:
    """`onnxtrim ARGS` with one fault injected (see tests/helpers/inject.py)."""
    return subprocess.run([sys.executable, "-m", "tests.helpers.inject", *fault, "--", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, env=_environment(), timeout=300, check=False)


def one_line(stderr: str, *fragments: str) -> str:
    """The single line a failing run prints: `onnxtrim: ...`, no traceback, naming every fragment."""
    assert stderr.count("\n") == 1 and stderr.startswith("onnxtrim: "), stderr
    assert "Traceback" not in stderr, stderr
    for fragment in fragments:
        assert fragment in stderr, stderr
    return stderr.strip()


def chain_case(directory: Path) -> tuple[Path, Path]:
    """CHAIN with 2 dead conv channels and 3 dead hidden units, and 40 samples in 2 .npy files."""
    path = directory / "chain.onnx"
    onnx.save(dead_chain([1, 4], [0, 3, 7]), path)
    x = np.random.default_rng(0).standard_normal((40, 1, 8, 8)).astype(np.float32)
    write_npy_batches(directory / "calib", x, per_file=20)
    return path, directory / "calib"
