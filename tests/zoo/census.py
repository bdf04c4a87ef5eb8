"""Op census of the torch-exported model zoo (a script, not a test).

    python tests/zoo/census.py                       # every zoo model x both exporters
    python tests/zoo/census.py resnet18 vit_tiny     # some models
    python tests/zoo/census.py --exporters dynamo --markdown tests/zoo/census.md --json /tmp/census.json

Each (model, exporter) runs in its own subprocess (bounded memory, clean timings), one after another so
that timings are not skewed by two exports sharing the cores. For each it records: build, export, check and
run wall times, file sizes, peak RSS, whether the full checker passes, whether onnxruntime (CPU,
optimisations off) runs batch 2 and matches torch (max |delta|), whether batches 1 and 3 also run, the
opset, op-type counts, and the pattern summaries of ``patterns.py``. Exports go to a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CENSUS_MODELS = [
    "resnet18", "resnet50", "resnext50_32x4d", "wide_resnet50_2", "mobilenet_v2", "mobilenet_v3_small",
    "mobilenet_v3_large", "efficientnet_b0", "efficientnet_v2_s", "densenet121", "googlenet", "inception_v3",
    "squeezenet1_1", "vgg16_bn", "alexnet", "shufflenet_v2_x1_0", "regnet_x_400mf", "regnet_y_400mf",
    "mnasnet1_0", "convnext_tiny", "vit_b_16", "swin_t", "vit_tiny", "swin_tiny",
]  # fmt: skip
COMMON_OPS = {"Conv", "BatchNormalization", "Relu", "Add", "Gemm", "MatMul"}


def census_one(name: str, exporter: str, workdir: Path) -> dict:
    """Export one model with one exporter and describe the result."""
    import numpy as np
    import onnx
    import torch

    from tests.helpers import onnx_utils
    from tests.helpers.export import export_torch, zoo_model
    from tests.zoo import patterns

    torch.set_num_threads(os.cpu_count() or 1)
    row: dict = {"model": name, "exporter": exporter}
    t = time.perf_counter()
    model, example = zoo_model(name)
    row["build_s"] = time.perf_counter() - t
    row["input"] = list(example.shape)
    row["params_m"] = sum(p.numel() for p in model.parameters()) / 1e6
    with torch.no_grad():
        reference = model(example).numpy()
    path = workdir / f"{name}.{exporter}.onnx"
    t = time.perf_counter()
    try:
        export_torch(model, example, path, exporter)
    except Exception as exc:  # noqa: BLE001 - a census records failures instead of stopping
        row["export_s"] = time.perf_counter() - t
        row["error"] = f"export: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        return row
    row["export_s"] = time.perf_counter() - t
    files = [path, *path.parent.glob(path.name + ".data")]
    row["size_mb"] = sum(f.stat().st_size for f in files) / 2**20
    row["files"] = [f.name for f in files]
    t = time.perf_counter()
    try:
        onnx_utils.check(path)
        row["checker"] = "ok"
    except Exception as exc:  # noqa: BLE001 - recorded
        row["checker"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    row["check_s"] = time.perf_counter() - t
    t = time.perf_counter()
    try:
        (out,) = onnx_utils.run(path, {"input": example.numpy()})
        row["max_abs_diff"] = onnx_utils.max_abs_diff(reference, out)
        row["max_abs_ref"] = float(np.abs(reference).max())
        for batch in (1, 3):
            feed = np.random.default_rng(batch).standard_normal((batch, *example.shape[1:]), dtype=np.float32)
            (o,) = onnx_utils.run(path, {"input": feed})
            row[f"batch{batch}_shape"] = list(o.shape)
    except Exception as exc:  # noqa: BLE001 - recorded
        row["run_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
    row["run_s"] = time.perf_counter() - t
    proto = onnx.load(str(path), load_external_data=False)
    row["opset"] = onnx_utils.opset(proto)
    row["ir_version"] = proto.ir_version
    row["input_dims"] = onnx_utils.input_shapes(proto)["input"]
    row["nodes"] = len(proto.graph.node)
    row["ops"] = dict(onnx_utils.op_counts(proto).most_common())
    row["patterns"] = patterns.describe(proto)
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return row


def _worker(argv: list[str]) -> int:
    name, exporter, out = argv
    with tempfile.TemporaryDirectory(prefix="onnxtrim-census-") as tmp:
        row = census_one(name, exporter, Path(tmp))
    Path(out).write_text(json.dumps(row))
    return 0


def run_all(models: list[str], exporters: list[str], timeout: float) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="onnxtrim-census-rows-") as tmp:
        for name in models:
            for exporter in exporters:
                out = Path(tmp) / f"{name}.{exporter}.json"
                cmd = [sys.executable, __file__, "--worker", name, exporter, str(out)]
                t = time.perf_counter()
                try:
                    proc = subprocess.run(
                        cmd, check=False, capture_output=True, text=True, timeout=timeout, cwd=ROOT
                    )
                    tail = (proc.stderr or proc.stdout)[-500:]
                except subprocess.TimeoutExpired:
                    tail = f"timed out after {timeout:.0f}s"
                if out.exists():
                    row = json.loads(out.read_text())
                else:
                    row = {"model": name, "exporter": exporter, "error": f"worker died: {tail}"}
                row["process_s"] = time.perf_counter() - t
                rows.append(row)
                print(_summary_line(row), flush=True)
    return rows


def _status(row: dict) -> str:
    if "error" in row:
        return "EXPORT FAILS"
    if "run_error" in row:
        return "ORT FAILS"
    ok = "ok" if row["checker"] == "ok" else "CHECKER FAILS"
    dyn = "dyn" if row.get("batch1_shape", [0])[0] == 1 and row.get("batch3_shape", [0])[0] == 3 else "STATIC"
    rel = row["max_abs_diff"] / max(row["max_abs_ref"], 1e-30)
    return f"{ok}/{dyn} d={row['max_abs_diff']:.0e} ({rel:.0e} rel)"


def _extra_ops(row: dict) -> str:
    ops = row.get("ops", {})
    return " ".join(f"{op}:{n}" for op, n in ops.items() if op not in COMMON_OPS)


def _summary_line(row: dict) -> str:
    return (
        f"{row['model']:<20} {row['exporter']:<11} export {row.get('export_s', float('nan')):6.1f}s "
        f"{row.get('size_mb', 0):7.1f}MB  {_status(row):<28} {_extra_ops(row)}"
    )


def markdown(rows: list[dict]) -> str:
    lines = [
        "# Op census of the torch-exported zoo",
        "",
        "Generated by `python tests/zoo/census.py --markdown tests/zoo/census.md` (seeded random weights,",
        "normalised init: `tests/helpers/export.py`). Timings are wall seconds on the machine that ran it",
        "(see the footer); they vary by +-50 % from run to run on a shared 2-core machine.",
        "",
        (
            "| model | exporter | input | params M | export s | MB | opset | check | runs / max abs diff |"
            " ops beyond Conv/BN/Relu/Add/Gemm/MatMul |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        check = r.get("checker", "-")
        lines.append(
            f"| {r['model']} | {r['exporter']} | {r.get('input', ['?'] * 4)[-1]} | {r.get('params_m', 0):.1f} | "
            f"{r.get('export_s', float('nan')):.1f} | {r.get('size_mb', 0):.0f} | {r.get('opset', '-')} | "
            f"{'ok' if check == 'ok' else check} | {_status(r)} | {_extra_ops(r) or '-'} |"
        )
    lines += ["", "## Patterns", ""]
    for r in rows:
        lines.append(f"### {r['model']} / {r['exporter']}")
        lines.append("")
        if "error" in r:
            lines += [f"- **{r['error']}**", ""]
            continue
        if "run_error" in r:
            lines.append(f"- **onnxruntime: {r['run_error']}**")
        lines.append(
            f"- opset {r['opset']}, IR {r['ir_version']}, {r['nodes']} nodes, input dims {r['input_dims']}, "
            f"files {', '.join(r['files'])}, peak RSS {r['peak_rss_mb']:.0f} MB"
        )
        for key, value in r["patterns"].items():
            if value:
                lines.append(f"- {key}: {value}")
        lines.append(f"- op counts: {', '.join(f'{k} {v}' for k, v in r['ops'].items())}")
        lines.append("")
    lines += ["## Totals", "", *totals(rows)]
    return "\n".join(lines) + "\n"


def totals(rows: list[dict]) -> list[str]:
    out = []
    for exporter in sorted({r["exporter"] for r in rows}):
        sub = [r for r in rows if r["exporter"] == exporter]
        out.append(
            f"- {exporter}: export {sum(r.get('export_s', 0) for r in sub):.0f} s, build "
            f"{sum(r.get('build_s', 0) for r in sub):.0f} s, check {sum(r.get('check_s', 0) for r in sub):.0f} s, "
            f"run {sum(r.get('run_s', 0) for r in sub):.0f} s, {len(sub)} models"
        )
    out.append(
        f"- all: export {sum(r.get('export_s', 0) for r in rows):.0f} s; whole census (incl. process start, "
        f"torch import, reference runs) {sum(r.get('process_s', 0) for r in rows):.0f} s; "
        f"{os.cpu_count()} cores"
    )
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return _worker(argv[1:])
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("models", nargs="*", default=CENSUS_MODELS)
    parser.add_argument("--exporters", nargs="+", default=["torchscript", "dynamo"])
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per model and exporter")
    parser.add_argument("--markdown", type=Path, help="also write the census as Markdown here")
    parser.add_argument("--json", type=Path, help="also write the raw rows as JSON here")
    args = parser.parse_args(argv)
    rows = run_all(args.models, args.exporters, args.timeout)
    print("\n".join(totals(rows)))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    if args.markdown:
        args.markdown.write_text(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
