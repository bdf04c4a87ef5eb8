"""Fuzzing the whole command line (RELIABILITY.md invariant 8: any byte string as a model or data file ends in a
documented exit code, never a crash or a hang; invariant 1: inputs never change).

Case `i` is generated from `random.Random(i)` alone, so any case is reproducible by its number: one of
KINDS picks what is hostile (a mutated or random model, its external data, or a .npy/.npz/.pb data file),
everything else is valid. A worker process runs cases one after the other through `onnxtrim.cli.main` in
process (what a user's `onnxtrim ...` runs, minus interpreter start-up) and reports each; the parent
restarts it after a crash (any death of the process) and kills it after `timeout` seconds on one case (a
hang). Problems: a crash, a hang, exit code 1 (an internal error is a bug) or one outside README's table,
an input file changed, or anything left beside the inputs but the documented outputs of a successful run.

    python -m tests.helpers.fuzz_cli 10000        # prints a summary; the slow test in test_model_io_fuzz.py
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

KINDS = ("model", "external-model", "external-data", "npy", "npz", "pb", "random-model", "random-data")
#: Exit codes README documents for these runs (gates are never asked for).
DOCUMENTED = frozenset(range(10))


def _mutate(blob: bytes, rng: random.Random) -> bytes:
    data = bytearray(blob)
    for _ in range(rng.randint(1, 4)):
        where = rng.randint(0, len(data))
        action = rng.choice(("flip", "insert", "delete", "truncate"))
        if action == "flip" and where < len(data):
            data[where] ^= rng.randint(1, 255)
        elif action == "insert":
            data[where:where] = rng.randbytes(rng.randint(1, 8))
        elif action == "delete":
            del data[where:where + rng.randint(1, 8)]
        elif action == "truncate":
            del data[where:]
    return bytes(data)


def _samples(rng: random.Random, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(rng.randrange(2**32)).standard_normal(shape).astype(np.float32)


def make_case(i: int, directory: Path) -> list[str]:
    """Write case `i` into `directory` (empty) and return the CLI arguments for it."""
    from tests.helpers.dead import dead_chain
    from tests.helpers.wide import wide_gemm_model

    rng = random.Random(i)
    kind = KINDS[i % len(KINDS)]
    data = directory / "calib"
    data.mkdir()
    if kind in ("external-model", "external-data"):
        model = wide_gemm_model(directory / "m.onnx", layers=1, width=16, seed=rng.randrange(100))
        np.save(data / "x.npy", _samples(rng, (10, 16)))
        hostile = model if kind == "external-model" else directory / "m.onnx.data"
        hostile.write_bytes(_mutate(hostile.read_bytes(), rng))
        return [str(model), "--data", str(data), "-q"]
    model = directory / "m.onnx"
    blob = dead_chain([1], [0]).SerializeToString()
    x = _samples(rng, (10, 1, 8, 8))
    model.write_bytes(_mutate(blob, rng) if kind == "model" else rng.randbytes(rng.randint(0, 4096))
                      if kind == "random-model" else blob)
    if kind in ("npy", "random-data", "model", "random-model"):
        np.save(data / "x.npy", x)
    elif kind == "npz":
        np.savez(data / "x.npz", x=x)
    else:
        (data / "test_data_set_0").mkdir()
        (data / "test_data_set_0" / "input_0.pb").write_bytes(onnx.numpy_helper.from_array(x, "x").SerializeToString())
    target = {"npy": data / "x.npy", "random-data": data / "x.npy", "npz": data / "x.npz",
              "pb": data / "test_data_set_0" / "input_0.pb"}.get(kind)
    if target is not None:
        target.write_bytes(_mutate(target.read_bytes(), rng) if kind != "random-data"
                           else rng.randbytes(rng.randint(0, 2048)))
    return [str(model), "--data", str(data), "-q"]


def run_case(i: int, root: Path) -> dict:
    """Run case `i` in process; returns {"case", "kind", "code", "problem"}."""
    from onnxtrim.cli import main
    from tests.helpers.files import snapshot

    directory = root / f"case{i}"
    directory.mkdir()
    try:
        argv = make_case(i, directory)
        before = snapshot(directory)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
            try:
                code = main(argv)
            except Exception as exc:  # noqa: BLE001 - reported: an exception escaping main is a crash
                return {"case": i, "kind": KINDS[i % len(KINDS)], "code": None,
                        "problem": f"exception escaped main: {type(exc).__name__}: {exc}"}
        return {"case": i, "kind": KINDS[i % len(KINDS)], "code": code,
                "problem": _problem(code, before, snapshot(directory), err.getvalue())}
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _problem(code: int, before: dict, after: dict, stderr: str) -> str:
    if code not in DOCUMENTED or code == 1:
        return f"exit code {code}: {stderr.strip()[-300:]}"
    changed = [k for k, v in before.items() if after.get(k) != v]
    if changed:
        return f"input changed: {changed}"
    new = sorted(Path(k).name for k in after if k not in before)
    allowed = {0: {"m.trimmed.onnx", "m.trimmed.onnx.data", "m.trimmed.report.json"},
               5: {"m.trimmed.report.json"}}.get(code, set())
    if not set(new) <= allowed:
        return f"left behind after exit {code}: {new}"
    return ""


def worker(start: int, stop: int, root: Path) -> None:
    for i in range(start, stop):
        print(json.dumps({"start": i}), flush=True)
        print(json.dumps(run_case(i, root)), flush=True)


@dataclass
class Summary:
    cases: int = 0
    codes: Counter = field(default_factory=Counter)
    crashes: list[str] = field(default_factory=list)  # died, exit 1, undocumented code, exception, invariant
    hangs: list[int] = field(default_factory=list)
    seconds: float = 0.0

    def line(self) -> str:
        codes = ", ".join(f"{code}: {n}" for code, n in sorted(self.codes.items()))
        return (f"{self.cases} cases in {self.seconds:.0f} s: {len(self.crashes)} crashes, {len(self.hangs)} "
                f"hangs; exit codes {codes}")


def fuzz(count: int, *, start: int = 0, timeout: float = 60.0) -> Summary:
    """Run cases start..start+count in a worker process, restarting it after a crash or a hang."""
    summary = Summary()
    began = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="fuzz-cli-"))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "TMPDIR": str(root)}
    next_case, stop = start, start + count
    try:
        while next_case < stop:
            process = subprocess.Popen([sys.executable, "-m", "tests.helpers.fuzz_cli", "--worker", str(next_case),
                                        str(stop), str(root)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                       text=True, env=env)
            next_case = _drain(process, summary, timeout, next_case)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    summary.seconds = time.monotonic() - began
    return summary


def _drain(process: subprocess.Popen, summary: Summary, timeout: float, current: int) -> int:
    """Read the worker's reports until it ends; returns the next case to run."""
    import selectors

    stream = process.stdout
    assert stream is not None
    selector = selectors.DefaultSelector()
    selector.register(stream, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    running = None
    while True:
        if not selector.select(max(0.0, deadline - time.monotonic())):
            process.kill()
            process.wait()
            summary.cases += 1
            summary.hangs.append(running if running is not None else current)
            return (running if running is not None else current) + 1
        line = stream.readline()
        if not line:
            code = process.wait()
            if running is not None:  # the worker died during a case
                summary.cases += 1
                summary.crashes.append(f"case {running}: worker died with status {code}")
                return running + 1
            return current
        report = json.loads(line)
        if "start" in report:
            running = report["start"]
            deadline = time.monotonic() + timeout
            continue
        running = None
        current = report["case"] + 1
        summary.cases += 1
        summary.codes[report["code"]] += 1
        if report["problem"]:
            summary.crashes.append(f"case {report['case']} ({report['kind']}): {report['problem']}")


if __name__ == "__main__":
    if sys.argv[1] == "--worker":
        worker(int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))
    else:
        result = fuzz(int(sys.argv[1]), start=int(sys.argv[2]) if len(sys.argv) > 2 else 0)
        print(result.line())
        for problem in result.crashes + [f"case {i}: hang" for i in result.hangs]:
            print(problem)
