"""The pipeline's stages as public, in-memory functions: analyse, measure, decide, rewrite, verify.

`api.trim` composes them once, from files to files. A loop that trims, fine-tunes and
recalibrates (Network Trimming's iterations) composes them again on models in memory: every
stage takes and returns plain values (ModelProto, Analysis, ChannelStats, PrunePlan,
Fidelity) and writes nothing.

    analysis = stages.analyse(model)
    stats = stages.measure(model, analysis, criterion.requests(analysis), batches)
    plan = stages.decide(analysis, criterion, stats, Selection(threshold=0.9))
    trimmed = stages.rewrite(model, plan, analysis)
    fidelity = stages.verify(model, trimmed, holdout_batches)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import onnx

from . import ir, model_io
from .analysis.cost import CostModel
from .analysis.groups import Analysis
from .analysis.groups import analyse as _analyse
from .analysis.rule_context import AttentionMode
from .calibration.collect import collect_stats
from .calibration.feeds import Batch
from .calibration.requests import GRADIENT_KINDS, StatRequest
from .calibration.stats import ChannelStats
from .criteria.base import Criterion, Scores
from .errors import CalibrationError, ConfigError, DependencyError
from .metrics import Cost
from .passes.apply_plan import apply_plan
from .passes.layer_norm import LayerNormMode
from .passes.preamble import validated_keep
from .plan import PrunePlan, structure_fingerprint
from .policy import Selection, make_plan
from .verify import Fidelity, compare


def analyse(model: onnx.ModelProto, *, attention: AttentionMode = "heads") -> Analysis:
    """Channel groups, the edits removing them needs, barriers, and the tensors consumers read.

    `attention="head-dims"` makes an attention's classes head dimensions instead of heads."""
    return _analyse(ir.to_graph(model), attention=attention)


Batches = Iterable[Batch] | Callable[[], Iterable[Batch]]


def measure(model: onnx.ModelProto, analysis: Analysis, requests: Sequence[StatRequest], batches: Batches,
            *, providers: Sequence[str] = ("cpu",), fingerprint: str | None = None, labels: np.ndarray | None = None,
            teacher: onnx.ModelProto | None = None, device: str = "cpu") -> ChannelStats:
    """Per-channel sums of every request over the batches.

    Activation statistics come from one onnxruntime pass with in-graph probes; gradient ones
    (Taylor) from one pass through the torch bridge, with `labels` for cross-entropy or
    `teacher` for distillation (see `torch_bridge.gradients`). When both are needed, `batches`
    must be a function returning a fresh iterable, since the data is read twice.
    """
    fingerprint = fingerprint or structure_fingerprint(model)
    probed = [r for r in requests if r.kind not in GRADIENT_KINDS]
    graded = [r for r in requests if r.kind in GRADIENT_KINDS]
    if probed and graded and not callable(batches):
        raise ConfigError("measuring activation and gradient statistics reads the data twice: pass batches "
                          "as a function returning a fresh iterable")

    def fresh() -> Iterable[Batch]:
        return batches() if callable(batches) else batches

    stats = collect_stats(model, analysis, fresh(), probed, providers=providers, fingerprint=fingerprint) \
        if probed or not graded else ChannelStats(fingerprint)
    if graded:
        try:
            from .torch_bridge.gradients import taylor_stats
        except ImportError as exc:
            raise DependencyError("gradient criteria need PyTorch: pip install 'onnxtrim[torch]'") from exc
        _add_keys(stats, taylor_stats(model, graded, fresh(), fingerprint=fingerprint, labels=labels,
                                      teacher=teacher, device=device))
    return stats


def _add_keys(stats: ChannelStats, more: ChannelStats) -> None:
    """Statistics of another pass over the same samples: new keys on known tensors, new tensors."""
    for name, tensor in more.tensors.items():
        known = stats.tensors.get(name)
        if known is None:
            stats.tensors[name] = tensor
            continue
        if known.samples != tensor.samples:
            raise CalibrationError(f"the two passes over the data saw {known.samples} and {tensor.samples} samples")
        known.add(tensor.sums, 0, 0)


def decide(analysis: Analysis, criterion: Criterion, stats: ChannelStats | Scores, selection: Selection, *,
           fingerprint: str, nodes_to_exclude: Sequence[str] = (), cost_model: CostModel | None = None) -> PrunePlan:
    """Scores (from statistics, or given) through the policy's stages to a plan."""
    scores = stats if isinstance(stats, Scores) else criterion.scores(analysis, stats)
    excluded = excluded_groups(analysis, nodes_to_exclude)
    plan = make_plan(analysis, criterion, scores, selection, fingerprint=fingerprint,
                     excluded={gid: f"excluded by nodes_to_exclude ({name})" for gid, name in excluded.items()},
                     cost_model=cost_model)
    if nodes_to_exclude and plan.masks:
        skip = set(nodes_to_exclude)
        plan = PrunePlan(plan.fingerprint, plan.criterion, plan.groups, plan.left_alone,
                         tuple(m for m in plan.masks if m.node not in skip), plan.notes)
    return plan


def rewrite(model: onnx.ModelProto, plan: PrunePlan, analysis: Analysis | None = None, *,
            layernorm: LayerNormMode = "exact") -> onnx.ModelProto:
    """The trimmed model (masks applied, channels removed), checked by onnx's checker.

    `layernorm`: "exact" keeps a trimmed LayerNorm's statistics over the original width
    (removing zero channels changes nothing), "plain" normalises over the kept channels."""
    return rewrite_checked(model, plan, analysis, layernorm=layernorm)[0]


def rewrite_checked(model: onnx.ModelProto, plan: PrunePlan, analysis: Analysis | None = None, *,
                    layernorm: LayerNormMode = "exact") -> tuple[onnx.ModelProto, bytes | None]:
    """`rewrite`, with the bytes the checker saw (None for a model over 2 GiB, checked by path): a
    verification session built from them saves serializing the trimmed model again."""
    trimmed = apply_plan(model, plan, analysis, layernorm=layernorm)
    return trimmed, model_io.check_model(trimmed)


def verify(original: onnx.ModelProto, trimmed: onnx.ModelProto, batches: Iterable[Batch], *, data: str = "holdout",
           providers: Sequence[str] = ("cpu",), labels: np.ndarray | None = None, atol: float = 1e-4,
           rtol: float = 0.0, sessions: tuple[Any, Any] | None = None) -> Fidelity | None:
    """Both models on the same batches, each output compared in the terms of its kind (`verify`); None
    when there were no samples. `atol`/`rtol`: the allclose tolerance whose violations are counted;
    `sessions`: onnxruntime sessions of the two models to reuse."""
    return compare(original, trimmed, batches, data=data, providers=providers, labels=labels, atol=atol, rtol=rtol,
                   sessions=sessions)


def projected_cost(analysis: Analysis, plan: PrunePlan, cost_model: CostModel | None = None) -> Cost:
    """Parameters and MACs the plan's model would have, without building it (dry runs, budgets)."""
    model = cost_model or CostModel(analysis)
    return model.projected(analysis.removed_roots(validated_keep(plan, analysis)))


def excluded_groups(analysis: Analysis, names: Sequence[str]) -> dict[int, str]:
    """Group id -> the excluded producer that holds it. Names that are not producers are an error."""
    if not names:
        return {}
    labels = {ir.node_label(n, i) for i, n in enumerate(analysis.graph.nodes)}
    producers = {space.node: group.id for group in analysis.groups for space in group.spaces}
    unknown = sorted(n for n in set(names) if n not in labels)
    if unknown:
        raise ConfigError(f"nodes_to_exclude names no node of the model: {', '.join(unknown[:5])}")
    others = sorted(n for n in set(names) if n not in producers)
    if others:
        raise ConfigError(f"nodes_to_exclude names nodes that produce no prunable channels: {', '.join(others[:5])} "
                          "(name Conv, Gemm or MatMul nodes with constant weights)")
    out: dict[int, str] = {}
    for name in names:
        out.setdefault(producers[name], name)
    return out


__all__ = ["analyse", "decide", "excluded_groups", "measure", "projected_cost", "rewrite", "structure_fingerprint",
           "verify"]
