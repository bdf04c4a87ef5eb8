"""What-if: would cheaper in-graph probes bring calibration near plain inference?

`calibration_cost.py` shows where calibration's extra time goes: the probe reductions over every
observed activation (Equal, Cast, ReduceSum x2, ReduceL1, ReduceSumSquare over axes (0, 2, 3)) and
the layout reorders onnxruntime adds so they can read those activations. This script times, on the
same model and batch, steady state (each session built and warmed up by one run before --timed timed
runs), in rotating order over --runs rounds (median reported; one session alive at a time), the model
with:

  plain            no probes (the baseline, ratio 1);
  current          `onnxtrim.calibration.probes.add_probes`, all four statistics (what the tool runs);
  current[z]       the same with kinds=("zeros",), the only statistic APoZ reads;
  two-stage+relu   PROTOTYPE: the same four statistics, each reduced over the spatial axes first
                   (keepdims=0, giving [N, C]) and then over the batch axis; zero counts stay int32;
                   where the observed tensor is a Relu output (x >= 0, so sum |x| = sum x) the L1
                   reduction is dropped and abs_sum is taken from sum;
  two-stage+relu+f32z  PROTOTYPE: as above, but the zero indicator is cast to float32 (onnxruntime's
                   vectorised float reduction) for the H*W stage, exact while H*W <= 2**24, and the
                   small [N, C] partial counts are cast to int64 before the batch stage;
  two-stage[z]+f32z    PROTOTYPE: zero counts only, as in the previous line.

The prototypes are built here, not in onnxtrim; before timing, their outputs on one batch are
compared with `add_probes`' (zero counts must be identical, sums equal to float32 rounding).
They are evidence for a change to `onnxtrim/calibration/probes.py`, not something the tool does.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

# this folder (for _common) and the repository root (for the onnxtrim of this checkout)
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import _common
import numpy as np
import onnx
from onnx import TensorProto, helper

from onnxtrim import ir, runtime
from onnxtrim.analysis.groups import analyse
from onnxtrim.calibration.collect import observed_tensors
from onnxtrim.calibration.probes import STAT_KINDS, add_probes

AXES_AS_INPUT_SINCE = {"ReduceSum": 13, "ReduceL1": 18, "ReduceSumSquare": 18}


def two_stage_probes(model: onnx.ModelProto, observed, kinds=STAT_KINDS, relu_aware: bool = False,
                     float_zeros: bool = False):
    """Prototype probes: per-(kind, observed index) output names, reductions split in two stages."""
    augmented = onnx.ModelProto()
    augmented.CopyFrom(model)
    graph = augmented.graph
    opset = ir.default_opset(model)
    relu_outputs = {n.output[0] for n in model.graph.node if n.op_type == "Relu"} if relu_aware else set()
    names: dict[tuple[int, str], str] = {}
    shapes = {v.name: [d.dim_value if d.HasField("dim_value") else 0 for d in v.type.tensor_type.shape.dim]
              for v in onnx.shape_inference.infer_shapes(_skeleton(model)).graph.value_info}

    def reduce(op: str, source: str, stages: list[list[int]], prefix: str) -> str:
        current = source
        for j, axes in enumerate(stages):
            kind_op = op if j == 0 else "ReduceSum"
            out = f"{prefix}_s{j}"
            if opset >= AXES_AS_INPUT_SINCE[kind_op]:
                axes_name = f"{prefix}_axes{j}"
                graph.initializer.append(helper.make_tensor(axes_name, TensorProto.INT64, [len(axes)], axes))
                graph.node.append(helper.make_node(kind_op, [current, axes_name], [out], name=out, keepdims=0))
            else:
                graph.node.append(helper.make_node(kind_op, [current], [out], name=out, keepdims=0, axes=axes))
            current = out
        return current

    for k, obs in enumerate(observed):
        prefix = f"whatif_probe_{k}"
        if obs.axis == 1 and obs.rank >= 3:
            stages = [list(range(2, obs.rank)), [0]]
        else:
            stages = [[i for i in range(obs.rank) if i != obs.axis]]
        # float zero counts are exact while one stage-1 sum counts at most 2**24 values (H*W per image)
        spatial = shapes.get(obs.name)
        exact_in_float = len(stages) == 2 and spatial is not None and 0 < int(np.prod(spatial[2:])) <= 2**24
        for kind in kinds:
            if kind == "zeros":
                zero = f"{prefix}_zero"
                graph.initializer.append(helper.make_tensor(zero, obs.elem_type, [], [0]))
                graph.node.append(helper.make_node("Equal", [obs.name, zero], [f"{prefix}_eq"]))
                if float_zeros and exact_in_float:
                    # float indicator, MLAS float reduction over H*W, then the small [N, C] in int64
                    graph.node.append(helper.make_node("Cast", [f"{prefix}_eq"], [f"{prefix}_eqf"],
                                                       to=TensorProto.FLOAT))
                    first = reduce("ReduceSum", f"{prefix}_eqf", stages[:1], f"{prefix}_zf")
                    graph.node.append(helper.make_node("Cast", [first], [f"{prefix}_zi"], to=TensorProto.INT64))
                    names[(k, kind)] = reduce("ReduceSum", f"{prefix}_zi", stages[1:], f"{prefix}_zeros")
                else:
                    graph.node.append(helper.make_node("Cast", [f"{prefix}_eq"], [f"{prefix}_eqi"],
                                                       to=TensorProto.INT32))
                    names[(k, kind)] = reduce("ReduceSum", f"{prefix}_eqi", stages, f"{prefix}_zeros")
            elif kind == "sum":
                names[(k, kind)] = reduce("ReduceSum", obs.name, stages, f"{prefix}_sum")
            elif kind == "abs_sum":
                if obs.name in relu_outputs and "sum" in kinds:
                    continue  # taken from sum
                names[(k, kind)] = reduce("ReduceL1", obs.name, stages, f"{prefix}_abs")
            elif kind == "sq_sum":
                names[(k, kind)] = reduce("ReduceSumSquare", obs.name, stages, f"{prefix}_sq")
    for out in dict.fromkeys(names.values()):
        graph.output.append(helper.make_empty_tensor_value_info(out))
    return augmented, names, relu_outputs


def _skeleton(model: onnx.ModelProto) -> onnx.ModelProto:
    """The graph without weight payloads (dims and types only), for cheap shape inference."""
    out = onnx.ModelProto()
    out.ir_version = model.ir_version
    out.opset_import.extend(model.opset_import)
    out.graph.node.extend(model.graph.node)
    out.graph.input.extend(model.graph.input)
    out.graph.output.extend(model.graph.output)
    for init in model.graph.initializer:
        stub = out.graph.initializer.add()
        stub.name, stub.data_type = init.name, init.data_type
        stub.dims.extend(init.dims)
        if int(np.prod(init.dims, dtype=np.int64)) <= 1024:
            stub.CopyFrom(init)
        else:
            stub.data_location = onnx.TensorProto.EXTERNAL
            entry = stub.external_data.add()
            entry.key, entry.value = "location", "not-loaded"
    return out


def check(current_values: dict, variant_values: dict, observed, relu_outputs) -> str:
    worst = 0.0
    for (k, kind), expected in current_values.items():
        key = (k, kind)
        if key not in variant_values:
            if kind == "abs_sum" and observed[k].name in relu_outputs:
                key = (k, "sum")
            else:
                continue
        got = variant_values[key]
        if kind == "zeros":
            if not np.array_equal(got.astype(np.int64), expected.astype(np.int64)):
                return f"MISMATCH in zero counts of {observed[k].name}"
        else:
            scale = np.maximum(np.abs(expected), 1.0)
            worst = max(worst, float(np.max(np.abs(got - expected) / scale)))
    return f"identical zero counts, sums within {worst:.1e}"


def main() -> int:
    p = _common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="torchvision model (default resnet50; resnet18 with --quick)")
    p.add_argument("--size", type=int, default=None, help="input height and width (default 224; 64 with --quick)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--runs", type=int, default=None, help="rounds (default 3; 2 with --quick)")
    p.add_argument("--timed", type=int, default=None, help="timed runs per variant per round (default 2; 1 --quick)")
    args = p.parse_args()
    args.model = args.model or ("resnet18" if args.quick else "resnet50")
    args.size = args.size or (64 if args.quick else 224)
    args.runs = args.runs or (2 if args.quick else 3)
    args.timed = args.timed or (1 if args.quick else 2)

    info = _common.machine()
    _common.print_header("probe formulations (what-if): steady-state cost of in-graph statistics", info)
    started = time.perf_counter()
    model = onnx.load(str(_common.zoo_model(args.model, args.size, args.cache_dir)))
    observed = observed_tensors(analyse(ir.to_graph(model)))
    feeds = {"input": np.random.default_rng(0).standard_normal((args.batch_size, 3, args.size, args.size),
                                                                dtype=np.float32)}

    current, probes = add_probes(model, observed)
    current_z, _ = add_probes(model, observed, ("zeros",))
    current_names = {(k, kind): probe.outputs[kind] for k, probe in enumerate(probes) for kind in STAT_KINDS}
    prototypes = {
        "two-stage+relu": two_stage_probes(model, observed, relu_aware=True),
        "two-stage+relu+f32z": two_stage_probes(model, observed, relu_aware=True, float_zeros=True),
        "two-stage[z]+f32z": two_stage_probes(model, observed, ("zeros",), float_zeros=True),
    }
    protos = {"plain": model, "current": current, "current[z]": current_z,
              **{label: proto[0] for label, proto in prototypes.items()}}
    del current, current_z

    # One session alive at a time (six resnet50 sessions at batch 32 hold too much memory): each round
    # builds, warms up (one run, not timed) and times each variant in turn, in rotating order.
    labels = list(protos)
    times: dict[str, list[float]] = {label: [] for label in labels}
    outputs: dict[str, dict[str, np.ndarray]] = {}
    out_counts: dict[str, int] = {}
    for r in range(args.runs):
        order = labels[r % len(labels):] + labels[: r % len(labels)]
        print(f"round {r + 1}/{args.runs}", flush=True)
        for label in order:
            session = runtime.make_session(protos[label], ("cpu",))
            names = [o.name for o in session.get_outputs()]
            values = session.run(None, feeds)
            if r == 0 and label != "plain":
                outputs[label] = {n: v for n, v in zip(names, values) if n != "output"}
            out_counts[label] = len(names) - 1
            del values
            for _ in range(args.timed):
                t0 = time.perf_counter()
                session.run(None, feeds)
                times[label].append(time.perf_counter() - t0)
            del session
    _common.finish(info)

    # correctness of the prototypes against add_probes, on the warm-up batch
    current_values = {key: outputs["current"][name] for key, name in current_names.items()}
    checks = {}
    for label, (_, names, relu_outputs) in prototypes.items():
        values = {key: outputs[label][name] for key, name in names.items()}
        checks[label] = check(current_values, values, observed, relu_outputs)

    base = _common.median(times["plain"])
    rows, results = [], {}
    for label in labels:
        med = _common.median(times[label])
        results[label] = {"median_s": med, "runs_s": times[label], "ratio_over_plain": med / base,
                          "outputs": out_counts[label], "check": checks.get(label, "library")}
        rows.append([label, out_counts[label], med, f"{med / base:.3f}x", checks.get(label, "-")])
    print(f"{args.model} at {args.size}x{args.size}, batch {args.batch_size}, {len(observed)} observed tensors; "
          f"median of {args.runs} rounds x {args.timed} timed runs per variant, each after a warm-up run")
    print(_common.table(["variant", "extra outputs", "s/batch", "/plain", "check against add_probes"], rows))
    print(f"wall time {time.perf_counter() - started:.0f} s; load average {info['loadavg_1m_at_start']} -> "
          f"{info['loadavg_1m_at_end']}")
    _common.write_json(args.json, {
        "benchmark": "probe_formulations", "machine": info,
        "config": {"model": args.model, "size": args.size, "batch_size": args.batch_size, "runs": args.runs,
                   "timed_per_round": args.timed},
        "variants": results,
        "ratio_current_over_plain": results["current"]["ratio_over_plain"],
        "ratio_best_prototype_over_plain": min(results[k]["ratio_over_plain"] for k in prototypes),
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
