"""The Python API end to end on hand-built models: dead channels go, outputs stay."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from onnxtrim.api import trim
from onnxtrim.config import TrimConfig
from onnxtrim.errors import ConfigError, OutputError, PlanError
from tests.helpers import models
from tests.helpers.dead import dead_chain, write_npy_batches
from tests.helpers.plans import run

CONV_DEAD, HIDDEN_DEAD = [1, 4, 6], [0, 3, 7, 8, 15]


@pytest.fixture()
def chain_case(tmp_path):
    model = dead_chain(CONV_DEAD, HIDDEN_DEAD)
    path = tmp_path / "chain.onnx"
    onnx.save(model, path)
    x = np.random.default_rng(0).standard_normal((40, 1, 8, 8)).astype(np.float32)
    write_npy_batches(tmp_path / "calib", x, per_file=16)
    return path, tmp_path / "calib", x


def test_dead_channels_are_removed_and_outputs_unchanged(chain_case):
    path, calib, x = chain_case
    result = trim(TrimConfig(model=path, data=calib, apoz=1.0, round_to=1))
    sizes = {tuple(g["members"]): (g["size"], g["kept"]) for g in result.report["groups"]}
    assert sizes[("Conv#0",)] == (8, 8 - len(CONV_DEAD)) and sizes[("Gemm#5",)] == (16, 16 - len(HIDDEN_DEAD))
    onnx.checker.check_model(result.model, full_check=True)
    original = onnx.load(path)
    np.testing.assert_allclose(run(result.model, {"x": x})[0], run(original, {"x": x})[0], rtol=1e-5, atol=1e-5)
    assert result.fidelity.samples == 8 and result.fidelity.data == "holdout"
    assert result.fidelity.max_abs_diff < 1e-4 and result.fidelity.top1_agreement == 1.0
    cost = result.report["cost"]
    assert cost["params_after"] < cost["params_before"] and cost["macs_after"] < cost["macs_before"]


def test_apoz_threshold_matches_an_independent_computation(tmp_path):
    path = tmp_path / "chain.onnx"
    onnx.save(models.CHAIN, path)
    x = np.random.default_rng(1).standard_normal((30, 1, 8, 8)).astype(np.float32)
    write_npy_batches(tmp_path / "calib", x, per_file=30)
    result = trim(TrimConfig(model=path, data=tmp_path / "calib", apoz=0.6, holdout=0.0, round_to=1))
    exposed = onnx.ModelProto()
    exposed.CopyFrom(models.CHAIN)
    exposed.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in ("r", "hr"))
    _, r, hr = run(exposed, {"x": x})
    apoz_conv = (r == 0).mean(axis=(0, 2, 3))
    apoz_fc = (hr == 0).mean(axis=0)
    kept = {g.group: set(g.keep) for g in result.plan.groups}
    for gid, apoz in ((0, apoz_conv), (1, apoz_fc)):
        expected = {c for c in range(len(apoz)) if apoz[c] < 0.6}
        assert kept.get(gid, set(range(len(apoz)))) == (expected or {int(np.argmin(apoz))})


def test_dry_run_plan_applied_later_gives_the_same_model(chain_case, tmp_path):
    path, calib, _ = chain_case
    dry = trim(TrimConfig(model=path, data=calib, fraction=0.5, dry_run=True, output=tmp_path / "p.json"))
    assert dry.model is None
    dry.save()
    direct = trim(TrimConfig(model=path, data=calib, fraction=0.5))
    replay = trim(TrimConfig(model=path, data=calib, plan=tmp_path / "p.json"))
    assert replay.model.SerializeToString() == direct.model.SerializeToString()
    with pytest.raises(PlanError):
        trim(TrimConfig(model=path, data=calib, plan=path))


def test_saved_statistics_serve_a_second_trim(chain_case, tmp_path):
    path, calib, _ = chain_case
    first = trim(TrimConfig(model=path, data=calib, apoz=1.0, save_stats=tmp_path / "s.npz", output=tmp_path / "a.onnx"))
    first.save()
    second = trim(TrimConfig(model=path, load_stats=tmp_path / "s.npz", apoz=1.0, verify=False))
    assert second.plan == first.plan


def test_outputs_written_once_and_input_untouched(chain_case):
    path, calib, _ = chain_case
    before = path.read_bytes()
    result = trim(TrimConfig(model=path, data=calib, round_to=1))
    written = result.save()
    assert [p.name for p in written] == ["chain.trimmed.onnx", "chain.trimmed.report.json"]
    report = json.loads(written[-1].read_text())
    assert report["schema_version"] == 3 and report["output"]["path"].endswith("chain.trimmed.onnx")
    with pytest.raises(OutputError):
        trim(TrimConfig(model=path, data=calib)).save()
    with pytest.raises(OutputError):
        trim(TrimConfig(model=path, data=calib, output=path, overwrite=True)).save()
    assert path.read_bytes() == before


def test_python_reader_object_is_accepted(tmp_path):
    path = tmp_path / "chain.onnx"
    onnx.save(models.CHAIN, path)
    rng = np.random.default_rng(2)
    feeds = [{"x": rng.standard_normal((4, 1, 8, 8)).astype(np.float32)} for _ in range(5)]
    result = trim(TrimConfig(model=path, data=feeds, fraction=0.25, round_to=1))
    assert result.plan.removed > 0 and result.report["calibration"]["samples"] == 16


def test_nodes_to_exclude_leaves_their_groups_alone(chain_case):
    path, calib, _ = chain_case
    result = trim(TrimConfig(model=path, data=calib, apoz=1.0, nodes_to_exclude=("Conv#0",), round_to=1))
    assert [g.members for g in result.plan.groups] == [("Gemm#5",)]
    with pytest.raises(ConfigError, match="no node"):
        trim(TrimConfig(model=path, data=calib, nodes_to_exclude=("nope",)))


@pytest.mark.parametrize("kwargs", [{"apoz": 1.5}, {"apoz": 0.5, "fraction": 0.5}, {"min_keep": 0},
                                    {"holdout": 1.0}, {"data": None}])
def test_contradicting_options_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        TrimConfig(model="m.onnx", **{"data": "d", **kwargs})
