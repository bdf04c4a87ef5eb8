"""Trained values back into the ONNX model, without re-exporting it.

The trimmed ONNX graph stays the model a deployment pipeline knows: only the payload of the
initializers that are Parameters changes (same name, dims and element type: a float16 weight
stays float16). Nodes, names, opsets, inputs, outputs, value_info and dynamic axes are those of
the original because nothing else is touched. A model whose weights are still in external data
files is refused, as `to_torch` refuses it: load it with `onnxtrim.model_io.load_model`, and save
the result with `onnxtrim.model_io.save_model`, which writes external data again when asked to.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from ..errors import BridgeError
from .module import OnnxModule

_PAYLOAD_FIELDS = ("float_data", "int32_data", "string_data", "int64_data", "double_data", "uint64_data", "raw_data")


def _array(value: torch.Tensor, init: onnx.TensorProto) -> np.ndarray:
    value = value.detach().cpu()
    if init.data_type == onnx.TensorProto.BFLOAT16:
        return value.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    dtype = onnx.helper.tensor_dtype_to_np_dtype(init.data_type)
    return value.numpy().astype(dtype, copy=False)


def write_back(model: onnx.ModelProto, module: OnnxModule) -> onnx.ModelProto:
    """A copy of `model` whose Parameter initializers hold the module's current values."""
    params = module.onnx_parameters()
    out = onnx.ModelProto()
    out.CopyFrom(model)
    seen: set[str] = set()
    for init in out.graph.initializer:
        param = params.get(init.name)
        if param is None:
            continue
        if init.data_location == onnx.TensorProto.EXTERNAL:
            raise BridgeError(f"initializer '{init.name}' is still in an external data file: load the model "
                              "with onnxtrim.model_io.load_model first")
        if tuple(param.shape) != tuple(init.dims):
            raise BridgeError(f"Parameter for initializer '{init.name}' has shape {list(param.shape)}, the "
                              f"initializer {list(init.dims)}: not the model the module was built from")
        array = _array(param, init)
        if not np.all(np.isfinite(array.astype(np.float32))):
            raise BridgeError(f"Parameter for initializer '{init.name}' holds NaN or Inf")
        for payload in _PAYLOAD_FIELDS:  # every other field (name, dims, type, doc_string...) stays as it was
            init.ClearField(payload)
        init.raw_data = numpy_helper.from_array(array).raw_data
        seen.add(init.name)
    missing = sorted(set(params) - seen)
    if missing:
        raise BridgeError(f"initializer '{missing[0]}' is not in the model: not the model the module was built from")
    return out
