"""Directory and single-file formats: .npy, .npz, test_data_set_*/input_*.pb, and the validation rules."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from onnxtrim.calibration import InputSpec, iter_batches, open_data
from onnxtrim.errors import CalibrationError

from .helpers import collect, indices_of, rows_of, save_pb, untouched


def sample(k: int) -> np.ndarray:
    """Row k of the reference data: [k, k + 0.5, k + 0.25]."""
    return np.array([k, k + 0.5, k + 0.25], dtype=np.float32)


def test_npy_samples_and_batches_in_sorted_name_order(tmp_path: Path, dyn: list[InputSpec]) -> None:
    np.save(tmp_path / "b.npy", np.stack([sample(1), sample(2)]))  # a batch of 2
    np.save(tmp_path / "a.npy", sample(0))  # one sample: batch axis added
    np.save(tmp_path / "c.npy", sample(3))
    source = open_data(tmp_path, dyn)
    assert source.description == f"directory {tmp_path} (3 .npy files)"
    chunks = list(source.batches())
    assert [Path(c.origin).name for c in chunks] == ["a.npy", "b.npy", "c.npy"]
    assert [c.indices.tolist() for c in chunks] == [[0], [1, 2], [3]]
    batches = collect(tmp_path, dyn, batch_size=3)
    np.testing.assert_array_equal(rows_of(batches), np.stack([sample(k) for k in range(4)]))
    assert indices_of(batches) == [0, 1, 2, 3]
    assert [b.feeds["x"].shape for b in batches] == [(3, 3), (1, 3)]
    assert batches[0].origin == f"{tmp_path / 'a.npy'}..{tmp_path / 'b.npy'}"
    assert batches[1].origin == str(tmp_path / "c.npy")


def test_sorted_name_order_is_plain_string_order(tmp_path: Path, dyn: list[InputSpec]) -> None:
    np.save(tmp_path / "x_2.npy", sample(2))
    np.save(tmp_path / "x_10.npy", sample(10))
    assert rows_of(collect(tmp_path, dyn))[:, 0].tolist() == [10.0, 2.0]


def test_npz_multi_input_with_samples_and_batches(tmp_path: Path, two: list[InputSpec]) -> None:
    a = np.arange(6, dtype=np.float32).reshape(3, 2)
    ids = np.arange(15).reshape(3, 5)
    np.savez(tmp_path / "0.npz", a=a[:2], ids=ids[:2], mask=ids[:2] % 2)
    np.savez(tmp_path / "1.npz", a=a[2], ids=ids[2], mask=ids[2] % 2)  # one sample each
    batches = collect(tmp_path, two, batch_size=2)
    np.testing.assert_array_equal(rows_of(batches, "a"), a)
    np.testing.assert_array_equal(rows_of(batches, "ids"), ids)
    np.testing.assert_array_equal(rows_of(batches, "mask"), ids % 2)
    assert rows_of(batches, "ids").dtype == np.int64
    assert indices_of(batches) == [0, 1, 2]


def test_npz_single_input_and_single_file_specs(tmp_path: Path, dyn: list[InputSpec]) -> None:
    np.savez_compressed(tmp_path / "d.npz", x=np.stack([sample(0), sample(1)]))
    np.save(tmp_path / "one.npy", sample(7))
    (tmp_path / "dir").mkdir()
    np.save(tmp_path / "dir" / "one.npy", sample(7))
    assert rows_of(collect(tmp_path / "d.npz", dyn))[:, 0].tolist() == [0.0, 1.0]
    assert rows_of(collect(str(tmp_path / "one.npy"), dyn))[:, 0].tolist() == [7.0]
    assert open_data(tmp_path / "one.npy", dyn).description == f"file {tmp_path / 'one.npy'}"


def test_onnx_test_data_sets_by_name_and_by_order(tmp_path: Path, two: list[InputSpec]) -> None:
    a = np.array([[1, 2]], dtype=np.float32)
    ids = np.array([[3, 4, 5]], dtype=np.int64)
    named, unnamed = tmp_path / "named", tmp_path / "unnamed"
    for number in (10, 2):  # numeric order: test_data_set_2 before test_data_set_10
        for root in (named, unnamed):
            (root / f"test_data_set_{number}").mkdir(parents=True)
        case = named / f"test_data_set_{number}"
        save_pb(case / "input_0.pb", ids + number, "ids")  # names win over file numbers
        save_pb(case / "input_1.pb", a + number, "a")
        save_pb(case / "input_2.pb", ids % 2, "mask")
        save_pb(case / "output_0.pb", a, "y")  # outputs are ignored
        case = unnamed / f"test_data_set_{number}"
        save_pb(case / "input_0.pb", a[0] + number)  # a single sample
        save_pb(case / "input_1.pb", ids + number)
        save_pb(case / "input_2.pb", ids % 2)
    (named / "model.onnx").write_bytes(b"")  # the model-zoo layout keeps the model beside its data sets
    for root in (named, unnamed):
        batches = collect(root, two)
        assert rows_of(batches, "a").tolist() == [[3, 4], [11, 12]], root
        assert rows_of(batches, "ids").tolist() == [[5, 6, 7], [13, 14, 15]], root
    assert open_data(named, two).description == f"directory {named} (2 test data sets)"


def test_hidden_files_are_ignored(tmp_path: Path, dyn: list[InputSpec]) -> None:
    (tmp_path / ".DS_Store").write_bytes(b"\0\1")
    np.save(tmp_path / "a.npy", sample(0))
    assert len(rows_of(collect(tmp_path, dyn))) == 1


@pytest.mark.parametrize(
    ("make", "pattern"),
    [
        (lambda d: None, "no calibration files"),
        (
            lambda d: (np.save(d / "a.npy", sample(0)), np.savez(d / "b.npz", x=sample(1))),
            "mixes .npy and .npz",
        ),
        (
            lambda d: ((d / "cat.jpg").write_bytes(b"\xff\xd8"), np.save(d / "a.npy", sample(0))),
            r"unsupported entries cat.jpg; supported formats: \*.npy",
        ),
        (lambda d: (d / "sub").mkdir(), "unsupported entries sub/"),
        (
            lambda d: ((d / "model.onnx").write_bytes(b""), np.save(d / "a.npy", sample(0))),
            "unsupported entries model.onnx",
        ),
        (lambda d: (d / "test_data_set_0").mkdir(), "no input_"),
    ],
    ids=["empty", "mixed", "jpg", "subdir", "onnx-beside-npy", "empty-data-set"],
)
def test_directory_layout_errors(tmp_path: Path, dyn: list[InputSpec], make, pattern: str) -> None:
    make(tmp_path)
    with untouched(tmp_path), pytest.raises(CalibrationError, match=pattern):
        open_data(tmp_path, dyn)


def test_path_errors(tmp_path: Path, dyn: list[InputSpec], two: list[InputSpec]) -> None:
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / "reader.py").write_text("")
    np.save(tmp_path / "a.npy", sample(0))
    with pytest.raises(CalibrationError, match=r"no such file or directory"):
        open_data(tmp_path / "missing", dyn)
    with pytest.raises(CalibrationError, match=r"notes.txt: unsupported calibration data"):
        open_data(tmp_path / "notes.txt", dyn)
    with pytest.raises(CalibrationError, match=r"name the factory"):
        open_data(tmp_path / "reader.py", dyn)
    with pytest.raises(CalibrationError, match=r"only a single-input model.*use .npz"):
        open_data(tmp_path / "a.npy", two)


def _npz(d: Path, **arrays: np.ndarray) -> Path:
    path = d / "bad.npz"
    np.savez(path, **arrays)
    return path


A2, IDS = np.zeros((2, 2), np.float32), np.zeros((2, 5), np.int64)


@pytest.mark.parametrize(
    ("arrays", "pattern"),
    [
        ({"a": A2, "ids": IDS}, r"missing input 'mask' \(model inputs: a, ids, mask\)"),
        ({"a": A2, "ids": IDS, "mask": IDS, "extra": IDS}, "unknown input 'extra'"),
        (
            {"a": np.zeros((2, 2, 1), np.float32), "ids": IDS, "mask": IDS},
            "input 'a' has rank 3 but the model",
        ),
        ({"a": np.zeros(3, np.float32), "ids": IDS[:1], "mask": IDS[:1]}, r"input 'a' has shape \[1, 3\]"),
        ({"a": np.zeros((2, 3), np.float32), "ids": IDS, "mask": IDS}, r"axis 1: 3 != 2"),
        (
            {"a": A2, "ids": IDS.astype(np.float32), "mask": IDS},
            "'ids' expects int64 but the data is float32",
        ),
        ({"a": A2.astype(np.int64), "ids": IDS, "mask": IDS}, "'a' expects float32 .*scale and cast images"),
        ({"a": A2, "ids": IDS, "mask": IDS.astype(bool)}, "'mask' expects int64 but the data is bool"),
        (
            {"a": A2, "ids": IDS, "mask": np.zeros((2, 6), np.int64)},
            "dim 'seq' is 5 in input 'ids' axis 1 but 6",
        ),
        ({"a": A2, "ids": np.zeros((3, 5), np.int64), "mask": IDS}, "disagree on the number of samples"),
        ({"a": np.array([[0, np.nan]] * 2, np.float32), "ids": IDS, "mask": IDS}, "'a' contains NaN or Inf"),
        ({"a": np.array([[0, 0], [0, -np.inf]], np.float32), "ids": IDS, "mask": IDS}, r"Inf \(sample 1\)"),
        ({"a": np.full((2, 2), 1e300), "ids": IDS, "mask": IDS}, "NaN or Inf after casting from float64"),
    ],
    ids=[
        "missing",
        "extra",
        "rank",
        "dims-sample",
        "dims",
        "float-to-int",
        "int-to-float",
        "bool",
        "symbolic",
        "rows",
        "nan",
        "inf",
        "overflow",
    ],
)
def test_validation_errors_name_file_and_input(tmp_path: Path, two: list[InputSpec], arrays, pattern) -> None:
    path = _npz(tmp_path, **arrays)
    with untouched(tmp_path), pytest.raises(CalibrationError, match=pattern) as info:
        collect(tmp_path, two)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message


def test_casts_within_a_kind(tmp_path: Path, two: list[InputSpec], caplog) -> None:
    a = np.array([[0.1, 2.5]], dtype=np.float64)
    np.savez(tmp_path / "ok.npz", a=a, ids=np.array([[1, 2]], np.int32), mask=np.array([[1, 0]], np.uint8))
    with caplog.at_level(logging.DEBUG, logger="onnxtrim.calibration"):
        (batch,) = collect(tmp_path, two)
    assert batch.feeds["a"].dtype == np.float32 and batch.feeds["ids"].dtype == np.int64
    np.testing.assert_array_equal(batch.feeds["a"], a.astype(np.float32))
    assert batch.feeds["mask"].tolist() == [[1, 0]]
    assert "casting input 'a' from float64 to float32" in caplog.text


def test_integer_narrowing_checks_the_range(tmp_path: Path) -> None:
    inputs = [InputSpec("q", np.dtype(np.int8), ("N", 2))]
    np.save(tmp_path / "a.npy", np.array([[5, -7]], dtype=np.int64))
    assert collect(tmp_path, inputs)[0].feeds["q"].tolist() == [[5, -7]]
    np.save(tmp_path / "b.npy", np.array([[5, 300]], dtype=np.int64))
    with pytest.raises(
        CalibrationError, match=r"b.npy: input 'q' expects int8 but the int64 data spans 5..300"
    ):
        collect(tmp_path, inputs)


def test_big_endian_and_fortran_order_are_read(tmp_path: Path, dyn: list[InputSpec]) -> None:
    data = np.asfortranarray(np.arange(12, dtype=">f8").reshape(4, 3))
    np.save(tmp_path / "a.npy", data)
    np.testing.assert_array_equal(rows_of(collect(tmp_path, dyn)), data.astype(np.float32))


def test_batches_are_plain_owned_arrays(tmp_path: Path, dyn: list[InputSpec]) -> None:
    np.save(tmp_path / "a.npy", np.stack([sample(k) for k in range(5)]))
    batches = list(iter_batches(open_data(tmp_path, dyn), dyn, batch_size=2, holdout=0))
    for batch in batches:
        x = batch.feeds["x"]
        assert type(x) is np.ndarray and x.flags.c_contiguous and x.flags.owndata
        assert x.dtype == np.float32 and batch.indices.dtype == np.int64
