"""Channel elements and the union-find that couples them.

Every channel a producer creates is an *element*. Ops that tie channels together (a
residual Add, a depthwise conv, a squeeze-and-excitation Mul) unite elements; a group's
prunable units are the classes of united elements. Working per element rather than per
layer is what lets concat offsets, slices and repeated concatenation fall out of the same
mechanism instead of needing cases of their own.
"""

from __future__ import annotations

import numpy as np


class ElementTable:
    """Union-find over channel elements, with a reason attached to every blocked class."""

    def __init__(self) -> None:
        self._parent: list[int] = []
        self._blocks: list[tuple[np.ndarray, str]] = []  # in the order recorded: the first reason wins
        self._frozen: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self._parent)

    def new(self, count: int) -> np.ndarray:
        start = len(self._parent)
        self._parent.extend(range(start, start + count))
        return np.arange(start, start + count, dtype=np.int64)

    def find(self, element: int) -> int:
        parent = self._parent
        root = element
        while parent[root] != root:
            root = parent[root]
        while parent[element] != root:
            parent[element], element = root, parent[element]
        return root

    def roots(self, elements: np.ndarray) -> np.ndarray:
        if self._frozen is not None:
            return self._frozen[elements]
        return np.fromiter((self.find(int(e)) for e in elements), dtype=np.int64, count=len(elements))

    def freeze(self) -> None:
        """Resolve every root once; later lookups are array indexing. No unions after this.

        Pointer jumping (every element takes its parent's parent until nothing changes) does
        in a few array passes what a find per element did in a Python loop.
        """
        parent = np.asarray(self._parent, dtype=np.int64)
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
        self._frozen = parent

    def union(self, a: np.ndarray, b: np.ndarray) -> None:
        """Unite a[i] with b[i] for every i."""
        if self._frozen is not None:
            raise RuntimeError("ElementTable is frozen")
        for x, y in zip(a.tolist(), b.tolist()):
            rx, ry = self.find(x), self.find(y)
            if rx == ry:
                continue
            if ry < rx:
                rx, ry = ry, rx
            self._parent[ry] = rx

    def block(self, elements: np.ndarray, reason: str) -> None:
        self._blocks.append((np.asarray(elements, dtype=np.int64), reason))

    def blocked_roots(self) -> tuple[np.ndarray, list[str]]:
        """Each blocked class (by root) with the first reason recorded for any of its members."""
        if not self._blocks:
            return np.zeros(0, dtype=np.int64), []
        elements = np.concatenate([elems for elems, _ in self._blocks])
        block_of = np.repeat(np.arange(len(self._blocks)), [len(elems) for elems, _ in self._blocks])
        roots, first = np.unique(self.roots(elements), return_index=True)  # first: the earliest block
        return roots, [self._blocks[b][1] for b in block_of[first].tolist()]
