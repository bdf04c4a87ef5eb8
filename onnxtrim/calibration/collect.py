"""Stream calibration batches through the probed model and accumulate per-channel sums."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import numpy as np
import onnx

from .. import ir, runtime
from ..analysis.groups import Analysis, is_zero_producing
from ..errors import CalibrationError, one_line
from .probes import STAT_KINDS, ObservedTensor, add_probes
from .readers import Batch
from .stats import ChannelStats, TensorStats

log = logging.getLogger(__name__)


def observed_tensors(analysis: Analysis) -> list[ObservedTensor]:
    tensors = analysis.graph.tensors()
    observed = []
    for obs in analysis.observations:
        tensor = tensors[obs.tensor]
        if tensor.shape is None or tensor.dtype is None:
            log.debug("skipping observation of '%s': shape or type unknown", obs.tensor)
            continue
        elem_type = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(tensor.dtype))
        inner = tensor.shape[obs.axis + 1:]
        spatial = int(np.prod(inner)) if all(isinstance(d, int) for d in inner) else None
        producer = ir.producer(tensor)
        observed.append(ObservedTensor(obs.tensor, obs.axis, len(tensor.shape), elem_type, channels=len(obs.elems),
                                       spatial=spatial, nonnegative=producer is not None and is_zero_producing(producer)))
    return observed


def collect_stats(
    model: onnx.ModelProto,
    analysis: Analysis,
    batches: Iterable[Batch],
    *,
    fingerprint: str,
    providers: Sequence[str] = ("cpu",),
    kinds: tuple[str, ...] = STAT_KINDS,
) -> ChannelStats:
    """Run every batch once and return the summed statistics of each observed tensor.

    Memory holds one batch and C numbers per observed tensor, whatever the number of batches.
    """
    observed = observed_tensors(analysis)
    stats = ChannelStats(fingerprint)
    if not observed:
        return stats
    augmented, probes = add_probes(model, observed, kinds)
    session = runtime.make_session(augmented, providers)
    names = list(dict.fromkeys(out for probe in probes for out in probe.outputs.values()))
    for batch in batches:
        try:
            values = runtime.run(session, names, batch.feeds)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise CalibrationError(f"{batch.origin}: onnxruntime failed on this batch: {one_line(exc)}") from exc
        by_name = dict(zip(names, values))
        samples = len(batch.indices)
        for probe in probes:
            sums = {kind: np.asarray(by_name[probe.outputs[kind]]) for kind in kinds}
            if probe.spatial is not None:
                sums = {kind: _sums_from_means(kind, means, probe.spatial) for kind, means in sums.items()}
            channels = len(next(iter(sums.values())))
            count = (samples * probe.spatial if probe.spatial is not None
                     else int(by_name[probe.outputs["size"]]) // max(channels, 1))
            if "sum" in sums and not np.all(np.isfinite(sums["sum"])):
                raise CalibrationError(f"{batch.origin}: tensor '{probe.tensor}' holds NaN or Inf values")
            entry = stats.tensors.setdefault(probe.tensor, TensorStats.empty(probe.axis, channels, kinds))
            entry.add(sums, count, samples)
    return stats


def _sums_from_means(kind: str, means: np.ndarray, spatial: int) -> np.ndarray:
    """Per-sample channel means of a blocked-layout probe, [N, C], back to per-channel sums.

    Zero counts are rounded per sample, where float32's error is far below one count, so
    they stay exact whatever the batch size.
    """
    totals = np.asarray(means, dtype=np.float64).reshape(len(means), -1) * spatial
    return (np.round(totals) if kind == "zeros" else totals).sum(axis=0)
