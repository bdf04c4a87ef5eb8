"""save_model and write_text (RELIABILITY.md, "Output and environment").

Outputs appear complete or not at all, inputs are never written (not even with overwrite), and a failure is
a one-line OutputError that leaves the destination directory exactly as it was.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from modelio_helpers import WEIGHT, assert_one_line, matmul_model, save_external, snapshot
from onnx import numpy_helper

from onnxtrim import model_io, publish
from onnxtrim.errors import ModelError, OutputError
from onnxtrim.model_io import LoadedModel, load_model, save_model, write_text


@pytest.fixture
def loaded(tmp_path: Path) -> LoadedModel:
    """tmp_path/in/m.onnx with its weight in w.data; tmp_path/out is empty."""
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    return load_model(save_external(matmul_model(), tmp_path / "in" / "m.onnx"))


def _protected(loaded: LoadedModel) -> list[Path]:
    return [loaded.path, *loaded.data_files]


def _initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _refused(call: Callable[[], object], *fragments: str, root: Path, error: type = OutputError) -> None:
    before = snapshot(root)
    with pytest.raises(error) as info:
        call()
    assert_one_line(info.value, *fragments)
    assert snapshot(root) == before


# ---------------------------------------------------------------- round trips

def test_round_trip_with_external_data(loaded: LoadedModel, tmp_path: Path) -> None:
    inputs = snapshot(tmp_path / "in")
    before = loaded.model.SerializeToString()
    out = tmp_path / "out" / "new.onnx"
    written = save_model(loaded.model, out, external_data=True, protected=_protected(loaded))
    assert written == [out, tmp_path / "out" / "new.onnx.data"]
    assert loaded.model.SerializeToString() == before, "save_model modified its argument"
    again = load_model(out)
    assert again.data_files == (written[1],)
    assert _initializers(again.model).keys() == {"w"}
    np.testing.assert_array_equal(_initializers(again.model)["w"], WEIGHT)
    onnx.checker.check_model(os.fspath(out), full_check=True)
    assert snapshot(tmp_path / "in") == inputs
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["new.onnx", "new.onnx.data"]


def test_external_output_runs_in_onnxruntime(loaded: LoadedModel, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "out" / "new.onnx"
    save_model(loaded.model, out, external_data=True)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(os.fspath(out), options, providers=["CPUExecutionProvider"])
    x = np.ones((1, 4), np.float32)
    np.testing.assert_allclose(session.run(None, {"x": x})[0], x @ WEIGHT, rtol=1e-6)


def test_overwrite_twice_does_not_grow_data_file(loaded: LoadedModel, tmp_path: Path) -> None:
    out = tmp_path / "out" / "new.onnx"
    save_model(loaded.model, out, external_data=True)
    first = {p: p.read_bytes() for p in out.parent.iterdir()}
    save_model(loaded.model, out, external_data=True, overwrite=True)
    second = {p: p.read_bytes() for p in out.parent.iterdir()}
    assert first == second  # same names, same bytes: the data file was rewritten, not appended to


def test_inline_by_default_for_small_models(tmp_path: Path) -> None:
    model = matmul_model()
    written = save_model(model, tmp_path / "m.onnx")
    assert written == [tmp_path.resolve() / "m.onnx"]
    assert written[0].read_bytes() == model.SerializeToString()
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_automatic_external_data_above_threshold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_io, "_AUTO_EXTERNAL_BYTES", 100)
    written = save_model(matmul_model(), tmp_path / "m.onnx")
    assert [p.name for p in written] == ["m.onnx", "m.onnx.data"]
    np.testing.assert_array_equal(_initializers(load_model(written[0]).model)["w"], WEIGHT)


def test_small_tensors_stay_inline_and_large_ones_are_aligned(tmp_path: Path) -> None:
    model = matmul_model()
    model.graph.initializer.append(numpy_helper.from_array(np.arange(3, dtype=np.float32), "small"))
    model.graph.initializer.append(numpy_helper.from_array(np.ones(1000, np.float32), "second"))
    save_model(model, tmp_path / "m.onnx", external_data=True)
    raw = onnx.load(tmp_path / "m.onnx", load_external_data=False)
    where = {t.name: {e.key: e.value for e in t.external_data} for t in raw.graph.initializer}
    assert where["small"] == {}
    assert where["w"]["location"] == where["second"]["location"] == "m.onnx.data"
    assert int(where["second"]["offset"]) % 64 == 0 and int(where["second"]["offset"]) >= 4096
    assert _initializers(load_model(tmp_path / "m.onnx").model).keys() == {"w", "small", "second"}


def test_inline_refused_when_over_2gib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_io, "_PROTOBUF_LIMIT", 100)
    _refused(lambda: save_model(matmul_model(), tmp_path / "m.onnx", external_data=False), "2 GiB",
             root=tmp_path)


def test_unloaded_external_data_refused(loaded: LoadedModel, tmp_path: Path) -> None:
    raw = onnx.load(loaded.path, load_external_data=False)
    _refused(lambda: save_model(raw, tmp_path / "out" / "x.onnx"), "not loaded", root=tmp_path,
             error=ModelError)


# ---------------------------------------------------------------- destinations refused

def test_exists_without_overwrite(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(b"old")
    _refused(lambda: save_model(matmul_model(), tmp_path / "m.onnx"), "exists", root=tmp_path)
    save_model(matmul_model(), tmp_path / "m.onnx", overwrite=True)
    assert (tmp_path / "m.onnx").read_bytes() == matmul_model().SerializeToString()


def test_data_file_exists_without_overwrite(tmp_path: Path) -> None:
    (tmp_path / "m.onnx.data").write_bytes(b"old")
    _refused(lambda: save_model(matmul_model(), tmp_path / "m.onnx", external_data=True), "m.onnx.data",
             "exists", root=tmp_path)


def _same_file_spellings(loaded: LoadedModel, tmp_path: Path) -> list[Path]:
    (tmp_path / "link.onnx").symlink_to(loaded.path)
    os.link(loaded.path, tmp_path / "hard.onnx")
    return [loaded.path, tmp_path / "in" / ".." / "in" / "m.onnx", tmp_path / "link.onnx",
            tmp_path / "hard.onnx", loaded.data_files[0]]


@pytest.mark.parametrize("external", [False, True])
def test_output_is_the_input_even_with_overwrite(loaded: LoadedModel, tmp_path: Path,
                                                 external: bool) -> None:
    for dest in _same_file_spellings(loaded, tmp_path):
        _refused(lambda dest=dest: save_model(loaded.model, dest, overwrite=True, external_data=external,
                                              protected=_protected(loaded)), "input", root=tmp_path)


def test_output_data_file_is_an_input_data_file(tmp_path: Path) -> None:
    """in.onnx keeps its weight in out.onnx.data: saving out.onnx with external data would replace it."""
    source = load_model(save_external(matmul_model(), tmp_path / "in.onnx", "out.onnx.data"))
    _refused(lambda: save_model(source.model, tmp_path / "out.onnx", overwrite=True, external_data=True,
                                protected=_protected(source)), "out.onnx.data", "input", root=tmp_path)


def test_destination_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").mkdir()
    _refused(lambda: save_model(matmul_model(), tmp_path / "m.onnx", overwrite=True), "directory",
             root=tmp_path)


@pytest.mark.parametrize("dest, fragment", [("missing/m.onnx", "does not exist"),
                                            ("file/m.onnx", "is not a directory")])
def test_destination_directory_missing_or_a_file(tmp_path: Path, dest: str, fragment: str) -> None:
    """A path under a regular file is also how the suite gets an unwritable destination as root."""
    (tmp_path / "file").write_bytes(b"x")
    _refused(lambda: save_model(matmul_model(), tmp_path / dest), fragment, root=tmp_path)


def test_nul_in_destination(tmp_path: Path) -> None:
    _refused(lambda: save_model(matmul_model(), f"{tmp_path}/m\x00.onnx"), "NUL", root=tmp_path)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root ignores directory permissions; see the simulated read-only test")
def test_read_only_directory(tmp_path: Path) -> None:
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    try:
        _refused(lambda: save_model(matmul_model(), tmp_path / "ro" / "m.onnx"), "cannot write",
                 root=tmp_path)
    finally:
        (tmp_path / "ro").chmod(0o755)


def test_read_only_file_system_simulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def read_only(*args: object, **kwargs: object) -> str:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    _refused(lambda: save_model(matmul_model(), tmp_path / "m.onnx"), "Read-only file system",
             root=tmp_path)


# ---------------------------------------------------------------- faults while writing

def _fail_fsync(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    def failing(fd: int) -> None:
        raise exc

    monkeypatch.setattr(os, "fsync", failing)


@pytest.mark.parametrize("external", [False, True])
@pytest.mark.parametrize("existing", [False, True])
def test_disk_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, external: bool, existing: bool) -> None:
    if existing:
        save_model(matmul_model(), tmp_path / "m.onnx", external_data=external)
    _fail_fsync(monkeypatch, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    _refused(lambda: save_model(matmul_model(), tmp_path / "m.onnx", external_data=external, overwrite=True),
             "No space left on device", root=tmp_path)


@pytest.mark.parametrize("external", [False, True])
def test_ctrl_c_while_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, external: bool) -> None:
    _fail_fsync(monkeypatch, KeyboardInterrupt())
    before = snapshot(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        save_model(matmul_model(), tmp_path / "m.onnx", external_data=external)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("existing", [False, True])
def test_ctrl_c_between_data_and_model_rolls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  existing: bool) -> None:
    """The data file is published first; interrupted before the model, the old pair comes back."""
    if existing:
        old = matmul_model()
        old.graph.initializer[0].CopyFrom(numpy_helper.from_array(WEIGHT * 3, "w"))
        save_model(old, tmp_path / "m.onnx", external_data=True)
    before = snapshot(tmp_path)
    real_replace = os.replace
    calls = []

    def replace_then_interrupt(src: object, dst: object) -> None:
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        save_model(matmul_model(), tmp_path / "m.onnx", external_data=True, overwrite=True)
    monkeypatch.setattr(os, "replace", real_replace)
    assert calls[0] == tmp_path.resolve() / "m.onnx.data"
    assert {k: v[:3] for k, v in snapshot(tmp_path).items()} == {k: v[:3] for k, v in before.items()}
    if existing:
        np.testing.assert_array_equal(_initializers(load_model(tmp_path / "m.onnx").model)["w"], WEIGHT * 3)


def test_nothing_written_to_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cwd").mkdir()
    (tmp_path / "dest").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    save_model(matmul_model(), tmp_path / "dest" / "m.onnx", external_data=True)
    write_text(tmp_path / "dest" / "r.json", "{}")
    _fail_fsync(monkeypatch, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    with pytest.raises(OutputError):
        save_model(matmul_model(), tmp_path / "dest" / "m2.onnx")
    assert list((tmp_path / "cwd").iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "dest").iterdir()) == ["m.onnx", "m.onnx.data", "r.json"]


# ---------------------------------------------------------------- write_text

def test_write_text(tmp_path: Path) -> None:
    path = write_text(tmp_path / "report.json", '{"ok": "ü"}')
    assert path == tmp_path.resolve() / "report.json"
    assert path.read_text(encoding="utf-8") == '{"ok": "ü"}'
    _refused(lambda: write_text(path, "{}"), "exists", root=tmp_path)
    write_text(path, "{}", overwrite=True)
    assert path.read_text() == "{}"
    _refused(lambda: write_text(path, "x", overwrite=True, protected=[path]), "input", root=tmp_path)
    _refused(lambda: write_text(tmp_path / "nope" / "r.json", "x"), "does not exist", root=tmp_path)


def test_write_text_disk_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fail_fsync(monkeypatch, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    _refused(lambda: write_text(tmp_path / "r.json", "{}"), "No space left", root=tmp_path)


def test_rollback_without_hard_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On file systems without hard links the previous pair is moved aside, and still comes back."""
    old = matmul_model()
    old.graph.initializer[0].CopyFrom(numpy_helper.from_array(WEIGHT * 3, "w"))
    save_model(old, tmp_path / "m.onnx", external_data=True)
    before = snapshot(tmp_path)

    def no_links(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(os, "link", no_links)
    _fail_fsync(monkeypatch, KeyboardInterrupt())  # the directory fsync, after both files are replaced
    monkeypatch.setattr(publish, "_sync", lambda handle: handle.flush())
    with pytest.raises(KeyboardInterrupt):
        save_model(matmul_model(), tmp_path / "m.onnx", external_data=True, overwrite=True)
    assert {k: v[:3] for k, v in snapshot(tmp_path).items()} == {k: v[:3] for k, v in before.items()}


#   b ──If──▶ y     then: Add(x, w_then) with a 4 KiB subgraph initializer; else: Mul(x, w) (outer weight)
RICH = """
<ir_version: 8, opset_import: ["": 17, "local": 1], producer_name: "test", doc_string: "rich">
g (bool b, float[4,256] x) => (float[4,256] y) <float[4,256] w = {0.0}, float[3] small = {1.0, 2.0, 3.0}> {
    y = If (b) <then_branch = t () => (float[4,256] o1) <float[4,256] w_then = {0.0}> { o1 = Add(x, w_then) },
                else_branch = e () => (float[4,256] o2) { o2 = local.Times(x, w) }>
}
<domain: "local", opset_import: ["": 17]>
Times (a, c) => (r) { r = Mul(a, c) }
"""


@pytest.mark.parametrize("external", [False, True])
def test_round_trip_is_exact(tmp_path: Path, external: bool) -> None:
    """Saved (piecewise, for external data) and loaded again, the model compares equal field by field."""
    model = onnx.parser.parse_model(RICH)
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(WEIGHT, "w"))
    model.graph.node[0].attribute[0].g.initializer[0].CopyFrom(numpy_helper.from_array(WEIGHT + 1, "w_then"))
    model.metadata_props.add(key="k", value="v")
    before = model.SerializeToString()
    written = save_model(model, tmp_path / "m.onnx", external_data=external)
    assert model.SerializeToString() == before
    assert load_model(written[0]).model == model
    if external:
        raw = onnx.load(written[0], load_external_data=False)
        moved = [raw.graph.initializer[0], raw.graph.node[0].attribute[0].g.initializer[0]]
        assert all(t.data_location == onnx.TensorProto.EXTERNAL for t in moved)
        assert not raw.graph.initializer[1].external_data  # 12 bytes: stays inline
