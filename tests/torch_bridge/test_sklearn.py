"""An skl2onnx MLPClassifier trained on scikit-learn's digits: Cast, MatMul, Softmax, then ArgMax,
ArrayFeatureExtractor, Reshape and Cast to the int64 label, and ZipMap to a sequence of maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from onnxtrim.calibration.feeds import Batch
from onnxtrim.torch_bridge import FinetuneConfig, check_against_onnxruntime, finetune, to_torch
from onnxtrim.torch_bridge.check import onnxruntime_outputs

pytest.importorskip("sklearn")
skl2onnx = pytest.importorskip("skl2onnx")


@pytest.fixture(scope="module")
def digits_mlp():
    import warnings

    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    x, y = load_digits(return_X_y=True)
    x = (x / 16).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: a few epochs are enough here
        clf = MLPClassifier((32,), max_iter=30, random_state=0).fit(x[:1200], y[:1200])
    model = skl2onnx.to_onnx(clf, x[:1], target_opset={"": 17, "ai.onnx.ml": 1})
    return model, x, y


def test_bridge_matches_labels_and_probabilities(digits_mlp):
    model, x, _ = digits_mlp
    module = to_torch(model)
    assert module.output_names == ["output_label", "output_probability"]
    agreement = check_against_onnxruntime(model, module, {"X": x[1200:1300]}, rtol=1e-4, atol=1e-6)
    assert agreement.outputs[0].max_abs == 0  # labels compared exactly
    label, prob = module({"X": x[:5]})
    assert label.dtype == torch.int64 and prob.shape == (5, 10)
    assert sorted(module.onnx_parameters()) == ["coefficient", "coefficient1", "intercepts", "intercepts1"]


def test_every_weight_gets_a_gradient(digits_mlp):
    model, x, y = digits_mlp
    module = to_torch(model)
    _, prob = module({"X": x[:64]})
    torch.nn.functional.nll_loss(torch.log(prob), torch.from_numpy(y[:64])).backward()
    assert all(bool(p.grad.abs().sum() > 0) for p in module.parameters())


def test_finetune_with_labels_keeps_the_interface(digits_mlp):
    model, x, y = digits_mlp
    batches = [Batch({"X": x[i:i + 100]}, "digits", np.arange(i, i + 100)) for i in range(0, 1200, 100)]
    trained, log = finetune(model, batches, FinetuneConfig(epochs=2, lr=1e-3), labels=y)
    assert log.losses == {"output_probability": "ce"} and log.steps == 24
    assert [o.name for o in trained.graph.output] == [o.name for o in model.graph.output]
    before = (onnxruntime_outputs(model, {"X": x[1200:]})[0] == y[1200:]).mean()
    after = (onnxruntime_outputs(trained, {"X": x[1200:]})[0] == y[1200:]).mean()
    assert after >= before - 0.02  # an already trained net stays trained; held-out rows never seen
