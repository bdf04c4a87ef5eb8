"""How long analysis and rewriting take, next to building an onnxruntime session for the same model.

Per model (torchvision, random seeded weights, exported at --size), median of --repeats:

  to_graph     `onnxtrim.ir.to_graph(model)`: copy without stored shapes, onnx shape inference with
               data propagation, import into onnx-graphsurgeon;
  analyse      `onnxtrim.analysis.groups.analyse(graph)`;
  apply_plan   `onnxtrim.passes.apply_plan.apply_plan(model, plan)` for a plan removing 30% of every
               prunable group (uniform scores: which channels go does not change the work);
  total        the three together, as `onnxtrim.api.trim` runs them (apply_plan reuses the analysis the
               plan was made from): what "analysis + rewrite" costs a user;
  session      `onnxruntime.InferenceSession(path)` with default options (all optimisations), the
               model read from the same file (page cache warm);
  copy         `onnx.ModelProto().CopyFrom(model)`: copying the input model once, the floor for any
               pure pass that returns a new model with most of the weights rewritten.

Targets: total <= 0.1 s for resnet50, and total < session for every model.

Where the time goes: the pipeline of one model (resnet50 by default) is run under cProfile; the five
functions with the most own time are printed, plus the split of `to_graph` and `apply_plan` into
their callees.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import sys
import time
from pathlib import Path

# this folder (for _common) and the repository root (for the onnxtrim of this checkout)
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import _common
import numpy as np
import onnx

from onnxtrim import ir
from onnxtrim.analysis.groups import analyse
from onnxtrim.criteria.apoz import APoZ
from onnxtrim.criteria.base import Scores
from onnxtrim.passes.apply_plan import apply_plan
from onnxtrim.plan import structure_fingerprint
from onnxtrim.policy import Selection, make_plan
from onnxtrim.runtime import import_ort

TARGET_S = 0.1
TARGET_MODEL = "resnet50"
FRACTION = 0.3


def make_plan_for(model: onnx.ModelProto):
    analysis = analyse(ir.to_graph(model))
    scores = Scores({g.id: np.full(g.size, 0.5) for g in analysis.groups})
    plan = make_plan(analysis, APoZ(), scores, Selection(fraction=FRACTION), fingerprint=structure_fingerprint(model))
    return analysis, plan


def pipeline(model, plan) -> dict[str, float]:
    t0 = time.perf_counter()
    graph = ir.to_graph(model)
    t1 = time.perf_counter()
    analysis = analyse(graph)
    t2 = time.perf_counter()
    apply_plan(model, plan, analysis)
    t3 = time.perf_counter()
    return {"to_graph_s": t1 - t0, "analyse_s": t2 - t1, "apply_plan_s": t3 - t2, "total_s": t3 - t0}


def session_time(path: Path) -> float:
    ort = import_ort()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    t0 = time.perf_counter()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    elapsed = time.perf_counter() - t0
    del session
    return elapsed


def copy_time(model: onnx.ModelProto) -> float:
    t0 = time.perf_counter()
    onnx.ModelProto().CopyFrom(model)
    return time.perf_counter() - t0


def _label(key) -> str:
    filename, line, func = key
    if filename == "~":
        return func
    path = Path(filename)
    parts = path.parts
    short = "/".join(parts[parts.index("onnxtrim"):]) if "onnxtrim" in parts else "/".join(parts[-2:])
    return f"{short}:{line}({func})"


def _short(key) -> str:
    filename, _line, func = key
    return func if filename == "~" else f"{Path(filename).stem}.{func}"


def profile(model, plan, top: int = 5) -> dict:
    profiler = cProfile.Profile()
    profiler.enable()
    apply_plan(model, plan, analyse(ir.to_graph(model)))
    profiler.disable()
    stats = pstats.Stats(profiler)
    stats.calc_callees()
    total = stats.total_tt
    entries = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])
    top_own = [{"function": _label(k), "calls": v[1], "own_s": v[2], "cumulative_s": v[3]}
               for k, v in entries[:top]]
    split = {}
    for wanted in ("to_graph", "apply_plan", "to_model", "analyse"):
        keys = [k for k in stats.stats if k[2] == wanted and "onnxtrim" in k[0]]
        if not keys:
            continue
        callees = stats.all_callees.get(keys[0], {})
        rows = sorted(((_short(c), v[3]) for c, v in callees.items()), key=lambda r: -r[1])
        split[wanted] = {"cumulative_s": stats.stats[keys[0]][3],
                         "callees": [{"function": f, "cumulative_s": s} for f, s in rows[:6]]}
    return {"profiled_total_s": total, "top_own_time": top_own, "split": split}


def main() -> int:
    p = _common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--models", default=None, help="torchvision models, or `encoder` for a BERT-base-shaped "
                                                  "encoder (default resnet18,resnet50,resnet101,vgg16_bn,encoder; "
                                                  "resnet18 with --quick)")
    p.add_argument("--size", type=int, default=None, help="input height and width (default 224; 64 with --quick)")
    p.add_argument("--repeats", type=int, default=None, help="repetitions, median reported (default 3; 1 --quick)")
    p.add_argument("--profile-model", default=None,
                   help=f"model to run under cProfile (default {TARGET_MODEL}, or the first model if it is absent)")
    args = p.parse_args()
    args.models = _common.csv(args.models or ("resnet18" if args.quick else "resnet18,resnet50,resnet101,vgg16_bn,encoder"))
    args.size = args.size or (64 if args.quick else 224)
    args.repeats = args.repeats or (1 if args.quick else 3)
    profile_model = args.profile_model or (TARGET_MODEL if TARGET_MODEL in args.models else args.models[0])

    info = _common.machine()
    _common.print_header("analysis + rewrite time vs onnxruntime session creation", info)
    started = time.perf_counter()
    results: dict = {}
    profiled = None
    for name in args.models:
        path = _common.zoo_model(name, args.size, args.cache_dir)
        model = onnx.load(str(path))
        analysis, plan = make_plan_for(model)
        prunable = sum(1 for g in analysis.groups if g.prunable.size)
        del analysis
        runs, sessions, copies = [], [], []
        for r in range(args.repeats):
            copies.append(copy_time(model))
            # alternate which goes first, so neither always runs on a colder cache
            if r % 2 == 0:
                runs.append(pipeline(model, plan))
                sessions.append(session_time(path))
            else:
                sessions.append(session_time(path))
                runs.append(pipeline(model, plan))
        med = {k: _common.median([run[k] for run in runs]) for k in runs[0]}
        session_s = _common.median(sessions)
        results[name] = {
            "file_mb": os.path.getsize(path) / 2**20, "nodes": len(model.graph.node), "prunable_groups": prunable,
            "channels_removed": plan.removed, "median": med, "session_s": session_s, "runs": runs,
            "sessions_s": sessions, "ratio_total_over_session": med["total_s"] / session_s,
            "copy_s": _common.median(copies), "copies_s": copies,
        }
        print(f"{name}: total {med['total_s']:.3f} s, session {session_s:.3f} s", flush=True)
        if name == profile_model:
            profiled = profile(model, plan)
        del model
    _common.finish(info)

    print()
    print(f"median of {args.repeats} repeat(s), inputs {args.size}x{args.size}, plan removes {FRACTION:.0%} "
          "of every prunable group")
    rows = []
    for name, r in results.items():
        m = r["median"]
        rows.append([name, f"{r['file_mb']:.0f}", r["nodes"], m["to_graph_s"], m["analyse_s"], m["apply_plan_s"],
                     m["total_s"], r["session_s"], f"{r['ratio_total_over_session']:.2f}x", r["copy_s"]])
    print(_common.table(["model", "MB", "nodes", "to_graph s", "analyse s", "apply_plan s", "total s",
                         "session s", "total/session", "copy model s"], rows))
    if profiled is not None:
        print()
        print(f"cProfile of {profile_model} (analyse(to_graph(m)) + apply_plan(m, plan); "
              f"{profiled['profiled_total_s']:.3f} s under the profiler), top 5 by own time:")
        print(_common.table(["function", "calls", "own s", "cumulative s"],
                            [[e["function"], e["calls"], e["own_s"], e["cumulative_s"]]
                             for e in profiled["top_own_time"]]))
        for stage, split in profiled["split"].items():
            callees = ", ".join(f"{c['function']} {c['cumulative_s']:.3f}" for c in split["callees"][:5])
            print(f"  {stage} ({split['cumulative_s']:.3f} s cumulative, all calls): {callees}")
    print()
    verdicts = []
    if TARGET_MODEL in results:
        total = results[TARGET_MODEL]["median"]["total_s"]
        verdicts.append(f"{TARGET_MODEL} total {total:.3f} s vs target {TARGET_S} s: {_common.verdict(total, TARGET_S)}")
    slower = [n for n, r in results.items() if r["ratio_total_over_session"] >= 1.0]
    verdicts.append("total < session creation for every model: " + (
        "meets target" if not slower else f"MISSES target ({', '.join(slower)})"))
    for v in verdicts:
        print(v)
    print(f"wall time {time.perf_counter() - started:.0f} s; load average {info['loadavg_1m_at_start']} -> "
          f"{info['loadavg_1m_at_end']}")
    _common.write_json(args.json, {
        "benchmark": "analysis_time", "machine": info, "target_total_s": TARGET_S, "target_model": TARGET_MODEL,
        "config": {"models": args.models, "size": args.size, "repeats": args.repeats, "fraction": FRACTION,
                   "profile_model": profile_model},
        "models": results, "profile": profiled,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
