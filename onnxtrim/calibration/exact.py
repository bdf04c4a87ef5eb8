"""Exact sums of float64 values, so statistics merged in any order agree bit for bit.

Floating-point addition is not associative: calibrating batches 0..9 in one run and merging
shards {0, 2, 4, ...} and {1, 3, 5, ...} gives totals that differ in the last bits. Every
float64 is an integer multiple of 2**-1074, so each value is kept as a Python integer scaled
by 2**SCALE and sums are integer sums: exact, and rounded to float64 only when read (Python
rounds integer division correctly). Counts (integers below 2**53) are exact in float64 and
need none of this.
"""

from __future__ import annotations

import numpy as np

# 2**-1074 is the smallest float64; frexp gives its mantissa as 0.5 * 2**-1073, i.e. 2**52 * 2**-1126.
SCALE = 1126
_ONE = 1 << SCALE


def to_exact(values: np.ndarray) -> np.ndarray:
    """float64 values -> object array of Python ints equal to value * 2**SCALE."""
    values = np.asarray(values, dtype=np.float64)
    mantissa, exponent = np.frexp(values)
    integers = (mantissa * 2.0**53).astype(np.int64).astype(object)
    return np.left_shift(integers, (exponent.astype(np.int64) - 53 + SCALE).astype(object))


def to_float(exact: np.ndarray) -> np.ndarray:
    """Correctly rounded float64 values of exact sums."""
    return np.array([value / _ONE for value in exact.tolist()], dtype=np.float64).reshape(exact.shape)


def to_bytes(exact: np.ndarray) -> np.ndarray:
    """uint8 [n, width]: each sum as a little-endian two's-complement integer, for .npz files."""
    ints = exact.reshape(-1).tolist()
    width = max([(abs(v).bit_length() + 8) // 8 for v in ints] + [1])
    raw = b"".join(v.to_bytes(width, "little", signed=True) for v in ints)
    return np.frombuffer(raw, dtype=np.uint8).reshape(len(ints), width)


def from_bytes(raw: np.ndarray) -> np.ndarray:
    rows = np.asarray(raw, dtype=np.uint8)
    if rows.ndim != 2:
        raise ValueError("exact sums must be stored as a 2-D uint8 array")
    out = np.empty(len(rows), dtype=object)
    out[:] = [int.from_bytes(row.tobytes(), "little", signed=True) for row in rows]
    return out
