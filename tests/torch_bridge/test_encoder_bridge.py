"""The BERT-style encoder of tests/torch_exports (token + position embedding, two post-norm layers with
4-head attention and an erf-GELU MLP, pooled tanh head; ids [batch, seq] both dynamic) through the bridge,
from both exporters: equivalence at several batch and sequence sizes, a gradient for every weight (token
embedding included, through Gather), and distillation fine-tuning that keeps the interface."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from onnxtrim.calibration.feeds import Batch
from onnxtrim.torch_bridge import FinetuneConfig, check_against_onnxruntime, finetune, to_torch
from tests.torch_exports.test_encoder import SEQ, TinyEncoder, export, token_ids


@pytest.fixture(scope="module", params=["torchscript", "dynamo"])
def encoder(request, tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp(request.param) / "encoder.onnx"
    export(TinyEncoder().eval(), path, request.param)
    return onnx.load(path)


def test_equivalence_at_any_batch_and_sequence_length(encoder):
    module = to_torch(encoder)
    rng = np.random.default_rng(0)
    for batch, seq in ((1, SEQ), (3, SEQ), (8, SEQ), (2, SEQ - 3)):
        check_against_onnxruntime(encoder, module, {"ids": token_ids(rng, batch, seq)}, rtol=1e-4, atol=1e-5)


def test_every_weight_gets_a_gradient(encoder):
    module = to_torch(encoder)
    (logits,) = module({"ids": token_ids(np.random.default_rng(1), 4)})
    logits.square().sum().backward()
    silent = [n for n, p in module.onnx_parameters().items() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert not silent
    assert len(module.onnx_parameters()) >= 30  # every Linear, LayerNorm and embedding of the network


def test_distillation_keeps_names_and_dynamic_axes(encoder):
    rng = np.random.default_rng(2)
    data = [Batch({"ids": token_ids(rng, 8)}, f"b{i}", np.arange(8 * i, 8 * i + 8)) for i in range(3)]
    trained, log = finetune(encoder, data, FinetuneConfig(epochs=1, lr=1e-3))
    assert log.steps == 3 and log.losses == {"logits": "kl"}
    assert trained.graph.input == encoder.graph.input and trained.graph.output == encoder.graph.output
    module = to_torch(trained)
    check_against_onnxruntime(trained, module, {"ids": token_ids(rng, 5, SEQ - 1)}, rtol=1e-4, atol=1e-5)
