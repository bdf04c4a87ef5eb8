"""Gradient statistics through the bridge: the Taylor criterion's a · ∂C/∂a per channel.

Molchanov et al. 2017 approximate the change in loss from removing a feature map by its
first-order Taylor term: for example n and channel c of a tensor a with M positions per channel,

    Θ_n,c = | (1/M) Σ_m a_n,c,m · ∂C_n/∂a_n,c,m |

and score the channel by the mean of Θ over examples. The absolute value is taken per example,
after the mean over positions (as the paper's equation and NVlabs' code do; jacobgil's
pytorch-pruning sums signed values over a whole epoch before taking it), so opposite-signed
examples do not cancel. The loss is summed over the batch so each example's gradient is its own.

Which loss: cross-entropy against the labels when there are labels. Without labels the loss is
distillation against the original model's outputs; but at the original model itself (the first
trimming pass) that loss is at its minimum and every gradient is zero, so there classifier
outputs use cross-entropy against the original's predicted classes, and other float outputs
their energy ½‖y‖² (the first-order change of the output itself).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import onnx
import torch
import torch.nn.functional as F

from ..calibration.feeds import Batch
from ..calibration.requests import StatRequest
from ..calibration.stats import ChannelStats, TensorStats
from ..errors import CalibrationError
from .module import to_torch
from .teacher import TeacherCache


def taylor_stats(model: onnx.ModelProto, requests: Sequence[StatRequest], batches: Iterable[Batch], *,
                 fingerprint: str, labels: np.ndarray | None = None, teacher: onnx.ModelProto | None = None,
                 device: str = "cpu") -> ChannelStats:
    """Σ over examples of Θ_n,c for every requested tensor (kind "taylor"), with the usual counts."""
    module = to_torch(model).to(device).eval()
    names = list(dict.fromkeys(r.tensor for r in requests))
    axes = {r.tensor: r.axis for r in requests}
    float_outputs = _float_outputs(model)
    cache = TeacherCache(teacher, float_outputs) if teacher is not None and labels is None else None
    stats = ChannelStats(fingerprint)
    try:
        for batch in batches:
            outputs, captured = module(batch.feeds, capture=names)
            outputs = dict(zip(module.output_names, outputs))
            loss = _loss({n: outputs[n] for n in float_outputs}, batch, labels,
                         None if cache is None else cache.outputs(batch), device)
            differentiable = [n for n in names if captured[n].requires_grad]
            grads = torch.autograd.grad(loss, [captured[n] for n in differentiable], allow_unused=True)
            samples = len(batch.indices)
            for name, grad in zip(differentiable, grads):
                a = captured[name].detach()
                if a.ndim == 0 or a.shape[0] != samples:
                    raise CalibrationError(f"tensor '{name}' does not have the batch on its first axis; "
                                           "the Taylor criterion cannot separate its examples")
                per_example = _theta(a, torch.zeros_like(a) if grad is None else grad, axes[name])
                spatial = a[0].numel() // max(a.shape[axes[name]], 1)
                entry = stats.tensors.setdefault(name, TensorStats(axes[name]))
                entry.add({"taylor": per_example.sum(dim=0).double().cpu().numpy()}, samples * spatial, samples)
    finally:
        if cache is not None:
            cache.close()
    return stats


def _theta(a: torch.Tensor, grad: torch.Tensor, axis: int) -> torch.Tensor:
    """[N, C]: |mean over the positions of each channel of a·g|, per example."""
    product = torch.movedim(a * grad, axis, 1)
    return product.reshape(product.shape[0], product.shape[1], -1).mean(dim=2).abs()


def _float_outputs(model: onnx.ModelProto) -> list[str]:
    return [o.name for o in model.graph.output
            if onnx.helper.tensor_dtype_to_np_dtype(o.type.tensor_type.elem_type).kind == "f"]


def _loss(outputs: dict[str, torch.Tensor], batch: Batch, labels: np.ndarray | None,
          teacher: dict[str, np.ndarray] | None, device: str) -> torch.Tensor:
    """Summed over the batch (see the module docstring for which loss)."""
    terms = []
    for name, y in outputs.items():
        classifier = y.ndim == 2 and y.shape[1] >= 2
        target = None if teacher is None else torch.from_numpy(np.asarray(teacher[name])).to(device, y.dtype)
        if classifier and labels is not None:
            truth = torch.from_numpy(np.asarray(labels)[batch.indices].astype(np.int64)).to(device)
            terms.append(F.cross_entropy(y, truth, reduction="sum"))
        elif classifier and target is None:
            terms.append(F.cross_entropy(y, y.detach().argmax(dim=1), reduction="sum"))
        elif classifier:
            assert target is not None
            log_t = F.log_softmax(target, dim=1)
            terms.append((log_t.exp() * (log_t - F.log_softmax(y, dim=1))).sum())
        elif target is None:
            terms.append(0.5 * y.square().sum())
        else:
            terms.append(0.5 * (y - target).square().sum())
    return torch.stack(terms).sum()
