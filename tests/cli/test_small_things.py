"""Issue 12, item 7: the small things a first hour trips on."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers.cli import ROOT, onnxtrim
from tests.helpers.wide import wide_gemm_model


def test_help_names_every_command_and_prints_no_literal_percent_signs():
    done = onnxtrim("--help")
    assert done.returncode == 0
    assert "onnxtrim bench model.onnx model.trimmed.onnx" in done.stdout
    assert "onnxtrim stats merge" in done.stdout and "%%" not in done.stdout
    assert "--round-to auto|N" in done.stdout and "--plot DIR" in done.stdout and "--rtol R" in done.stdout


def test_counts_are_spelled_with_the_right_plural(tmp_path):
    """13 hidden layers lose their 3 dead units each: 13 trimmed rows, and one group (the output) not shown."""
    path = wide_gemm_model(tmp_path / "deep.onnx", layers=13, width=16)
    x = __import__("numpy").random.default_rng(0).standard_normal((20, 16)).astype("float32")
    (tmp_path / "calib").mkdir()
    __import__("numpy").save(tmp_path / "calib" / "x.npy", x)
    done = onnxtrim(path, "--data", tmp_path / "calib", "--round-to", "1")
    assert done.returncode == 0, done.stderr
    said = " ".join(done.stdout.split())
    assert "1 more group left unchanged" in said and "1 more groups" not in said
    assert "13 trimmed groups keep channel counts" in said


def test_one_trimmed_group_is_one_group(case):
    path, calib = case
    done = onnxtrim(path, "--data", calib, "--round-to", "1", "--nodes-to-exclude", "Conv#0")
    assert done.returncode == 0, done.stderr
    assert "hint: 1 trimmed group keeps channel counts" in " ".join(done.stdout.split())


def test_the_reports_output_path_is_absolute_like_its_input(case):
    path, _ = case
    done = onnxtrim("chain.onnx", "--data", "calib", "-o", "small.onnx", "-q", cwd=path.parent)
    assert done.returncode == 0, done.stderr
    report = json.loads((path.parent / "small.report.json").read_text())
    assert report["output"]["path"] == str(path.parent.resolve() / "small.onnx")
    assert report["input"]["path"] == str(path.resolve())


def test_import_onnxtrim_exposes_trim_and_config_without_importing_torch_or_onnx():
    code = ("import sys, onnxtrim; assert 'onnx' not in sys.modules; "
            "from onnxtrim import trim, TrimConfig, TrimResult; "
            "assert trim is onnxtrim.api.trim and TrimConfig is onnxtrim.config.TrimConfig; "
            "assert 'torch' not in sys.modules and 'onnxruntime' not in sys.modules; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          check=False)
    assert done.stdout.strip() == "ok", done.stderr
