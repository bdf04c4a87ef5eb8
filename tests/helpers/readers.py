"""Calibration readers for CLI tests: slow ones, to prove work never started or to interrupt it midway."""

from __future__ import annotations

from pathlib import Path

READER = '''\
import pathlib, time
import numpy as np

def make_reader():
    pathlib.Path({marker!r}).touch()
    rng = np.random.default_rng(0)
    for _ in range({batches}):
        time.sleep({delay})
        yield {{{name!r}: rng.standard_normal({shape}, dtype=np.float32)}}
'''


def slow_reader(directory: Path, marker: Path, *, name: str, shape: tuple[int, ...], batches: int,
                delay: float) -> str:
    """Write `directory/reader.py`: its reader touches `marker` when first called, then yields `batches`
    random batches of `shape` for input `name`, sleeping `delay` seconds before each. Returns the --data
    spec; `marker` must lie outside the directories a test snapshots."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "reader.py"
    path.write_text(READER.format(marker=str(marker), batches=batches, delay=delay, name=name, shape=shape))
    return f"{path}:make_reader"
