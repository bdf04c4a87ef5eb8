"""Outputs through the command line (issue 11, items 3 and 4): every output target is checked before any
work starts, all outputs are one publication (all or none), and a fault or a signal while writing leaves
the inputs untouched and nothing at the output paths (no `.onnxtrim-*` staging directory either).

Each run is a subprocess; `snapshot` of the run's directory before and after proves both halves at once.
Faults at exact points of the write come from tests/helpers/inject.py (the real CLI, one os call wrapped).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.helpers.cli import chain_case, one_line, onnxtrim, with_fault
from tests.helpers.files import leftovers, snapshot
from tests.helpers.readers import slow_reader
from tests.helpers.wide import wide_gemm_model


@pytest.fixture
def run(tmp_path: Path) -> tuple[Path, Path, Path]:
    """tmp_path/run holding chain.onnx and calib/ (the snapshot root); tmp_path itself for markers."""
    directory = tmp_path / "run"
    directory.mkdir()
    model, calib = chain_case(directory)
    return directory, model, calib


def _never_read(tmp_path: Path) -> tuple[str, Path]:
    """A reader that would take a minute, and the marker it touches when it is first called."""
    marker = tmp_path / "reader-called"
    spec = slow_reader(tmp_path / "reader", marker, name="x", shape=(4, 1, 8, 8), batches=120, delay=0.5)
    return spec, marker


def _prepare(directory: Path, setup: str) -> None:
    if setup == "trimmed before":
        assert onnxtrim(directory / "chain.onnx", "--data", directory / "calib", "-q").returncode == 0
    elif setup:
        (directory / setup).write_text("old")


@pytest.mark.parametrize(("setup", "flags", "fragments"), [
    ("trimmed before", [], ["chain.trimmed.onnx: exists; pass --overwrite to replace it"]),
    ("r.json", ["--report", "{run}/r.json"], ["r.json: exists; pass --overwrite to replace it"]),
    ("s.npz", ["--save-stats", "{run}/s.npz"], ["s.npz: exists; pass --overwrite to replace it"]),
    ("", ["-o", "{run}/missing/out.onnx"], ["out.onnx: directory", "missing does not exist"]),
    ("", ["-o", "{run}/calib/batch_000.npy/out.onnx"], ["is not a directory"]),
    ("", ["--report", "{run}/chain.onnx", "--overwrite"], ["chain.onnx: refusing to write over an input file"]),
    ("", ["--report", "{run}/same.onnx", "-o", "{run}/same.onnx"], ["same.onnx: given for two outputs"]),
    ("", ["--dry-run", "-o", "{run}/chain.onnx", "--overwrite"], ["refusing to write over an input file"]),
], ids=["model-exists", "report-exists", "stats-exists", "missing-directory", "parent-is-a-file",
        "report-is-the-input", "two-outputs-one-path", "plan-is-the-input"])
def test_every_output_is_checked_before_any_work(run, tmp_path: Path, setup: str, flags: list[str],
                                                 fragments: list[str]) -> None:
    directory, model, _ = run
    _prepare(directory, setup)
    spec, marker = _never_read(tmp_path)
    before = snapshot(directory)
    started = time.perf_counter()
    done = onnxtrim(model, "--data", spec, "-q", *(f.format(run=directory) for f in flags))
    elapsed = time.perf_counter() - started
    assert done.returncode == 6, done.stderr
    one_line(done.stderr, *fragments)
    assert not marker.exists(), "the calibration reader was called: work started before the check"
    assert elapsed < 15, f"{elapsed:.1f} s: the pre-flight did not stop the run"  # the reader alone: 60 s
    assert snapshot(directory) == before


def test_output_over_a_data_file_of_the_input_is_refused_before_calibration(tmp_path: Path) -> None:
    """The data files are known once the model is read: the second pre-flight, still before any work."""
    directory = tmp_path / "run"
    directory.mkdir()
    model = wide_gemm_model(directory / "m.onnx", layers=1, width=64)
    marker = tmp_path / "reader-called"
    spec = slow_reader(tmp_path / "reader", marker, name="x", shape=(4, 64), batches=120, delay=0.5)
    before = snapshot(directory)
    done = onnxtrim(model, "--data", spec, "-q", "-o", directory / "m.onnx.data", "--overwrite")
    assert done.returncode == 6
    one_line(done.stderr, "m.onnx.data: refusing to write over an input file")
    assert not marker.exists() and snapshot(directory) == before


def test_disk_full_on_the_report_publishes_nothing(run) -> None:
    """The report is staged last; when it cannot be written, the model staged before it is not published."""
    directory, model, calib = run
    before = snapshot(directory)
    done = with_fault(["oserror", "ENOSPC", "fsync", "2"], model, "--data", calib, "-q", cwd=directory)
    assert done.returncode == 6, done.stderr
    one_line(done.stderr, "chain.trimmed.report.json: cannot write: No space left on device")
    assert snapshot(directory) == before


@pytest.mark.parametrize("existing", [False, True], ids=["fresh", "overwrite"])
def test_a_failed_rename_puts_back_what_was_published(run, existing: bool) -> None:
    """The second of three renames fails: the first is undone, and with --overwrite the old files return."""
    directory, model, calib = run
    flags = ["--save-stats", directory / "s.npz", "-q"]
    if existing:
        assert onnxtrim(model, "--data", calib, *flags).returncode == 0
        flags.append("--overwrite")
    before = snapshot(directory)
    done = with_fault(["oserror", "EIO", "replace", "2"], model, "--data", calib, *flags, cwd=directory)
    assert done.returncode == 6, done.stderr
    one_line(done.stderr, "chain.trimmed.onnx: cannot publish: Input/output error")
    assert snapshot(directory) == before


# Outputs: s.npz, chain.trimmed.onnx, its report (the chain model is saved inline). fsync 1-3 stage them,
# fsync 4 is the directory's at publication; replace 1-3 publish them (signals held, then rolled back).
WRITE_POINTS = [("fsync", 1), ("fsync", 2), ("fsync", 3), ("fsync", 4), ("replace", 1), ("replace", 2),
                ("replace", 3)]


@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM"])
@pytest.mark.parametrize(("call", "nth"), WRITE_POINTS, ids=[f"{c}{n}" for c, n in WRITE_POINTS])
def test_signal_while_writing_dies_by_it_and_publishes_nothing(run, name: str, call: str, nth: int) -> None:
    directory, model, calib = run
    before = snapshot(directory)
    done = with_fault(["signal", name, call, str(nth)], model, "--data", calib, "--save-stats",
                      directory / "s.npz", "-q", cwd=directory)
    assert done.returncode == -getattr(signal, name), done.stderr
    assert done.stderr == "onnxtrim: interrupted\n"
    assert snapshot(directory) == before


@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM"])
def test_signal_while_replacing_old_outputs_keeps_them(run, name: str) -> None:
    directory, model, calib = run
    assert onnxtrim(model, "--data", calib, "-q", "--apoz", "0.5").returncode == 0
    old = onnx.load(directory / "chain.trimmed.onnx")
    before = snapshot(directory)
    done = with_fault(["signal", name, "replace", "2"], model, "--data", calib, "-q", "--overwrite",
                      cwd=directory)
    assert done.returncode == -getattr(signal, name)
    assert snapshot(directory) == before
    assert onnx.load(directory / "chain.trimmed.onnx") == old


def test_the_check_failure_still_publishes_only_the_report(run) -> None:
    """Exit 5 writes the report and no model: one publication of the report alone."""
    directory, model, calib = run
    done = onnxtrim(model, "--data", calib, "--fraction", "0.6", "--round-to", "1", "--check", "--tolerance", "0",
                    "-q")
    assert done.returncode == 5
    assert sorted(p.name for p in directory.iterdir()) == ["calib", "chain.onnx", "chain.trimmed.report.json"]
    assert leftovers(directory) == []


def test_stats_plan_and_report_are_published_together(run) -> None:
    directory, model, calib = run
    done = onnxtrim(model, "--data", calib, "--dry-run", "--save-stats", directory / "s.npz", "-q")
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in directory.iterdir())
    assert names == ["calib", "chain.onnx", "chain.plan.json", "chain.plan.report.json", "s.npz"]
    assert np.load(directory / "s.npz", allow_pickle=False) is not None
    assert leftovers(directory) == []
