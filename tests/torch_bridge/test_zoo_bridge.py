"""The bridge on the torch-exported zoo, both exporters: equivalence with onnxruntime, a dynamic batch,
a gradient for every weight, one optimizer step that lowers a loss on all outputs, and write-back that
changes nothing but initializer values.

A representative subset runs by default (residual, depthwise, squeeze-excitation, dense concat, channel
shuffle, LayerNorm/GELU convnet, and small ViT and Swin configurations whose TorchScript exports are
full of Shape arithmetic); every other zoo architecture is marked slow.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from onnxtrim.torch_bridge import check_against_onnxruntime, to_torch, write_back
from tests.helpers.export import EXPORTERS, ZOO

DEFAULT = ["resnet18", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "densenet121",
           "shufflenet_v2_x1_0", "convnext_tiny", "vit_tiny", "swin_tiny"]
#: Tolerance as a share of the output's largest value, where float32 reassociation over depth needs more.
SCALED_TOL = {"efficientnet_b0": 1e-3, "efficientnet_v2_s": 5e-3, "inception_v3": 1e-4}
DEFAULT_TOL = 2e-5
BATCHES = {"resnet18": (1, 3, 8), "vit_tiny": (1, 3, 8), "swin_tiny": (1, 3, 8), "shufflenet_v2_x1_0": (1, 3, 8)}


def cases():
    for name in ZOO:
        for exporter in EXPORTERS:
            marks = [] if name in DEFAULT else [pytest.mark.slow]
            yield pytest.param(name, exporter, marks=marks, id=f"{name}-{exporter}")


def feeds_for(model: onnx.ModelProto, example: np.ndarray, batch: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(batch)
    x = example if batch == example.shape[0] else rng.standard_normal((batch, *example.shape[1:]))
    return {model.graph.input[0].name: x.astype(np.float32)}


def tolerance(name: str, model: onnx.ModelProto, module, feeds) -> float:
    with torch.no_grad():
        scale = max(float(o.abs().max()) for o in module(feeds))
    return SCALED_TOL.get(name, DEFAULT_TOL) * max(scale, 1.0)


def without_initializer_values(model: onnx.ModelProto) -> bytes:
    stripped = onnx.ModelProto()
    stripped.CopyFrom(model)
    for init in stripped.graph.initializer:
        init.ClearField("raw_data")
        for f in ("float_data", "int32_data", "int64_data", "double_data", "uint64_data"):
            init.ClearField(f)
    return stripped.SerializeToString(deterministic=True)


@pytest.mark.parametrize(("name", "exporter"), list(cases()))
def test_zoo_model_through_the_bridge(name, exporter, zoo_export, zoo_reference):
    model = onnx.load(zoo_export(name, exporter))
    example, _ = zoo_reference(name)
    module = to_torch(model)
    for batch in BATCHES.get(name, (example.shape[0],)):
        feeds = feeds_for(model, example, batch)
        atol = tolerance(name, model, module, feeds)
        check_against_onnxruntime(model, module, feeds, rtol=1e-4, atol=atol)

    feeds = feeds_for(model, example, example.shape[0])
    with torch.no_grad():
        targets = [o + 0.1 * torch.randn_like(o) for o in module(feeds)]

    def loss_value() -> torch.Tensor:
        return sum(((o - t) ** 2).mean() for o, t in zip(module(feeds), targets))

    loss = loss_value()
    loss.backward()
    loss = loss.detach()
    params = module.onnx_parameters()
    assert params, "no trainable initializer"
    silent = [n for n, p in params.items() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert not silent, f"initializers without a gradient: {silent[:5]}"
    grads = [p.grad for p in params.values()]
    norm2 = sum(float((g.double() ** 2).sum()) for g in grads)
    step = 0.01 * float(loss) / norm2  # a first-order decrease of 1% of the loss
    with torch.no_grad():
        for p, g in zip(params.values(), grads):
            p -= step * g
        after = float(loss_value())
    assert after < float(loss)

    written = write_back(model, module)
    assert without_initializer_values(written) == without_initializer_values(model)
    changed = {i.name for i, j in zip(written.graph.initializer, model.graph.initializer) if i.raw_data != j.raw_data}
    assert changed <= set(params) and changed
    check_against_onnxruntime(written, module, feeds, rtol=1e-4, atol=tolerance(name, written, module, feeds))
