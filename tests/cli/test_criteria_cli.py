"""Choosing a criterion and a selection from the command line (subprocess), and what the API enforces."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from onnxtrim.api import trim
from onnxtrim.config import TrimConfig
from onnxtrim.errors import CalibrationError, VerificationError
from tests.helpers import models
from tests.helpers.cli import onnxtrim


def report_of(path):
    return json.loads((path.parent / "chain.trimmed.report.json").read_text())


def test_data_free_filter_norm_needs_no_data_and_says_nothing_was_verified(case):
    path, _ = case
    done = onnxtrim(path, "--criterion", "l1", "--fraction", "0.25", "--round-to", "1")
    assert done.returncode == 0, done.stderr
    assert "written without verification: no --data was given" in done.stdout and "min L1" in done.stdout
    report = report_of(path)
    assert report["criterion"]["name"] == "l1" and report["fidelity"] is None
    assert {(g["size"], g["kept"]) for g in report["groups"] if g["removed"]} == {(8, 6), (16, 12)}


def test_a_criterion_without_a_natural_threshold_asks_for_a_selection(case):
    path, _ = case
    done = onnxtrim(path, "--criterion", "l2")
    assert done.returncode == 2 and "no natural threshold" in done.stderr and done.stderr.count("\n") == 1


def test_apoz_shorthand_belongs_to_apoz(case):
    path, calib = case
    done = onnxtrim(path, "--data", calib, "--criterion", "l1", "--apoz", "0.9")
    assert done.returncode == 2 and "use --threshold" in done.stderr


def test_unknown_or_non_producer_excluded_nodes_fail_before_calibration(case):
    path, calib = case
    done = onnxtrim(path, "--data", calib, "--nodes-to-exclude", "Conv#0,nope")
    assert done.returncode == 2 and "nodes_to_exclude names no node of the model: nope" in done.stderr
    done = onnxtrim(path, "--data", calib, "--nodes-to-exclude", "Relu#2")
    assert done.returncode == 2 and "produce no prunable channels: Relu#2" in done.stderr
    assert not (path.parent / "chain.trimmed.onnx").exists()


def test_excluded_producers_keep_their_channels(case):
    path, calib = case
    done = onnxtrim(path, "--data", calib, "--nodes-to-exclude", "Conv#0", "--round-to", "1")
    assert done.returncode == 0, done.stderr
    groups = {tuple(g["members"]): g for g in report_of(path)["groups"]}
    assert groups[("Conv#0",)]["removed"] == 0 and "excluded by nodes_to_exclude (Conv#0)" in groups[("Conv#0",)]["reasons"]
    assert groups[("Gemm#5",)]["removed"] == 3


def test_mean_activation_at_zero_removes_exactly_the_silent_channels(case):
    path, calib = case
    done = onnxtrim(path, "--data", calib, "--criterion", "mean-activation", "--check", "--tolerance", "1e-5",
                    "--round-to", "1")
    assert done.returncode == 0, done.stderr
    assert report_of(path)["removed_channels"] == 5  # chain_case's 2 dead conv channels and 3 dead units


def test_magnitude_masks_every_layer_to_the_sparsity(case):
    path, _ = case
    done = onnxtrim(path, "--criterion", "magnitude", "--sparsity", "0.5")
    assert done.returncode == 0, done.stderr
    report = report_of(path)
    assert report["removed_channels"] == 0 and len(report["masks"]) == 3
    assert all(abs(m["sparsity"] - 0.5) < 0.01 for m in report["masks"])
    assert "weights set to zero" in done.stdout
    trimmed = onnx.load(path.parent / "chain.trimmed.onnx")
    zeros = sum(int((onnx.numpy_helper.to_array(t) == 0).sum()) for t in trimmed.graph.initializer)
    assert zeros >= report["masked_weights"]


def test_relief_masks_connections_and_removes_the_dead_neurons(case):
    path, calib = case
    done = onnxtrim(path, "--data", calib, "--criterion", "relief", "--round-to", "1")
    assert done.returncode == 0, done.stderr
    report = report_of(path)
    assert report["masked_weights"] > 0 and report["removed_channels"] >= 5
    assert {m["node"] for m in report["masks"]} == {"Conv#0", "Gemm#5", "Gemm#7"}


def test_target_macs_is_met(case):
    path, calib = case
    done = onnxtrim(path, "--data", calib, "--criterion", "mean-activation", "--target-macs", "0.5", "--global",
                    "--round-to", "1")
    assert done.returncode == 0, done.stderr
    assert report_of(path)["cost"]["macs_ratio"] <= 0.5


def test_shards_merge_on_the_command_line_and_mixing_is_refused(case, tmp_path):
    path, calib = case
    for i in range(2):
        done = onnxtrim(path, "--data", calib, "--shard", f"{i}/2", "--save-stats", tmp_path / f"s{i}.npz",
                        "--batch-size", "8")
        assert done.returncode == 0 and "calibrated shard" in done.stdout, done.stderr
    assert not (path.parent / "chain.trimmed.onnx").exists()
    merged = onnxtrim("stats", "merge", tmp_path / "s0.npz", tmp_path / "s1.npz", "-o", tmp_path / "all.npz")
    assert merged.returncode == 0 and "32 samples" in merged.stdout, merged.stderr
    again = onnxtrim("stats", "merge", tmp_path / "s0.npz", tmp_path / "s0.npz", "-o", tmp_path / "bad.npz")
    assert again.returncode == 4 and "not disjoint shards" in again.stderr and not (tmp_path / "bad.npz").exists()
    done = onnxtrim(path, "--load-stats", tmp_path / "all.npz", "--apoz", "1.0", "--round-to", "1")
    assert done.returncode == 0 and report_of(path)["removed_channels"] == 5, done.stderr


def test_check_is_enforced_from_python_too(case):
    path, calib = case
    with pytest.raises(VerificationError) as caught:
        trim(TrimConfig(model=path, data=calib, criterion="mean-activation", fraction=0.5, check=True,
                        round_to=1))
    assert caught.value.result is not None and caught.value.result.report["fidelity"]["max_abs_diff"] > 1e-4


def test_nan_inside_the_model_is_refused_by_a_default_apoz_run(tmp_path):
    model = models.build("""
nan (float[N,4] x, float[6,4] w, float[3,6] w2) => (float[N,3] y) {
  s = Sqrt(x)
  h = Gemm<transB=1>(s, w)
  r = Relu(h)
  y = Gemm<transB=1>(r, w2)
}""", ["w", "w2"])
    x = np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32)  # negatives: Sqrt gives NaN
    with pytest.raises(CalibrationError, match="NaN"):
        trim(TrimConfig(model=_saved(model, tmp_path), data=[{"x": x}]))


def _saved(model, tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    return path


def test_taylor_through_the_torch_bridge_with_labels(case, tmp_path):
    path, calib = case
    labels = tmp_path / "labels.npy"
    np.save(labels, np.random.default_rng(0).integers(0, 10, 40))
    done = onnxtrim(path, "--data", calib, "--labels", labels, "--criterion", "taylor", "--fraction", "0.25", "--global",
                    "--max-fraction-per-group", "0.5", "--round-to", "1")
    assert done.returncode == 0, done.stderr
    report = report_of(path)
    assert report["criterion"]["name"] == "taylor" and report["criterion"]["selection"]["normalize"] == "l2"
    assert report["removed_channels"] == 6  # floor(0.25 * 24), ranked across both groups
