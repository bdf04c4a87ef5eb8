"""Recovery losses, one function each, and the rule that picks one per model output.

Distillation needs no labels: the student (the trimmed model being fine-tuned) is pulled
towards the teacher's outputs (the original model, run by onnxruntime). For classifier logits
that is the KL divergence of temperature-softened distributions, scaled by T² so that the
gradient's size does not depend on T (Hinton et al. 2015; NNI fixes T = 2, ModelOpt defaults to
1); for probabilities (a Softmax or ZipMap output, as skl2onnx writes) the KL divergence of the
distributions themselves; for embeddings the cosine distance; for regression outputs and
feature maps the mean squared error. With labels, classifier outputs use cross-entropy instead.
Each loss is a mean over the batch, so epochs of different batch counts compare.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import onnx
import torch
import torch.nn.functional as F

LossName = Literal["kl", "kl_probs", "mse", "cosine", "ce"]
LOSSES: tuple[str, ...] = ("kl", "kl_probs", "mse", "cosine", "ce")
_TINY = 1e-12


def kl_divergence(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """T² · mean over samples of KL(softmax(teacher/T) ‖ softmax(student/T)), classes on the last axis."""
    t = temperature
    log_s = F.log_softmax(student / t, dim=-1)
    log_t = F.log_softmax(teacher / t, dim=-1)
    per_row = (log_t.exp() * (log_t - log_s)).sum(dim=-1)
    return per_row.mean() * t * t


def kl_divergence_probs(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean over samples of KL(teacher ‖ student) for outputs that already are probabilities."""
    s = student.clamp_min(_TINY)
    p = teacher.clamp_min(0)
    per_row = (p * (torch.log(p.clamp_min(_TINY)) - torch.log(s))).sum(dim=-1)
    return per_row.mean()


def mse(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return (student - teacher).square().mean()


def cosine(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean of 1 − cos(student, teacher) over every vector along the last axis."""
    return (1 - F.cosine_similarity(student, teacher, dim=-1, eps=1e-8)).mean()


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, *, probabilities: bool = False) -> torch.Tensor:
    """Mean cross-entropy of integer `labels`; `probabilities` for outputs that are already softmaxed."""
    if probabilities:
        return F.nll_loss(torch.log(logits.clamp_min(_TINY)), labels)
    return F.cross_entropy(logits, labels)


def output_kind(model: onnx.ModelProto, name: str) -> str:
    """'probabilities' when `name` comes out of a Softmax (through ZipMap/Identity/Cast), else 'values'."""
    producers = {out: node for node in model.graph.node for out in node.output}
    node = producers.get(name)
    for _ in range(8):
        if node is None:
            return "values"
        if node.op_type == "Softmax":
            return "probabilities"
        if node.op_type not in ("ZipMap", "Identity", "Cast") or not node.input:
            return "values"
        node = producers.get(node.input[0])
    return "values"


def choose_loss(kind: str, shape: tuple[int, ...], has_labels: bool) -> str:
    """The default loss for one float output, from what produced it and its shape.

    [N, C≥2]: classifier (KL with temperature, or on probabilities; cross-entropy with labels);
    [N, T, D]: token embeddings (cosine); anything else — [N], [N, 1], feature maps: MSE.
    """
    if len(shape) == 2 and shape[1] >= 2:
        if has_labels:
            return "ce"
        return "kl_probs" if kind == "probabilities" else "kl"
    if len(shape) == 3:
        return "cosine"
    return "mse"


def distillation(loss: str, student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    if loss == "kl":
        return kl_divergence(student, teacher, temperature)
    if loss == "kl_probs":
        return kl_divergence_probs(student, teacher)
    if loss == "mse":
        return mse(student, teacher)
    if loss == "cosine":
        return cosine(student, teacher)
    raise ValueError(f"not a distillation loss: {loss!r}")


def total_loss(losses: Mapping[str, str], student: Mapping[str, torch.Tensor],
               teacher: Mapping[str, torch.Tensor], labels: torch.Tensor | None, temperature: float,
               kinds: Mapping[str, str]) -> torch.Tensor:
    """The sum over outputs of each output's loss (one number to step on)."""
    terms = []
    for name, loss in losses.items():
        if loss == "ce":
            if labels is None:
                raise ValueError("cross-entropy needs labels")
            terms.append(cross_entropy(student[name], labels, probabilities=kinds.get(name) == "probabilities"))
        else:
            terms.append(distillation(loss, student[name], teacher[name].to(student[name].dtype), temperature))
    return torch.stack(terms).sum()
