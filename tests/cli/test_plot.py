"""Issue 12, item 8: `--plot DIR` writes PNG figures with the other outputs, or says what is missing."""

from __future__ import annotations

import json
import os

import pytest

from tests.helpers.cli import ROOT, onnxtrim

PNG = b"\x89PNG\r\n\x1a\n"
EXAMPLE = ROOT / "examples" / "digits"


def test_channels_and_score_figures_are_valid_pngs(case, tmp_path):
    pytest.importorskip("matplotlib")
    path, calib = case
    done = onnxtrim(path, "--data", calib, "--round-to", "1", "--plot", tmp_path / "figures/")
    assert done.returncode == 0, done.stderr
    written = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert written == ["channels.png", "scores.png"]
    for name in written:
        data = (tmp_path / "figures" / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 2000
    assert f"wrote {(tmp_path / 'figures' / 'channels.png').resolve()}" in done.stdout


def test_iterations_add_a_tradeoff_figure(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("torch")
    done = onnxtrim(EXAMPLE / "digits.onnx", "--data", EXAMPLE / "calib", "--labels", EXAMPLE / "calib_labels.npy",
                    "--apoz", "0.6", "--iterations", "2", "--epochs", "1", "--max-samples", "96", "-o",
                    tmp_path / "d.onnx", "--plot", tmp_path / "plots")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "plots" / "tradeoff.png").read_bytes().startswith(PNG)
    rows = json.loads((tmp_path / "d.report.json").read_text())["recovery"]["iterations"]
    assert rows


def test_plot_without_matplotlib_is_exit_7_before_any_work(case, tmp_path):
    path, calib = case
    shadow = tmp_path / "shadow" / "matplotlib"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('no matplotlib here')\n")
    done = onnxtrim(path, "--data", calib, "--plot", tmp_path / "figures",
                    env={"PYTHONPATH": f"{shadow.parent}{os.pathsep}{ROOT}"})
    assert done.returncode == 7 and "pip install 'onnxtrim[plot]'" in done.stderr and done.stderr.count("\n") == 1
    assert not (tmp_path / "figures").exists() and not (path.parent / "chain.trimmed.onnx").exists()
