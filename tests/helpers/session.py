"""Objects shared by every conftest of one test session (one export cache for the zoo, say).

Conftests are imported under their own module names, so a module-level cache in one of them is
not seen by another that imports it; this module is imported once, by its package name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_SHARED: dict[str, Any] = {}


def session_object(key: str, make: Callable[[], Any]) -> Any:
    if key not in _SHARED:
        _SHARED[key] = make()
    return _SHARED[key]
