"""The pruning plan: which channels each group keeps, as reviewable, replayable data.

A plan sits between measurement and rewrite (like Torch-Pruning's pruning history): it can
be written with `--dry-run`, read by a person, and applied later without recalibrating.
It is bound to the structure of the model it was made for by a fingerprint, so applying it
to another model is refused instead of silently removing the wrong channels.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import onnx

from .errors import PlanError

PLAN_VERSION = 1


@dataclass(frozen=True)
class GroupPlan:
    group: int
    members: tuple[str, ...]
    size: int
    keep: tuple[int, ...]  # sorted class indices that survive

    @property
    def removed(self) -> int:
        return self.size - len(self.keep)


@dataclass(frozen=True)
class PrunePlan:
    fingerprint: str
    criterion: str
    groups: tuple[GroupPlan, ...]

    def keep_map(self) -> dict[int, tuple[int, ...]]:
        return {g.group: g.keep for g in self.groups}

    @property
    def removed(self) -> int:
        return sum(g.removed for g in self.groups)

    def to_json(self) -> str:
        body = {"version": PLAN_VERSION, **asdict(self)}
        return json.dumps(body, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PrunePlan:
        try:
            body = json.loads(text)
            if body.get("version") != PLAN_VERSION:
                raise PlanError(f"plan version {body.get('version')!r} is not supported (expected {PLAN_VERSION})")
            groups = tuple(
                GroupPlan(int(g["group"]), tuple(str(m) for m in g["members"]), int(g["size"]),
                          tuple(int(k) for k in g["keep"]))
                for g in body["groups"]
            )
            return cls(str(body["fingerprint"]), str(body["criterion"]), groups)
        except PlanError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise PlanError(f"plan is not valid JSON of the expected form: {exc}") from exc


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
