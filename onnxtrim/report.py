"""The JSON report: what was removed, what it cost, and why the rest was left.

The schema is versioned and, apart from the `timings_s` block, deterministic: the same
inputs and options give the same report byte for byte (keys sorted).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from . import __version__, ir
from .analysis.groups import Analysis
from .criteria.base import Criterion, Scores
from .metrics import Cost
from .plan import PrunePlan
from .verify import Fidelity

SCHEMA_VERSION = 3


def weight_names(analysis: Analysis) -> dict[str, str]:
    """Producer label -> the name of its weight: what a user can find the layer by where node names are
    generated (torch's dynamo exporter names nodes `node_Conv_296`; the weight is `layer4.1.conv2.weight`)."""
    names = {}
    for index, node in enumerate(analysis.graph.nodes):
        if node.op in ("Conv", "ConvTranspose", "Gemm", "MatMul") and len(node.inputs) > 1 and node.inputs[1].name:
            names[ir.node_label(node, index)] = node.inputs[1].name
    return names


def group_rows(analysis: Analysis, plan: PrunePlan, scores: Scores | None) -> list[dict[str, Any]]:
    keep = plan.keep_map()
    weights = weight_names(analysis)
    left = {a.group: a.reason for a in plan.left_alone}
    decided = {g.group: g for g in plan.groups}
    rows = []
    for group in analysis.groups:
        kept = len(keep[group.id]) if group.id in keep else group.size
        score = scores.values.get(group.id) if scores is not None else None
        observed = score[np.isfinite(score)] if score is not None else np.array([])
        reasons = group.reasons() + ([left[group.id]] if group.id in left else [])
        rows.append({
            "id": group.id,
            "members": list(group.members),
            "weights": [weights.get(member) for member in group.members],
            "ops": sorted({space.op for space in group.spaces}),
            "kind": group.kind,  # heads, head-dims, stream, or channels
            "size": group.size,
            "kept": kept,
            "removed": group.size - kept,
            "prunable": len(group.prunable),
            "max_score": _num(observed.max()) if observed.size else None,
            "min_score": _num(observed.min()) if observed.size else None,
            "selected_by": decided[group.id].reason if group.id in decided else None,
            "kept_by_constraint": len(decided[group.id].kept_by) if group.id in decided else 0,
            "reasons": reasons,
        })
    return rows


def mask_rows(plan: PrunePlan) -> list[dict[str, Any]]:
    """Connection sparsity per masked weight (unstructured criteria)."""
    return [{"node": m.node, "input": m.input_index, "tensor": m.tensor, "weights": int(m.keep.size),
             "zeros": m.zeros, "sparsity": _num(m.sparsity)} for m in plan.masks]


def build_report(*, model_path: str, analysis: Analysis, plan: PrunePlan, scores: Scores | None,
                 criterion: Criterion, selection: dict[str, Any] | None, samples: int, observed: int,
                 before: Cost, after: Cost,
                 projected: bool, fidelity: Fidelity | None, timings: dict[str, float],
                 rounding: dict[str, Any] | None = None) -> dict[str, Any]:
    masked = sum(m.zeros for m in plan.masks)
    return {
        "schema_version": SCHEMA_VERSION,
        "onnxtrim_version": __version__,
        "input": {"path": model_path, "fingerprint": plan.fingerprint},
        "output": None,
        "criterion": {"name": plan.criterion, "unit": criterion.unit, "removes": criterion.removes,
                      "paper": criterion.paper, "selection": selection, "rounding": rounding},
        "calibration": {"samples": samples, "observed_tensors": observed},
        "groups": group_rows(analysis, plan, scores),
        "removed_channels": plan.removed,
        "masks": mask_rows(plan),
        "masked_weights": masked,
        "notes": list(plan.notes),
        "cost": {
            "projected": projected,
            "params_before": before.params,
            "params_after": after.params,
            "macs_before": before.macs,
            "macs_after": after.macs,
            "params_ratio": _ratio(after.params, before.params),
            "macs_ratio": _ratio(after.macs, before.macs),
        },
        "fidelity": fidelity_record(fidelity),
        "barriers": [{"node": b.node, "op": b.op, "reason": b.reason} for b in analysis.barriers],
        "timings_s": {k: round(v, 4) for k, v in timings.items()},
        "warnings": [],
    }


def fidelity_record(fidelity: Fidelity | None) -> dict[str, Any] | None:
    """The comparison as the report holds it: headline numbers (of the primary output), then each output
    with its kind, why it was given that kind, and the metrics that mean something for it."""
    if fidelity is None:
        return None
    return {
        "samples": fidelity.samples,
        "data": fidelity.data,
        "primary": fidelity.primary,
        "max_abs_diff": _num(fidelity.max_abs_diff),
        "max_rel_diff": _num(fidelity.max_rel_diff),
        "mean_cosine": _num(fidelity.mean_cosine),
        "top1_agreement": _num(fidelity.top1_agreement),
        "accuracy_original": _num(fidelity.accuracy_original),
        "accuracy_trimmed": _num(fidelity.accuracy_trimmed),
        "tolerance": {"atol": fidelity.atol, "rtol": fidelity.rtol,
                      "outside": fidelity.outside_tolerance},
        "outputs": [{"name": o.name, "kind": o.kind, "kind_because": o.because, "metric": o.metric[0],
                     "max_abs_diff": _num(o.max_abs_diff), "max_rel_diff": _num(o.max_rel_diff),
                     "mean_cosine": _num(o.mean_cosine), "top1_agreement": _num(o.top1_agreement),
                     "exact_match": _num(o.exact_match), "outside_tolerance": o.outside_tolerance}
                    for o in fidelity.outputs],
    }


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=True) + "\n"


def _ratio(a: int, b: int) -> float | None:
    return None if b == 0 else round(a / b, 6)


SIGNIFICANT = 6


def _num(value: float | None) -> float | str | None:
    """Six significant digits (a difference of 3e-12 stays 3e-12, not 0); JSON has no NaN or infinity:
    they are written as strings."""
    if value is None:
        return None
    value = float(value)
    if math.isfinite(value):
        return float(f"{value:.{SIGNIFICANT}g}")
    return str(value)
