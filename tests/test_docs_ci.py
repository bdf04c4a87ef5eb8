"""docs/ci.md runs as written: every `run:` step of its workflow, in the layout it describes.

Tried as a new user would, the workflow failed three ways (labels in `calib/labels.npy` read as data,
`build/` never created, "point -o at an existing directory" refused as "is a directory"). The install
step needs a network and a hosted repository, so it is checked for what it installs, not run; every other
step runs with `bash -e` in a fresh directory holding `models/model.onnx`, `calib/` and
`calib/labels.npy`, with `onnxtrim` on PATH being this checkout's command line.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.cli import ROOT
from tests.helpers.convnet import write_case

DOC = ROOT / "docs" / "ci.md"


def run_steps() -> list[str]:
    """The shell of every `run:` step of the workflow, in order (block scalars `run: |` included)."""
    block = re.search(r"```yaml\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert block, "docs/ci.md must hold the workflow as a yaml block"
    steps, lines = [], block.group(1).splitlines()
    for number, line in enumerate(lines):
        found = re.match(r"^(\s*)run:\s*(.*)$", line)
        if not found:
            continue
        indent, rest = len(found.group(1)), found.group(2)
        if rest != "|":
            steps.append(rest)
            continue
        body = []
        for following in lines[number + 1:]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            body.append(following.strip())
        steps.append("\n".join(body).strip())
    return steps


def _onnxtrim(work: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["onnxtrim", *args], cwd=work, env=env, capture_output=True, text=True, timeout=300,
                          check=False)


def _shim(directory: Path) -> dict[str, str]:
    """PATH with an `onnxtrim` that is this checkout's `python -m onnxtrim`."""
    bin_dir = directory / "bin"
    bin_dir.mkdir()
    script = bin_dir / "onnxtrim"
    script.write_text(f"#!/bin/sh\nexec {sys.executable} -m onnxtrim \"$@\"\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(ROOT)}


@pytest.fixture()
def workspace(tmp_path):
    work = tmp_path / "repo"
    work.mkdir()
    write_case(work)
    return work, _shim(tmp_path)


def test_the_workflow_installs_from_a_checkout_not_an_index():
    installs = [step for step in run_steps() if step.startswith("pip install")]
    assert installs, "the workflow installs onnxtrim"
    for step in installs:
        assert "git+" in step or ".whl" in step or "-e ." in step, step


def test_every_workflow_step_runs_as_written(workspace):
    work, env = workspace
    steps = [step for step in run_steps() if not step.startswith("pip install")]
    assert any("onnxtrim " in step for step in steps)
    for step in steps:
        done = subprocess.run(["bash", "-e", "-c", step], cwd=work, env=env, capture_output=True, text=True,
                              timeout=300, check=False)
        assert done.returncode == 0, f"{step}\n{done.stdout}\n{done.stderr}"
    report = json.loads((work / "build" / "model.trimmed.report.json").read_text())
    assert (work / "build" / "model.trimmed.onnx").exists()
    assert report["calibration"]["samples"] == 128  # labels.npy was not read as a sample
    assert [(g["name"], g["passed"]) for g in report["gates"]] == [("max_drop", True), ("min_speedup", True)]
    assert report["output"]["path"] == str((work / "build" / "model.trimmed.onnx").resolve())
    assert not [p for p in (work / "build").iterdir() if p.name.startswith(".onnxtrim-")]


def test_output_into_an_existing_directory(workspace):
    work, env = workspace
    (work / "out").mkdir()
    done = _onnxtrim(work, env, "models/model.onnx", "--data", "calib/", "--labels", "calib/labels.npy", "-o", "out",
                     "-q")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (work / "out").iterdir()) == ["model.trimmed.onnx", "model.trimmed.report.json"]


def test_a_directory_is_created_one_level_only_and_removed_when_nothing_is_published(workspace):
    work, env = workspace
    deep = _onnxtrim(work, env, "models/model.onnx", "--data", "calib/", "-o", "a/b/", "-q")
    assert deep.returncode == 6 and "a does not exist" in deep.stderr and not (work / "a").exists()
    (work / "build").mkdir()
    (work / "build" / "model.trimmed.report.json").write_text("{}")  # exists: the publication must refuse
    again = _onnxtrim(work, env, "models/model.onnx", "--data", "calib/", "-o", "build/new/", "--report",
                      "build/model.trimmed.report.json", "-q")
    assert again.returncode == 6 and "exists" in again.stderr
    assert not (work / "build" / "new").exists()
