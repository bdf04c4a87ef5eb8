"""What calibration costs over plain inference of the same batches.

For each model, the same N in-memory batches (batch 32, fixed seed) go through:

  plain        onnxruntime on the unmodified model, `session.run(None, feeds)` (what inference costs);
  collect      `onnxtrim.calibration.collect.collect_stats` as `onnxtrim model.onnx --data D --apoz T`
               calls it: the statistics the criterion reads (APoZ: zero counts), in-graph;
  collect[all] the same with all four statistics (zeros, sum, |x|, x^2), what `--save-stats` collects;
  naive        every observed ReLU output fetched as a graph output and reduced in numpy (for context;
               checked to give collect[all]'s numbers).

Every variant builds its session with `onnxtrim.runtime.make_session(model, ("cpu",))` (same options:
all graph optimisations, onnxruntime's default thread count). Two numbers per variant:

  incl. session  wall time from before the session is built to the end of the last batch (collect_stats
                 builds its own session, so the others are timed the same way; probe insertion is in it);
  steady         wall time of batches 2..N (the session exists, the first run's allocations are done).

Variants run in rotating order for `--rounds` rounds and the median over rounds is reported, so drift
and other load hit all of them. Ratios are against plain, measured in the same run. One throwaway
session and run come first, so process-wide first-use costs are billed to no variant.

To say where the extra time goes, one batch of the plain and of the probed model is then profiled
with onnxruntime's profiler (kernel time per op type, probe nodes apart; `--no-profile` skips it).
"""

from __future__ import annotations

import gc
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

# this folder (for _common) and the repository root (for the onnxtrim of this checkout)
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import _common
import numpy as np
import onnx
from onnx import helper

from onnxtrim import ir, runtime
from onnxtrim.analysis.groups import analyse
from onnxtrim.calibration.collect import collect_stats, observed_tensors
from onnxtrim.calibration.probes import add_probes
from onnxtrim.calibration.readers import Batch
from onnxtrim.calibration.requests import basic_requests
from onnxtrim.criteria.apoz import APoZ, activation_points
from onnxtrim.plan import structure_fingerprint

TARGET = 1.10
PROVIDERS = ("cpu",)


@dataclass
class Timing:
    total_s: float  # session creation (and probe insertion) + every batch
    first_s: float  # session creation + first batch
    steady_s: float  # batches 2..N
    batches: int

    @property
    def steady_per_batch_s(self) -> float:
        return self.steady_s / max(self.batches - 1, 1)


def make_batches(size: int, count: int, batch: int, seed: int = 0) -> list[Batch]:
    rng = np.random.default_rng(seed)
    return [Batch({"input": rng.standard_normal((batch, 3, size, size), dtype=np.float32)},
                  f"synthetic batch {i}", np.arange(i * batch, (i + 1) * batch, dtype=np.int64))
            for i in range(count)]


def _finish(start: float, stamps: list[float]) -> Timing:
    return Timing(stamps[-1] - start, stamps[0] - start, stamps[-1] - stamps[0], len(stamps))


def run_plain(model: onnx.ModelProto, batches: list[Batch]) -> tuple[Timing, None]:
    start = time.perf_counter()
    session = runtime.make_session(model, PROVIDERS)
    stamps = []
    for batch in batches:
        session.run(None, batch.feeds)
        stamps.append(time.perf_counter())
    return _finish(start, stamps), None


def apoz_requests(analysis):
    """What a default trim measures: APoZ's zero counts."""
    return APoZ().requests(analysis)


def all_requests(analysis):
    """What --save-stats measures at APoZ's points: all four sums."""
    return [r for point, _ in activation_points(analysis) for r in basic_requests(point.tensor, point.axis)]


def run_collect(model, analysis, fingerprint, batches, requests):
    stamps: list[float] = []
    start = time.perf_counter()
    stats = collect_stats(model, analysis, _stamped(batches, stamps), requests, fingerprint=fingerprint,
                          providers=PROVIDERS)
    stamps.append(time.perf_counter())  # the last batch is done once collect_stats returns
    return _finish(start, stamps), stats


def _stamped(batches, stamps: list[float]):
    """Yield the batches, noting the time each one after the first is asked for (= the previous one is done)."""
    for k, batch in enumerate(batches):
        if k:
            stamps.append(time.perf_counter())
        yield batch


def run_naive(model, analysis, batches):
    """Fetch each observed tensor and reduce it in numpy: the per-channel sums collect_stats returns."""
    start = time.perf_counter()
    observed = observed_tensors(analysis, all_requests(analysis))
    augmented = onnx.ModelProto()
    augmented.CopyFrom(model)
    for obs in observed:
        augmented.graph.output.append(helper.make_empty_tensor_value_info(obs.name))
    session = runtime.make_session(augmented, PROVIDERS)
    names = [obs.name for obs in observed]
    sums = {n: {k: 0.0 for k in ("zeros", "sum", "abs_sum", "sq_sum")} for n in names}
    stamps = []
    for batch in batches:
        values = session.run(names, batch.feeds)
        for obs, value in zip(observed, values):
            axes = tuple(i for i in range(value.ndim) if i != obs.axis)
            entry = sums[obs.name]
            entry["zeros"] = entry["zeros"] + np.count_nonzero(value == 0, axis=axes)
            entry["sum"] = entry["sum"] + value.sum(axis=axes, dtype=np.float64)
            entry["abs_sum"] = entry["abs_sum"] + np.abs(value).sum(axis=axes, dtype=np.float64)
            entry["sq_sum"] = entry["sq_sum"] + np.square(value).sum(axis=axes, dtype=np.float64)
        del values
        stamps.append(time.perf_counter())
    return _finish(start, stamps), sums


def setup_costs(model, analysis) -> dict[str, float]:
    """Session creation alone: the unmodified model vs probe insertion + the probed model's session."""
    t0 = time.perf_counter()
    session = runtime.make_session(model, PROVIDERS)
    t1 = time.perf_counter()
    del session
    augmented, _ = add_probes(model, observed_tensors(analysis, apoz_requests(analysis)), apoz_requests(analysis))
    t2 = time.perf_counter()
    session = runtime.make_session(augmented, PROVIDERS)
    t3 = time.perf_counter()
    del session
    return {"plain_session_s": t1 - t0, "add_probes_s": t2 - t1, "probed_session_s": t3 - t2}


def op_profile(model, analysis, batch: Batch, runs: int = 2) -> dict[str, dict[str, float]]:
    """Kernel time per op type (ms per run) of the plain and the APoZ-probed model, from onnxruntime's profiler.

    Probe nodes are counted apart ("probe:ReduceSum"); so are the layout conversions onnxruntime adds
    when a probe reads an activation kept in its blocked NCHWc layout (ReorderOutput). Runs alternate
    between the two sessions after one warm-up each.
    """
    ort = runtime.import_ort()
    augmented, _ = add_probes(model, observed_tensors(analysis, apoz_requests(analysis)), apoz_requests(analysis))
    totals: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="onnxtrim-bench-prof-") as tmp:
        sessions = {}
        for label, proto in (("plain", model), ("probed", augmented)):
            options = ort.SessionOptions()
            options.log_severity_level = 3
            options.enable_profiling = True
            options.profile_file_prefix = os.path.join(tmp, label)
            sessions[label] = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
            sessions[label].run(None, batch.feeds)
        for _ in range(runs):
            for session in sessions.values():
                session.run(None, batch.feeds)
        for label, session in sessions.items():
            with open(session.end_profiling(), encoding="utf-8") as handle:
                events = json.load(handle)
            by_op: dict[str, float] = {}
            model_runs = [e["dur"] for e in events if e.get("name") == "model_run"][1:]
            for e in events:
                if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
                    key = ("probe:" if e["name"].startswith("onnxtrim_probe_") else "") + e["args"]["op_name"]
                    by_op[key] = by_op.get(key, 0.0) + e["dur"] / 1e3 / (runs + 1)
            by_op["(model_run)"] = sum(model_runs) / 1e3 / max(len(model_runs), 1)
            totals[label] = by_op
    return totals


def print_op_profile(profile: dict[str, dict[str, float]]) -> None:
    plain, probed = profile["plain"], profile["probed"]
    keys = sorted(set(plain) | set(probed), key=lambda k: -(probed.get(k, 0.0) + plain.get(k, 0.0)))
    rows = [[k, plain.get(k), probed.get(k), probed.get(k, 0.0) - plain.get(k, 0.0)]
            for k in keys if max(plain.get(k, 0.0), probed.get(k, 0.0)) >= 0.5]
    print("onnxruntime profile, one batch (kernel ms per run; '(model_run)' is the whole run):")
    print(_common.table(["op", "plain ms", "probed ms", "delta ms"], rows))
    probe_ms = sum(v for k, v in probed.items() if k.startswith("probe:"))
    reorder = probed.get("ReorderOutput", 0.0) - plain.get("ReorderOutput", 0.0)
    print(f"probe kernels {probe_ms:.1f} ms + extra NCHWc->NCHW reorders {reorder:.1f} ms per run "
          f"(plain run {plain['(model_run)']:.1f} ms)")


def check_same(stats, naive) -> str:
    """The naive baseline must compute what collect_stats computes, or comparing them means nothing."""
    worst = 0.0
    for name, entry in naive.items():
        got = stats.tensors[name].sums
        if not np.array_equal(got["zeros"], entry["zeros"]):
            return f"MISMATCH: zero counts of '{name}' differ"
        scale = np.maximum(np.abs(entry["sum"]), 1.0)
        worst = max(worst, float(np.max(np.abs(got["sum"] - entry["sum"]) / scale)))
    return f"zero counts identical, sums within {worst:.1e} (relative)"


def bench_model(name: str, args, results: dict) -> None:
    path = _common.zoo_model(name, args.size, args.cache_dir)
    model = onnx.load(str(path))
    analysis = analyse(ir.to_graph(model))
    fingerprint = structure_fingerprint(model)
    batches = make_batches(args.size, args.batches, args.batch_size)
    observed = observed_tensors(analysis, all_requests(analysis))
    variants = ["plain", "collect"] + (["collect[all]"] if not args.no_all_variant else []) \
        + ([] if args.no_naive else ["naive"])
    runs: dict[str, list[Timing]] = {v: [] for v in variants}
    check = "not checked"
    # One-time process costs (onnxruntime's environment and thread pools, first allocations) are paid
    # here, not by whichever variant happens to run first.
    warm = runtime.make_session(model, PROVIDERS)
    warm.run(None, batches[0].feeds)
    del warm
    for r in range(args.rounds):
        order = variants[r % len(variants):] + variants[: r % len(variants)]
        print(f"{name}: round {r + 1}/{args.rounds} ({' '.join(order)})", flush=True)
        outputs = {}
        for variant in order:
            gc.collect()
            if variant == "plain":
                timing, out = run_plain(model, batches)
            elif variant == "collect":
                timing, out = run_collect(model, analysis, fingerprint, batches, apoz_requests(analysis))
            elif variant == "collect[all]":
                timing, out = run_collect(model, analysis, fingerprint, batches, all_requests(analysis))
            else:
                timing, out = run_naive(model, analysis, batches)
            runs[variant].append(timing)
            outputs[variant] = out
        if "naive" in outputs and "collect[all]" in outputs:
            check = check_same(outputs["collect[all]"], outputs["naive"])
        del outputs
    setup = setup_costs(model, analysis)
    profile = None if args.no_profile else op_profile(model, analysis, batches[0])

    med = {v: Timing(_common.median([t.total_s for t in ts]), _common.median([t.first_s for t in ts]),
                     _common.median([t.steady_s for t in ts]), ts[0].batches) for v, ts in runs.items()}
    base = med["plain"]
    rows, entry = [], {"observed_tensors": len(observed), "variants": {}, "setup": setup, "naive_check": check}
    for v in variants:
        m = med[v]
        ratio_total = m.total_s / base.total_s
        ratio_steady = m.steady_s / base.steady_s if base.steady_s > 0 else float("nan")
        rows.append([v, m.first_s, m.steady_per_batch_s, m.total_s, f"{ratio_total:.3f}x", f"{ratio_steady:.3f}x"])
        entry["variants"][v] = {"median": asdict(m), "rounds": [asdict(t) for t in runs[v]],
                                "ratio_incl_session": ratio_total, "ratio_steady": ratio_steady}
    if profile is not None:
        entry["op_profile_ms_per_run"] = profile
    entry["ratio_collect_over_plain_incl_session"] = entry["variants"]["collect"]["ratio_incl_session"]
    entry["ratio_collect_over_plain_steady"] = entry["variants"]["collect"]["ratio_steady"]
    if "naive" in variants:
        entry["ratio_naive_over_plain_incl_session"] = entry["variants"]["naive"]["ratio_incl_session"]
        entry["ratio_naive_over_plain_steady"] = entry["variants"]["naive"]["ratio_steady"]
    results[name] = entry

    print()
    print(f"{name} at {args.size}x{args.size}: {args.batches} batches of {args.batch_size}, "
          f"{len(observed)} observed tensors, median of {args.rounds} round(s)")
    print(_common.table(["variant", "session+batch1 s", "steady s/batch", "incl. session s",
                         "/plain incl.", "/plain steady"], rows))
    print(f"session creation alone: plain {setup['plain_session_s']:.3f} s; add_probes {setup['add_probes_s']:.3f} s "
          f"+ probed session {setup['probed_session_s']:.3f} s")
    print(f"naive baseline check: {check}")
    if profile is not None:
        print_op_profile(profile)
    for key, label in (("incl_session", "incl. session"), ("steady", "steady state")):
        ratio = entry[f"ratio_collect_over_plain_{key}"]
        print(f"  collect/plain {label}: {ratio:.3f}x  (target <= {TARGET:.2f}x: {_common.verdict(ratio, TARGET)})")
    print()


def main() -> int:
    p = _common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--models", default="resnet18,resnet50", help="torchvision models (default resnet18,resnet50)")
    p.add_argument("--size", type=int, default=None, help="input height and width (default 224; 64 with --quick)")
    p.add_argument("--batches", type=int, default=None, help="batches per variant (default 4; 3 with --quick)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=None, help="rounds of every variant (default 2; 1 with --quick)")
    p.add_argument("--no-naive", action="store_true", help="skip the fetch-and-reduce-in-numpy baseline")
    p.add_argument("--no-profile", action="store_true", help="skip the per-op onnxruntime profile of one batch")
    p.add_argument("--no-all-variant", action="store_true", help="skip collect_stats with all four statistics")
    args = p.parse_args()
    if args.quick:
        args.models = "resnet18" if args.models == "resnet18,resnet50" else args.models
    args.size = args.size or (64 if args.quick else 224)
    args.batches = args.batches or (3 if args.quick else 4)
    args.rounds = args.rounds or (1 if args.quick else 2)
    if args.batches < 2:
        p.error("--batches must be at least 2 (steady state is batches 2..N)")

    info = _common.machine()
    _common.print_header("calibration cost: collect_stats vs plain onnxruntime inference", info)
    started = time.perf_counter()
    results: dict = {}
    for name in _common.csv(args.models):
        bench_model(name, args, results)
    _common.finish(info)
    print("summary (ratios against plain inference of the same batches, same session options)")
    rows = [[n, r["ratio_collect_over_plain_incl_session"], r["ratio_collect_over_plain_steady"],
             r["variants"].get("collect[all]", {}).get("ratio_incl_session"),
             r["variants"].get("collect[all]", {}).get("ratio_steady"),
             r.get("ratio_naive_over_plain_incl_session"), r.get("ratio_naive_over_plain_steady")]
            for n, r in results.items()]
    print(_common.table(["model", "collect incl.", "collect steady", "collect[all] incl.", "collect[all] steady",
                         "naive incl.", "naive steady"], rows))
    print(f"target: collect/plain <= {TARGET:.2f}x.  wall time {time.perf_counter() - started:.0f} s; "
          f"load average {info['loadavg_1m_at_start']} -> {info['loadavg_1m_at_end']}")
    _common.write_json(args.json, {
        "benchmark": "calibration_cost", "machine": info, "target_ratio": TARGET,
        "config": {"models": _common.csv(args.models), "size": args.size, "batches": args.batches,
                   "batch_size": args.batch_size, "rounds": args.rounds, "providers": list(PROVIDERS),
                   "session_options": "onnxtrim.runtime.make_session defaults (ORT_ENABLE_ALL, default threads)"},
        "models": results,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
