"""The ONNX → trainable torch bridge: run, train and write back an ONNX model through PyTorch.

The only onnxtrim package that imports torch; nothing outside it imports this package unless
fine-tuning or a gradient criterion is asked for.
"""

from .module import OnnxModule, to_torch

__all__ = ["OnnxModule", "to_torch"]
