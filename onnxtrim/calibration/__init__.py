"""Calibration: reading user data into model batches (readers) and, later, gathering statistics."""

from .batching import held_out, holdout_fraction, iter_batches
from .feeds import Batch, DataSource, InputSpec, model_input_specs
from .readers import open_data

__all__ = [
    "Batch",
    "DataSource",
    "InputSpec",
    "held_out",
    "holdout_fraction",
    "iter_batches",
    "model_input_specs",
    "open_data",
]
