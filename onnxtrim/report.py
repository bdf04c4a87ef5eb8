"""The JSON report: what was removed, what it cost, and why the rest was left.

The schema is versioned and, apart from the `timings_s` block, deterministic: the same
inputs and options give the same report byte for byte (keys sorted).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from . import __version__
from .analysis.groups import Analysis
from .metrics import Cost
from .plan import PrunePlan
from .verify import Fidelity

SCHEMA_VERSION = 1


def group_rows(analysis: Analysis, plan: PrunePlan, scores: dict[int, np.ndarray]) -> list[dict[str, Any]]:
    keep = plan.keep_map()
    rows = []
    for group in analysis.groups:
        kept = len(keep[group.id]) if group.id in keep else group.size
        score = scores.get(group.id)
        observed = score[np.isfinite(score)] if score is not None else np.array([])
        rows.append({
            "id": group.id,
            "members": list(group.members),
            "ops": sorted({space.op for space in group.spaces}),
            "size": group.size,
            "kept": kept,
            "removed": group.size - kept,
            "prunable": len(group.prunable),
            "max_score": _num(observed.max()) if observed.size else None,
            "reasons": group.reasons(),
        })
    return rows


def build_report(*, model_path: str, analysis: Analysis, plan: PrunePlan, scores: dict[int, np.ndarray],
                 criterion: dict[str, Any], samples: int, before: Cost, after: Cost,
                 fidelity: Fidelity | None, timings: dict[str, float]) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "onnxtrim_version": __version__,
        "input": {"path": model_path, "fingerprint": plan.fingerprint},
        "output": None,
        "criterion": criterion,
        "calibration": {"samples": samples, "observed_tensors": len(analysis.observations)},
        "groups": group_rows(analysis, plan, scores),
        "removed_channels": plan.removed,
        "cost": {
            "params_before": before.params,
            "params_after": after.params,
            "macs_before": before.macs,
            "macs_after": after.macs,
            "params_ratio": _ratio(after.params, before.params),
            "macs_ratio": _ratio(after.macs, before.macs),
        },
        "fidelity": None if fidelity is None else {
            "samples": fidelity.samples,
            "data": fidelity.data,
            "max_abs_diff": _num(fidelity.max_abs_diff),
            "mean_cosine": _num(fidelity.mean_cosine),
            "top1_agreement": _num(fidelity.top1_agreement),
            "accuracy_original": _num(fidelity.accuracy_original),
            "accuracy_trimmed": _num(fidelity.accuracy_trimmed),
        },
        "barriers": [{"node": b.node, "op": b.op, "reason": b.reason} for b in analysis.barriers],
        "timings_s": {k: round(v, 4) for k, v in timings.items()},
    }


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=True) + "\n"


def _ratio(a: int, b: int) -> float | None:
    return None if b == 0 else round(a / b, 6)


def _num(value: float | None) -> float | str | None:
    """JSON has no NaN or infinity: they are written as strings."""
    if value is None:
        return None
    value = float(value)
    if math.isfinite(value):
        return round(value, 9)
    return str(value)
