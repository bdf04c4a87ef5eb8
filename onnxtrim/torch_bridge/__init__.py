"""The ONNX → trainable torch bridge: run, train and write back an ONNX model through PyTorch.

The only onnxtrim package that imports torch; nothing outside it imports this package unless
fine-tuning or a gradient criterion is asked for.
"""

from .check import Agreement, OutputAgreement, bridge, check_against_onnxruntime
from .module import OnnxModule, to_torch
from .write_back import write_back

__all__ = ["Agreement", "OnnxModule", "OutputAgreement", "bridge", "check_against_onnxruntime", "to_torch",
           "write_back"]
