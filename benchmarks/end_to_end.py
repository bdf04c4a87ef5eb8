"""What a whole trim costs against plain onnxruntime inference of the same samples.

`onnxtrim.api.trim` + `TrimResult.save` (load and check, analyse, calibrate on the calibration part,
plan, rewrite, verify both models on the holdout, write model and report) on a torchvision model over
N samples read from a directory of `.npy` files, against plain inference of the same N samples from the
same files: the model read with `onnx.load` (no checker), one onnxruntime session with the options
onnxtrim's sessions get (`runtime.make_session`: full graph optimisation, onnxruntime's default
threads), every batch run, all inside the timed region. Both run in this process, alternated over `--rounds`; the ratio is the median of the
per-round ratios (target: <= 1.3).

Ideally a trim costs calibration (about 1.1x inference of the calibration samples: the probes) plus
verification (both models on the holdout): with the default 20% holdout and a trimmed model at about
60% of the original's latency, 0.8 x 1.1 + 0.2 x (1 + 0.6) = 1.2x inference of all samples.
The per-stage seconds of the last trim are printed with the ratio.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import _common
import numpy as np
import onnx

from onnxtrim import runtime
from onnxtrim.api import trim
from onnxtrim.calibration.safe_files import load_npy
from onnxtrim.config import TrimConfig

TARGET = 1.3


def write_samples(directory: Path, samples: int, size: int, per_file: int) -> list[Path]:
    rng = np.random.default_rng(0)
    files = []
    for k, start in enumerate(range(0, samples, per_file)):
        count = min(per_file, samples - start)
        path = directory / f"batch_{k:03d}.npy"
        np.save(path, rng.standard_normal((count, 3, size, size), dtype=np.float32))
        files.append(path)
    return files


def plain(model_path: Path, files: list[Path]) -> float:
    """What a user's own inference costs: the model read (no onnx checker), one session with the options
    onnxtrim's sessions get, every batch run."""
    started = time.perf_counter()
    session = runtime.make_session(onnx.load(model_path), ("cpu",))
    name = session.get_inputs()[0].name
    for path in files:
        runtime.run(session, None, {name: np.ascontiguousarray(load_npy(str(path), path.name))})
    return time.perf_counter() - started


def whole_trim(config: TrimConfig) -> tuple[float, dict]:
    started = time.perf_counter()
    result = trim(config)
    result.save()
    return time.perf_counter() - started, result.report


def main() -> int:
    p = _common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--models", default="resnet18", help="torchvision models (default resnet18)")
    p.add_argument("--samples", type=int, default=None, help="samples (default 256; 64 with --quick)")
    p.add_argument("--size", type=int, default=None, help="input height and width (default 224; 64 with --quick)")
    p.add_argument("--rounds", type=int, default=None, help="alternated rounds (default 3; 1 with --quick)")
    p.add_argument("--fraction", type=float, default=0.3,
                   help="share of every group removed (default 0.3; random weights leave no dead channel, so "
                        "the default lossless threshold would remove nothing)")
    args = p.parse_args()
    samples = args.samples or (64 if args.quick else 256)
    size = args.size or (64 if args.quick else 224)
    rounds = args.rounds or (1 if args.quick else 3)
    info = _common.machine()
    _common.print_header("end_to_end: a whole trim against plain inference of the same samples", info)
    results = {}
    rows = []
    for name in _common.csv(args.models):
        model_path = _common.zoo_model(name, size, args.cache_dir)
        with tempfile.TemporaryDirectory(prefix="onnxtrim-e2e-") as tmp:
            work = Path(tmp)
            (work / "calib").mkdir()
            files = write_samples(work / "calib", samples, size, 32)
            config = TrimConfig(model=model_path, data=str(work / "calib"), fraction=args.fraction,
                                output=work / "out.onnx", overwrite=True)
            plain(model_path, files[:1])  # warm the page cache and onnxruntime's first-use costs alike
            per_round, report = [], {}
            for _ in range(rounds):
                base = plain(model_path, files)
                spent, report = whole_trim(config)
                per_round.append({"plain_s": base, "trim_s": spent, "ratio": spent / base})
        ratio = _common.median([r["ratio"] for r in per_round])
        stages = report["timings_s"]
        results[name] = {"rounds": per_round, "ratio": ratio, "timings_s": stages,
                         "macs_ratio": report["cost"]["macs_ratio"], "samples": samples,
                         "calibration_samples": report["calibration"]["samples"],
                         "holdout_samples": (report["fidelity"] or {}).get("samples")}
        rows.append([name, _common.median([r["plain_s"] for r in per_round]),
                     _common.median([r["trim_s"] for r in per_round]), ratio,
                     " ".join(f"{k} {v:.2f}" for k, v in stages.items()), _common.verdict(ratio, TARGET)])
        print(f"{name}: {samples} samples ({report['calibration']['samples']} calibration, "
              f"{results[name]['holdout_samples']} holdout), MACs kept {report['cost']['macs_ratio']:.2f}", flush=True)
    _common.finish(info)
    print()
    print(_common.table(["model", "plain s", "trim s", "trim/plain", "stages of the last trim (s)", "verdict"], rows))
    print(f"target <= {TARGET}; {rounds} rounds, median of per-round ratios; load average "
          f"{info['loadavg_1m_at_start']} -> {info['loadavg_1m_at_end']}")
    _common.write_json(args.json, {"benchmark": "end_to_end", "machine": info, "target": TARGET,
                                   "config": {"models": _common.csv(args.models), "samples": samples, "size": size,
                                              "rounds": rounds, "fraction": args.fraction},
                                   "models": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
