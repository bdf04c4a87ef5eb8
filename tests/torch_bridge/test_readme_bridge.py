"""The README's bridge example runs as written (from the repository root, as a user would)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def bridge_example() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Fine-tuning through PyTorch: the bridge", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert block, "the bridge section must hold a python example"
    return block.group(1)


def test_readme_bridge_example_runs():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", bridge_example()], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "bridge vs onnxruntime: max |Δ|" in done.stdout and "{'logits': 'ce'}" in done.stdout
