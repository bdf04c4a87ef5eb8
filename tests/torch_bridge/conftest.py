"""The zoo fixtures for the bridge tests, sharing one export cache with tests/zoo, and the `slow` marker.

``zoo_export(name, exporter) -> Path`` and ``zoo_reference(name)`` are those of tests/zoo/conftest.py
(exports cached per session, whichever directory asks first). Cases marked ``slow`` are skipped
unless a ``-m`` expression is given (``pytest tests/torch_bridge -m slow``), as in tests/zoo.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from tests.helpers.export import Exporter
from tests.helpers.session import session_object


def _cache(tmp_path_factory: pytest.TempPathFactory):
    from tests.zoo.conftest import ZooCache

    return session_object("zoo_cache", lambda: ZooCache(tmp_path_factory.mktemp("zoo")))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: expensive case, skipped unless selected with -m (e.g. -m slow)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.option.markexpr:
        return
    skip = pytest.mark.skip(reason="slow: select with -m slow (or -m 'slow or not slow')")
    here = Path(__file__).parent
    for item in items:
        if "slow" in item.keywords and here in Path(str(item.fspath)).parents:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def zoo_export(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, Exporter], Path]:
    return _cache(tmp_path_factory).export


@pytest.fixture(scope="session")
def zoo_reference(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[np.ndarray, np.ndarray]]:
    return _cache(tmp_path_factory).reference
