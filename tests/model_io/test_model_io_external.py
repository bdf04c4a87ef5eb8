"""External data on load (RELIABILITY.md, "External data").

onnxtrim validates every reference itself before onnx touches a file: a hostile reference is a one-line
ModelError naming the model and the tensor, the onnx checker never runs, and nothing on disk changes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from modelio_helpers import (
    WEIGHT,
    assert_load_fails,
    externalize,
    matmul_model,
    parse,
    save_external,
    snapshot,
    write_model,
)
from onnx import TensorProto, helper, numpy_helper

from onnxtrim.model_io import load_model


@pytest.fixture
def checker_calls(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Record every onnx checker call: a hostile reference must be refused before onnx sees the model."""
    calls: list[object] = []
    real = onnx.checker.check_model

    def spy(model: object, *args: object, **kwargs: object) -> None:
        calls.append(model)
        real(model, *args, **kwargs)

    monkeypatch.setattr(onnx.checker, "check_model", spy)
    return calls


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """tmp_path/model holds the model; tmp_path/outside holds a file a traversal would reach."""
    (tmp_path / "model").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.data").write_bytes(WEIGHT.tobytes())
    return tmp_path / "model"


def _weight_external(model_dir: Path, location: str | None = None, **entries: str) -> Path:
    """matmul model whose weight lives in model_dir/w.data, with `location`/entries overridden."""
    model = matmul_model()
    externalize(model.graph.initializer[0], model_dir / "w.data", location, **entries)
    return write_model(model_dir / "m.onnx", model)


def _fails(path: Path, *fragments: str, calls: list[object]) -> None:
    assert_load_fails(path, *fragments, root=path.parent.parent)
    assert calls == [], "the onnx checker ran on a hostile model"


def test_external_model_loads(model_dir: Path) -> None:
    path = save_external(matmul_model(), model_dir / "m.onnx")
    before = snapshot(model_dir)
    loaded = load_model(path)
    assert loaded.data_files == ((model_dir / "w.data").resolve(),)
    weight = loaded.model.graph.initializer[0]
    assert weight.data_location == TensorProto.DEFAULT and not weight.external_data
    np.testing.assert_array_equal(numpy_helper.to_array(weight), WEIGHT)
    assert snapshot(model_dir) == before


# ---------------------------------------------------------------- where the location points

@pytest.mark.parametrize("location", [
    "../outside/secret.data", "sub/../../outside/secret.data", "./../outside/secret.data",
])
def test_dotdot(model_dir: Path, location: str, checker_calls: list[object]) -> None:
    _fails(_weight_external(model_dir, location), "leaves the model's directory", "'w'", calls=checker_calls)


@pytest.mark.parametrize("location", ["/etc/passwd", "C:\\x", "C:x", "c:/x", "\\\\server\\share\\x",
                                      "sub\\..\\..\\x", "w.data:stream"])
def test_absolute_or_platform_paths(model_dir: Path, location: str, checker_calls: list[object]) -> None:
    _fails(_weight_external(model_dir, location), "absolute or platform-specific", calls=checker_calls)


def test_absolute_path_to_real_file(model_dir: Path, checker_calls: list[object]) -> None:
    secret = model_dir.parent / "outside" / "secret.data"
    _fails(_weight_external(model_dir, str(secret)), "absolute", calls=checker_calls)


def test_symlinked_file(model_dir: Path, checker_calls: list[object]) -> None:
    (model_dir / "link.data").symlink_to(model_dir.parent / "outside" / "secret.data")
    _fails(_weight_external(model_dir, "link.data", offset="0"), "symlink", calls=checker_calls)


def test_symlink_inside_the_directory_too(model_dir: Path, checker_calls: list[object]) -> None:
    """Even a symlink to a file next to the model: onnxtrim never follows links."""
    path = _weight_external(model_dir)
    (model_dir / "alias.data").symlink_to("w.data")
    model = onnx.load(path, load_external_data=False)
    model.graph.initializer[0].external_data[0].value = "alias.data"
    _fails(write_model(path, model), "symlink", calls=checker_calls)


def test_symlinked_parent_directory(model_dir: Path, checker_calls: list[object]) -> None:
    (model_dir / "sub").symlink_to(model_dir.parent / "outside")
    _fails(_weight_external(model_dir, "sub/secret.data", offset="0"), "symlink 'sub'", calls=checker_calls)


def test_real_subdirectory_is_fine(model_dir: Path) -> None:
    (model_dir / "weights").mkdir()
    model = matmul_model()
    externalize(model.graph.initializer[0], model_dir / "weights" / "w.bin", "weights/w.bin")
    loaded = load_model(write_model(model_dir / "m.onnx", model))
    assert loaded.data_files == ((model_dir / "weights" / "w.bin").resolve(),)


def test_hard_link(model_dir: Path, checker_calls: list[object]) -> None:
    os.link(model_dir.parent / "outside" / "secret.data", model_dir / "hard.data")
    _fails(_weight_external(model_dir, "hard.data", offset="0"), "hard link", calls=checker_calls)


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_data_file_not_regular(model_dir: Path, kind: str, checker_calls: list[object]) -> None:
    special = model_dir / "special.data"
    os.mkfifo(special) if kind == "fifo" else special.mkdir()
    _fails(_weight_external(model_dir, "special.data", offset="0"), "not a regular file", calls=checker_calls)


def test_resolved_against_model_dir_not_cwd(model_dir: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A same-named file in the working directory is neither used nor needed."""
    path = _weight_external(model_dir)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "w.data").write_bytes(np.zeros_like(WEIGHT).tobytes())
    monkeypatch.chdir(cwd)
    loaded = load_model(os.path.relpath(path))
    np.testing.assert_array_equal(numpy_helper.to_array(loaded.model.graph.initializer[0]), WEIGHT)
    (model_dir / "w.data").unlink()
    assert_load_fails(path, "not found", root=tmp_path)


def test_symlinked_model_resolves_against_its_real_directory(model_dir: Path, tmp_path: Path) -> None:
    path = _weight_external(model_dir)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "m.onnx").symlink_to(path)
    loaded = load_model(tmp_path / "elsewhere" / "m.onnx")
    assert loaded.path == path.resolve() and loaded.data_files == ((model_dir / "w.data").resolve(),)


# ---------------------------------------------------------------- keys, offsets, lengths

@pytest.mark.parametrize("entries, fragment", [
    ({"evil": "1"}, "unknown external_data key 'evil'"),
    ({"basepath": "/etc"}, "basepath"),
    ({"offset": "-1"}, "offset '-1' is not a non-negative integer"),
    ({"offset": "abc"}, "offset 'abc'"),
    ({"offset": "1e3"}, "offset '1e3'"),
    ({"length": "²"}, "length '²'"),
    ({"length": "-4096"}, "length '-4096'"),
    ({"length": "99999999999999999999"}, "length '99999999999999999999'"),
    ({"length": "4000"}, "length 4000 disagrees"),
    ({"offset": "8"}, "beyond the end"),
    ({"offset": "4096", "length": "4096"}, "beyond the end"),
    ({"location": ""}, "empty"),
])
def test_bad_entries(model_dir: Path, entries: dict[str, str], fragment: str,
                     checker_calls: list[object]) -> None:
    _fails(_weight_external(model_dir, **entries), fragment, "'w'", calls=checker_calls)


def _edit_entries(path: Path, edit: Callable[[Any], object]) -> Path:
    """Apply `edit` to the weight's external_data entries (a repeated protobuf field) and rewrite."""
    model = onnx.load(path, load_external_data=False)
    edit(model.graph.initializer[0].external_data)
    return write_model(path, model)


def test_duplicate_key(model_dir: Path, checker_calls: list[object]) -> None:
    path = _weight_external(model_dir)
    _fails(_edit_entries(path, lambda e: e.add(key="offset", value="0")), "appears twice",
           calls=checker_calls)


def test_missing_location(model_dir: Path, checker_calls: list[object]) -> None:
    path = _weight_external(model_dir)
    _fails(_edit_entries(path, lambda e: e.__delitem__(0)), "without a 'location'", calls=checker_calls)


def test_missing_data_file(model_dir: Path, checker_calls: list[object]) -> None:
    path = _weight_external(model_dir)
    (model_dir / "w.data").unlink()
    _fails(path, "not found", calls=checker_calls)


@pytest.mark.parametrize("keep_length", [True, False])
def test_short_data_file(model_dir: Path, keep_length: bool, checker_calls: list[object]) -> None:
    path = _weight_external(model_dir)
    if not keep_length:
        _edit_entries(path, lambda e: e.__delitem__(2))
    os.truncate(model_dir / "w.data", 1000)
    _fails(path, "w.data", calls=checker_calls)


def test_no_length_and_longer_file_is_ambiguous(model_dir: Path, checker_calls: list[object]) -> None:
    """Without 'length', onnx reads to the end of the file and onnxruntime reads dims x itemsize: refuse."""
    path = _edit_entries(_weight_external(model_dir), lambda e: e.__delitem__(2))
    with open(model_dir / "w.data", "ab") as handle:
        handle.write(b"\0" * 16)
    _fails(path, "to the end of", calls=checker_calls)


def test_no_length_exact_file_loads(model_dir: Path) -> None:
    path = _edit_entries(_weight_external(model_dir), lambda e: e.__delitem__(2))
    np.testing.assert_array_equal(numpy_helper.to_array(load_model(path).model.graph.initializer[0]), WEIGHT)


def test_entries_without_external_location(model_dir: Path, checker_calls: list[object]) -> None:
    model = matmul_model()
    model.graph.initializer[0].external_data.add(key="location", value="../outside/secret.data")
    _fails(write_model(model_dir / "m.onnx", model), "ambiguous", calls=checker_calls)


def test_external_plus_inline_data(model_dir: Path, checker_calls: list[object]) -> None:
    path = _weight_external(model_dir)
    model = onnx.load(path, load_external_data=False)
    model.graph.initializer[0].raw_data = WEIGHT.tobytes()
    _fails(write_model(path, model), "both external and inline", calls=checker_calls)


def test_external_string_tensor(model_dir: Path, checker_calls: list[object]) -> None:
    model = parse('<ir_version: 8, opset_import: ["": 17]>\n'
                  'g (float[2] x) => (float[2] y) { y = Relu(x) }')
    tensor = helper.make_tensor("s", TensorProto.STRING, [1], [b"abc"])
    tensor.ClearField("string_data")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="w.data")
    model.graph.initializer.append(tensor)
    (model_dir / "w.data").write_bytes(b"abc")
    _fails(write_model(model_dir / "m.onnx", model), "string tensors", calls=checker_calls)


def test_shared_data_file_listed_once(model_dir: Path) -> None:
    model = matmul_model()
    model.graph.initializer.append(numpy_helper.from_array(WEIGHT * 2, "unused"))
    loaded = load_model(save_external(model, model_dir / "m.onnx", "all.data"))
    assert loaded.data_files == ((model_dir / "all.data").resolve(),)
    np.testing.assert_array_equal(numpy_helper.to_array(loaded.model.graph.initializer[1]), WEIGHT * 2)


# ---------------------------------------------------------------- less obvious places

HEADER = '<ir_version: 8, opset_import: ["": 17, "local": 1]>\n'
PLACES = {
    #   x ──Add(c)──▶ y, c = Constant(value=[4,256])
    "constant node": HEADER + """g (float[4,256] x) => (float[4,256] y) {
        c = Constant <value = float[4,256] c_value = {0.0}> ()
        y = Add(x, c) }""",
    #   b ──If──▶ y, then: Identity(w_then) (a subgraph initializer), else: Identity(x)
    "subgraph initializer": HEADER + """g (bool b, float[4,256] x) => (float[4,256] y) {
        y = If (b) <then_branch = t () => (float[4,256] o1) <float[4,256] w_then = {0.0}>
                                           { o1 = Identity(w_then) },
                    else_branch = e () => (float[4,256] o2) { o2 = Identity(x) }> }""",
    #   x ──local.AddConst──▶ y, the function body holds a Constant
    "local function": HEADER + """g (float[4,256] x) => (float[4,256] y) { y = local.AddConst(x) }
        <domain: "local", opset_import: ["": 17]>
        AddConst (a) => (b) { k = Constant <value = float[4,256] k_value = {0.0}> ()
                              b = Add(a, k) }""",
}


def _place_tensor(model: onnx.ModelProto, place: str) -> TensorProto:
    if place == "constant node":
        return model.graph.node[0].attribute[0].t
    if place == "subgraph initializer":
        return model.graph.node[0].attribute[0].g.initializer[0]
    if place == "local function":
        return model.functions[0].node[0].attribute[0].t
    return model.graph.sparse_initializer[0].values


def _model_with_tensor_at(place: str) -> onnx.ModelProto:
    if place == "sparse initializer":
        #   x ──Relu──▶ y, plus an unused sparse initializer s [4,256] with 256 non-zeros
        #   (no standard op takes a sparse input; the data must still be validated and loaded)
        model = parse(HEADER + "g (float[4,256] x) => (float[4,256] y) { y = Relu(x) }")
        values = numpy_helper.from_array(WEIGHT[0], "s")
        indices = numpy_helper.from_array(np.arange(256, dtype=np.int64) * 4, "s_indices")
        model.graph.sparse_initializer.append(helper.make_sparse_tensor(values, indices, [4, 256]))
        return model
    model = parse(PLACES[place])
    tensor = _place_tensor(model, place)
    tensor.CopyFrom(numpy_helper.from_array(WEIGHT, tensor.name))
    return model


ALL_PLACES = [*PLACES, "sparse initializer"]


@pytest.mark.parametrize("place", ALL_PLACES)
def test_hidden_places_load(model_dir: Path, place: str) -> None:
    model = _model_with_tensor_at(place)
    expected = numpy_helper.to_array(_place_tensor(model, place))
    externalize(_place_tensor(model, place), model_dir / "w.data")
    loaded = load_model(write_model(model_dir / "m.onnx", model))
    assert loaded.data_files == ((model_dir / "w.data").resolve(),)
    np.testing.assert_array_equal(numpy_helper.to_array(_place_tensor(loaded.model, place)), expected)


@pytest.mark.parametrize("place", ALL_PLACES)
def test_hidden_places_traversal(model_dir: Path, place: str, checker_calls: list[object]) -> None:
    model = _model_with_tensor_at(place)
    externalize(_place_tensor(model, place), model_dir / "w.data", "../outside/secret.data", offset="0")
    _fails(write_model(model_dir / "m.onnx", model), "leaves the model's directory", calls=checker_calls)


@pytest.mark.parametrize("place", ALL_PLACES)
def test_hidden_places_bad_length(model_dir: Path, place: str, checker_calls: list[object]) -> None:
    model = _model_with_tensor_at(place)
    externalize(_place_tensor(model, place), model_dir / "w.data", length="12")
    _fails(write_model(model_dir / "m.onnx", model), "length 12 disagrees", calls=checker_calls)


def test_overlapping_ranges(model_dir: Path, checker_calls: list[object]) -> None:
    """Two tensors reading the same bytes: refused, so a tiny model cannot make onnxtrim read one region
    thousands of times (loaded bytes stay bounded by the data files' sizes)."""
    model = matmul_model()
    externalize(model.graph.initializer[0], model_dir / "w.data")
    twin = model.graph.initializer.add()
    twin.CopyFrom(model.graph.initializer[0])
    twin.name = "twin"
    _fails(write_model(model_dir / "m.onnx", model), "overlaps", calls=checker_calls)


def test_training_info_graph_is_walked_too(model_dir: Path, checker_calls: list[object]) -> None:
    model = matmul_model()
    init = model.training_info.add().initialization
    init.name = "init"
    tensor = init.initializer.add()
    tensor.CopyFrom(numpy_helper.from_array(WEIGHT, "state"))
    externalize(tensor, model_dir / "w.data", "../outside/secret.data", offset="0")
    _fails(write_model(model_dir / "m.onnx", model), "training_info[0].initialization", "leaves",
           calls=checker_calls)
