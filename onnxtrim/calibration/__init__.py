"""Calibration: reading user data into model batches (readers) and, later, gathering statistics."""

from .batching import held_out, holdout_fraction, iter_batches
from .readers import Batch, DataSource, open_data
from .validation import InputSpec, model_input_specs

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
