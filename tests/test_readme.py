"""The README's two opening commands stay true: CI runs the same install and test command,
and the trim command runs as written on the shipped example."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def opening_commands() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    assert block, "README.md must open with a bash block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_opens_with_install_and_test_commands():
    first, second = opening_commands()
    assert 'pip install -e ".[cpu]"' in first and first.split(" && ")[-1].startswith("onnxtrim ")
    assert second == 'pip install -e ".[cpu,test]" && pytest'
    ci = (ROOT / ".ci" / "run").read_text()
    assert '-e ".[cpu,test]"' in ci and "pytest" in ci


def test_readme_trim_command_runs_on_the_shipped_example(tmp_path):
    command = shlex.split(opening_commands()[0].split(" && ")[-1])
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "onnxtrim", *command[1:]], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "examples/digits/digits.trimmed.onnx").exists()
    # The example's claim: dead hidden neurons go, accuracy stays.
    line = next(line for line in done.stdout.splitlines() if "accuracy" in line)
    before, after = re.findall(r"(\d+\.\d+)%", line.split("accuracy")[1])
    assert before == after
    assert "128 → 32" in done.stdout


def test_readme_zoo_table_is_rendered_from_the_zoo_suite_results():
    import json

    from tests.zoo.render_coverage import rewrite

    readme = (ROOT / "README.md").read_text()
    coverage = json.loads((ROOT / "tests/zoo/coverage.json").read_text())
    assert rewrite(readme, coverage) == readme, "run `python tests/zoo/render_coverage.py`"
