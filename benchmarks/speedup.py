"""Does removing channels buy the latency the MACs promise? Trimmed vs original zoo models on CPU.

For each torchvision model (random seeded weights, exported at --size) and each trimming fraction F,
the plan comes from the API: `Selection(fraction=F)` removes floor(F * size) channels of every
prunable group, ranked by a score, and `apply_plan` rewrites the model. Random weights make the scores
meaningless as a ranking of importance, but not as a ranking: with `--scores activation` (default) they
are real mean |a| values (`--criterion mean-activation`, which has a signal after every activation,
where APoZ has none after SiLU or in linear bottlenecks) over `--calib-samples` standard-normal
inputs, so the whole calibrate -> score -> plan -> rewrite path runs; `--scores uniform` gives every class the same score
(the policy's stable sort then removes the lowest-numbered channels of each group) and skips
calibration. Which channels go does not change the count per group, so MACs and latency barely depend
on this choice.

Latency comes from `onnxtrim.bench.harness.benchmark`: all variants of one model are timed in one call,
interleaved (A B C A B C ...), after warm-up, with a fixed intra-op thread count (default 1, as the
harness does, because it repeats best on a shared machine). Batch 1 and batch 8 are timed in separate
harness calls so each gets a sensible number of repetitions. Reported per variant:

  MACs ratio       trimmed / original, from `onnxtrim.metrics.cost` of both models;
  latency ratio    median trimmed / median original latency, per batch size;
  lat/MACs         latency ratio / MACs ratio: 1.0 means latency fell exactly as MACs did
                   (target: <= 1.15 on CPU);
  NCHWc convs      how many of the model's Convs onnxruntime runs with its blocked-layout kernels
                   after optimisation (they need channel counts that are multiples of 8 with AVX2,
                   16 with AVX-512); the others fall back to the slower NCHW path. `--round-to 16`
                   keeps counts at such multiples.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

# this folder (for _common) and the repository root (for the onnxtrim of this checkout)
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import _common
import numpy as np
import onnx

from onnxtrim import ir, metrics, stages
from onnxtrim.analysis.groups import analyse
from onnxtrim.bench.harness import BenchConfig, benchmark
from onnxtrim.calibration.readers import Batch
from onnxtrim.criteria.base import Scores
from onnxtrim.criteria.mean_activation import MeanActivation
from onnxtrim.passes.apply_plan import apply_plan
from onnxtrim.plan import PrunePlan, structure_fingerprint
from onnxtrim.policy import Selection, make_plan
from onnxtrim.runtime import import_ort
from onnxtrim.targets import AUTO, resolve

TARGET = 1.15
DEFAULT_MODELS = "resnet18,resnet50,mobilenet_v2,vgg16_bn,densenet121,efficientnet_b0"
# Transformers (the BERT-base-shaped `encoder` of _common, torchvision ViTs) are trimmed by kind:
# a share of every attention's heads, or of every MLP's units, as separate variants.
TRANSFORMER_FRACTIONS = (0.25, 0.5)
KINDS = {"heads": "heads", "mlp": "channels"}


CRITERION = MeanActivation()


def scores_for(model, analysis, fingerprint, how: str, size: int, samples: int) -> Scores:
    if how == "uniform":
        return Scores({g.id: np.full(g.size, 0.5) for g in analysis.groups})
    rng = np.random.default_rng(0)
    batch = min(samples, 8)
    tokens = model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64

    def sample(count: int) -> np.ndarray:
        if tokens:  # the encoder's token ids, [batch, sequence]
            return rng.integers(0, 1000, size=(count, size), dtype=np.int64)
        return rng.standard_normal((count, 3, size, size), dtype=np.float32)

    batches = (Batch({"input": sample(batch)}, f"random {i}", np.arange(i, i + batch, dtype=np.int64))
               for i in range(0, samples, batch))
    stats = stages.measure(model, analysis, CRITERION.requests(analysis), batches, fingerprint=fingerprint)
    return CRITERION.scores(analysis, stats)


def only_kind(analysis, scores: Scores, kind: str) -> Scores:
    """The scores of one kind of group (heads, or the MLPs' units); the others are left alone."""
    chosen = {g.id for g in analysis.groups if g.kind == KINDS[kind]}
    return Scores({gid: v for gid, v in scores.values.items() if gid in chosen},
                  {g.id: f"not a {kind} group" for g in analysis.groups if g.id not in chosen})


def plans_for(analysis, scores: Scores, args, fingerprint: str):
    """(label, plan, fraction, round_to, round_to as given) of every variant: by fraction and rounding for convnets; by kind
    (heads, MLP units) and fraction for transformers, whose heads are never rounded."""
    transformer = any(g.kind == "heads" for g in analysis.groups)
    fractions = args.fractions or (TRANSFORMER_FRACTIONS if transformer else (0.3, 0.5))
    if transformer:  # what importing and exporting alone does (shape computations folded): nothing removed
        yield "rewritten, -0%", PrunePlan(fingerprint, CRITERION.name, ()), 0.0, 1, 1
    for kind in (KINDS if transformer else (None,)):
        for fraction in fractions:
            for given in (1,) if kind == "heads" else args.round_to:
                round_to = resolve(given, ("cpu",)).multiple  # "auto": this CPU's channel block, a trim's default
                label = (f"{kind} " if kind else "") + f"-{round(fraction * 100)}%" + (
                    " auto" if given == AUTO else "") + (f" r{round_to}" if round_to > 1 else "")
                chosen = only_kind(analysis, scores, kind) if kind else scores
                plan = make_plan(analysis, CRITERION, chosen, Selection(fraction=fraction, round_to=round_to),
                                 fingerprint=fingerprint)
                yield label, plan, fraction, round_to, given


def nchwc_convs(model: onnx.ModelProto) -> tuple[int, int]:
    """(Convs onnxruntime runs in its blocked NCHWc layout, all Convs) after its graph optimisations.

    The CPU provider's fast convolution kernels (MLAS NCHWc) need channel counts that are multiples
    of the SIMD block (8 with AVX2, 16 with AVX-512); a Conv whose counts are not stays in the
    slower NCHW path. Read from the optimised model onnxruntime writes out.
    """
    ort = import_ort()
    with tempfile.TemporaryDirectory(prefix="onnxtrim-bench-opt-") as tmp:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = 1
        options.optimized_model_filepath = os.path.join(tmp, "optimized.onnx")
        options.add_session_config_entry("session.optimized_model_external_initializers_file_name", "weights.bin")
        options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        optimized = onnx.load(options.optimized_model_filepath, load_external_data=False)
    convs = [n for n in optimized.graph.node if n.op_type in ("Conv", "FusedConv")]
    return sum(1 for n in convs if n.domain == "com.microsoft.nchwc"), len(convs)


def input_size(name: str, args) -> int:
    """Image side for convnets (--size); sequence length for the encoder (--seq); for a ViT with 16-pixel
    patches, the largest image whose token count (patches + class token) is at most --seq."""
    if name == "encoder":
        return args.seq
    if name.startswith("vit_"):
        return 16 * int(np.floor(np.sqrt(args.seq - 1)))
    return args.size


def bench_model(name: str, args, results: dict) -> None:
    size = input_size(name, args)
    path = _common.zoo_model(name, size, args.cache_dir)
    model = onnx.load(str(path))
    analysis = analyse(ir.to_graph(model))
    fingerprint = structure_fingerprint(model)
    t0 = time.perf_counter()
    scores = scores_for(model, analysis, fingerprint, args.scores, size, args.calib_samples)
    calib_s = time.perf_counter() - t0
    base_cost = metrics.cost(model)

    variants: list[tuple[str, onnx.ModelProto, dict]] = []
    for label, plan, fraction, round_to, given in plans_for(analysis, scores, args, fingerprint):
        trimmed = apply_plan(model, plan, analysis)
        c = metrics.cost(trimmed)
        blocked, convs = nchwc_convs(trimmed)
        variants.append((label, trimmed, {
            "fraction": fraction, "round_to": round_to, "round_to_given": given, "channels_removed": plan.removed,
            "nchwc_convs": blocked, "convs": convs,
            "params_ratio": c.params / base_cost.params, "macs_ratio": c.macs / base_cost.macs,
            "params": c.params, "macs": c.macs}))
    print(f"{name}: {len(variants)} trimmed variants built (calibration {calib_s:.1f} s); timing ...", flush=True)

    labels = ["original"] + [v[0] for v in variants]
    protos = [model] + [v[1] for v in variants]
    latency: dict[int, dict[str, dict]] = {}
    for batch, runs, warmup in ((1, args.runs_b1, args.warmup_b1), (8, args.runs_b8, args.warmup_b8)):
        if batch not in args.batch_sizes:
            continue
        config = BenchConfig(providers=("cpu",), batch_sizes=(batch,), warmup=warmup, runs=runs,
                             intra_op_threads=args.threads)
        result = benchmark(protos, config, names=labels)
        ratios = result.ratios()[("CPUExecutionProvider", batch)]
        latency[batch] = {t.model: {"median_ms": t.median_ms, "p90_ms": t.p90_ms, "min_ms": t.min_ms,
                                    "ratio": ratios[t.model]} for t in result.timings}
    del protos

    base_blocked, base_convs = nchwc_convs(model)
    rows = [["original", 0, f"{base_blocked}/{base_convs}", 1.0, 1.0, *[latency[b]["original"]["median_ms"] for b in sorted(latency)],
             *[1.0 for _ in latency], *[None for _ in latency]]]
    entry = {"size": size, "nchwc_convs": base_blocked, "convs": base_convs, "params": base_cost.params, "macs": base_cost.macs, "calibration_s": calib_s,
             "original_latency": {str(b): latency[b]["original"] for b in latency}, "variants": {}}
    for label, _, info in variants:
        lat = {b: latency[b][label] for b in sorted(latency)}
        over = {b: lat[b]["ratio"] / info["macs_ratio"] for b in lat}
        info = {**info, "latency": {str(b): lat[b] for b in lat},
                "latency_ratio": {str(b): lat[b]["ratio"] for b in lat},
                "latency_over_macs": {str(b): over[b] for b in lat},
                "meets_target": all(v <= TARGET for v in over.values())}
        entry["variants"][label] = info
        rows.append([label, info["channels_removed"], f"{info['nchwc_convs']}/{info['convs']}", info["params_ratio"], info["macs_ratio"],
                     *[lat[b]["median_ms"] for b in lat], *[lat[b]["ratio"] for b in lat], *[over[b] for b in lat]])
    results[name] = entry
    batches = sorted(latency)
    print()
    shape = f"sequence {size}" if name == "encoder" else f"{size}x{size}"
    print(f"{name} at {shape} (params {base_cost.params:,}, MACs/sample {base_cost.macs:,})")
    print(_common.table(["variant", "removed", "NCHWc convs", "params", "MACs", *[f"b{b} ms" for b in batches],
                         *[f"lat b{b}" for b in batches], *[f"lat/MACs b{b}" for b in batches]], rows))
    print()


def main() -> int:
    p = _common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--models", default=None, help=f"torchvision models (default {DEFAULT_MODELS}; resnet18 with --quick)")
    p.add_argument("--fractions", default=None,
                   help="shares of each group to remove (default 0.3,0.5; transformers 0.25,0.5 of their heads "
                        "and, separately, of their MLP units)")
    p.add_argument("--seq", type=int, default=128,
                   help="sequence length of the encoder; ViTs get the largest image with at most this many "
                        "tokens (default 128: 176x176, 122 tokens)")
    p.add_argument("--round-to", default="auto",
                   help="kept-count multiples to compare, e.g. 1,8,auto (default auto: this CPU's channel block, "
                        "what a trim rounds to by default; attention heads are never rounded)")
    p.add_argument("--size", type=int, default=None, help="input height and width (default 224; 64 with --quick)")
    p.add_argument("--scores", choices=("activation", "uniform"), default="activation")
    p.add_argument("--calib-samples", type=int, default=8,
                   help="random calibration samples for --scores activation")
    p.add_argument("--batch-sizes", default="1,8", help="any of 1,8 (default both)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1; 0 = onnxruntime's default)")
    p.add_argument("--runs-b1", type=int, default=None, help="timed runs per model at batch 1 (default 15)")
    p.add_argument("--runs-b8", type=int, default=None, help="timed runs per model at batch 8 (default 5)")
    args = p.parse_args()
    args.models = args.models or ("resnet18" if args.quick else DEFAULT_MODELS)
    args.size = args.size or (64 if args.quick else 224)
    args.fractions = [float(f) for f in _common.csv(args.fractions)] if args.fractions else None
    args.round_to = [r if r == AUTO else int(r) for r in _common.csv(args.round_to)]
    args.batch_sizes = [int(b) for b in _common.csv(args.batch_sizes)]
    if not set(args.batch_sizes) <= {1, 8}:
        p.error("--batch-sizes takes 1 and/or 8")
    args.runs_b1 = args.runs_b1 or (3 if args.quick else 15)
    args.runs_b8 = args.runs_b8 or (2 if args.quick else 5)
    args.warmup_b1 = 1 if args.quick else 3
    args.warmup_b8 = 1
    if args.quick:
        args.calib_samples = min(args.calib_samples, 8)

    info = _common.machine()
    _common.print_header("speedup: latency ratio vs MACs ratio of trimmed zoo models (CPU)", info)
    started = time.perf_counter()
    results: dict = {}
    for name in _common.csv(args.models):
        bench_model(name, args, results)
    _common.finish(info)

    batches = sorted({int(b) for r in results.values() for v in r["variants"].values() for b in v["latency_ratio"]})
    print(f"summary: latency ratio / MACs ratio (target <= {TARGET:.2f}; below 1 = faster than MACs predict)")
    rows = []
    for name, r in results.items():
        for label, v in r["variants"].items():
            worst = max(v["latency_over_macs"].values())
            rows.append([f"{name} {label}", f"{v['nchwc_convs']}/{v['convs']}", v["macs_ratio"], *[v["latency_ratio"][str(b)] for b in batches],
                         *[v["latency_over_macs"][str(b)] for b in batches], _common.verdict(worst, TARGET)])
    print(_common.table(["model variant", "NCHWc convs", "MACs", *[f"lat b{b}" for b in batches],
                         *[f"lat/MACs b{b}" for b in batches], "verdict"], rows))
    print(f"threads {args.threads}; runs b1 {args.runs_b1}, b8 {args.runs_b8}; scores {args.scores}; wall time "
          f"{time.perf_counter() - started:.0f} s; load average {info['loadavg_1m_at_start']} -> "
          f"{info['loadavg_1m_at_end']}")
    _common.write_json(args.json, {
        "benchmark": "speedup", "machine": info, "target_latency_over_macs": TARGET,
        "config": {"models": _common.csv(args.models), "fractions": args.fractions, "round_to": args.round_to,
                   "size": args.size, "scores": args.scores, "calib_samples": args.calib_samples,
                   "batch_sizes": args.batch_sizes, "threads": args.threads, "runs_b1": args.runs_b1,
                   "runs_b8": args.runs_b8, "warmup_b1": args.warmup_b1, "warmup_b8": args.warmup_b8},
        "models": results,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
