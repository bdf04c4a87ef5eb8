"""Calibration memory does not grow with the number of samples.

For each sample count N (default 64, 256, 1024) a fresh Python process loads the model (resnet18 at
64x64 by default, exported once), analyses it and runs `collect_stats` over N samples in batches of
32, from one of two sources:

  generator  an in-memory generator that makes each batch on the fly (collect_stats alone);
  npy        a temporary directory of .npy files (one batch per file) read through the tool's own
             readers, `open_data` + `iter_batches` (the `--data DIR` path of the command line).

The child reports `resource.getrusage(RUSAGE_SELF).ru_maxrss` (peak resident memory of the whole
process: Python, onnx, the onnxruntime session, the batches) at the end, its resident memory just
before calibration starts, and tracemalloc's peak during calibration (Python and numpy allocations;
onnxruntime's own arena is not traced, ru_maxrss covers it). A fresh process per N means one N's peak
cannot hide another's. "flat" means peak(N_max) / peak(N_min) <= 1.10 for the whole process.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# this folder (for _common) and the repository root (for the onnxtrim of this checkout)
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import _common

FLAT = 1.10


def _rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(args) -> None:
    """Runs in a fresh process: load, analyse, calibrate, report one JSON line."""
    import tracemalloc

    import numpy as np
    import onnx

    from onnxtrim import ir
    from onnxtrim.analysis.groups import analyse
    from onnxtrim.calibration.collect import collect_stats
    from onnxtrim.calibration.readers import Batch, iter_batches, model_input_specs, open_data
    from onnxtrim.calibration.requests import basic_requests
    from onnxtrim.criteria.apoz import activation_points
    from onnxtrim.plan import structure_fingerprint

    model = onnx.load(args.model)
    analysis = analyse(ir.to_graph(model))
    fingerprint = structure_fingerprint(model)
    shape = (3, args.size, args.size)

    def generated():
        rng = np.random.default_rng(0)
        for start in range(0, args.samples, args.batch_size):
            rows = min(args.batch_size, args.samples - start)
            yield Batch({"input": rng.standard_normal((rows, *shape), dtype=np.float32)}, f"generated {start}",
                        np.arange(start, start + rows, dtype=np.int64))

    if args.source == "generator":
        batches = generated()
    else:
        inputs = model_input_specs(model)
        batches = iter_batches(open_data(args.data_dir, inputs), inputs, batch_size=args.batch_size,
                               max_samples=args.samples, holdout=0.0, part="all")
    import gc

    gc.collect()
    before_rss, before_max = _rss_mb(), _maxrss_mb()
    tracemalloc.start()
    t0 = time.perf_counter()
    requests = [r for point, _ in activation_points(analysis) for r in basic_requests(point.tensor, point.axis)]
    stats = collect_stats(model, analysis, batches, requests, fingerprint=fingerprint)
    elapsed = time.perf_counter() - t0
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(json.dumps({
        "samples_requested": args.samples, "samples_seen": stats.samples, "source": args.source,
        "rss_before_calibration_mb": before_rss, "maxrss_before_calibration_mb": before_max,
        "peak_rss_mb": _maxrss_mb(), "tracemalloc_peak_mb": traced_peak / 2**20, "calibration_s": elapsed,
    }))


def write_npy_dir(directory: Path, samples: int, batch: int, size: int) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    for k, start in enumerate(range(0, samples, batch)):
        rows = min(batch, samples - start)
        np.save(directory / f"x_{k:05d}.npy", rng.standard_normal((rows, 3, size, size), dtype=np.float32))


def main() -> int:
    p = _common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--model", default="resnet18", help="torchvision model (default resnet18)")
    p.add_argument("--size", type=int, default=None, help="input height and width (default 64)")
    p.add_argument("--samples", default=None, help="sample counts (default 64,256,1024; 32,128 with --quick)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--sources", default="generator,npy", help="any of generator,npy (default both)")
    p.add_argument("--child", action="store_true", help=argparse_hidden())
    p.add_argument("--source", default="generator", help=argparse_hidden())
    p.add_argument("--data-dir", default=None, help=argparse_hidden())
    args = p.parse_args()
    args.size = args.size or 64
    if args.child:
        args.samples = int(args.samples)
        child(args)
        return 0
    counts = [int(n) for n in _common.csv(args.samples or ("32,128" if args.quick else "64,256,1024"))]
    sources = _common.csv(args.sources)
    if not set(sources) <= {"generator", "npy"}:
        p.error("--sources takes generator and/or npy")

    info = _common.machine()
    _common.print_header("calibration memory vs number of samples (fresh process per count)", info)
    started = time.perf_counter()
    model_path = _common.zoo_model(args.model, args.size, args.cache_dir)
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="onnxtrim-bench-npy-") as tmp:
        data_dir = Path(tmp)
        if "npy" in sources:
            write_npy_dir(data_dir, max(counts), args.batch_size, args.size)
        for source in sources:
            results[source] = []
            for n in counts:
                command = [sys.executable, str(Path(__file__).resolve()), "--child", "--model", str(model_path),
                           "--size", str(args.size), "--samples", str(n), "--batch-size", str(args.batch_size),
                           "--source", source, "--data-dir", str(data_dir)]
                done = subprocess.run(command, check=True, capture_output=True, text=True)
                row = json.loads(done.stdout.strip().splitlines()[-1])
                results[source].append(row)
                print(f"{source} N={n}: peak RSS {row['peak_rss_mb']:.1f} MB", flush=True)
    _common.finish(info)

    print()
    print(f"{args.model} at {args.size}x{args.size}, batch {args.batch_size}; MB = 2**20 bytes")
    summary = {}
    for source, rows in results.items():
        table = [[r["samples_seen"], r["rss_before_calibration_mb"], r["peak_rss_mb"],
                  r["peak_rss_mb"] - r["rss_before_calibration_mb"], r["tracemalloc_peak_mb"], r["calibration_s"]]
                 for r in rows]
        print(f"source: {source}")
        print(_common.table(["samples", "RSS before MB", "peak RSS MB", "peak - before MB", "tracemalloc peak MB",
                             "time s"], table))
        first, last = rows[0], rows[-1]
        ratio = last["peak_rss_mb"] / first["peak_rss_mb"]
        traced = last["tracemalloc_peak_mb"] / max(first["tracemalloc_peak_mb"], 1e-9)
        grow = (last["peak_rss_mb"] - first["peak_rss_mb"]) / max(last["samples_seen"] - first["samples_seen"], 1)
        summary[source] = {"ratio_peak_rss_max_over_min": ratio, "ratio_tracemalloc_peak_max_over_min": traced,
                           "growth_mb_per_1000_samples": grow * 1000}
        verdict = "flat" if ratio <= FLAT else "GROWS"
        print(f"peak RSS N={last['samples_seen']} / N={first['samples_seen']}: {ratio:.3f}x ({verdict}; "
              f"<= {FLAT:.2f}x is flat), tracemalloc peak ratio {traced:.3f}x, "
              f"{grow * 1000:+.1f} MB per 1000 samples")
        print()
    print(f"wall time {time.perf_counter() - started:.0f} s; load average {info['loadavg_1m_at_start']} -> "
          f"{info['loadavg_1m_at_end']}")
    _common.write_json(args.json, {
        "benchmark": "calibration_memory", "machine": info, "flat_threshold": FLAT,
        "config": {"model": args.model, "size": args.size, "samples": counts, "batch_size": args.batch_size,
                   "sources": sources},
        "results": results, "summary": summary,
        "ratio_peak_rss_max_over_min": max(s["ratio_peak_rss_max_over_min"] for s in summary.values()),
    })
    return 0


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    sys.exit(main())
