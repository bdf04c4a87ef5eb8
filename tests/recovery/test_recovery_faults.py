"""What fine-tuning does when it cannot go on (issue 11's "Also"), through the command line as a subprocess.

Each case asserts its documented exit code (README, "Exit codes") or death by the signal, a one-line
message, input files byte-for-byte unchanged, and nothing at the output paths: no model, no report, no
staging directory, nothing left in TMPDIR (the teacher cache's spill directory lives there).

    an op the bridge cannot map          13
    training data of the wrong shape      4
    training data with NaN                4
    a diverging loss (NaN or Inf)        14   nothing written (the input model is the last good one)
    SIGINT / SIGTERM during an epoch     death by the signal, "onnxtrim: interrupted"
    SIGINT / SIGTERM in the write-back   the same

Dying by the signal (rather than exit 130 for SIGINT, or no message for SIGTERM) is the command line's
behaviour from the reliability work (issue 11, `onnxtrim/cli/signals.py`); where this checkout's CLI lacks
it, the signal cases check everything else and then xfail on the exit status alone.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "digits"
DIES_BY_SIGNAL = importlib.util.find_spec("onnxtrim.cli.signals") is not None
TRIM = ["--criterion", "l1", "--fraction", "0.5", "--finetune", "--max-samples", "160", "-q"]


def state(root: Path) -> dict[str, str]:
    """Every file under root and its sha256: equal before and after means inputs untouched, nothing added."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> Path:
    """digits.onnx, its calibration data, a copy with an op the bridge has no mapping for (LpNormalization on
    the logits), bad training data, and a slow training reader that counts its passes."""
    root = tmp_path_factory.mktemp("faults")
    shutil.copy(EXAMPLE / "digits.onnx", root / "digits.onnx")
    shutil.copytree(EXAMPLE / "calib", root / "calib")
    model = onnx.load(root / "digits.onnx")
    out = model.graph.output[0]
    for node in model.graph.node:
        node.output[:] = [f"{o}_raw" if o == out.name else o for o in node.output]
    model.graph.node.append(onnx.helper.make_node("LpNormalization", [f"{out.name}_raw"], [out.name], axis=1,
                                                  name="unmapped"))
    onnx.save(model, root / "unmapped.onnx")
    x = np.load(EXAMPLE / "calib" / "batch_000.npy")
    (root / "wrong_shape").mkdir()
    np.save(root / "wrong_shape" / "x.npy", np.zeros((8, 1, 9, 9), np.float32))
    (root / "nan").mkdir()
    with_nan = x[:32].copy()
    with_nan[5, 0, 3, 3] = np.nan
    np.save(root / "nan" / "x.npy", with_nan)
    (root / "slow.py").write_text(f'''
import os, time
from pathlib import Path
import numpy as np
X = np.load({str(root / "calib" / "batch_000.npy")!r})
def make_reader():
    passes = Path(os.environ["ONNXTRIM_TEST_PASSES"])
    passes.write_text(str(int(passes.read_text() or 0) + 1) if passes.exists() else "1")
    def batches():
        for i in range(0, len(X), 16):
            time.sleep(0.02)
            yield {{"image": X[i:i + 16]}}
    return batches()
''')
    return root


def run(case: Path, tmp: Path, *args: str, module: tuple[str, ...] = ("onnxtrim",)) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp)}
    return subprocess.run([sys.executable, "-m", *module, *args], capture_output=True, text=True, cwd=case,
                          env=env, timeout=300, check=False)


def outputs(case: Path) -> list[Path]:
    return sorted(p for p in case.rglob("*") if ".trimmed" in p.name or p.name.startswith(".onnxtrim"))


def ours(tmp: Path) -> list[str]:
    """onnxtrim's temporary files (teacher cache, session copies) left in TMPDIR. onnxruntime's own `.ses` and
    torch's `torchinductor_*` cache appear there whatever onnxtrim does."""
    return sorted(p.name for p in tmp.iterdir() if p.name.startswith(("onnxtrim", ".onnxtrim")))


def one_line(stderr: str, *fragments: str) -> None:
    assert stderr.count("\n") == 1 and stderr.startswith("onnxtrim: "), stderr
    for fragment in fragments:
        assert fragment in stderr, stderr


@pytest.mark.parametrize(("model", "extra", "code", "fragments"), [
    ("unmapped.onnx", [], 13, ["op 'LpNormalization' at node 'unmapped'"]),
    ("digits.onnx", ["--train-data", "wrong_shape"], 4, ["x.npy", "input 'image'", "[8, 1, 9, 9]"]),
    ("digits.onnx", ["--train-data", "nan"], 4, ["x.npy", "NaN"]),
    ("digits.onnx", ["--lr", "1e10"], 14, ["training diverged", "loss is nan at step", "lower the learning rate"]),
], ids=["unmapped-op", "wrong-shape", "nan-data", "diverged"])
def test_a_training_failure_is_one_line_and_its_exit_code_with_nothing_written(case, tmp_path, model, extra, code,
                                                                               fragments):
    before = state(case)
    done = run(case, tmp_path, model, "--data", "calib", *TRIM, "--epochs", "2", *extra)
    assert done.returncode == code, done.stderr
    one_line(done.stderr, *fragments)
    assert state(case) == before and not outputs(case)
    assert ours(tmp_path) == []


def interrupted(case: Path, before: dict[str, str], tmp: Path, returncode: int, stderr: str, signum: int,
                seconds: float | None = None) -> None:
    """Everything the contract asks after a signal; the exit status last (it needs issue 11's CLI)."""
    assert state(case) == before and not outputs(case), "inputs changed or outputs left"
    assert ours(tmp) == [], "temporary files left behind"
    if seconds is not None:
        assert seconds < 5, f"took {seconds:.1f} s to stop"
    if not DIES_BY_SIGNAL and (returncode, stderr) != (-signum, "onnxtrim: interrupted\n"):
        pytest.xfail(f"this CLI ends with {returncode} and {stderr!r}; dying by the signal after cleanup comes with "
                     "issue 11's onnxtrim/cli/signals.py")
    assert returncode == -signum, stderr
    assert stderr == "onnxtrim: interrupted\n"


@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM"])
def test_a_signal_during_an_epoch_stops_within_seconds_and_writes_nothing(case, tmp_path, name):
    """Sent at a random point of the 2nd to 4th training pass (reading, training steps or holdout fidelity)."""
    signum = getattr(signal, name)
    before = state(case)
    passes = tmp_path / "passes"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path), "ONNXTRIM_TEST_PASSES": str(passes)}
    process = subprocess.Popen([sys.executable, "-m", "onnxtrim", "digits.onnx", "--data", "calib", *TRIM,
                                "--train-data", "slow.py:make_reader", "--epochs", "50", "--batch-size", "16"],
                               cwd=case, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline and (
            not passes.exists() or int(passes.read_text() or 0) < 3):  # the peek at one batch, epoch 1, epoch 2
        time.sleep(0.05)
    assert process.poll() is None, f"ended before training: {process.communicate()}"
    time.sleep(random.Random(name).uniform(0.0, 1.5))
    sent = time.monotonic()
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    interrupted(case, before, tmp_path, process.returncode, stderr, signum, time.monotonic() - sent)


@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM"])
def test_a_signal_during_the_write_back_writes_nothing(case, tmp_path, name):
    """The signal arrives as the trained weights are written back into the ONNX model (in memory, before
    any output is published)."""
    before = state(case)
    done = run(case, tmp_path, "--", "digits.onnx", "--data", "calib", *TRIM, "--epochs", "1",
               module=("tests.recovery.signal_inside", name, "onnxtrim.torch_bridge.finetune:write_back"))
    interrupted(case, before, tmp_path, done.returncode, done.stderr, getattr(signal, name))
