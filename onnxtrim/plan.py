"""The pruning plan: which channels each group keeps and why, as reviewable, replayable data.

A plan sits between measurement and rewrite (like Torch-Pruning's pruning history): it can
be written with `--dry-run`, read by a person, and applied later without recalibrating.
Every decision carries its evidence: the criterion's score of every class, why the removed
ones were removed, which classes a constraint kept back (and which constraint), and why the
groups left alone were left alone. Unstructured decisions travel as weight masks. A plan is
bound to the structure of the model it was made for by a fingerprint, so applying it to
another model is refused instead of silently removing the wrong channels.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

import onnx

from .errors import PlanError
from .masks import WeightMask

PLAN_VERSION = 2  # version 1 plans (keep lists only) are still read


@dataclass(frozen=True)
class GroupPlan:
    group: int
    members: tuple[str, ...]
    size: int
    keep: tuple[int, ...]  # sorted class indices that survive
    scores: tuple[float | None, ...] = ()  # per class, in the criterion's unit (None: not measured)
    reason: str = ""  # why the removed classes were chosen
    kept_by: tuple[tuple[int, str], ...] = ()  # classes chosen for removal that a constraint kept, and which

    @property
    def removed(self) -> int:
        return self.size - len(self.keep)


@dataclass(frozen=True)
class LeftAlone:
    group: int
    members: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class PrunePlan:
    fingerprint: str
    criterion: str
    groups: tuple[GroupPlan, ...]
    left_alone: tuple[LeftAlone, ...] = ()
    masks: tuple[WeightMask, ...] = ()
    notes: tuple[str, ...] = ()  # what a reader should know: a budget not reached, say

    def keep_map(self) -> dict[int, tuple[int, ...]]:
        return {g.group: g.keep for g in self.groups}

    @property
    def removed(self) -> int:
        return sum(g.removed for g in self.groups)

    def to_json(self) -> str:
        body: dict[str, Any] = {
            "version": PLAN_VERSION,
            "fingerprint": self.fingerprint,
            "criterion": self.criterion,
            "groups": [{"group": g.group, "members": list(g.members), "size": g.size, "keep": list(g.keep),
                        "scores": [_num(s) for s in g.scores], "reason": g.reason,
                        "kept_by": {str(c): why for c, why in g.kept_by}} for g in self.groups],
            "left_alone": [{"group": a.group, "members": list(a.members), "reason": a.reason}
                           for a in self.left_alone],
            "masks": [m.to_json() for m in self.masks],
            "notes": list(self.notes),
        }
        return json.dumps(body, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PrunePlan:
        try:
            body = json.loads(text)
            if not isinstance(body, dict) or body.get("version") not in (1, PLAN_VERSION):
                version = body.get("version") if isinstance(body, dict) else None
                raise PlanError(f"plan version {version!r} is not supported (expected {PLAN_VERSION})")
            groups = tuple(
                GroupPlan(int(g["group"]), tuple(str(m) for m in g["members"]), int(g["size"]),
                          tuple(int(k) for k in g["keep"]),
                          tuple(None if s is None else float(s) for s in g.get("scores", [])),
                          str(g.get("reason", "")),
                          tuple(sorted((int(c), str(why)) for c, why in g.get("kept_by", {}).items())))
                for g in body["groups"]
            )
            left = tuple(LeftAlone(int(a["group"]), tuple(str(m) for m in a["members"]), str(a["reason"]))
                         for a in body.get("left_alone", []))
            masks = tuple(WeightMask.from_json(m) for m in body.get("masks", []))
            return cls(str(body["fingerprint"]), str(body["criterion"]), groups, left, masks,
                       tuple(str(n) for n in body.get("notes", [])))
        except PlanError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise PlanError(f"plan is not valid JSON of the expected form: {exc}") from exc


def _num(value: float | None) -> float | None:
    """JSON writes floats in their shortest exact form, so a plan read back equals the plan written."""
    return None if value is None or not math.isfinite(value) else float(value)


def structure_fingerprint(model: onnx.ModelProto) -> str:
    """A hash of what the analysis depends on: ops, wiring, attributes, parameter shapes.

    Weight values are left out on purpose: a fine-tuned model keeps its plan.
    """
    h = hashlib.sha256()
    graph = model.graph
    for node in graph.node:
        h.update(f"{node.domain}:{node.op_type}|{','.join(node.input)}|{','.join(node.output)}\n".encode())
        for attr in sorted(node.attribute, key=lambda a: a.name):
            if attr.type == onnx.AttributeProto.TENSOR:
                h.update(f"{attr.name}=tensor:{attr.t.data_type}:{list(attr.t.dims)}\n".encode())
            elif attr.type != onnx.AttributeProto.GRAPH:
                h.update(f"{attr.name}={onnx.helper.get_attribute_value(attr)!r}\n".encode())
    for init in graph.initializer:
        h.update(f"init {init.name}:{init.data_type}:{list(init.dims)}\n".encode())
    for value in list(graph.input) + list(graph.output):
        h.update(f"io {value.name}:{value.type.SerializeToString().hex()}\n".encode())
    return h.hexdigest()[:16]
