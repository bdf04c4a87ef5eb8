"""The fine-tuning engine: reproducible, lowers its loss, holds masked weights at zero, stops cleanly."""

from __future__ import annotations

import glob
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from onnxtrim.calibration.feeds import Batch
from onnxtrim.errors import ConfigError, FinetuneError
from onnxtrim.torch_bridge import FinetuneConfig, MaskSet, finetune
from onnxtrim.torch_bridge.check import onnxruntime_outputs

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "examples" / "digits"


@pytest.fixture(scope="module")
def digits():
    model = onnx.load(DIGITS / "digits.onnx")
    x = np.concatenate([np.load(f) for f in sorted(glob.glob(str(DIGITS / "calib" / "*.npy")))])[:256]
    labels = np.load(DIGITS / "calib_labels.npy")
    name = model.graph.input[0].name
    data = [Batch({name: x[i:i + 32]}, f"b{i}", np.arange(i, i + 32)) for i in range(0, 256, 32)]
    return model, data, labels


def weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}


def test_seeded_runs_are_reproducible(digits):
    model, data, labels = digits
    config = FinetuneConfig(epochs=1, lr=1e-3, seed=3, batch_size=16)
    a, log_a = finetune(model, data, config, labels=labels)
    b, log_b = finetune(model, lambda: iter(data), config, labels=labels)  # a factory works the same
    assert log_a.epoch_losses == log_b.epoch_losses and log_a.steps == 16
    for name, value in weights(a).items():
        np.testing.assert_array_equal(value, weights(b)[name])
    assert any(not np.array_equal(v, weights(model)[k]) for k, v in weights(a).items())


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_training_lowers_the_loss_and_distillation_pulls_towards_the_teacher(digits, optimizer):
    model, data, _ = digits
    # a student that starts away from its teacher: the same net with its first layer scaled
    student = onnx.ModelProto()
    student.CopyFrom(model)
    first = student.graph.initializer[0]
    first.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(first) * 0.5, first.name))
    config = FinetuneConfig(epochs=3, lr=1e-3 if optimizer == "adam" else 1e-2, optimizer=optimizer)
    trained, log = finetune(student, data, config, teacher=model)
    assert log.losses == {"logits": "kl"} and log.epoch_losses[-1] < log.epoch_losses[0]
    feeds = data[0].feeds
    teacher_out = onnxruntime_outputs(model, feeds)[0]
    gap_before = np.abs(onnxruntime_outputs(student, feeds)[0] - teacher_out).mean()
    gap_after = np.abs(onnxruntime_outputs(trained, feeds)[0] - teacher_out).mean()
    assert gap_after < gap_before


def test_masked_weights_stay_zero_under_adam(digits):
    model, data, labels = digits
    masks = MaskSet()
    seen: list[float] = []

    def on_step(step, module):
        param = module.parameter(model.graph.initializer[0].name)
        if step == 2:  # a schedule adds its mask mid-training, after Adam has momentum
            mask = torch.ones_like(param)
            mask[: param.shape[0] // 2] = 0
            masks.set(param, mask)
        if step > 2:
            seen.append(float(param.detach()[: param.shape[0] // 2].abs().max()))

    trained, _ = finetune(model, data, FinetuneConfig(epochs=1, lr=1e-2), labels=labels, on_step=on_step,
                          masks=masks)
    first = weights(trained)[model.graph.initializer[0].name]
    assert seen and max(seen) == 0.0 and not first[: first.shape[0] // 2].any() and first[first.shape[0] // 2:].any()


def test_nan_loss_is_a_typed_error(digits):
    model, data, labels = digits
    bad = [Batch({k: v.copy() for k, v in b.feeds.items()}, b.origin, b.indices) for b in data[:2]]
    next(iter(bad[1].feeds.values()))[0] = np.nan
    with pytest.raises(FinetuneError, match=r"loss is nan at step 2 \(epoch 1\)"):
        finetune(model, bad, FinetuneConfig(shuffle=False), labels=labels)


def test_outputs_that_overflow_after_the_last_step_are_divergence_too(digits):
    """One step at lr 1e10 leaves finite weights (no later loss to see them) whose outputs overflow."""
    model, data, labels = digits
    with pytest.raises(FinetuneError, match=r"output 'logits' holds NaN or Inf after step 1 \(end of epoch 1\)"):
        finetune(model, data[:1], FinetuneConfig(lr=1e10), labels=labels)


def test_interrupt_propagates_and_cleans_up(digits, tmp_path, monkeypatch):
    model, data, _ = digits
    monkeypatch.setenv("TMPDIR", str(tmp_path))

    def stop(step, module):
        raise KeyboardInterrupt

    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(KeyboardInterrupt):
        finetune(model, data, FinetuneConfig(teacher_cache_bytes=0), on_step=stop)
    assert list(tmp_path.iterdir()) == []  # the teacher's spill directory is gone


@pytest.mark.parametrize("kwargs", [{"epochs": 0}, {"lr": -1.0}, {"device": "tpu"}, {"optimizer": "lbfgs"},
                                    {"loss": "hinge"}, {"batch_size": 0}, {"temperature": 0.0}])
def test_config_is_validated(kwargs):
    with pytest.raises(ConfigError):
        FinetuneConfig(**kwargs)


def test_cross_entropy_without_labels_is_refused(digits):
    model, data, _ = digits
    with pytest.raises(ConfigError, match="needs labels"):
        finetune(model, data, FinetuneConfig(loss="ce"))
