"""Op handlers, one module per family; importing this package fills the table in `registry`."""

from . import elementwise, ml, nn, reduce, shape, spatial  # noqa: F401 - registration by import
from .registry import OpSpec, lookup, registered

__all__ = ["OpSpec", "lookup", "registered"]
