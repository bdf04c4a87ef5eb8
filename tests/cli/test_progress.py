"""Issue 12, item 6: progress a user can follow, and tables that fit.

In a terminal: bars with the total and an ETA where the sample count is known, a benchmarking stage.
Without one (a CI log): one line per stage with its count and time, on stdout (stderr stays the one
line of an error). Tables fit the terminal width without breaking names mid-word, and dynamo's
generated node names are shown with their weight's name.
"""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys

from tests.helpers.cli import ROOT, onnxtrim


def test_a_log_gets_one_line_per_stage_with_counts_and_time(case):
    path, calib = case
    done = onnxtrim(path, "--data", calib, "--bench", "--bench-runs", "4", "--bench-batch", "1,2")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for expected in (r"analysing: \d+\.\d s", r"calibrating: 32 samples in \d+\.\d s",
                     r"verifying: 8 samples in \d+\.\d s", r"benchmarking: 16 runs in \d+\.\d s"):
        assert any(re.fullmatch(expected, line) for line in lines), (expected, done.stdout)
    assert done.stderr == ""


def test_a_terminal_gets_bars_with_totals_and_an_eta(case):
    path, calib = case
    main, secondary = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "120", "TERM": "xterm"}
    process = subprocess.Popen([sys.executable, "-m", "onnxtrim", str(path), "--data", str(calib)],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=secondary, env=env)
    os.close(secondary)
    drawn = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        drawn += chunk
    os.close(main)
    assert process.wait(timeout=300) == 0
    process.stdout.close()
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", drawn.decode("utf-8", "replace"))
    assert "calibrating" in screen and "32/32 samples" in screen and "verifying" in screen
    assert "8/8 samples" in screen and "eta" in screen


def test_tables_fit_the_width_without_breaking_names(tmp_path):
    done = onnxtrim(ROOT / "examples/digits/digits_dynamo.onnx", "--data", ROOT / "examples/digits/calib", "-o",
                    tmp_path / "d.onnx", env={"COLUMNS": "72"})
    assert done.returncode == 0, done.stderr
    table = [line for line in done.stdout.splitlines() if line[:1] in "┏┃┡│└"]
    assert table and all(len(line) <= 72 for line in table), "\n".join(table)
    cells = " ".join(cell.strip() for line in table for cell in line.strip("│┃").split("│"))
    names = ("node_Conv_19", "node_Conv_20", "node_linear", "node_linear_1")
    for found in re.finditer(r"node_\w*", cells):  # whole names, or cut with an ellipsis: never folded
        assert found.group() in names or cells[found.end():found.end() + 1] == "…", (found.group(), cells)
    wide = onnxtrim(ROOT / "examples/digits/digits_dynamo.onnx", "--data", ROOT / "examples/digits/calib", "-o",
                    tmp_path / "d.onnx", "--overwrite", env={"COLUMNS": "140"})
    assert "node_linear (fc1.weight)" in wide.stdout and "node_Conv_20 (conv2.weight)" in wide.stdout
