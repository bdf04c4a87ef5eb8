"""Fixtures for the torch-exported model zoo.

``zoo_export(name, exporter) -> Path``
    Session-scoped and cached: the first call builds zoo model ``name`` (seeded random weights, eval mode,
    see ``tests/helpers/export.py``) and exports it with ``exporter`` ("torchscript" or "dynamo") to
    ``<session tmp>/zoo/<name>/<exporter>/<name>.onnx`` (dynamo: plus ``<name>.onnx.data``); later calls
    return the same path. A failed export is remembered and re-raised without exporting again.
    The files are shared by every test of the session: read them, never modify them (copy the directory
    first, e.g. ``shutil.copytree(path.parent, tmp_path / "m")``).

``zoo_reference(name) -> (example, expected)``
    The example input (float32, batch 2) the model was exported with, and torch's output for it, as numpy
    arrays; cached per session.

Marker ``slow`` (defined in tests/conftest.py): zoo cases whose export is too expensive for the default
run (see ``test_exports.py``), e.g. ``pytest tests/zoo -m slow``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.export import EXPORTERS, Exporter, export_torch, zoo_model
from tests.helpers.session import session_object


class ZooCache:
    """Exports and torch references, each computed at most once per session."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._paths: dict[tuple[str, str], Path | BaseException] = {}
        self._refs: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def export(self, name: str, exporter: Exporter) -> Path:
        if exporter not in EXPORTERS:
            raise ValueError(f"unknown exporter {exporter!r}; use one of {EXPORTERS}")
        key = (name, exporter)
        if key not in self._paths:
            model, example = zoo_model(name)
            self._remember_reference(name, model, example)
            path = self.root / name / exporter / f"{name}.onnx"
            try:
                self._paths[key] = export_torch(model, example, path, exporter)
            except Exception as exc:  # noqa: BLE001 - remembered, re-raised to every caller
                self._paths[key] = exc
        result = self._paths[key]
        if isinstance(result, BaseException):
            raise result
        return result

    def reference(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        if name not in self._refs:
            model, example = zoo_model(name)
            self._remember_reference(name, model, example)
        return self._refs[name]

    def _remember_reference(self, name: str, model, example) -> None:
        if name in self._refs:
            return
        import torch

        with torch.no_grad():
            expected = model(example).numpy()
        self._refs[name] = (example.numpy(), expected)


@pytest.fixture(scope="session")
def zoo_cache(tmp_path_factory: pytest.TempPathFactory) -> ZooCache:
    # one cache per session, shared with tests/torch_bridge (which exports the same models)
    return session_object("zoo_cache", lambda: ZooCache(tmp_path_factory.mktemp("zoo")))


@pytest.fixture(scope="session")
def zoo_export(zoo_cache: ZooCache) -> Callable[[str, Exporter], Path]:
    """``zoo_export(name, exporter) -> Path`` of the cached export (see the module docstring)."""
    return zoo_cache.export


@pytest.fixture(scope="session")
def zoo_reference(zoo_cache: ZooCache) -> Callable[[str], tuple[np.ndarray, np.ndarray]]:
    """``zoo_reference(name) -> (example, expected)``: export input and torch output, numpy."""
    return zoo_cache.reference


# Set ONNXTRIM_ZOO_COVERAGE=1 to rewrite tests/zoo/coverage.json from this run's analysis results
# (then `python tests/zoo/render_coverage.py` renders the README table from it).
_COVERAGE_ROWS: dict[str, dict] = {}


@pytest.fixture(scope="module")
def coverage_rows() -> dict[str, dict]:
    return _COVERAGE_ROWS


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    import json
    import os

    if os.environ.get("ONNXTRIM_ZOO_COVERAGE") == "1" and _COVERAGE_ROWS:
        target = Path(__file__).with_name("coverage.json")
        merged = json.loads(target.read_text()) if target.exists() else {}
        merged.update(_COVERAGE_ROWS)
        target.write_text(json.dumps(dict(sorted(merged.items())), indent=1, sort_keys=True) + "\n")
