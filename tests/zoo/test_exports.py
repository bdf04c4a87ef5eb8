"""Smoke test of the torch-exported zoo: every (model, exporter) exports, passes the full checker, keeps a
dynamic batch dimension and matches torch in onnxruntime (CPU, optimisations disabled).

The table below is the zoo: one row per (model, exporter), with an explicit reason for every case kept out
of the default run (``slow``) or expected to fail (``xfail``, strict: a fix shows up as XPASS). Numbers
quoted in reasons come from ``python tests/zoo/census.py`` (see ``census.md``) on 2 cores.

Tolerances are relative to the output's scale: |onnx - torch| <= tol * (|torch| + max|torch|). With random
weights the logits range from ~0.03 (alexnet) to ~200 (efficientnets), so a fixed atol would be either
vacuous or too tight.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from tests.helpers.export import EXPORTERS, ZOO, Exporter, slow_reason
from tests.helpers.onnx_utils import check, input_shapes, op_counts, output_shapes, run

DEFAULT_TOL = 1e-4

#: Expected failures, strict. Empty today: every zoo case passes on torch 2.14.1 / onnxruntime 1.31.
XFAIL: dict[tuple[str, Exporter], str] = {}

#: Looser tolerances, with the reason.
TOLERANCE: dict[str, tuple[float, str]] = {
    "efficientnet_v2_s": (5e-3, "40 SE-gated blocks, logits ~200: float32 reassociation gives 1e-3 of scale"),
    "efficientnet_b0": (1e-3, "16 SE-gated blocks, logits ~200: 4e-5 of scale measured"),
}


@dataclass(frozen=True)
class ZooCase:
    model: str
    exporter: Exporter
    slow: str = ""
    xfail: str = ""
    tol: float = DEFAULT_TOL

    def param(self) -> object:
        marks = []
        if self.slow:
            marks.append(pytest.mark.slow)
        if self.xfail:
            marks.append(pytest.mark.xfail(reason=self.xfail, strict=True))
        return pytest.param(self, marks=marks, id=f"{self.model}-{self.exporter}")


CASES = [
    ZooCase(
        model,
        exporter,
        slow=slow_reason(model, exporter),  # the same cases as the zoo trim suite's (one export cache)
        xfail=XFAIL.get((model, exporter), ""),
        tol=TOLERANCE.get(model, (DEFAULT_TOL, ""))[0],
    )
    for model in ZOO
    for exporter in EXPORTERS
]


def assert_close_to_scale(actual: np.ndarray, expected: np.ndarray, tol: float, what: str) -> None:
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} vs {expected.shape}"
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * scale, err_msg=what)


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_export_checks_runs_and_matches_torch(case: ZooCase, zoo_export, zoo_reference) -> None:
    path = zoo_export(case.model, case.exporter)
    example, expected = zoo_reference(case.model)

    check(path)  # full_check, by path: the dynamo form keeps its weights in <name>.onnx.data
    assert path.with_name(path.name + ".data").exists() == (case.exporter == "dynamo")
    (batch, *rest) = input_shapes(path)["input"]
    assert isinstance(batch, str) and rest == list(example.shape[1:]), input_shapes(path)
    assert isinstance(output_shapes(path)["output"][0], str), output_shapes(path)

    (out,) = run(path, {"input": example})  # batch 2, as exported
    assert_close_to_scale(out, expected, case.tol, "batch 2")
    (one,) = run(path, {"input": example[:1]})
    assert_close_to_scale(one, expected[:1], case.tol, "batch 1")
    (three,) = run(path, {"input": np.concatenate([example, example[:1]])})
    assert_close_to_scale(three, np.concatenate([expected, expected[:1]]), case.tol, "batch 3")


@pytest.mark.parametrize("case", [c.param() for c in CASES if not c.xfail])
def test_export_uses_default_domain_and_folds_batchnorm(case: ZooCase, zoo_export) -> None:
    """Facts the channel rules rely on (census.md): both exporters fold eval-mode BatchNorm that follows a
    Conv, and neither emits ops outside the default ONNX domain."""
    counts = op_counts(zoo_export(case.model, case.exporter))
    assert not [op for op in counts if "::" in op], counts
    if case.model != "densenet121":  # pre-activation BN (after Concat, before Conv) cannot be folded
        assert counts["BatchNormalization"] == 0, counts
