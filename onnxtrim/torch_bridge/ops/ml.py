"""The ai.onnx.ml post-processing that skl2onnx appends to classifiers.

ZipMap turns the probability tensor into a sequence of {label: probability} maps, which torch has
no type for: the module returns the probability tensor itself (columns in the order of the
ZipMap's class labels, as onnxruntime's maps are), so losses can use it, and
`check_against_onnxruntime` compares onnxruntime's maps against it column by column.
ArrayFeatureExtractor picks the predicted labels (integers; string labels have no torch dtype
and are refused when the module is built).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .registry import op

T = torch.Tensor
ML = "ai.onnx.ml"


@op("ZipMap", 1, domain=ML)
def zip_map(x: T, *, classlabels_int64s: Sequence[int] | None = None,
            classlabels_strings: Sequence[str] | None = None) -> T:
    return x


@op("ArrayFeatureExtractor", 1, domain=ML)
def array_feature_extractor(x: T, indices: T) -> T:
    flat = indices.reshape(-1).to(torch.int64)
    if x.dim() == 1:
        return x.index_select(0, flat).reshape(1, -1)
    return x.index_select(-1, flat)
