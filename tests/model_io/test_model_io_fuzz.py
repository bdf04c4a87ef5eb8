"""Property tests: any byte string as a model file ends in ModelError, never another exception or a hang.

Sizes are bounded so the suite stays fast; the second property mutates a real model (external data
included), which reaches much deeper into the loader than uniformly random bytes. The last two run the
whole command line on mutated models, external data and data files (tests/helpers/fuzz_cli.py): 64 cases
by default, 10,000 with `pytest tests/model_io/test_model_io_fuzz.py -m slow -s`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from modelio_helpers import externalize, matmul_model, save_external, snapshot, write_model

from onnxtrim.errors import ModelError
from onnxtrim.model_io import LoadedModel, load_model

FUZZ = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])


def _load_bytes(data: bytes, directory: Path) -> LoadedModel | None:
    path = directory / "m.onnx"
    path.write_bytes(data)
    before = snapshot(directory)
    try:
        return load_model(path)
    except ModelError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
        return None
    finally:
        assert snapshot(directory) == before


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_are_a_model_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        assert _load_bytes(data, Path(tmp)) is None


#   b ──If──▶ y       then: local.Scale(x) (a function holding a Constant), else: Identity(x)
RICH = """
<ir_version: 8, opset_import: ["": 17, "local": 1]>
g (bool b, float[4,256] x) => (float[4,256] y) {
    y = If (b) <then_branch = t () => (float[4,256] o1) { o1 = local.Scale(x) },
                else_branch = e () => (float[4,256] o2) <float[4] k2 = {1.0, 2.0, 3.0, 4.0}>
                                           { o2 = Identity(x) }>
}
<domain: "local", opset_import: ["": 17]>
Scale (a) => (r) { k = Constant <value = float[1] k_value = {2.0}> ()
                   r = Mul(a, k) }
"""


def _seed_model(directory: Path, rich: bool) -> bytes:
    if rich:
        model = onnx.parser.parse_model(RICH)
        externalize(model.graph.node[0].attribute[1].g.initializer[0], directory / "w.data")
        write_model(directory / "seed.onnx", model)
    else:
        save_external(matmul_model(), directory / "seed.onnx")
    return (directory / "seed.onnx").read_bytes()


@FUZZ
@given(st.data())
def test_mutated_model_loads_or_is_a_model_error(data: st.DataObject) -> None:
    """Flip, insert, delete or truncate bytes of a valid external-data model (w.data stays beside it)."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        blob = bytearray(_seed_model(directory, data.draw(st.booleans(), label="rich")))
        for _ in range(data.draw(st.integers(1, 4), label="edits")):
            where = data.draw(st.integers(0, len(blob)), label="position")
            action = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]), label="action")
            if action == "flip" and where < len(blob):
                blob[where] ^= data.draw(st.integers(1, 255), label="mask")
            elif action == "insert":
                blob[where:where] = data.draw(st.binary(min_size=1, max_size=8), label="bytes")
            elif action == "delete":
                del blob[where:where + data.draw(st.integers(1, 8), label="count")]
            else:
                del blob[where:]
        result = _load_bytes(bytes(blob), directory)
        if result is not None:  # a harmless mutation (a name, a doc string): the result is still valid
            onnx.checker.check_model(result.model, full_check=True)


def test_seeds_load(tmp_path: Path) -> None:
    """Guard for the property above: unmutated seeds must load, or every mutation would pass trivially."""
    for rich in (False, True):
        seed = tmp_path / f"rich{rich}"
        seed.mkdir()
        _seed_model(seed, rich)
        assert load_model(seed / "seed.onnx").data_files == ((seed / "w.data").resolve(),)


# ---------------------------------------------------------------- the whole command line

def test_fuzzed_models_and_data_through_the_cli() -> None:
    """64 cases of tests/helpers/fuzz_cli.py (8 of each kind): documented exit codes, inputs unchanged."""
    from tests.helpers.fuzz_cli import fuzz

    summary = fuzz(64, timeout=120)
    assert summary.cases == 64 and summary.crashes == [] and summary.hangs == [], summary.line()


@pytest.mark.slow
def test_ten_thousand_fuzzed_models_and_data_files() -> None:
    """`pytest tests/model_io/test_model_io_fuzz.py -m slow -s` (about 10 minutes on 2 cores; the README's
    Reliability section records the last run). Any failing case reruns alone as
    `python -m tests.helpers.fuzz_cli 1 CASE`."""
    from tests.helpers.fuzz_cli import fuzz

    summary = fuzz(10_000, timeout=120)
    print(summary.line())
    assert summary.cases == 10_000 and summary.crashes == [] and summary.hangs == [], \
        "\n".join([summary.line(), *summary.crashes[:20]])
