"""Shared plumbing of the benchmark scripts: header, zoo exports, tables, JSON.

Not a library module: the scripts put the repository root on `sys.path` so that they measure
the onnxtrim of this checkout, and import this file as `_common` (it sits next to them).
Models come from torchvision with random weights (`weights=None`, seeded); they are exported
once per (name, input size) in a subprocess, so that torch is never imported by a process
that times or measures memory, and cached on disk.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

OPSET = 17
DEFAULT_CACHE = Path(os.environ.get("ONNXTRIM_BENCH_CACHE", Path.home() / ".cache" / "onnxtrim-bench"))


# ----------------------------------------------------------------------------------------------------
# Command line and header


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a tiny run (seconds): small inputs, few repetitions")
    p.add_argument("--json", metavar="PATH", help="also write every number measured to this JSON file")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE,
                   help=f"where exported models are kept (default {DEFAULT_CACHE}; env ONNXTRIM_BENCH_CACHE)")
    return p


def csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def machine() -> dict[str, Any]:
    """The hardware and software a number was measured on, and how busy the machine was."""
    from onnxtrim.bench.device import cpu_name

    info: dict[str, Any] = {
        "cpu": cpu_name(),
        "logical_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    for module in ("onnxruntime", "onnx", "numpy"):
        try:
            info[module] = __import__(module).__version__
        except ImportError:
            info[module] = None
    try:
        info["loadavg_1m_at_start"] = round(os.getloadavg()[0], 2)
    except OSError:
        info["loadavg_1m_at_start"] = None
    return info


def print_header(title: str, info: dict[str, Any]) -> None:
    argv = " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])
    print(f"== {title}")
    print(f"command:  {argv}")
    print(f"machine:  {info['cpu']}, {info['logical_cores']} cores usable, {info['platform']}")
    print(f"software: onnxruntime {info['onnxruntime']}, onnx {info['onnx']}, numpy {info['numpy']}, "
          f"python {info['python']}")
    load = info.get("loadavg_1m_at_start")
    if load is not None:
        busy = " (BUSY: other work shares these cores; absolute times are inflated, ratios less so)" \
            if load > 0.5 * info["logical_cores"] else ""
        print(f"load:     1-minute load average {load} at start{busy}")
    print()


def finish(info: dict[str, Any]) -> None:
    try:
        info["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    except OSError:
        info["loadavg_1m_at_end"] = None


def write_json(path: str | None, payload: dict[str, Any]) -> None:
    if not path:
        return
    payload = {"command": [Path(sys.executable).name, *sys.argv], **payload}
    Path(path).write_text(json.dumps(payload, indent=2, sort_keys=True, default=_jsonable) + "\n", encoding="utf-8")
    print(f"\nwrote {path}")


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# ----------------------------------------------------------------------------------------------------
# Tables and small statistics


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths)))
    out = [line, "  ".join("-" * w for w in widths)]
    for row in cells:
        out.append("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths))))
    return "\n".join(out)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return float("nan")
    mid = n // 2
    return ordered[mid] if n % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


def verdict(value: float, target: float) -> str:
    return "meets target" if value <= target else "MISSES target"


# ----------------------------------------------------------------------------------------------------
# torchvision zoo, exported once


def zoo_model(name: str, size: int, cache_dir: Path) -> Path:
    """Path of `name` (a torchvision classifier, random seeded weights) exported at size x size.

    The batch dimension is symbolic; spatial dimensions are static. The export runs in a child
    process (torch stays out of the measuring process) and is written atomically to the cache.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    version = "_v2" if name == "encoder" else ""  # v2: distinct weights per layer (v1 shared one layer's)
    path = cache_dir / f"{name}_{size}_opset{OPSET}{version}.onnx"
    if path.exists():
        return path
    started = time.perf_counter()
    print(f"exporting {name} at {size}x{size} to {path} ...", flush=True)
    subprocess.run([sys.executable, str(Path(__file__).resolve()), "export", name, str(size), str(path)],
                   check=True)
    print(f"exported {name} in {time.perf_counter() - started:.1f} s", flush=True)
    return path


def _export(name: str, size: int, path: Path) -> None:
    import warnings

    import torch
    import torchvision

    torch.manual_seed(0)
    if name == "encoder":
        net, x = _encoder(torch), torch.randint(0, 1000, (1, size))
    elif name.startswith("vit_"):  # torchvision's ViTs take their image size at construction
        net = getattr(torchvision.models, name)(weights=None, image_size=size).eval()
        x = torch.randn(1, 3, size, size)
    else:
        net = getattr(torchvision.models, name)(weights=None).eval()
        x = torch.randn(1, 3, size, size)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), str(tmp), dynamo=False, opset_version=OPSET, input_names=["input"],
                          output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    os.replace(tmp, path)


def _encoder(torch):
    """A BERT-base-shaped encoder in plain torch (12 layers, 768 hidden, 12 heads, GELU MLP of 3072,
    post-norm); `size` is the sequence length."""
    nn = torch.nn

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(1000, 768)
            layer = nn.TransformerEncoderLayer(768, 12, 3072, dropout=0.0, activation="gelu", batch_first=True)
            self.layers = nn.TransformerEncoder(layer, 12, enable_nested_tensor=False)
            for module in self.layers.modules():  # the layers are copies of one: give each its own weights,
                if module is not self.layers and hasattr(module, "reset_parameters"):  # as a trained model has
                    module.reset_parameters()
                if isinstance(module, nn.MultiheadAttention):
                    module._reset_parameters()
            self.head = nn.Linear(768, 2)

        def forward(self, ids):
            return self.head(self.layers(self.embed(ids))[:, 0])

    return Encoder().eval()


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "export":
    _export(sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]))
