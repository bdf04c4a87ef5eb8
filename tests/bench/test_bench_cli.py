"""`onnxtrim bench` through main(argv) and as a subprocess, as users run it."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from bench_helpers import FakeFactory, make_matmul_chain, make_mixed_inputs
from rich.console import Console

from onnxtrim.bench import BenchConfig, benchmark
from onnxtrim.cli import main as dispatch
from onnxtrim.cli.bench_command import main, render
from onnxtrim.errors import CalibrationError, ConfigError

REPO = Path(__file__).resolve().parents[2]
QUICK = ["--warmup", "1", "--runs", "3"]


@pytest.fixture
def models(tmp_path: Path) -> list[str]:
    paths = []
    for name, depth in (("orig.onnx", 4), ("trim.onnx", 1)):
        onnx.save(make_matmul_chain(64, depth), tmp_path / name)
        paths.append(str(tmp_path / name))
    return paths


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "onnxtrim", "bench", *args],
        check=False,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


def test_subprocess_prints_table_and_writes_json(models: list[str], tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    done = _cli(*models, "--batch", "1,2", *QUICK, "--json", str(report), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for text in ("orig.onnx", "trim.onnx", "median", "p99", "vs first", "1.00x", "IO binding: not used"):
        assert text in done.stdout
    data = json.loads(report.read_text())
    assert data["schema_version"] == 1 and data["models"] == ["orig.onnx", "trim.onnx"]
    assert [(t["model"], t["batch"]) for t in data["timings"]] == [
        ("orig.onnx", 1),
        ("trim.onnx", 1),
        ("orig.onnx", 2),
        ("trim.onnx", 2),
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["orig.onnx", "report.json", "trim.onnx"]


def test_subprocess_bad_flag_exits_2(models: list[str], tmp_path: Path) -> None:
    done = _cli(models[0], "--no-such-flag", cwd=tmp_path)
    assert done.returncode == 2
    assert "--no-such-flag" in done.stderr and "Traceback" not in done.stderr


def test_subprocess_json_on_stdout_keeps_table_on_stderr(models: list[str], tmp_path: Path) -> None:
    done = _cli(*models, *QUICK, "--json", "-", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["schema_version"] == 1
    assert "vs first" in done.stderr


def test_unwritable_json_path_is_an_output_error(models: list[str], tmp_path: Path) -> None:
    assert dispatch(["bench", models[0], *QUICK, "--json", str(tmp_path / "no" / "such" / "r.json")]) == 6


def test_help_teaches_with_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "onnxtrim bench model.onnx model.trimmed.onnx" in out and "--dim" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["--batch", "1,x"],
        ["--batch", "0"],
        ["--runs", "zero"],
        ["--providers", "quantum"],
        ["--dim", "seq"],
        ["--dim", "seq=abc"],
        ["--threads", "-1"],
    ],
)
def test_bad_arguments_raise_config_error(models: list[str], argv: list[str]) -> None:
    with pytest.raises(ConfigError):
        main([models[0], *argv])


def test_dispatcher_maps_bad_arguments_to_exit_2(
    models: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert dispatch(["bench", models[0], "--batch", "nope"]) == 2
    assert "--batch" in capsys.readouterr().err


def test_in_process_with_data_dir(
    models: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "a.npy", np.ones((2, 64)))  # float64 on purpose: .npy files often are
    np.save(data / "b.npy", np.ones((2, 3)))  # not read: only the first file by name is
    assert main([*models, "--data", str(data), "--batch", "5", *QUICK]) == 0
    assert "trim.onnx" in capsys.readouterr().out


def test_data_needs_a_single_input_model(tmp_path: Path) -> None:
    path = tmp_path / "mixed.onnx"
    onnx.save(make_mixed_inputs(), path)
    (tmp_path / "data").mkdir()
    np.save(tmp_path / "data" / "x.npy", np.zeros((2, 4), np.int64))
    with pytest.raises(CalibrationError, match="single-input"):
        main([str(path), "--data", str(tmp_path / "data")])


def test_dims_flag_sizes_symbolic_dimensions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mixed.onnx"
    onnx.save(make_mixed_inputs(), path)
    with pytest.raises(ConfigError, match="--dim seq="):
        main([str(path), *QUICK])
    assert main([str(path), "--dim", "seq=4", "--dim", "width=2", *QUICK]) == 0
    assert "mixed.onnx" in capsys.readouterr().out


def test_render_shows_io_binding_and_warnings_verbatim() -> None:
    factory = FakeFactory(providers=lambda requested: ("CPUExecutionProvider",))
    models = [make_matmul_chain(8, 1, name="a"), make_matmul_chain(8, 2, name="b")]
    result = benchmark(
        models,
        BenchConfig(providers=("cuda",), warmup=0, runs=2),
        names=["[orig]", "trim"],
        session_factory=factory,
        clock=factory.clock,
    )
    gpu_like = dataclasses.replace(result, io_binding=True)
    out = io.StringIO()
    render(gpu_like, Console(file=out, width=300))
    text = out.getvalue()
    assert "[orig]" in text, "names are not read as rich markup"
    assert "IO binding: used" in text
    assert "warning:" in text and "fell back" in text
