"""Recovery through the API on the trained digits CNN: fine-tuning, iterations, gradual pruning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from onnxtrim.api import trim
from onnxtrim.calibration.batching import held_out
from onnxtrim.config import TrimConfig
from onnxtrim.errors import ConfigError, FinetuneError
from onnxtrim.passes.mask_channels import mask_name
from tests.helpers.plans import run

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "digits"
BASE = {"model": EXAMPLE / "digits.onnx", "data": EXAMPLE / "calib", "labels": EXAMPLE / "calib_labels.npy",
        "batch_size": 32}


def weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def test_finetune_recovers_accuracy_and_repeats_exactly_with_a_seed():
    config = TrimConfig(**BASE, criterion="l1", fraction=0.6, finetune=True, epochs=3, lr=1e-3, seed=3)
    first = trim(config)
    recovery = first.report["recovery"]
    before, after = recovery["fidelity_before"], recovery["fidelity_after"]
    assert after["accuracy_trimmed"] > before["accuracy_trimmed"]
    assert [e["epoch"] for e in recovery["training"]["epochs"]] == [1, 2, 3]
    assert all("loss" in e and e["fidelity"]["samples"] == 120 for e in recovery["training"]["epochs"])
    assert recovery["training"]["losses"] == {"logits": "ce"}  # labels given: cross-entropy
    # The graph is the trimmed graph: only initializer values changed, names and nodes are the rewrite's.
    again = trim(config)
    assert [n.op_type for n in again.model.graph.node] == [n.op_type for n in first.model.graph.node]
    for name, value in weights(first.model).items():
        np.testing.assert_array_equal(value, weights(again.model)[name])


def test_training_never_sees_the_holdout(monkeypatch):
    import importlib

    engine = importlib.import_module("onnxtrim.torch_bridge.finetune")
    seen: list[np.ndarray] = []
    original = engine._epoch

    def spy(batches, rng):
        for batch in original(batches, rng):
            seen.append(batch.indices.copy())
            yield batch

    monkeypatch.setattr(engine, "_epoch", spy)
    trim(TrimConfig(**BASE, criterion="l1", fraction=0.3, finetune=True, epochs=1))
    indices = np.concatenate(seen)
    assert indices.size and not held_out(indices, 0.2).any()


def test_network_trimming_iterates_until_nothing_crosses_the_threshold():
    result = trim(TrimConfig(**BASE, apoz=0.6, iterations=4, epochs=1, lr=1e-3))
    recovery = result.report["recovery"]
    rounds = recovery["iterations"]
    assert recovery["mode"] == "iterative" and rounds[0]["removed_channels"] > 0
    assert len(rounds) <= 4 and all(r["kept"] for r in rounds)
    params = [r["params"] for r in rounds]
    assert params == sorted(params, reverse=True)
    assert result.report["cost"]["params_after"] == params[-1]


def test_a_round_that_breaks_max_drop_is_undone():
    result = trim(TrimConfig(**BASE, criterion="l1", fraction=0.7, iterations=3, epochs=1, lr=1e-6, max_drop=0.02))
    rounds = result.report["recovery"]["iterations"]
    assert not rounds[-1]["kept"] and "above max_drop" in result.report["recovery"]["stopped"]
    kept = [r for r in rounds if r["kept"]]
    expected = kept[-1]["params"] if kept else result.report["cost"]["params_before"]
    assert result.report["cost"]["params_after"] == expected


@pytest.mark.parametrize("diverges", [1, 2])
def test_a_round_that_diverges_is_undone_and_stops_the_iterations(monkeypatch, diverges):
    """Round 2 diverging keeps round 1 (like a round breaking max_drop); round 1 diverging has nothing to keep."""
    from onnxtrim.recovery import iterate as loop

    real, calls = loop.fine_tune, []

    def one_diverges(*args, **kwargs):
        calls.append(None)
        if len(calls) == diverges:
            raise FinetuneError("training diverged: loss is nan at step 3 (epoch 1); lower the learning rate (lr 0.001)")
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "fine_tune", one_diverges)
    config = TrimConfig(**BASE, criterion="l1", fraction=0.3, iterations=3, epochs=1, lr=1e-3)
    if diverges == 1:
        with pytest.raises(FinetuneError, match="diverged"):
            trim(config)
        return
    result = trim(config)
    recovery = result.report["recovery"]
    assert len(recovery["iterations"]) == 1 and recovery["stopped"].startswith("iteration 2 diverged (training")
    assert recovery["stopped"].endswith("kept iteration 1")
    assert result.report["cost"]["params_after"] == recovery["iterations"][0]["params"]


def test_gradual_magnitude_reaches_the_final_sparsity_exactly_in_every_layer():
    result = trim(TrimConfig(**BASE, criterion="magnitude", schedule="cubic", sparsity_final=0.8,
                             sparsity_initial=0.2, epochs=2, lr=1e-3, prune_every=3))
    for mask in result.plan.masks:
        assert mask.zeros == int(0.8 * mask.keep.size + 1e-9)
    values = weights(result.model)
    for mask in result.plan.masks:
        assert np.all(values[mask.tensor][~mask.keep] == 0)  # masked weights are zeros in the dense model
    assert result.report["recovery"]["mode"] == "gradual"


def test_gradual_channel_pruning_removes_the_masked_channels_exactly(monkeypatch):
    from onnxtrim.recovery import gradual

    trained_masked: list[onnx.ModelProto] = []
    original = gradual.fine_tune

    def keep_masked(model, *args, **kwargs):
        out = original(model, *args, **kwargs)
        trained_masked.append(out[0])
        return out

    monkeypatch.setattr(gradual, "fine_tune", keep_masked)
    result = trim(TrimConfig(**BASE, criterion="l1", schedule="cubic", sparsity_final=0.5, epochs=2, lr=1e-3))
    sizes = {tuple(g["members"]): (g["size"], g["kept"]) for g in result.report["groups"] if g["removed"]}
    assert sizes and all(kept == size - int(0.5 * size) for size, kept in sizes.values())
    # The trained masked model and the trimmed one compute the same (masked equivalence, after training).
    masked = trained_masked[0]
    names = {t.name for t in masked.graph.initializer}
    assert any(mask_name(t) in names for t in {n for node in masked.graph.node for n in node.output})
    x = np.load(EXAMPLE / "calib" / "batch_000.npy")[:16]
    np.testing.assert_allclose(run(result.model, {"image": x})[0], run(masked, {"image": x})[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kwargs", [{"finetune": True, "dry_run": True}, {"schedule": "cubic"},
                                    {"schedule": "linear", "sparsity_final": 0.5}, {"iterations": 0},
                                    {"finetune": True, "lr": 0.0}, {"train_labels": "y.npy"},
                                    {"schedule": "cubic", "sparsity_final": 0.5, "layernorm": "plain"}])
def test_bad_recovery_options_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        TrimConfig(**BASE, **kwargs)


@pytest.mark.parametrize("options", [{"criterion": "magnitude", "sparsity": 0.6, "finetune": True},
                                     {"criterion": "relief", "finetune": True},
                                     {"criterion": "relief", "iterations": 2}],
                         ids=["magnitude-finetune", "relief-finetune", "relief-iterations"])
def test_fine_tuning_keeps_a_plans_weight_masks_at_zero(options):
    """Training moves every weight it is given: the entries a plan set to zero must be held there, or
    the written model would claim a sparsity it does not have."""
    common = dict(BASE, round_to=1, epochs=1, lr=1e-2, **options)
    untrained = weights(trim(TrimConfig(**{k: v for k, v in common.items() if k not in ("finetune", "iterations")})).model)
    trained = trim(TrimConfig(**common))
    zeros = {name: w == 0 for name, w in untrained.items()}
    masked = sum(int(z.sum()) for z in zeros.values())
    assert masked > 1000
    if trained.report["recovery"]["mode"] == "iterative":  # every round's masks held: at least as sparse
        assert sum(int((w == 0).sum()) for w in weights(trained.model).values()) >= masked
        return
    moved = 0
    for name, value in weights(trained.model).items():
        assert value.shape == zeros[name].shape, name
        assert np.all(value[zeros[name]] == 0), f"{name}: masked weights revived by training"
        moved += int(np.count_nonzero(value[~zeros[name]] != untrained[name][~zeros[name]]))
    assert moved > 0  # and the rest did train


def test_masked_weights_name_where_the_rewrite_put_each_mask():
    from onnxtrim.passes.apply_plan import apply_plan, masked_weights

    result = trim(TrimConfig(**BASE, criterion="relief", round_to=1, verify=False))
    model = onnx.load(BASE["model"])
    held = masked_weights(model, result.plan)
    trimmed = weights(apply_plan(model, result.plan))
    assert held and set(held) <= set(trimmed)
    for name, keep in held.items():
        assert keep.shape == trimmed[name].shape and np.all(trimmed[name][~keep] == 0)
    assert sum(int((~k).sum()) for k in held.values()) == sum(int((w == 0).sum()) for w in trimmed.values())
