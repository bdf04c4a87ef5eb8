"""Quality gates: what each compares, and the exit code each failure maps to."""

from __future__ import annotations

import json

import pytest

from onnxtrim.cli import exit_code_for
from onnxtrim.gates import evaluate, quality_drop
from onnxtrim.verify import Fidelity
from tests.helpers.cli import onnxtrim


def fidelity(**overrides) -> Fidelity:
    values = {"samples": 10, "data": "holdout", "max_abs_diff": 0.1, "mean_cosine": 0.99, "top1_agreement": 0.9,
              "accuracy_original": 0.95, "accuracy_trimmed": 0.93}
    return Fidelity(**{**values, **overrides})


def test_max_drop_prefers_accuracy_then_agreement_then_cosine():
    assert quality_drop(fidelity()) == pytest.approx((0.02, "accuracy drop"))
    assert quality_drop(fidelity(accuracy_original=None, accuracy_trimmed=None)) == pytest.approx((0.1, "top-1 disagreement"))
    assert quality_drop(fidelity(accuracy_original=None, accuracy_trimmed=None, top1_agreement=None)) == \
        pytest.approx((0.01, "1 - cosine similarity"))


def test_each_gate_passes_and_fails_at_its_limit_with_its_exit_code():
    results = evaluate(max_drop=0.02, min_speedup=1.5, max_latency_ms=3.0, fidelity=fidelity(),
                       speedup=1.49, latency_ms=3.0)
    assert [(g.name, g.passed) for g in results] == [("max_drop", True), ("min_speedup", False),
                                                      ("max_latency_ms", True)]
    assert exit_code_for(results[1].error()) == 11
    failing = evaluate(max_drop=0.01, min_speedup=None, max_latency_ms=2.0, fidelity=fidelity(), speedup=None,
                       latency_ms=2.5)
    assert [exit_code_for(g.error()) for g in failing] == [10, 12]
    assert "accuracy drop is 0.02, above --max-drop 0.01" in str(failing[0].error())


def test_a_gate_with_nothing_measured_fails():
    [gate] = evaluate(max_drop=0.5, min_speedup=None, max_latency_ms=None, fidelity=None, speedup=None,
                      latency_ms=None)
    assert not gate.passed and "no accuracy drop was measured" in str(gate.error())


def test_gates_through_the_command_line(case):
    path, calib = case
    done = onnxtrim(path, "--data", calib, "--fraction", "0.5", "--round-to", "1", "--max-drop", "0", "--bench", "--bench-runs", "3",
                    "--max-latency-ms", "1e-6")
    assert done.returncode == 10, done.stderr
    report = json.loads((path.parent / "chain.trimmed.report.json").read_text())
    assert [(g["name"], g["passed"]) for g in report["gates"]] == [("max_drop", False), ("max_latency_ms", False)]
    assert report["latency"]["rows"][0]["batch"] == 1 and report["latency"]["rows"][0]["original_ms"] > 0
    assert (path.parent / "chain.trimmed.onnx").exists()  # gates fail after writing
    passing = onnxtrim(path, "--data", calib, "--apoz", "1.0", "--max-drop", "0", "--overwrite", "-q")
    assert passing.returncode == 0, passing.stderr
