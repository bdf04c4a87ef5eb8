"""Each loss against its formula computed independently in numpy; the default choice per output."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from onnxtrim.torch_bridge import losses
from tests.torch_bridge.helpers import rand


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


S, T = rand(6, 5, seed=1).astype(np.float64) * 3, rand(6, 5, seed=2).astype(np.float64) * 3


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_kl_with_temperature_scaled_by_t_squared(temperature):
    p, q = softmax(T / temperature), softmax(S / temperature)
    expected = temperature**2 * np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=-1))
    got = losses.kl_divergence(torch.from_numpy(S), torch.from_numpy(T), temperature)
    assert float(got) == pytest.approx(expected, rel=1e-10)


def test_kl_on_probabilities_mse_cosine_cross_entropy():
    p, q = softmax(T), softmax(S)
    assert float(losses.kl_divergence_probs(torch.from_numpy(q), torch.from_numpy(p))) == pytest.approx(
        np.mean(np.sum(p * (np.log(p) - np.log(q)), -1)), rel=1e-10)
    assert float(losses.mse(torch.from_numpy(S), torch.from_numpy(T))) == pytest.approx(np.mean((S - T) ** 2))
    cos = np.sum(S * T, -1) / (np.linalg.norm(S, axis=-1) * np.linalg.norm(T, axis=-1))
    assert float(losses.cosine(torch.from_numpy(S), torch.from_numpy(T))) == pytest.approx(np.mean(1 - cos))
    y = np.array([0, 4, 2, 1, 3, 3])
    expected = -np.mean(np.log(softmax(S)[np.arange(6), y]))
    assert float(losses.cross_entropy(torch.from_numpy(S), torch.from_numpy(y))) == pytest.approx(expected)
    assert float(losses.cross_entropy(torch.from_numpy(softmax(S)), torch.from_numpy(y), probabilities=True)) == \
        pytest.approx(expected)


def test_identical_outputs_cost_nothing():
    t = torch.from_numpy(T)
    for fn in (losses.mse, losses.cosine):
        assert float(fn(t, t)) == pytest.approx(0.0, abs=1e-12)
    assert float(losses.kl_divergence(t, t, 2.0)) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(("kind", "shape", "labels", "expected"), [
    ("values", (8, 10), False, "kl"), ("probabilities", (8, 10), False, "kl_probs"), ("values", (8, 10), True, "ce"),
    ("values", (8, 1), False, "mse"), ("values", (8,), False, "mse"), ("values", (8, 16, 32), False, "cosine"),
    ("values", (8, 3, 4, 4), True, "mse"),
])
def test_default_choice(kind, shape, labels, expected):
    assert losses.choose_loss(kind, shape, labels) == expected


def test_output_kind_looks_through_zipmap():
    text = """
    <ir_version: 10, opset_import: ["" : 17]>
    g (float[N, 3] x) => (float[N, 3] p, float[N, 3] z) {
        s = Softmax(x)
        p = Identity(s)
        z = Relu(x)
    }
    """
    model = onnx.parser.parse_model(text)
    assert losses.output_kind(model, "p") == "probabilities" and losses.output_kind(model, "z") == "values"
