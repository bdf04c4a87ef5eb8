"""Warnings a user would want, in words that say what to do: the report's `warnings` list.

Tried as a new user would, onnxtrim stayed silent where it should not have: 1-2 calibration samples
trimmed 132-162 channels; top-1 agreement fell to 0% (cosine 0.72) without a word; a model written
from a plan was never compared with the original; `--check` failed on resnet18 because channels silent
on 52 calibration samples fired on 12 holdout samples, and nothing named that cause. Each rule here is a
pure function of what the run measured; the library returns the words and the command line prints them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .criteria.base import Criterion
from .plan import PrunePlan
from .policy import Selection
from .verify import Fidelity

#: Below this many calibration samples, a channel silent on all of them is weak evidence.
MIN_CALIBRATION = 100
#: Top-1 agreement or cosine below this is a collapse, not a small loss.
COLLAPSE = 0.9


@dataclass(frozen=True)
class RunFacts:
    """What the rules look at, gathered by `api.trim`."""

    criterion: Criterion
    selection: Selection | None  # None with --plan
    plan: PrunePlan
    samples: int  # calibration samples the statistics came from (0: none measured)
    measured: bool  # whether the plan rests on activation statistics
    fidelity: Fidelity | None
    written: bool  # a model will be written (not a dry run, not a shard)
    unverified_because: str | None  # why no fidelity, when a model is written without one
    latency: dict[str, Any] | None
    rounding: int


def lossless(criterion: Criterion, selection: Selection | None) -> bool:
    """Whether the selection removes only channels that are exactly silent on the calibration data."""
    return (selection is not None and criterion.lossless_threshold is not None
            and selection.threshold == criterion.lossless_threshold and selection.fraction is None
            and selection.target_macs is None and selection.target_params is None)


def warnings_for(facts: RunFacts) -> list[str]:
    found = [few_samples(facts), collapse(facts.fidelity), unverified(facts), calibration_only(facts.fidelity),
             slower(facts.latency, facts.rounding)]
    return [w for w in found if w]


def few_samples(facts: RunFacts) -> str | None:
    n, removed = facts.samples, facts.plan.removed
    if not facts.measured or removed == 0 or n >= MIN_CALIBRATION:
        return None
    what = ("silent on them may still fire on other inputs" if lossless(facts.criterion, facts.selection)
            else "judged unimportant on them may matter on other inputs")
    bound = min(1.0, 3.0 / max(n, 1))
    return (f"calibration ran on only {n} sample{'s' if n != 1 else ''} and removed {removed} channel"
            f"{'s' if removed != 1 else ''}: channels {what} (a channel silent on all {n} can still be active on "
            f"up to {bound:.0%} of inputs, at 95% confidence); calibrate on a few hundred samples")


def collapse(fidelity: Fidelity | None) -> str | None:
    if fidelity is None:
        return None
    primary = fidelity.primary_output
    kind = primary.kind if primary is not None else None
    if fidelity.top1_agreement is not None and fidelity.top1_agreement < COLLAPSE:
        cosine = "" if fidelity.mean_cosine is None else f" (cosine {fidelity.mean_cosine:.3g})"
        return (f"top-1 agreement with the original is only {fidelity.top1_agreement:.1%}{cosine} on "
                f"{fidelity.samples} {fidelity.data} samples: the trimmed model often predicts another class; "
                "trim less (a higher --apoz, a lower --fraction) or recover with --finetune")
    if kind == "embedding" and fidelity.mean_cosine is not None and fidelity.mean_cosine < COLLAPSE:
        return (f"cosine similarity with the original's embeddings is only {fidelity.mean_cosine:.3g} on "
                f"{fidelity.samples} {fidelity.data} samples; trim less or recover with --finetune")
    return None


def unverified(facts: RunFacts) -> str | None:
    if not facts.written or facts.fidelity is not None or facts.unverified_because is None:
        return None
    return f"the trimmed model was written without verification: {facts.unverified_because}"


def calibration_only(fidelity: Fidelity | None) -> str | None:
    if fidelity is None or fidelity.data != "calibration":
        return None
    return (f"fidelity was measured on the {fidelity.samples} calibration samples (none were held out): it "
            "cannot show what the calibration missed; keep some out with --holdout (default 0.2) or give more data")


def slower(latency: dict[str, Any] | None, rounding: int) -> str | None:
    if not latency:
        return None
    rows = [r for r in latency["rows"] if r.get("speedup") is not None and r["speedup"] < 1.0]
    if not rows:
        return None
    where = ", ".join(f"batch {r['batch']} ({r['speedup']:.2f}x)" for r in rows)
    fix = ("kept channel counts are not rounded (--round-to 1): --round-to auto keeps them on the CPU's "
           "fastest kernels" if rounding == 1 else
           "the kernels the trimmed shapes get are slower than the original's; check the report's latency rows")
    return f"the trimmed model is slower than the original at {where}: {fix}; --min-speedup makes this a failure"


def check_cause(facts: RunFacts, calibration_samples: int) -> str:
    """Why `--check` found moved outputs, and what to do, for its error message."""
    fidelity = facts.fidelity
    assert fidelity is not None
    if lossless(facts.criterion, facts.selection) and fidelity.data == "holdout":
        return (f"channels silent on all {calibration_samples} calibration samples fired on the {fidelity.samples} "
                "holdout samples: calibrate on more data (more samples in --data), or accept the difference "
                "with --tolerance/--rtol")
    if facts.selection is None:
        return "the plan removes channels that are active on these samples"
    return ("the selection removes channels that are active on the data (it is not limited to silent ones): "
            "trim less, or use the default lossless threshold")


__all__ = ["COLLAPSE", "MIN_CALIBRATION", "RunFacts", "check_cause", "lossless", "warnings_for"]
