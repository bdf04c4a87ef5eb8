"""Publishing outputs all or none: every file staged beside its destination, then renamed into place together.

A run writes up to five files (model, its external data, report, statistics, plan). Written one
after the other, a failure on the third (the report's path exists, disk full, Ctrl-C) left the first
two published: a complete model next to no report, or a report describing a model that is not
there. So a `Publication` first writes every output in full into a staging directory
`.onnxtrim-XXXXXXXX` inside its destination directory (one per destination directory: the same file
system, so a rename is atomic), fsync'ed, and only when all are staged renames them into place, in
the order they were staged (a model's data before the model, the report last). If a rename fails,
those already done are put back: a replaced file is kept as a hard link in the staging directory (or
moved there where hard links are not available) until the publication ends. Staging directories are
removed whatever happens; SIGKILL is the one thing that can leave one behind, with every destination
either its old complete file or absent.

Signals: the renames and the removal of staging directories run with Ctrl-C and SIGTERM held
(`interrupts.held_signals`). One that arrives during the renames rolls them back, so an interrupted
publication publishes nothing; it is then delivered as usual. Everywhere else (the long part: writing
gigabytes into staging) signals act at once and the staging directory is removed on the way out.

Targets are checked before anything is written, with `check_targets` also usable on its own as a
pre-flight (see `outputs.check_outputs`): an input file (same real path or same inode, so hard links
too) is never a target even with `overwrite`, an existing file is one only with `overwrite`, the
directory must exist and be writable, and no two outputs may share a path.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO

from .errors import OutputError
from .interrupts import held_signals

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self is 3.11+

logger = logging.getLogger(__name__)

STAGING_PREFIX = ".onnxtrim-"
#: The words of the "exists" message that name the option, for the CLI to show as its flag.
_OVERWRITE = {"overwrite=True": "overwrite"}


def destination(path: str | os.PathLike[str], creatable: Iterable[str | os.PathLike[str]] = ()) -> Path:
    """The final path: the real parent directory (which must exist, or be one of `creatable`, whose own
    parent must exist: one level is created, never a chain) and the file name as given."""
    given = Path(path)
    if "\x00" in os.fspath(given):
        raise OutputError(f"{os.fspath(given)!r}: a path cannot contain NUL")
    if given.name in ("", ".", ".."):
        raise OutputError(f"{os.fspath(path)}: not a file name")
    try:
        parent = given.parent.resolve(strict=True)
    except (OSError, RuntimeError):
        if os.path.abspath(given.parent) not in {os.path.abspath(d) for d in creatable}:
            raise OutputError(f"{given}: directory {given.parent} does not exist") from None
        above = destination(given.parent)  # its parent must exist; the directory itself is made when staging
        return above / given.name
    if not parent.is_dir():
        raise OutputError(f"{given}: {given.parent} is not a directory")
    return parent / given.name


class _Guard:
    """The input files, by real path and by inode (hard links share an inode)."""

    def __init__(self, protected: Iterable[str | os.PathLike[str]]) -> None:
        paths = [Path(p) for p in protected]
        self.paths = {os.path.realpath(p) for p in paths}
        self.ids = {i for i in map(_identity, paths) if i is not None}

    def covers(self, target: Path) -> bool:
        ident = _identity(target)
        return os.path.realpath(target) in self.paths or (ident is not None and ident in self.ids)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _check(final: Path, guard: _Guard, overwrite: bool) -> None:
    if guard.covers(final):
        raise OutputError(f"{final}: refusing to write over an input file (the model, its external data or "
                          "other data given), even with overwrite")
    if final.is_dir():
        raise OutputError(f"{final}: is a directory")
    if os.path.lexists(final) and not overwrite:
        raise OutputError(f"{final}: exists; pass overwrite=True to replace it", options=_OVERWRITE)


def check_targets(paths: Sequence[str | os.PathLike[str]], *, overwrite: bool,
                  protected: Iterable[str | os.PathLike[str]] = (),
                  creatable: Sequence[str | os.PathLike[str]] = ()) -> list[Path]:
    """Pre-flight: refuse any target a publication would refuse, plus unwritable directories; no file is
    touched. Returns the final paths, in order. A target in a `creatable` directory that does not exist
    yet needs a writable parent for it."""
    guard = _Guard(protected)
    finals: list[Path] = []
    for path in paths:
        final = destination(path, creatable)
        if final in finals:
            raise OutputError(f"{final}: given for two outputs")
        _check(final, guard, overwrite)
        directory = final.parent if os.path.isdir(final.parent) else final.parent.parent
        if not os.access(directory, os.W_OK | os.X_OK):
            raise OutputError(f"{final}: cannot write in {directory}: not writable")
        finals.append(final)
    return finals


class Publication:
    """Stage outputs with `new_file`/`write_bytes`, then `commit`; leaving the block without a commit
    publishes nothing. Not thread-safe; one publication per run."""

    def __init__(self, *, overwrite: bool = False, protected: Iterable[str | os.PathLike[str]] = (),
                 make_dirs: Sequence[str | os.PathLike[str]] = ()) -> None:
        """`make_dirs`: directories the outputs may go into that do not exist yet (`-o DIR/`): each is made
        (one level) when the first file is staged into it, and removed again if nothing is published."""
        self.overwrite = overwrite
        self._guard = _Guard(protected)
        self._creatable = tuple(make_dirs)
        self._made: list[Path] = []  # directories this publication created, removed unless it commits
        self._stages: dict[Path, Path] = {}  # destination directory -> its staging directory
        self._files: list[tuple[Path, Path]] = []  # (staged, final) in publication order

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.discard()

    def target(self, path: str | os.PathLike[str]) -> Path:
        """Check `path` as a further output (before any work on it) and return its final path."""
        final = destination(path, self._creatable)
        if any(final == known for _, known in self._files):
            raise OutputError(f"{final}: given for two outputs")
        _check(final, self._guard, self.overwrite)
        return final

    @contextmanager
    def new_file(self, path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
        """A new staged file for `path`, fsync'ed on close and staged for the commit only if the block
        completes (a file cut short by an error is never published); an OSError inside is a one-line
        OutputError."""
        final = self.target(path)
        staged = self._stage_dir(final) / "new" / final.name
        try:
            with open(staged, "xb") as handle:  # never append to or truncate an existing file
                yield handle
                _sync(handle)
        except OSError as exc:
            raise OutputError(f"{final}: cannot write: {exc.strerror or exc}") from None
        self._files.append((staged, final))

    def write_bytes(self, path: str | os.PathLike[str], payload: bytes) -> Path:
        final = self.target(path)
        with self.new_file(final) as handle:
            handle.write(payload)
        return final

    def commit(self) -> list[Path]:
        """Rename every staged file into place, or none; returns the final paths in order."""
        finals = [final for _, final in self._files]
        done: list[tuple[Path, Path | None]] = []
        interrupted = False
        with held_signals() as held:
            current = None
            try:
                for staged, current in self._files:
                    done.append((current, self._replace(staged, current)))
                for directory in dict.fromkeys(final.parent for final in finals):
                    _fsync_dir(directory)
            except BaseException as exc:
                _roll_back(done)
                self.discard()
                if isinstance(exc, OSError):
                    raise OutputError(f"{current}: cannot publish: {exc.strerror or exc}") from None
                raise
            if held.caught:  # the signal is delivered as the block ends, after the rollback and cleanup
                _roll_back(done)
                interrupted = True
            self.discard()
        if interrupted:  # the signal's handler returned instead of stopping the run
            raise OutputError("interrupted by a signal while publishing; nothing was written")
        self._made = []  # published: the directories stay
        logger.info("published %s", ", ".join(map(str, finals)))
        return finals

    def discard(self) -> None:
        """Remove every staging directory: what is still staged, and the previous files kept for rollback."""
        with held_signals():
            while self._stages:
                _, stage = self._stages.popitem()
                shutil.rmtree(stage, ignore_errors=True)
            self._files = []
            while self._made:
                try:
                    self._made.pop().rmdir()  # only if still empty: nothing of ours is left in it
                except OSError:
                    pass

    def _stage_dir(self, final: Path) -> Path:
        stage = self._stages.get(final.parent)
        if stage is not None:
            return stage
        with held_signals():  # created and registered together: a signal cannot orphan it
            if not final.parent.exists() and final.parent in {_resolved(d) for d in self._creatable}:
                try:
                    final.parent.mkdir()
                except OSError as exc:
                    raise OutputError(f"{final}: cannot create {final.parent}: {exc.strerror or exc}") from None
                self._made.append(final.parent)
            try:
                stage = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=final.parent))
            except OSError as exc:
                raise OutputError(f"{final}: cannot write in {final.parent}: {exc.strerror or exc}") from None
            self._stages[final.parent] = stage
            try:  # new files and the previous ones kept for rollback apart: output names cannot clash
                (stage / "new").mkdir()
                (stage / "old").mkdir()
            except OSError as exc:
                raise OutputError(f"{final}: cannot write in {final.parent}: {exc.strerror or exc}") from None
        return stage

    def _replace(self, staged: Path, final: Path) -> Path | None:
        """os.replace staged over final; returns where the previous file is kept, if there was one."""
        if not os.path.lexists(final):
            os.replace(staged, final)
            return None
        if not self.overwrite:
            raise OutputError(f"{final}: appeared while writing; not replaced")
        backup = staged.parent.parent / "old" / staged.name
        moved = False
        try:
            os.link(final, backup, follow_symlinks=False)
        except OSError:
            os.replace(final, backup)  # no hard links here: the destination is briefly absent, never partial
            moved = True
        try:
            os.replace(staged, final)
        except BaseException:
            if moved:
                os.replace(backup, final)
            raise
        return backup


def _resolved(directory: str | os.PathLike[str]) -> Path:
    given = Path(directory)
    return given.parent.resolve() / given.name


def _roll_back(done: Sequence[tuple[Path, Path | None]]) -> None:
    for dest, backup in reversed(done):
        try:
            if backup is not None:
                os.replace(backup, dest)
            elif os.path.lexists(dest):
                os.unlink(dest)
        except OSError as exc:
            logger.warning("could not roll back %s: %s", dest, exc.strerror)


def _sync(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # platforms that cannot open a directory (Windows) have no directory fsync either
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = ["STAGING_PREFIX", "Publication", "check_targets", "destination"]
