"""Snapshots of directory trees: one equality proves that inputs are untouched and nothing was left behind."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under root: (kind, sha256 or link target, size, mtime_ns)."""
    state: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = path.lstat()
            if path.is_symlink():
                state[str(path)] = ("link", os.readlink(path), 0, st.st_mtime_ns)
            elif path.is_file():
                digest = hashlib.sha256()
                with open(path, "rb") as handle:
                    for block in iter(lambda: handle.read(1 << 24), b""):
                        digest.update(block)
                state[str(path)] = ("file", digest.hexdigest(), st.st_size, st.st_mtime_ns)
            elif path.is_dir():
                state[str(path)] = ("dir", "", 0, 0)
            else:
                state[str(path)] = ("other", "", 0, st.st_mtime_ns)
    return state


def leftovers(root: Path) -> list[str]:
    """Staging (`.onnxtrim-*`) and session (`onnxtrim-*`) directories under root."""
    return sorted(str(p) for p in root.rglob("*") if p.name.startswith((".onnxtrim-", "onnxtrim-")))
