"""In-graph statistics against an independent numpy computation over the exposed activations."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from onnxtrim.calibration import collect
from onnxtrim.calibration.probes import add_probes
from onnxtrim.calibration.readers import Batch
from onnxtrim.calibration.requests import StatRequest, basic_requests
from onnxtrim.calibration.stats import ChannelStats
from onnxtrim.criteria import make_criterion
from onnxtrim.criteria.apoz import activation_points
from onnxtrim.errors import CalibrationError
from onnxtrim.runtime import import_ort
from tests.helpers import models
from tests.helpers.plans import analysis_of, run


def apoz_points(analysis):
    return [point for point, _ in activation_points(analysis)]


def all_four(analysis) -> list[StatRequest]:
    return [r for p in apoz_points(analysis) for r in basic_requests(p.tensor, p.axis)]


def observed_tensors(analysis, requests=None):
    return collect.observed_tensors(analysis, requests if requests is not None else all_four(analysis))


def collect_stats(model, analysis, batches, requests=None, **kwargs):
    return collect.collect_stats(model, analysis, batches, requests if requests is not None else all_four(analysis),
                                 **kwargs)


def batches_of(x: np.ndarray, size: int) -> list[Batch]:
    return [Batch({"x": x[i:i + size]}, f"rows {i}", np.arange(i, min(i + size, len(x)))) for i in range(0, len(x), size)]


def exposed(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    copy.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in names)
    return copy


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    x = np.random.default_rng(0).standard_normal((12, 1, 8, 8)).astype(np.float32)
    x[:, :, :4] = 0  # plenty of exact zeros after the ReLU
    return x


def at_opset(model: onnx.ModelProto, version: int) -> onnx.ModelProto:
    """The same graph declared at another opset (CHAIN's ops mean the same from opset 9 on)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    copy.opset_import[0].version = version
    onnx.checker.check_model(copy, full_check=True)
    return copy


@pytest.mark.parametrize("opset", [9, 10, 17])
def test_statistics_equal_numpy_over_exposed_activations(data, opset):
    """At opsets 9 and 10 too (issue 11): no probe may use an op or a form newer than the model's opset
    (Equal on floats, ReduceSum's axes input), or onnxruntime refuses the probed model."""
    model = at_opset(models.CHAIN, opset)
    analysis = analysis_of(model)
    # one tensor reduced in the blocked layout (Conv→Relu, per-sample means), one by plain reductions
    assert sorted(o.blocked_layout for o in observed_tensors(analysis)) == [False, True]
    stats = collect_stats(model, analysis, batches_of(data, 5), fingerprint="f")
    names = [o.tensor for o in apoz_points(analysis)]
    activations = dict(zip(names, run(exposed(model, names), {"x": data})[1:]))
    for obs in apoz_points(analysis):
        a = np.moveaxis(activations[obs.tensor], obs.axis, 0).reshape(len(obs.elems), -1).astype(np.float64)
        got = stats.tensors[obs.tensor]
        assert got.count == a.shape[1] and got.samples == 12
        np.testing.assert_array_equal(got.sums["zeros"], (a == 0).sum(axis=1))
        np.testing.assert_allclose(got.sums["sum"], a.sum(axis=1), rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(got.sums["abs_sum"], np.abs(a).sum(axis=1), rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(got.sums["sq_sum"], (a * a).sum(axis=1), rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(got.sums["zeros"] / got.count, (a == 0).mean(axis=1))


def test_one_batch_and_many_batches_give_the_same_sums(data):
    model = models.CHAIN
    analysis = analysis_of(model)
    one = collect_stats(model, analysis, batches_of(data, 12), fingerprint="f")
    many = collect_stats(model, analysis, batches_of(data, 1), fingerprint="f")
    for name, stats in one.tensors.items():
        assert stats.count == many.tensors[name].count
        np.testing.assert_array_equal(stats.sums["zeros"], many.tensors[name].sums["zeros"])
        np.testing.assert_allclose(stats.sums["sq_sum"], many.tensors[name].sums["sq_sum"], rtol=1e-5)  # float32 in-graph


def test_merging_two_runs_equals_one_run(data):
    model = models.CHAIN
    analysis = analysis_of(model)
    whole = collect_stats(model, analysis, batches_of(data, 4), fingerprint="f")
    first = collect_stats(model, analysis, batches_of(data[:8], 4), fingerprint="f")
    first.merge(collect_stats(model, analysis, batches_of(data[8:], 4), fingerprint="f"))
    for name, stats in whole.tensors.items():
        np.testing.assert_allclose(stats.sums["sum"], first.tensors[name].sums["sum"], rtol=1e-6)
        assert stats.samples == first.tensors[name].samples == 12


def test_statistics_file_round_trip_and_refusals(data, tmp_path):
    model = models.CHAIN
    stats = collect_stats(model, analysis_of(model), batches_of(data, 6), fingerprint="abc")
    again = ChannelStats.from_bytes(stats.to_bytes())
    assert again.fingerprint == "abc" and set(again.tensors) == set(stats.tensors)
    for name in stats.tensors:
        np.testing.assert_array_equal(again.tensors[name].sums["zeros"], stats.tensors[name].sums["zeros"])
    with pytest.raises(CalibrationError, match="not an onnxtrim statistics file"):
        ChannelStats.from_bytes(b"garbage")
    with pytest.raises(CalibrationError, match="another structure"):
        again.merge(ChannelStats("other"))


def test_nan_in_activations_is_refused(data):
    bad = data.copy()
    bad[3, 0, 5, 5] = np.nan
    with pytest.raises(CalibrationError, match="NaN"):
        collect_stats(models.CHAIN, analysis_of(models.CHAIN), batches_of(bad, 6), fingerprint="f")


def test_probes_run_as_soon_as_their_tensor_exists(tmp_path):
    """In onnxruntime's execution order each probe runs right after the node it observes.

    Otherwise every observed activation stays alive to the end of the run (see add_probes).
    The model is RESIDUAL at 32 channels, so that onnxruntime converts the convolutions and
    the probes' pooling to its blocked layout (and numbers the converted nodes anew), as on
    real models. It observes the outputs of its first three convolutions (Relu and Add fused
    into them by onnxruntime); the last convolution feeds no probe and is not run at all.
    """
    ort = import_ort()
    model = models.residual(channels=32, inputs=16)
    analysis = analysis_of(model)
    augmented, probes = add_probes(model, observed_tensors(analysis), all_four(analysis))
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(tmp_path / "order")
    session = ort.InferenceSession(augmented.SerializeToString(), options, providers=["CPUExecutionProvider"])
    session.run(None, {"x": np.random.default_rng(0).standard_normal((2, 16, 6, 6)).astype(np.float32)})
    with open(session.end_profiling(), encoding="utf-8") as handle:
        order = [e["name"].removesuffix("_kernel_time") for e in json.load(handle)
                 if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    owners, model_nodes = [], 0  # per event: the number of model nodes run before it, or the probe's index
    for name in order:
        if name.startswith("onnxtrim_probe_"):
            owners.append(int(name.split("_")[2]))
        elif not name.startswith("Reorder"):  # layout conversions onnxruntime adds
            model_nodes += 1
            owners.append(model_nodes - 1)
    assert len(probes) == 3 and model_nodes == 3, order
    assert owners == sorted(owners), order


def test_zero_counts_stay_exact_when_a_batch_holds_more_than_2_to_the_24_values():
    """Blocked-layout probes return per-sample means; summed over the batch in float32, 512 maps
    of 256x256 (2**25 values) drift by whole counts, so the sum is taken per sample in float64."""
    model = models.build("""
wide (float[N,1,256,256] x, float[1,1,1,1] w, float[1] b, float[5,1] wf) => (float[N,5] y) {
  c = Conv(x, w, b)
  r = Relu(c)
  g = GlobalAveragePool(r)
  f = Flatten<axis=1>(g)
  y = Gemm<transB=1>(f, wf)
}""", ["w", "b", "wf"])
    analysis = analysis_of(model)
    assert [o.blocked_layout for o in observed_tensors(analysis)] == [True]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((512, 1, 256, 256)).astype(np.float32) + rng.uniform(-1, 1, (512, 1, 1, 1)).astype(np.float32)
    stats = collect_stats(model, analysis, batches_of(x, 512), [StatRequest("r", 1, "zeros")], fingerprint="f")
    activation = run(exposed(model, ["r"]), {"x": x})[1]
    np.testing.assert_array_equal(stats.tensors["r"].sums["zeros"], (activation == 0).sum(axis=(0, 2, 3)))


@pytest.mark.parametrize("opset", [9, 10])
@pytest.mark.parametrize("name", ["mean-activation", "relief"])
def test_every_criterion_measures_at_opsets_9_and_10_what_it_measures_at_17(data, name, opset):
    def measured(model):
        analysis = analysis_of(model)
        stats = collect_stats(model, analysis, batches_of(data, 5), make_criterion(name).requests(analysis),
                              fingerprint="f")
        return {t: s.sums for t, s in stats.tensors.items()}

    old, new = measured(at_opset(models.CHAIN, opset)), measured(models.CHAIN)
    assert old.keys() == new.keys() and old
    for tensor, sums in new.items():
        assert sums.keys() == old[tensor].keys()
        for kind, value in sums.items():
            np.testing.assert_allclose(old[tensor][kind], value, rtol=1e-6, err_msg=f"{tensor} {kind}")
