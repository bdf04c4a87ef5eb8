"""Plans for tests: random channel choices per group, and the masked-equivalence check."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from onnxtrim import ir
from onnxtrim.analysis.groups import Analysis, analyse
from onnxtrim.passes.apply_plan import apply_plan
from onnxtrim.passes.mask_channels import mask_channels
from onnxtrim.plan import GroupPlan, PrunePlan, structure_fingerprint
from onnxtrim.policy import restore_survivors


def analysis_of(model: onnx.ModelProto) -> Analysis:
    return analyse(ir.to_graph(model))


def random_plan(model: onnx.ModelProto, rng: np.random.Generator, share: float = 0.5,
                analysis: Analysis | None = None) -> PrunePlan:
    """Drop about `share` of the prunable classes of every group, chosen at random."""
    analysis = analysis or analysis_of(model)
    keep: dict[int, set[int]] = {}
    for g in analysis.groups:
        prunable = g.prunable
        if len(prunable) == 0:
            continue
        n_drop = min(max(1, round(share * len(prunable))), len(prunable), g.size - 1)
        keep[g.id] = set(range(g.size)) - {int(d) for d in rng.choice(prunable, size=n_drop, replace=False)}
    restore_survivors(analysis, keep, {})
    groups = tuple(GroupPlan(g.id, g.members, g.size, tuple(sorted(keep[g.id])))
                   for g in analysis.groups if g.id in keep and len(keep[g.id]) < g.size)
    return PrunePlan(structure_fingerprint(model), "random", groups)


def run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def random_feeds(model: onnx.ModelProto, rng: np.random.Generator, batch: int = 2) -> dict[str, np.ndarray]:
    """Standard-normal floats; integer inputs (token ids) in [0, 5)."""
    feeds = {}
    initializers = {t.name for t in model.graph.initializer}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else batch for d in value.type.tensor_type.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
        data = rng.integers(0, 5, size=dims) if dtype.kind in "iu" else rng.standard_normal(dims)
        feeds[value.name] = data.astype(dtype)
    return feeds


def assert_masked_equivalent(model: onnx.ModelProto, plan: PrunePlan, feeds: dict[str, np.ndarray],
                             rtol: float = 1e-4, atol: float = 1e-5, *, analysis: Analysis | None = None,
                             layernorm: str = "exact") -> onnx.ModelProto:
    """Removing the plan's channels computes what zeroing them in the original computes (with
    `layernorm="plain"`: what the original computes with LayerNorm statistics over the kept channels)."""
    trimmed = apply_plan(model, plan, analysis, layernorm=layernorm)  # type: ignore[arg-type]
    onnx.checker.check_model(trimmed, full_check=True)
    masked = mask_channels(model, plan, analysis, layernorm=layernorm)  # type: ignore[arg-type]
    for got, want in zip(run(trimmed, feeds), run(masked, feeds)):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    assert [o.name for o in trimmed.graph.output] == [o.name for o in model.graph.output]
    assert [i.name for i in trimmed.graph.input] == [i.name for i in model.graph.input]
    assert [i.type for i in trimmed.graph.input] == [i.type for i in model.graph.input]
    return trimmed
