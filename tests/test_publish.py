"""onnxtrim.publish in process: several outputs, all or none, and signals held while renaming.

The command-line view of the same rules is tests/cli/test_publication.py.
"""

from __future__ import annotations

import errno
import os
import signal
import threading
from pathlib import Path

import pytest

from onnxtrim import publish
from onnxtrim.errors import OutputError
from onnxtrim.interrupts import held_signals
from onnxtrim.publish import Publication, check_targets
from tests.helpers.files import leftovers, snapshot


def _three(publication: Publication, root: Path) -> None:
    for name in ("a.data", "a.onnx", "a.report.json"):
        publication.write_bytes(root / name, name.encode())


def _before_replace(monkeypatch: pytest.MonkeyPatch, nth: int, action) -> None:
    real = os.replace
    calls = []

    def wrapped(src, dst):
        calls.append(dst)
        if len(calls) == nth:
            action()
        return real(src, dst)

    monkeypatch.setattr(os, "replace", wrapped)


def test_all_outputs_appear_together(tmp_path: Path) -> None:
    with Publication() as publication:
        _three(publication, tmp_path)
        assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == []
        written = publication.commit()
    assert [p.name for p in written] == ["a.data", "a.onnx", "a.report.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.data", "a.onnx", "a.report.json"]


def test_a_refused_last_output_publishes_none(tmp_path: Path) -> None:
    (tmp_path / "a.report.json").write_text("old")
    before = snapshot(tmp_path)
    with pytest.raises(OutputError, match="a.report.json: exists; pass overwrite=True") as info, \
            Publication() as publication:
        _three(publication, tmp_path)
    assert info.value.render(lambda option: f"--{option}").endswith("pass --overwrite to replace it")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("existing", [False, True])
def test_a_failed_rename_undoes_the_earlier_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 existing: bool) -> None:
    if existing:
        with Publication() as publication:
            _three(publication, tmp_path)
            publication.commit()
    before = snapshot(tmp_path)

    def fail() -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    _before_replace(monkeypatch, 3, fail)
    with pytest.raises(OutputError, match="a.report.json: cannot publish: Input/output error"), \
            Publication(overwrite=True) as publication:
        _three(publication, tmp_path)
        publication.commit()
    assert snapshot(tmp_path) == before


def test_ctrl_c_during_the_renames_rolls_back_then_interrupts(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    before = snapshot(tmp_path)
    _before_replace(monkeypatch, 2, lambda: os.kill(os.getpid(), signal.SIGINT))
    with pytest.raises(KeyboardInterrupt), Publication() as publication:
        _three(publication, tmp_path)
        publication.commit()
    assert snapshot(tmp_path) == before
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_handler_that_does_not_stop_still_gets_nothing_published(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        _before_replace(monkeypatch, 1, lambda: os.kill(os.getpid(), signal.SIGTERM))
        with pytest.raises(OutputError, match="interrupted by a signal while publishing; nothing was written"), \
                Publication() as publication:
            _three(publication, tmp_path)
            publication.commit()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert seen == [signal.SIGTERM] and list(tmp_path.iterdir()) == []


def test_an_ignored_signal_stays_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        _before_replace(monkeypatch, 1, lambda: os.kill(os.getpid(), signal.SIGTERM))
        with Publication() as publication:
            _three(publication, tmp_path)
            assert len(publication.commit()) == 3
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert leftovers(tmp_path) == []


def test_outputs_in_two_directories(tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    with Publication() as publication:
        publication.write_bytes(tmp_path / "one" / "m.onnx", b"m")
        publication.write_bytes(tmp_path / "two" / "r.json", b"r")
        assert len(leftovers(tmp_path)) == 2  # one staging directory per destination directory
        publication.commit()
    assert leftovers(tmp_path) == [] and (tmp_path / "two" / "r.json").read_bytes() == b"r"


def test_check_targets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "in.onnx").write_bytes(b"x")
    assert check_targets([tmp_path / "a", tmp_path / "b"], overwrite=False) == [tmp_path / "a", tmp_path / "b"]
    with pytest.raises(OutputError, match="given for two outputs"):
        check_targets([tmp_path / "a", tmp_path / "." / "a"], overwrite=False)
    with pytest.raises(OutputError, match="refusing to write over an input file"):
        check_targets([tmp_path / "in.onnx"], overwrite=True, protected=[tmp_path / "in.onnx"])
    monkeypatch.setattr(publish.os, "access", lambda path, mode: False)
    with pytest.raises(OutputError, match="cannot write in .*: not writable"):
        check_targets([tmp_path / "a"], overwrite=False)
    assert list(tmp_path.iterdir()) == [tmp_path / "in.onnx"]


def test_held_signals_outside_the_main_thread_hold_nothing() -> None:
    result = []

    def body() -> None:
        with held_signals() as held:
            result.append(held.caught)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert result == [[]]


def test_a_destination_that_appears_while_staging_is_not_replaced(tmp_path: Path) -> None:
    """Checked free before the work, taken by someone else before the commit: refused, nothing published."""
    with pytest.raises(OutputError, match="a.onnx: appeared while writing; not replaced"), \
            Publication() as publication:
        _three(publication, tmp_path)
        (tmp_path / "a.onnx").write_text("theirs")
        publication.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.onnx"]
    assert (tmp_path / "a.onnx").read_text() == "theirs"
