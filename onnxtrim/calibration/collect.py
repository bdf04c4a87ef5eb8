"""Stream calibration batches through the probed model and accumulate per-channel sums."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import numpy as np
import onnx

from .. import ir, runtime
from ..analysis.groups import Analysis, is_zero_producing
from ..errors import CalibrationError, one_line
from .probe_kinds import ObservedTensor
from .probes import Probe, add_probes
from .readers import Batch
from .requests import StatRequest
from .stats import ChannelStats, TensorStats

log = logging.getLogger(__name__)


def observed_tensors(analysis: Analysis, requests: Iterable[StatRequest]) -> list[ObservedTensor]:
    """The requested tensors that calibration can observe, in the order the model computes them."""
    tensors = analysis.graph.tensors()
    position = {out.name: k for k, node in enumerate(analysis.graph.nodes) for out in node.outputs}
    observed = []
    for name, axis in sorted(dict.fromkeys((r.tensor, r.axis) for r in requests), key=lambda t: position.get(t[0], -1)):
        tensor = tensors.get(name)
        if tensor is None or tensor.shape is None or tensor.dtype is None:
            log.debug("skipping observation of '%s': shape or type unknown", name)
            continue
        elem_type = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(tensor.dtype))
        inner = tensor.shape[axis + 1:]
        spatial = int(np.prod(inner)) if all(isinstance(d, int) for d in inner) else None
        channels = tensor.shape[axis] if isinstance(tensor.shape[axis], int) else None
        producer = ir.producer(tensor)
        observed.append(ObservedTensor(name, axis, len(tensor.shape), elem_type, channels=channels, spatial=spatial,
                                       nonnegative=producer is not None and is_zero_producing(producer)))
    return observed


def collect_stats(
    model: onnx.ModelProto,
    analysis: Analysis,
    batches: Iterable[Batch],
    requests: Sequence[StatRequest],
    *,
    fingerprint: str,
    providers: Sequence[str] = ("cpu",),
) -> ChannelStats:
    """Run every batch once and return the summed statistics of each requested tensor.

    Memory holds one batch and a few numbers per channel and request, whatever the number of batches.
    """
    stats = ChannelStats(fingerprint)
    observed = observed_tensors(analysis, requests)
    if not observed:
        return stats
    augmented, probes = add_probes(model, observed, requests)
    session = runtime.make_session(augmented, providers)
    names = list(dict.fromkeys(name for probe in probes for name in _output_names(probe)))
    channels = {obs.name: obs.channels for obs in observed}
    spatial = {obs.name: obs.spatial for obs in observed}
    for batch in batches:
        try:
            values = runtime.run(session, names, batch.feeds)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise CalibrationError(f"{batch.origin}: onnxruntime failed on this batch: {one_line(exc)}") from exc
        by_name = dict(zip(names, values))
        samples = len(batch.indices)
        for probe in probes:
            sums = {}
            for key, out in probe.outputs.items():
                value = np.asarray(by_name[out.name], dtype=np.float64)
                sums[key] = value if out.scale is None else _sums_from_means(value, out.scale, out.counts)
            checked = [*sums.values()] + ([np.asarray(by_name[probe.guard])] if probe.guard else [])
            if not all(np.all(np.isfinite(v)) for v in checked):
                raise CalibrationError(f"{batch.origin}: tensor '{probe.tensor}' holds NaN or Inf values")
            if probe.size is None:
                count = samples * int(spatial[probe.tensor] or 1)
            else:
                count = int(by_name[probe.size]) // max(int(channels[probe.tensor] or 1), 1)
            entry = stats.tensors.setdefault(probe.tensor, TensorStats(probe.axis, {}))
            entry.add(sums, count, samples)
    return stats


def _output_names(probe: Probe) -> list[str]:
    names = [out.name for out in probe.outputs.values()]
    return names + [name for name in (probe.size, probe.guard) if name is not None]


def _sums_from_means(means: np.ndarray, scale: int, counts: bool) -> np.ndarray:
    """Per-sample channel means of a blocked-layout probe, [N, C], back to per-channel sums.

    Counts are rounded per sample, where float32's error is far below one count, so they stay
    exact whatever the batch size.
    """
    totals = means.reshape(len(means), -1) * scale
    return (np.round(totals) if counts else totals).sum(axis=0)
