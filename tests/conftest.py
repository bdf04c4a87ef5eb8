"""Suite-wide fixtures and the `slow` marker.

Marker ``slow``: tests too expensive for the default run (the zoo's large exports, the 2.3 GB model, the long
fuzz and the signal trials). They are skipped unless a ``-m`` expression is given: ``pytest -m slow`` runs
only them, ``pytest -m "slow or not slow"`` everything; each slow test's docstring gives its own command.
"""

import pytest

from tests.helpers.cli import chain_case


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: expensive, skipped unless selected with -m (e.g. -m slow)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.option.markexpr:
        return
    skip = pytest.mark.skip(reason="slow: select with -m slow (or -m 'slow or not slow')")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture()
def case(tmp_path):
    """A small model with known dead channels and calibration data beside it."""
    return chain_case(tmp_path)
