import pytest

from tests.helpers.cli import chain_case


@pytest.fixture()
def case(tmp_path):
    """A small model with known dead channels and calibration data beside it."""
    return chain_case(tmp_path)
