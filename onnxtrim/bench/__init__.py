"""Latency benchmarking: is the trimmed model faster on this provider, and by how much?

The only onnxtrim package besides calibration and verification allowed to import onnxruntime.
"""

from .harness import SCHEMA_VERSION, BenchConfig, BenchResult, Timing, benchmark, measure_interleaved

__all__ = ["SCHEMA_VERSION", "BenchConfig", "BenchResult", "Timing", "benchmark", "measure_interleaved"]
