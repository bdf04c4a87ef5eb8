"""What each graph output is, so that fidelity is measured in terms that mean something for it.

Top-1 agreement of a sentence embedding means nothing, and cosine similarity says little about a
regressed box; so every output is given a kind, with the evidence in words (the report names both):

- `class_scores`: class logits or probabilities: top-1 agreement, accuracy with labels;
- `embedding`: feature vectors (sentence or token embeddings, pooled features): cosine similarity;
- `regression`: other real values (boxes, depth, one score): absolute and relative error;
- `integer`: integer, boolean or string outputs (class ids, masks): exact match.

Evidence, strongest first: the element type; the op producing the output (Softmax is class scores,
a normalisation or Tanh pooler an embedding), seen through Identity, Reshape, Flatten and Squeeze;
the output's name (`logits`, `probs`, `embedding`, `pooler_output`, ...); then its shape ([batch,
classes] is class scores, [batch, tokens, features] an embedding, [batch] or [batch, 1] a regression).
Pure onnx, no runtime: an unknown rank is settled from the first batch's array (`refine`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import onnx

KINDS = ("class_scores", "embedding", "regression", "integer")
_SEE_THROUGH = {"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Cast"}
_CLASS_OPS = {"Softmax", "LogSoftmax"}
_EMBEDDING_OPS = {"LayerNormalization", "LpNormalization", "ReduceL2", "Tanh", "SimplifiedLayerNormalization",
                  "ReduceMean"}
_CLASS_NAME = re.compile(r"logit|score|prob|class|label|pred", re.IGNORECASE)
_EMBEDDING_NAME = re.compile(r"embed|hidden|feature|pool|sentence|vector|encod|token|last_hidden", re.IGNORECASE)
_FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
                onnx.TensorProto.BFLOAT16}


@dataclass(frozen=True)
class OutputKind:
    name: str
    kind: str  # one of KINDS
    because: str  # the evidence, in words
    rank: int | None  # from the graph; None when it does not say

    def refine(self, ndim: int, last: int) -> OutputKind:
        """Settle a kind that rested on the shape alone once an array shows the real one."""
        if self.rank is not None or self.kind == "integer" or not self.because.startswith("shape"):
            return self
        return OutputKind(self.name, *_by_shape(ndim, last), ndim)


def output_kinds(model: onnx.ModelProto) -> list[OutputKind]:
    """One kind per graph output, in graph order."""
    producers = {out: node for node in model.graph.node for out in node.output}
    return [_kind(value, producers) for value in model.graph.output]


def _kind(value: onnx.ValueInfoProto, producers: dict[str, onnx.NodeProto]) -> OutputKind:
    tensor = value.type.tensor_type
    rank = len(tensor.shape.dim) if tensor.HasField("shape") else None
    if tensor.elem_type and tensor.elem_type not in _FLOAT_TYPES:
        return OutputKind(value.name, "integer", "integer, boolean or string elements: compared exactly", rank)
    op = _producer_op(value.name, producers)
    if op in _CLASS_OPS:
        return OutputKind(value.name, "class_scores", f"produced by {op}", rank)
    if op in _EMBEDDING_OPS:
        return OutputKind(value.name, "embedding", f"produced by {op}", rank)
    if _CLASS_NAME.search(value.name) and rank in (None, 2):
        return OutputKind(value.name, "class_scores", f"named '{value.name}'", rank)
    if _EMBEDDING_NAME.search(value.name):
        return OutputKind(value.name, "embedding", f"named '{value.name}'", rank)
    last = None
    if rank:
        dim = tensor.shape.dim[rank - 1]
        last = dim.dim_value if dim.HasField("dim_value") else None
    if rank is None:
        return OutputKind(value.name, "class_scores", "shape unknown in the graph (guess: class scores)", None)
    return OutputKind(value.name, *_by_shape(rank, last), rank)


def _by_shape(rank: int, last: int | None) -> tuple[str, str]:
    if rank == 2 and last != 1:
        return "class_scores", "shape [batch, classes]"
    if rank == 3:
        return "embedding", "shape [batch, tokens, features]"
    return "regression", f"shape of rank {rank}" + (" ending in 1" if last == 1 else "")


def _producer_op(name: str, producers: dict[str, onnx.NodeProto]) -> str | None:
    seen = 0
    node = producers.get(name)
    while node is not None and node.op_type in _SEE_THROUGH and node.input and seen < 16:
        node, seen = producers.get(node.input[0]), seen + 1
    return None if node is None else node.op_type


__all__ = ["KINDS", "OutputKind", "output_kinds"]
