"""Every row of README.md's exit-code table, pinned to a case that reproduces it through the command line
(issue 11, item 8), with and without `--debug`: the flag adds the traceback and keeps the code.

Codes 1 and 9 have no honest trigger from the outside (a bug; a rewrite the plan validation lets through),
so their cases inject the failure into the real CLI (tests/helpers/inject.py).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest

from onnxtrim import cli, runtime
from onnxtrim.cli import EXIT_CODES, trim_command
from onnxtrim.errors import DependencyError
from tests.helpers.cli import ROOT, chain_case, one_line, onnxtrim, with_fault


def readme_codes() -> dict[int, str]:
    section = (ROOT / "README.md").read_text().split("### Exit codes", 1)[1].split("\n\n", 2)[1]
    rows = re.findall(r"^\| (\d+) \| (.+) \|$", section, re.MULTILINE)
    return {int(code): meaning for code, meaning in rows}


def _plan_of_another_model(model: Path, calib: Path, debug: list[str]) -> subprocess.CompletedProcess:
    plan = model.with_name("chain.plan.json")
    assert onnxtrim(model, "--data", calib, "--dry-run", "-q").returncode == 0
    body = json.loads(plan.read_text())
    plan.write_text(json.dumps({**body, "fingerprint": "0" * 16}))
    return onnxtrim(model, "--plan", plan, "--overwrite", "-q", *debug)


def _no_onnxruntime(model: Path, calib: Path, debug: list[str]) -> subprocess.CompletedProcess:
    shadow = model.parent / "shadow" / "onnxruntime"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('no onnxruntime here')\n")
    return onnxtrim(model, "--data", calib, "-q", *debug, env={"PYTHONPATH": f"{shadow.parent}{os.pathsep}{ROOT}"})


def _empty_data(model: Path, calib: Path, debug: list[str]) -> subprocess.CompletedProcess:
    (model.parent / "empty").mkdir()
    return onnxtrim(model, "--data", model.parent / "empty", "-q", *debug)


def _exists(model: Path, calib: Path, debug: list[str]) -> subprocess.CompletedProcess:
    assert onnxtrim(model, "--data", calib, "-q").returncode == 0
    return onnxtrim(model, "--data", calib, "-q", *debug)


def _bridge_cannot_map(model: Path, calib: Path, debug: list[str]) -> subprocess.CompletedProcess:
    """An LpNormalization after the classifier: trimming is fine, the torch bridge has no mapping for it."""
    chain = onnx.load(model)
    logits = chain.graph.output[0].name
    chain.graph.node.append(onnx.helper.make_node("LpNormalization", [logits], ["normalised"], name="norm"))
    chain.graph.output[0].name = "normalised"
    normalised = model.with_name("normalised.onnx")
    onnx.save(chain, normalised)
    return onnxtrim(normalised, "--data", calib, "--finetune", "-q", *debug)


CASES: dict[int, tuple[str, Callable[[Path, Path, list[str]], subprocess.CompletedProcess]]] = {
    0: ("", lambda m, c, d: onnxtrim(m, "--data", c, "-q", *d)),
    1: ("internal error: RuntimeError: injected into onnxtrim.stages:apply_plan (a bug: please report it",
        lambda m, c, d: with_fault(["raise", "onnxtrim.stages:apply_plan"], m, "--data", c, "-q", *d)),
    2: ("--apoz must be within [0, 1], got 2.0", lambda m, c, d: onnxtrim(m, "--data", c, "--apoz", "2", *d)),
    3: ("missing.onnx: cannot open model", lambda m, c, d: onnxtrim(m.with_name("missing.onnx"), "--data", c, *d)),
    4: ("no calibration files", _empty_data),
    5: ("above --tolerance 0", lambda m, c, d: onnxtrim(m, "--data", c, "--fraction", "0.6", "--round-to", "1", "--check",
                                                        "--tolerance", "0", "-q", *d)),
    6: ("chain.trimmed.onnx: exists; pass --overwrite to replace it", _exists),
    7: ("onnxruntime is not installed: pip install 'onnxtrim[cpu]'", _no_onnxruntime),
    8: ("fingerprint mismatch", _plan_of_another_model),
    9: ("injected into onnxtrim.stages:apply_plan",
        lambda m, c, d: with_fault(["raise", "onnxtrim.stages:apply_plan", "onnxtrim.errors:PassError"], m,
                                   "--data", c, "-q", *d)),
    10: ("above --max-drop 0", lambda m, c, d: onnxtrim(m, "--data", c, "--fraction", "0.5", "--round-to", "1", "--max-drop", "0",
                                                       "-q", *d)),
    11: ("--min-speedup", lambda m, c, d: onnxtrim(m, "--data", c, "--min-speedup", "100", "--bench-runs", "3",
                                                  "-q", *d)),
    12: ("--max-latency-ms", lambda m, c, d: onnxtrim(m, "--data", c, "--max-latency-ms", "1e-6",
                                                     "--bench-runs", "3", "-q", *d)),
    13: ("op 'LpNormalization' at node 'norm'", _bridge_cannot_map),
    14: ("training diverged", lambda m, c, d: onnxtrim(m, "--data", c, "--fraction", "0.5", "--finetune",
                                                      "--lr", "1e30", "-q", *d)),
}


def test_readme_epilog_and_code_list_the_same_exit_codes() -> None:
    documented = readme_codes()
    assert sorted(documented) == sorted(CASES), "every README row needs a case here, and only those"
    assert sorted({0, 1, *EXIT_CODES.values()}) == sorted(documented)
    epilog = " ".join(trim_command.EPILOG.split("exit codes:", 1)[1].split())
    assert [int(c) for c in re.findall(r"(?:^|, )(\d+) ", epilog)] == sorted(documented)


@pytest.mark.parametrize("code", sorted(CASES))
def test_each_documented_exit_code_is_reproduced(tmp_path: Path, code: int) -> None:
    message, run = CASES[code]
    for debug in ([], ["--debug"]):
        case = tmp_path / ("debug" if debug else "plain")
        case.mkdir()
        model, calib = chain_case(case)
        done = run(model, calib, debug)
        assert done.returncode == code, (debug, done.stderr)
        if code == 0:
            continue
        last = done.stderr.rstrip("\n").splitlines()[-1]
        assert last.startswith("onnxtrim: ") and message in last, (debug, done.stderr)
        if debug:
            assert "Traceback (most recent call last)" in done.stderr, done.stderr
        else:
            assert done.stderr == last + "\n", done.stderr  # one line, no traceback


def test_cuda_missing_from_onnxruntime_is_a_missing_dependency(case) -> None:
    """README: 7 when a dependency is missing; asking for CUDA from a CPU-only onnxruntime is that case."""
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA; the fallback test covers a missing CUDA runtime")
    model, calib = case
    done = onnxtrim(model, "--data", calib, "--providers", "cuda", "-q")
    assert done.returncode == 7, done.stderr
    one_line(done.stderr, "CUDAExecutionProvider not available in this onnxruntime", "install 'onnxtrim[gpu]'")
    assert not model.with_name("chain.trimmed.onnx").exists()


def test_cuda_that_falls_back_to_cpu_is_a_missing_dependency(case, monkeypatch: pytest.MonkeyPatch) -> None:
    """onnxruntime-gpu without its CUDA libraries lists CUDA and builds CPU sessions: also exit 7."""
    ort = pytest.importorskip("onnxruntime")
    real = ort.InferenceSession

    class FellBack:
        def __init__(self, *args, **kwargs) -> None:
            kwargs["providers"] = ["CPUExecutionProvider"]
            self._session = real(*args, **kwargs)

        def __getattr__(self, name: str):
            return getattr(self._session, name)

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", FellBack)
    model, calib = case
    assert cli.main([str(model), "--data", str(calib), "--providers", "cuda", "-q"]) == 7
    with pytest.raises(DependencyError, match="CUDAExecutionProvider is available in onnxruntime but could not "
                                              "be started .*runs on CPUExecutionProvider"):
        runtime.make_session(onnx.load(model), ["cuda"])
