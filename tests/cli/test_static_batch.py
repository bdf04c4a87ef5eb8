"""Static batch dimensions the data cannot fill or the machine cannot hold (issue 11, items 5 and 7), through
the command line: a one-line error naming the input (and the files), the right exit code, nothing written.

Exit codes: too few samples for the static batch is bad calibration data (4: more data fixes it); a static
batch no machine's memory holds is a model onnxtrim cannot safely process (3: only re-exporting the model
fixes it), refused from the model's declared dims before any data is read or any buffer allocated.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.helpers.cli import one_line, onnxtrim
from tests.helpers.dead import dead_chain
from tests.helpers.files import snapshot


def _static_chain(directory: Path, batch: int) -> Path:
    """CHAIN with input x[batch,1,8,8] and output y[batch,10]."""
    model = dead_chain([1], [0])
    for value in (model.graph.input[0], model.graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_value = batch
    path = directory / "static.onnx"
    onnx.save(model, path)
    return path


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    calib = tmp_path / "calib"
    calib.mkdir()
    rng = np.random.default_rng(0)
    np.save(calib / "a.npy", rng.standard_normal((2, 1, 8, 8)).astype(np.float32))
    np.save(calib / "b.npy", rng.standard_normal((1, 1, 8, 8)).astype(np.float32))
    return tmp_path


def test_a_static_batch_the_data_cannot_fill_names_the_files_and_the_input(directory: Path) -> None:
    model = _static_chain(directory, 8)
    before = snapshot(directory)
    done = onnxtrim(model, "--data", directory / "calib", "-q")
    assert done.returncode == 4, done.stderr
    one_line(done.stderr, f"{directory / 'calib' / 'a.npy'}, {directory / 'calib' / 'b.npy'}: no full batch",
             "model input 'x' has a static batch dimension of 8 but only 3 calibration samples were read")
    assert snapshot(directory) == before


def test_a_static_batch_of_2_to_the_40_is_refused_before_anything_is_allocated(directory: Path) -> None:
    model = _static_chain(directory, 2**40)
    before = snapshot(directory)
    done = onnxtrim(model, "--data", directory / "calib", "-q")
    assert done.returncode == 3, done.stderr
    one_line(done.stderr, "model input 'x' has a static batch dimension of 1099511627776: one batch needs at "
             "least 262,144.0 GiB", "of memory; export the model with a dynamic (or smaller) batch dimension")
    assert snapshot(directory) == before
