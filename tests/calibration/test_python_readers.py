"""Python readers: reader files (path.py:factory), get_next() objects with and without rewind(),
factories, lists and one-shot iterators. Each source must give identical fresh passes or say why not."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from onnxtrim.calibration import InputSpec, iter_batches, open_data
from onnxtrim.errors import CalibrationError

from .helpers import collect, indices_of, rows_of, untouched

READER_FILE = """
import numpy as np

class Reader:
    def __init__(self):
        self.k = 0

    def get_next(self):
        if self.k == 3:
            return None
        self.k += 1
        return {"x": np.full((2, 3), self.k, dtype=np.float32)}

def make_reader():
    return Reader()
"""


def block(k: int, rows: int = 2) -> dict[str, np.ndarray]:
    return {"x": np.full((rows, 3), k, dtype=np.float32)}


class Reader:
    """onnxruntime's CalibrationDataReader protocol, optionally with rewind()."""

    def __init__(self, count: int = 3) -> None:
        self.k, self.count, self.rewinds = 0, count, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.k == self.count:
            return None
        self.k += 1
        return block(self.k)


class RewindableReader(Reader):
    def rewind(self) -> None:
        self.rewinds += 1
        self.k = 0


def two_passes(spec: object, inputs: list[InputSpec]) -> tuple[list[float], list[float]]:
    source = open_data(spec, inputs)
    first = rows_of(list(iter_batches(source, inputs, batch_size=4, holdout=0)))[:, 0].tolist()
    second = rows_of(list(iter_batches(source, inputs, batch_size=4, holdout=0)))[:, 0].tolist()
    return first, second


def test_reader_file_is_imported_by_path_and_called_per_pass(
    tmp_path: Path, dyn: list[InputSpec], monkeypatch
) -> None:
    (tmp_path / "my_reader.py").write_text(READER_FILE)
    monkeypatch.chdir(tmp_path.parent)  # the file's directory is not the working directory
    path_before = list(sys.path)
    with untouched(tmp_path):
        first, second = two_passes(f"{tmp_path / 'my_reader.py'}:make_reader", dyn)
    assert first == second == [1, 1, 2, 2, 3, 3]
    assert sys.path == path_before
    assert not (tmp_path / "__pycache__").exists()
    source = open_data(f"{tmp_path / 'my_reader.py'}:make_reader", dyn)
    assert source.description == f"reader {tmp_path / 'my_reader.py'}:make_reader"
    assert next(source.batches()).origin == f"{tmp_path / 'my_reader.py'}:make_reader batch 0"


@pytest.mark.parametrize(
    ("text", "attr", "pattern"),
    [
        (
            "raise RuntimeError('boom')",
            "make_reader",
            r"importing the reader file failed \(RuntimeError: boom\)",
        ),
        ("def make_reader(:\n", "make_reader", "importing the reader file failed .SyntaxError"),
        ("make_reader = 3", "make_reader", "defines no callable 'make_reader'"),
        ("x = 1", "other", "defines no callable 'other'"),
    ],
    ids=["raises", "syntax", "not-callable", "missing"],
)
def test_reader_file_errors(tmp_path: Path, dyn: list[InputSpec], text: str, attr: str, pattern: str) -> None:
    (tmp_path / "r.py").write_text(text)
    with untouched(tmp_path), pytest.raises(CalibrationError, match=pattern):
        open_data(f"{tmp_path / 'r.py'}:{attr}", dyn)


def test_missing_reader_file(tmp_path: Path, dyn: list[InputSpec]) -> None:
    with pytest.raises(CalibrationError, match=r"reader file not found"):
        open_data(f"{tmp_path / 'nope.py'}:make_reader", dyn)


def test_reader_object_with_rewind_gives_identical_passes(dyn: list[InputSpec]) -> None:
    reader = RewindableReader()
    first, second = two_passes(reader, dyn)
    assert first == second == [1, 1, 2, 2, 3, 3]
    assert reader.rewinds == 1  # only before the second pass


def test_reader_object_without_rewind_reads_once(dyn: list[InputSpec]) -> None:
    source = open_data(Reader(), dyn)
    assert rows_of(list(source.batches()))[:, 0].tolist() == [1, 1, 2, 2, 3, 3]
    with pytest.raises(CalibrationError, match=r"read only once \(it has no rewind\(\)\).*factory"):
        source.batches()  # refused at the call, not at first use


def test_onnxruntime_reader_subclass(dyn: list[InputSpec]) -> None:
    calibrate = pytest.importorskip("onnxruntime.quantization.calibrate")

    class OrtReader(calibrate.CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([block(1), block(2, rows=1)])

        def get_next(self):
            return next(self.items, None)

    assert rows_of(collect(OrtReader, dyn))[:, 0].tolist() == [1, 1, 2]  # the class itself is a factory
    assert rows_of(collect(OrtReader(), dyn))[:, 0].tolist() == [1, 1, 2]


def test_factories_lists_and_iterators(dyn: list[InputSpec]) -> None:
    assert two_passes(lambda: RewindableReader(2), dyn) == ([1, 1, 2, 2], [1, 1, 2, 2])
    assert two_passes(lambda: iter([block(5)]), dyn) == ([5, 5], [5, 5])

    def generate() -> Iterator[dict[str, np.ndarray]]:
        yield block(7, rows=1)
        yield {"x": np.zeros(3, np.float32)}  # a single sample

    assert two_passes(generate, dyn) == ([7, 0], [7, 0])
    feeds = [block(1), block(2)]
    assert two_passes(feeds, dyn) == ([1, 1, 2, 2], [1, 1, 2, 2])
    assert open_data(feeds, dyn).description == "list of 2 feed dicts"
    one_shot = open_data(generate(), dyn)
    assert indices_of(list(iter_batches(one_shot, dyn, holdout=0))) == [0, 1]
    with pytest.raises(CalibrationError, match=r"read only once.*factory"):
        one_shot.batches()


@pytest.mark.parametrize(
    ("spec", "pattern"),
    [
        ({"x": np.zeros((1, 3))}, "single dict: pass a list of feed dicts"),
        (np.zeros((2, 3)), "of type ndarray"),
        (42, "of type int is not a path"),
        ([np.zeros((1, 3))], r"feed dict 0: expected a dict of input name to array, got ndarray"),
        ([{"x": [[1.0, 2.0, 3.0]]}, {"x": "nope"}], r"feed dict 1: input 'x' has rank 0"),
        (lambda: 42, "produced a int, which has neither get_next"),
    ],
    ids=["dict", "ndarray", "int", "non-dict-item", "bad-value", "factory-returns-junk"],
)
def test_python_spec_errors(dyn: list[InputSpec], spec: object, pattern: str) -> None:
    with pytest.raises(CalibrationError, match=pattern):
        collect(spec, dyn)


def test_reader_exceptions_become_calibration_errors(dyn: list[InputSpec]) -> None:
    class Broken(Reader):
        def get_next(self):
            raise ValueError("disk on fire")

    def failing_factory():
        raise OSError("no data")

    with pytest.raises(
        CalibrationError, match=r"reader object Broken: reading data raised ValueError: disk on fire"
    ):
        collect(Broken(), dyn)
    with pytest.raises(CalibrationError, match=r"the factory raised OSError: no data"):
        open_data(failing_factory, dyn).batches()


def test_plain_lists_are_converted(dyn: list[InputSpec]) -> None:
    (batch,) = collect([{"x": [[1.0, 2.0, 3.0]]}, {"x": [4.0, 5.0, 6.0]}], dyn)
    assert batch.feeds["x"].dtype == np.float32
    assert batch.feeds["x"].tolist() == [[1, 2, 3], [4, 5, 6]]


def test_readers_import_neither_onnxruntime_nor_torch() -> None:
    code = textwrap.dedent(
        """
        import sys
        import onnxtrim.calibration.readers, onnxtrim.calibration.batching
        bad = [m for m in ("onnxruntime", "torch") if m in sys.modules]
        assert not bad, bad
        """
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, env=env)
