"""The command line through a subprocess: exit codes, files written, one-line errors."""

from __future__ import annotations

import json
import os

import numpy as np
import onnx

from onnxtrim.bench.device import cpu_channel_block
from onnxtrim.cli import EXIT_CODES, exit_code_for
from onnxtrim.errors import CalibrationError, ModelError, OnnxTrimError
from tests.helpers.cli import ROOT, onnxtrim


def test_trim_writes_model_and_report_and_prints_summary(case):
    path, calib = case
    done = onnxtrim(path, "--data", calib, "--apoz", "1.0", "--check", "--round-to", "1")
    assert done.returncode == 0, done.stderr
    assert "8 → 6" in done.stdout and "16 → 13" in done.stdout and "fidelity" in done.stdout
    report = json.loads((path.parent / "chain.trimmed.report.json").read_text())
    assert report["removed_channels"] == 5
    trimmed = onnx.load(path.parent / "chain.trimmed.onnx")
    onnx.checker.check_model(trimmed, full_check=True)


def test_hint_names_this_cpus_channel_block_until_counts_are_rounded_to_it(case):
    block = cpu_channel_block()
    path, calib = case
    done = onnxtrim(path, "--data", calib, "--apoz", "1.0", "--round-to", "1")
    said = " ".join(done.stdout.split())
    assert f"2 trimmed groups keep channel counts that are not multiples of {block}" in said
    assert "Try --round-to auto (the default) and --bench" in said
    rounded = onnxtrim(path, "--data", calib, "--apoz", "1.0", "--round-to", block, "--overwrite")
    assert rounded.returncode == 0 and "hint:" not in rounded.stdout
    automatic = onnxtrim(path, "--data", calib, "--apoz", "1.0", "--overwrite")
    assert automatic.returncode == 0 and "hint:" not in automatic.stdout


def test_second_run_refuses_to_overwrite_then_overwrites(case):
    path, calib = case
    assert onnxtrim(path, "--data", calib, "-q").returncode == 0
    again = onnxtrim(path, "--data", calib, "-q")
    assert again.returncode == 6
    assert again.stderr.count("\n") == 1 and "exists" in again.stderr
    assert onnxtrim(path, "--data", calib, "-q", "--overwrite").returncode == 0


def test_refuses_to_write_over_the_input(case):
    path, calib = case
    before = path.read_bytes()
    done = onnxtrim(path, "--data", calib, "-o", path, "--overwrite")
    assert done.returncode == 6 and path.read_bytes() == before


def test_missing_model_is_one_line_exit_3(tmp_path):
    done = onnxtrim(tmp_path / "nope.onnx", "--data", tmp_path)
    assert done.returncode == 3 and done.stderr.startswith("onnxtrim: error:") and done.stderr.count("\n") == 1
    assert "nope.onnx" in done.stderr and "Traceback" not in done.stderr


def test_empty_data_directory_is_exit_4(case, tmp_path):
    path, _ = case
    (tmp_path / "empty").mkdir()
    done = onnxtrim(path, "--data", tmp_path / "empty")
    assert done.returncode == 4 and done.stderr.count("\n") == 1
    assert not (path.parent / "chain.trimmed.onnx").exists()


def test_mismatched_input_shape_names_the_file(case, tmp_path):
    path, _ = case
    bad = tmp_path / "bad"
    bad.mkdir()
    np.save(bad / "wrong.npy", np.zeros((4, 1, 9, 9), np.float32))
    done = onnxtrim(path, "--data", bad)
    assert done.returncode == 4 and "wrong.npy" in done.stderr and done.stderr.count("\n") == 1


def test_failed_check_is_exit_5_and_writes_no_model(case):
    path, calib = case
    done = onnxtrim(path, "--data", calib, "--fraction", "0.6", "--round-to", "1", "--check", "--tolerance", "0")
    assert done.returncode == 5 and "tolerance" in done.stderr
    assert not (path.parent / "chain.trimmed.onnx").exists()
    assert (path.parent / "chain.trimmed.report.json").exists()


def test_usage_errors_are_exit_2(case):
    path, calib = case
    assert onnxtrim(path, "--data", calib, "--bogus").returncode == 2
    assert onnxtrim(path, "--data", calib, "--apoz", "2").returncode == 2
    assert onnxtrim(path).returncode == 2


def test_help_teaches_with_an_example():
    done = onnxtrim("--help")
    assert done.returncode == 0
    assert "onnxtrim model.onnx --data calib/ --apoz 0.9" in done.stdout and "exit codes" in done.stdout


def test_missing_onnxruntime_names_the_extra(case, tmp_path):
    path, calib = case
    shadow = tmp_path / "shadow" / "onnxruntime"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('no onnxruntime here')\n")
    done = onnxtrim(path, "--data", calib, env={"PYTHONPATH": f"{shadow.parent}{os.pathsep}{ROOT}"})
    assert done.returncode == 7 and "onnxtrim[cpu]" in done.stderr


def test_exit_code_mapping_follows_the_class_hierarchy():
    class Sub(CalibrationError):
        pass

    assert exit_code_for(Sub("x")) == EXIT_CODES[CalibrationError] == 4
    assert exit_code_for(ModelError("x")) == 3
    assert exit_code_for(OnnxTrimError("x")) == 1


def test_bridge_error_is_exit_13():
    from onnxtrim.errors import BridgeError

    assert exit_code_for(BridgeError("x")) == EXIT_CODES[BridgeError] == 13


def test_a_diverged_fine_tune_is_exit_14_not_a_bridge_error():
    from onnxtrim.errors import BridgeError, FinetuneError

    assert exit_code_for(FinetuneError("x")) == EXIT_CODES[FinetuneError] == 14
    assert not issubclass(FinetuneError, BridgeError)
