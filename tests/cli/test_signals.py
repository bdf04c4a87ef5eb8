"""Ctrl-C and SIGTERM during calibration (issue 11, item 2), through the command line as a subprocess.

Each trial starts a trim whose calibration takes about 40 s (a 100 MB model of wide Gemms, a reader that
sleeps 20 ms before each of 400 batches), waits until the reader is first called, sends the signal at a
random point of the next two seconds (in a run, in the reader, in between) and asserts what a shell or CI
runner must see: the process killed by that signal (returncode -2 / -15, never exit 130 and never SIGABRT),
one line on stderr, the inputs byte-for-byte unchanged, and nothing left: no output, no `.onnxtrim-*`
staging directory, no `onnxtrim-session-*` copy in TMPDIR. Signals during the write are in
tests/cli/test_publication.py.

The default run makes a few trials; the 20 + 20 of the issue's proof are `slow`:

    pytest tests/cli/test_signals.py -m slow
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.helpers.cli import start
from tests.helpers.files import leftovers, snapshot
from tests.helpers.readers import slow_reader
from tests.helpers.wide import wide_gemm_model

WIDTH = 2048


@pytest.fixture(scope="module")
def slow_case(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with m.onnx (+ m.onnx.data) and reader.py; trials must leave it exactly as it is."""
    directory = tmp_path_factory.mktemp("signals")
    wide_gemm_model(directory / "m.onnx", layers=6, width=WIDTH)
    return directory


def _trials(case: Path, scratch: Path, name: str, count: int, seed: int) -> list[str]:
    signum = getattr(signal, name)
    rng = random.Random(seed)
    marker = scratch / "reader-called"
    spec = slow_reader(case, marker, name="x", shape=(64, WIDTH), batches=400, delay=0.02)
    before = snapshot(case)
    seen = []
    for k in range(count):
        marker.unlink(missing_ok=True)
        tmp = scratch / f"tmp{k}"
        tmp.mkdir()
        process = start(case / "m.onnx", "--data", spec, "-q", "--no-verify", env={"TMPDIR": str(tmp)})
        deadline = time.monotonic() + 60
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert marker.exists(), f"trial {k}: calibration never started: {process.communicate()}"
        delay = rng.uniform(0.0, 2.0)
        time.sleep(delay)
        sent = time.monotonic()
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
        stopped = time.monotonic() - sent
        seen.append(f"trial {k}: {name} {delay:.2f} s into calibration, stopped {stopped:.2f} s later, "
                    f"returncode {process.returncode}")
        assert process.returncode == -signum, f"{seen[-1]}: {stderr}"
        assert stderr == "onnxtrim: interrupted\n", f"{seen[-1]}: {stderr!r}"
        assert stopped < 10, seen[-1]
        assert snapshot(case) == before, f"{seen[-1]}: inputs changed or outputs left behind"
        assert leftovers(tmp) == [], f"{seen[-1]}: temporary copies left in TMPDIR"
    print("\n".join(seen))
    return seen


@pytest.mark.parametrize(("name", "count"), [("SIGINT", 3), ("SIGTERM", 2)])
def test_a_signal_during_calibration_kills_the_process_cleanly(slow_case: Path, tmp_path: Path, name: str,
                                                               count: int) -> None:
    assert len(_trials(slow_case, tmp_path, name, count, seed=11 + len(name))) == count


@pytest.mark.slow
@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM"])
def test_twenty_signals_at_random_points_of_calibration(slow_case: Path, tmp_path: Path, name: str) -> None:
    """`pytest tests/cli/test_signals.py -m slow`: 20 trials per signal, each ending by that signal."""
    assert len(_trials(slow_case, tmp_path, name, 20, seed=2011 + len(name))) == 20


@pytest.mark.slow
@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM"])
def test_signals_at_random_points_of_the_write(slow_case: Path, tmp_path: Path, name: str) -> None:
    """`pytest tests/cli/test_signals.py -m slow`: 10 trials per signal, each sent at a random point after the
    staging directory of the 100 MB output appears. Every trial ends by the signal with no staging directory
    left and either nothing published or, when the signal came after the publication, every output whole."""
    signum = getattr(signal, name)
    rng = random.Random(7 + len(name))
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((16, WIDTH)).astype(np.float32))
    outputs = [slow_case / "m.trimmed.onnx", slow_case / "m.trimmed.report.json"]
    before = snapshot(slow_case)
    outcomes = []
    for k in range(10):
        process = start(slow_case / "m.onnx", "--data", tmp_path / "x.npy", "-q", "--no-verify")
        deadline = time.monotonic() + 60
        while not leftovers(slow_case) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        delay = rng.uniform(0.0, 0.25)  # staging to publication takes about 0.2 s here
        time.sleep(delay)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
        published = [p.exists() for p in outputs]
        outcomes.append(f"trial {k}: {name} {delay:.3f} s after staging began: returncode {process.returncode}, "
                        f"{'published' if all(published) else 'nothing published'}")
        assert process.returncode in (-signum, 0), f"{outcomes[-1]}: {stderr}"
        assert leftovers(slow_case) == [], outcomes[-1]
        assert all(published) or not any(published), outcomes[-1]
        if all(published):
            onnx.checker.check_model(os.fspath(outputs[0]), full_check=True)
            json.loads(outputs[1].read_text())
            for path in outputs:
                path.unlink()
        assert snapshot(slow_case) == before, outcomes[-1]
    print("\n".join(outcomes))
