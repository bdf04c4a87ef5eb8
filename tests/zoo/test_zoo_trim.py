"""The model-zoo equivalence suite: every torchvision classifier, both torch exporters.

For each (model, exporter):
- masked equivalence: removing a random ~30% of every prunable group computes what zeroing
  those channels in the original computes, the output passes the full checker and keeps a
  dynamic batch;
- dead-channel equivalence: channels made provably dead in up to four prunable groups
  (producer rows 0, bias -1e4 before their activations) are removed by
  `criterion="mean-activation", threshold=0` (exactly silent channels, after any activation)
  through the public API, and the outputs do not move;
- coverage: what the analysis found is compared with `tests/zoo/coverage.json`, from which the
  README's coverage table is rendered (`python tests/zoo/render_coverage.py`), so the table
  cannot drift from what the code does.

Models or groups that are not prunable carry their reason in `LIMITS` (checked against the
barrier reasons the analysis reports).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest

from onnxtrim.api import trim
from onnxtrim.config import TrimConfig
from tests.helpers.dead import inject_dead, injectable
from tests.helpers.dead_transformer import inject_dead_heads, inject_dead_stream
from tests.helpers.export import EXPORTERS, ZOO, slow_reason
from tests.helpers.plans import analysis_of, assert_masked_equivalent, random_plan, run
from tests.zoo.limits import BARRIER_WORDS, LIMITS

COVERAGE = Path(__file__).with_name("coverage.json")

CASES = [pytest.param(name, exporter, id=f"{name}-{exporter}",
                      marks=[pytest.mark.slow] if slow_reason(name, exporter) else [])
         for name in ZOO for exporter in EXPORTERS]


def tolerance(reference: np.ndarray) -> dict[str, float]:
    """Relative to the output's scale: summation order differs between the two graphs."""
    scale = float(np.max(np.abs(reference))) or 1.0
    return {"rtol": 1e-3, "atol": 1e-4 * scale}


def coverage_row(analysis) -> dict:
    prunable = [g for g in analysis.groups if len(g.prunable)]
    row = {
        "groups": len(analysis.groups),
        "prunable_groups": len(prunable),
        "channels": int(sum(g.size for g in analysis.groups)),
        "prunable_channels": int(sum(len(g.prunable) for g in analysis.groups)),
        "barrier_ops": sorted({b.op for b in analysis.barriers}),
    }
    for kind in ("heads", "stream"):  # attention heads and residual streams, where a model has them
        count = sum(g.kind == kind for g in prunable)
        if count:
            row[f"prunable_{kind}"] = count
    return row


def assert_dead_removed_exactly(dead: onnx.ModelProto, killed: dict[tuple[str, ...], list[int]],
                                feeds: dict[str, np.ndarray], tmp_path: Path) -> None:
    """`criterion="mean-activation", threshold=0` through the public API removes at least the killed
    classes of each group, and the outputs do not move."""
    path = tmp_path / "dead.onnx"
    onnx.save(dead, path)
    result = trim(TrimConfig(model=path, data=[feeds], criterion="mean-activation", threshold=0.0, holdout=0.0,
                             round_to=1))
    after = {tuple(g["members"]): g for g in result.report["groups"]}
    for members, classes in killed.items():
        assert after[members]["removed"] >= len(classes), (members, after[members])
    original = run(dead, feeds)[0]
    np.testing.assert_allclose(run(result.model, feeds)[0], original, **tolerance(original))
    onnx.checker.check_model(result.model, full_check=True)


@pytest.fixture(scope="module")
def recorded() -> dict:
    return json.loads(COVERAGE.read_text()) if COVERAGE.exists() else {}


@pytest.mark.parametrize(("name", "exporter"), CASES)
def test_zoo_model_trims_correctly(name, exporter, zoo_export, zoo_reference, recorded, coverage_rows, tmp_path):
    path = zoo_export(name, exporter)
    model = onnx.load(path)
    example, _ = zoo_reference(name)
    feeds = {model.graph.input[0].name: example}
    analysis = analysis_of(model)

    # Coverage: what the analysis finds is what the README says.
    row = coverage_row(analysis)
    key = f"{name}/{exporter}"
    coverage_rows[key] = row
    assert os.environ.get("ONNXTRIM_ZOO_COVERAGE") == "1" or recorded.get(key) == row, (
        f"{key}: analysis found {row}, coverage.json says {recorded.get(key)}; "
        "regenerate with `ONNXTRIM_ZOO_COVERAGE=1 pytest tests/zoo` and `python tests/zoo/render_coverage.py`")
    assert row["prunable_groups"] > 0, f"{name}: nothing prunable"
    if (name, exporter) in BARRIER_WORDS:
        assert any(BARRIER_WORDS[name, exporter] in b.reason for b in analysis.barriers), (name, LIMITS[name])
    else:  # a model without a recorded limit has no barrier: only the classifier output stays
        assert not analysis.barriers, (key, [b.reason for b in analysis.barriers][:3])

    # Masked equivalence for a random choice in every prunable group.
    plan = random_plan(model, np.random.default_rng(0), 0.3)
    reference = run(model, feeds)[0]
    trimmed = assert_masked_equivalent(model, plan, feeds, **tolerance(reference))
    batch3 = {k: np.concatenate([v, v[:1]]) for k, v in feeds.items()}
    assert run(trimmed, batch3)[0].shape[0] == 3  # the batch dimension stayed dynamic

    # Dead-channel equivalence through the public API.
    candidates = [g for g in analysis.groups if len(g.prunable) >= 2 and injectable(analysis, g)][:4]
    killed: dict[tuple[str, ...], list[int]] = {}
    dead = model
    for group in candidates:
        classes = group.prunable[:: max(2, len(group.prunable) // 3)][:3].tolist()
        injected = inject_dead(dead, analysis, group, classes)
        if injected is not None:
            dead, killed[group.members] = injected, classes
    if not killed:
        pytest.skip(f"{key}: no prunable group is read only after activations, so none can be made provably dead")
    assert_dead_removed_exactly(dead, killed, feeds, tmp_path)


TRANSFORMERS = ["vit_b_16", "vit_tiny", "swin_t", "swin_tiny", "convnext_tiny", "bert_encoder"]
TRANSFORMER_CASES = [pytest.param(name, exporter, id=f"{name}-{exporter}",
                                  marks=[pytest.mark.slow] if slow_reason(name, exporter) else [])
                     for name in TRANSFORMERS for exporter in EXPORTERS]


@pytest.mark.parametrize(("name", "exporter"), TRANSFORMER_CASES)
def test_zoo_dead_heads_and_stream_dimensions_are_removed_exactly(name, exporter, zoo_export, zoo_reference,
                                                                   tmp_path):
    """Heads made dead by zeroing their V slices and stream dimensions made dead by zeroing every
    producer and parameter slice are removed by mean-activation at threshold 0 through the public
    API, with the exact LayerNorm rewrite, and the outputs do not move."""
    model = onnx.load(zoo_export(name, exporter))
    example, _ = zoo_reference(name)
    feeds = {model.graph.input[0].name: example}
    analysis = analysis_of(model)
    heads = [g for g in analysis.groups if g.kind == "heads" and len(g.prunable) >= 2][:2]
    streams = [g for g in analysis.groups if g.kind == "stream" and len(g.prunable) >= 4][:2]
    assert streams and (heads or name == "convnext_tiny"), [g.kind for g in analysis.groups]
    dead, killed = model, {}
    for group in heads:
        classes = [int(group.prunable[-1])]
        injected = inject_dead_heads(dead, analysis, group, classes, feeds)
        assert injected is not None, f"{group.members}: no V slice found"
        dead, killed[group.members] = injected, classes
    for group in streams:
        classes = group.prunable[:: max(2, len(group.prunable) // 3)][:3].tolist()
        dead, killed[group.members] = inject_dead_stream(dead, analysis, group, classes), classes
    assert_dead_removed_exactly(dead, killed, feeds, tmp_path)
