"""Tiny graphs for the bridge's per-op tests, and the check every case runs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from onnxtrim.torch_bridge import check_against_onnxruntime, to_torch

IR_VERSION = 10  # onnxruntime 1.32 reads IR 10 for every opset tested here


def single(op: str, feeds: Mapping[str, np.ndarray], *, consts: Mapping[str, np.ndarray] | None = None,
           inputs: Sequence[str] | None = None, opset: int = 17, outputs: int = 1, domain: str = "",
           **attrs: Any) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A one-node model: `feeds` are graph inputs, `consts` initializers, `inputs` the node's input order
    ("" for an omitted optional input; default: feeds then consts)."""
    consts = dict(consts or {})
    order = list(inputs) if inputs is not None else [*feeds, *consts]
    outs = [f"y{i}" for i in range(outputs)]
    node = helper.make_node(op, order, outs, domain=domain, **attrs)
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), list(a.shape))
         for n, a in feeds.items()],
        [helper.make_empty_tensor_value_info(o) for o in outs],
        [numpy_helper.from_array(np.asarray(v), n) for n, v in consts.items()])
    imports = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(graph, opset_imports=imports, ir_version=IR_VERSION)
    model = onnx.shape_inference.infer_shapes(model)
    return model, dict(feeds)


def assert_op_matches(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], *, rtol: float = 1e-5,
                      atol: float = 1e-6, grad: bool = True) -> None:
    """The module equals onnxruntime on `feeds`; with `grad`, every float feed gets a finite gradient."""
    module = to_torch(model)
    check_against_onnxruntime(model, module, feeds, rtol=rtol, atol=atol)
    if not grad:
        return
    tensors = {n: torch.from_numpy(np.array(a)) for n, a in feeds.items()}
    floats = [n for n, t in tensors.items() if t.dtype.is_floating_point]
    for n in floats:
        tensors[n].requires_grad_(True)
    outs = [o for o in module(tensors) if o.dtype.is_floating_point and o.requires_grad]
    if not floats or not outs:
        return
    sum(o.double().sum() for o in outs).backward()
    for n in floats:
        g = tensors[n].grad
        assert g is None or torch.isfinite(g).all(), n


def rand(*shape: int, seed: int = 0, dtype: Any = np.float32) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)
