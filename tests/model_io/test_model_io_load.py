"""load_model on hostile and unusual model files (RELIABILITY.md, "Model file").

Every failure: a one-line ModelError naming the file, the directory byte-for-byte unchanged, no output.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from modelio_helpers import assert_load_fails, matmul_model, parse, write_model
from onnx import TensorProto, helper, numpy_helper

from onnxtrim import model_io
from onnxtrim.errors import ModelError
from onnxtrim.model_io import check_model, load_model

HEADER = '<ir_version: 8, opset_import: ["": 17]>'


def test_valid_model_loads(tmp_path: Path) -> None:
    path = write_model(tmp_path / "m.onnx", matmul_model())
    loaded = load_model(path)
    assert loaded.path == path.resolve()
    assert loaded.data_files == ()
    np.testing.assert_array_equal(numpy_helper.to_array(loaded.model.graph.initializer[0]),
                                  numpy_helper.to_array(matmul_model().graph.initializer[0]))


# ---------------------------------------------------------------- not a model at all

def test_missing_path(tmp_path: Path) -> None:
    assert_load_fails(tmp_path / "nope.onnx", "cannot open")


def test_directory(tmp_path: Path) -> None:
    (tmp_path / "dir.onnx").mkdir()
    assert_load_fails(tmp_path / "dir.onnx", "directory", root=tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(b"")
    assert_load_fails(tmp_path / "m.onnx", "empty")


def test_random_bytes(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(np.random.default_rng(0).bytes(4096))
    assert_load_fails(tmp_path / "m.onnx")


@pytest.mark.parametrize("fraction", [0.5, 0.9, 0.1])
def test_truncated_model(tmp_path: Path, fraction: float) -> None:
    data = matmul_model().SerializeToString()
    (tmp_path / "m.onnx").write_bytes(data[: int(len(data) * fraction)])
    assert_load_fails(tmp_path / "m.onnx")


def test_json_named_onnx(tmp_path: Path) -> None:
    """The extension never chooses the parser: JSON is parsed as protobuf, and fails."""
    (tmp_path / "m.onnx").write_text(json.dumps({"irVersion": 8, "graph": {"node": []}}))
    assert_load_fails(tmp_path / "m.onnx")


def test_onnx_text_format_named_onnx(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_text(HEADER + "\ng (float[2] x) => (float[2] y) { y = Relu(x) }\n")
    assert_load_fails(tmp_path / "m.onnx")


def test_nul_in_path(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot open model"):
        load_model(f"{tmp_path}/m\x00.onnx")


def _invalid_utf8_model() -> bytes:
    """A node name patched to bytes that are not UTF-8 (proto2 does not validate strings on parse)."""
    model = matmul_model()
    model.graph.node[0].name = "NAME"
    return model.SerializeToString().replace(b"NAME", b"\xff\xfe\xfd\xfc")


def test_invalid_utf8_in_a_name(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(_invalid_utf8_model())
    assert_load_fails(tmp_path / "m.onnx", "invalid UTF-8 in field 'name' of a NodeProto")
    model = onnx.ModelProto()
    model.ParseFromString(_invalid_utf8_model())
    with pytest.raises(ModelError, match="invalid UTF-8"):
        check_model(model)


def test_fifo_does_not_hang(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "m.onnx")
    assert_load_fails(tmp_path / "m.onnx", "not a regular file")


# ---------------------------------------------------------------- versions and domains

def test_ir_version_newer_than_onnx(tmp_path: Path) -> None:
    model = matmul_model()
    model.ir_version = onnx.IR_VERSION + 1
    assert_load_fails(write_model(tmp_path / "m.onnx", model), "IR version")


@pytest.mark.parametrize("domain, newest", [("", onnx.defs.onnx_opset_version()),
                                            ("ai.onnx.ml", onnx.defs.onnx_ml_opset_version())])
def test_opset_newer_than_onnx(tmp_path: Path, domain: str, newest: int) -> None:
    """The onnx checker accepts an opset from the future; onnxtrim refuses it."""
    model = matmul_model()
    if domain:
        model.opset_import.append(helper.make_opsetid(domain, newest + 1))
    else:
        model.opset_import[0].version = newest + 1
    assert_load_fails(write_model(tmp_path / "m.onnx", model), "opset", "newer")


def test_custom_domain_op(tmp_path: Path) -> None:
    model = parse('<ir_version: 8, opset_import: ["": 17, "my.ops": 1]>\n'
                  "g (float[2] x) => (float[2] y) { y = my.ops.Foo(x) }")
    model.graph.node[0].name = "foo_1"
    assert_load_fails(write_model(tmp_path / "m.onnx", model), "custom op domain 'my.ops'", "'foo_1'",
                      "never loads custom-op libraries")


def test_custom_domain_inside_if_branch(tmp_path: Path) -> None:
    #   c ──If──▶ y      then: y = my.ops.Foo(x)   else: y = Relu(x)
    then_g = helper.make_graph([helper.make_node("Foo", ["x"], ["t"], domain="my.ops", name="deep")],
                               "then", [], [helper.make_tensor_value_info("t", TensorProto.FLOAT, [2])])
    else_g = helper.make_graph([helper.make_node("Relu", ["x"], ["e"])], "else", [],
                               [helper.make_tensor_value_info("e", TensorProto.FLOAT, [2])])
    node = helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("c", TensorProto.BOOL, []),
                                            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("my.ops", 1)])
    assert_load_fails(write_model(tmp_path / "m.onnx", model), "'my.ops'", "'deep'")


LOCAL_FUNCTION = """
<ir_version: 8, opset_import: ["": 17, "local": 1]>
g (float[2] x) => (float[2] y) { y = local.Twice(x) }
<domain: "local", opset_import: ["": 17, BODY_DOMAIN]>
Twice (a) => (b) { b = BODY_OP(a) }
"""


def test_local_function_is_not_a_custom_op(tmp_path: Path) -> None:
    text = LOCAL_FUNCTION.replace("BODY_DOMAIN", '"ai.onnx.ml": 3').replace("BODY_OP", "Relu")
    loaded = load_model(write_model(tmp_path / "m.onnx", parse(text)))
    assert loaded.model.functions[0].name == "Twice"


def test_custom_domain_inside_local_function(tmp_path: Path) -> None:
    text = LOCAL_FUNCTION.replace("BODY_DOMAIN", '"evil": 1').replace("BODY_OP", "evil.Pwn")
    assert_load_fails(write_model(tmp_path / "m.onnx", parse(text)), "'evil'", "function 'local.Twice'")


def test_com_microsoft_op_loads(tmp_path: Path) -> None:
    model = parse('<ir_version: 8, opset_import: ["": 17, "com.microsoft": 1]>\n'
                  "g (float[2] x) => (float[2] y) { y = com.microsoft.Gelu(x) }")
    assert load_model(write_model(tmp_path / "m.onnx", model)).model.graph.node[0].op_type == "Gelu"


# ---------------------------------------------------------------- graph structure

@pytest.mark.parametrize("text", [
    "g (float[2] x) => (float[2] x) { }",                                      # input straight to output
    "g (float[2] x) => (float[2] w) <float[2] w = {1.0, 2.0}> { }",            # initializer as output
])
def test_graph_without_nodes_loads(tmp_path: Path, text: str) -> None:
    loaded = load_model(write_model(tmp_path / "m.onnx", parse(HEADER + text)))
    assert len(loaded.model.graph.node) == 0


@pytest.mark.parametrize("body, fragment", [
    ("y = Neg(a)\n a = Relu(x)", "topologically sorted"),                     # unsorted: refused (docstring)
    ("a = Add(x, b)\n b = Relu(a)\n y = Neg(b)", "topologically sorted"),      # a cycle
    ("y = Relu(x)\n y = Neg(x)", "'y'"),                                       # duplicate output names
    ("y = Add(x, nowhere)", "nowhere"),                                        # input produced by nothing
    ("a = Relu(x)\n y = Neg(x)\n z2 = Neg(a)", "'z'"),                         # output produced by nothing
])
def test_bad_graph_structure(tmp_path: Path, body: str, fragment: str) -> None:
    outputs = "float[2] y, float[2] z" if "z2" in body else "float[2] y"
    model = parse(HEADER + f"g (float[2] x) => ({outputs}) {{ {body} }}")
    assert_load_fails(write_model(tmp_path / "m.onnx", model), fragment)


def test_output_shadowing_an_initializer(tmp_path: Path) -> None:
    model = parse(HEADER + "g (float[2] x) => (float[2] w) <float[2] w = {1.0, 2.0}> { w = Relu(x) }")
    assert_load_fails(write_model(tmp_path / "m.onnx", model), "'w'")


def test_checker_error_is_one_line(tmp_path: Path) -> None:
    """Shape inference (full_check) finds the clash between declared and inferred types."""
    model = parse(HEADER + "g (float[2] x) => (int64[2] y) { y = Relu(x) }")
    assert_load_fails(write_model(tmp_path / "m.onnx", model), "onnx checker")


# ---------------------------------------------------------------- tensor sizes

def _with_weight(**changes: object) -> onnx.ModelProto:
    model = matmul_model()
    weight = model.graph.initializer[0]
    for key, value in changes.items():
        if key == "dims":
            weight.ClearField("dims")
            weight.dims.extend(value)  # type: ignore[arg-type]
        else:
            setattr(weight, key, value)
    return model


@pytest.mark.parametrize("changes, fragment", [
    ({"dims": [2**62, 8]}, "2**40"),                              # overflow
    ({"dims": [2**41, 1]}, "2**40"),                              # a single dim over the limit
    ({"dims": [2**30, 2**30]}, "2**40"),                          # product over the limit
    ({"dims": [4, -256]}, "negative"),
    ({"raw_data": b"\0" * 100}, "raw_data has 100 bytes"),        # short
    ({"raw_data": WEIGHT_BYTES + b"\0" * 8 if (WEIGHT_BYTES := np.zeros((4, 256), np.float32).tobytes())
      else b""}, "raw_data has 4104 bytes"),                       # long: the checker lets this through
    ({"data_type": 999}, "data type 999"),
])
def test_bad_initializer(tmp_path: Path, changes: dict, fragment: str) -> None:
    assert_load_fails(write_model(tmp_path / "m.onnx", _with_weight(**changes)), fragment, "'w'")


def test_typed_field_longer_than_dims(tmp_path: Path) -> None:
    model = parse(HEADER + "g (float[2] x) => (float[2] y) <float[2] w = {1.0, 2.0}> { y = Add(x, w) }")
    model.graph.initializer[0].float_data.append(3.0)
    assert_load_fails(write_model(tmp_path / "m.onnx", model), "float_data has 3 values")


def test_overflowing_constant_inside_loop_body(tmp_path: Path) -> None:
    #   Loop(trip, cond) body: c = Constant(value=<dims 2**62 x 8>) ; out = Identity(cond)
    bad = helper.make_tensor("huge", TensorProto.FLOAT, [1], [0.0])
    bad.ClearField("dims")
    bad.dims.extend([2**62, 8])
    body = helper.make_graph(
        [helper.make_node("Constant", [], ["c"], value=bad, name="k"),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("cond_in", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, [])])
    loop = helper.make_node("Loop", ["trip", "cond"], [], body=body)
    graph = helper.make_graph([loop], "g", [helper.make_tensor_value_info("trip", TensorProto.INT64, []),
                                            helper.make_tensor_value_info("cond", TensorProto.BOOL, [])], [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert_load_fails(write_model(tmp_path / "m.onnx", model), "'value'", "'k'", "2**40")


def _nested_ifs(depth: int) -> onnx.ModelProto:
    #   If(c) ─then─▶ If(c) ─then─▶ ... ─then─▶ Relu(x)      (every else branch: Relu(x))
    leaf = helper.make_graph([helper.make_node("Relu", ["x"], ["r0"])], "leaf", [],
                             [helper.make_tensor_value_info("r0", TensorProto.FLOAT, [2])])
    inner = leaf
    for level in range(1, depth + 1):
        node = helper.make_node("If", ["c"], [f"r{level}"], then_branch=inner, else_branch=leaf,
                                name=f"if{level}")
        inner = helper.make_graph([node], f"level{level}", [],
                                  [helper.make_tensor_value_info(f"r{level}", TensorProto.FLOAT, [2])])
    graph = helper.make_graph(list(inner.node), "g",
                              [helper.make_tensor_value_info("c", TensorProto.BOOL, []),
                               helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              list(inner.output))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_deep_if_nesting_loads(tmp_path: Path) -> None:
    """Thirty nested If nodes (near protobuf's own nesting limit): walked iteratively, checked, loaded."""
    loaded = load_model(write_model(tmp_path / "m.onnx", _nested_ifs(30)))
    assert loaded.model.graph.node[0].name == "if30"


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2); lengths here stay below 2**14."""
    size = len(payload)
    varint = bytes([size]) if size < 128 else bytes([(size & 0x7F) | 0x80, size >> 7])
    return bytes([(number << 3) | 2]) + varint + payload


def test_nesting_beyond_protobuf_limit(tmp_path: Path) -> None:
    """A hand-made file nesting graphs 200 deep: the parser's depth limit becomes a ModelError."""
    graph = b""
    for _ in range(200):  # GraphProto.node(1) -> NodeProto.attribute(5) -> AttributeProto.g(6)
        graph = _field(1, _field(5, _field(6, graph)))
    (tmp_path / "m.onnx").write_bytes(b"\x08\x08" + _field(7, graph))  # ir_version 8, graph
    assert_load_fails(tmp_path / "m.onnx", "protobuf parse failed")


# ---------------------------------------------------------------- check_model directly

def test_check_model_one_line_without_path() -> None:
    model = parse(HEADER + "g (float[2] x) => (int64[2] y) { y = Relu(x) }")
    with pytest.raises(ModelError) as info:
        check_model(model)
    assert "\n" not in str(info.value)
    check_model(model, full=False)  # without shape inference the type clash goes unseen


def test_check_model_large_branch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Models over 2 GiB are checked by path: pretend every model is that large."""
    monkeypatch.setattr(model_io, "_IN_MEMORY_CHECK_LIMIT", 0)
    monkeypatch.chdir(tmp_path)
    check_model(matmul_model())
    bad = parse(HEADER + "g (float[2] x) => (int64[2] y) { y = Relu(x) }")
    with pytest.raises(ModelError, match="onnx checker"):
        check_model(bad)
    assert load_model(write_model(tmp_path / "m.onnx", matmul_model())).model.graph.node
    assert_load_fails(write_model(tmp_path / "bad.onnx", bad), "onnx checker")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.onnx", "m.onnx"]


def test_thousands_of_huge_dims_fail_fast(tmp_path: Path) -> None:
    """dims = [2**40] * 100000: refused at the second dimension, not after a giant multiplication."""
    assert_load_fails(write_model(tmp_path / "m.onnx", _with_weight(dims=[2**40] * 100_000)), "2**40")
