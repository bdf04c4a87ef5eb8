"""The ONNX → trainable torch bridge: run, train and write back an ONNX model through PyTorch.

The only onnxtrim package that imports torch; nothing outside it imports this package unless
fine-tuning or a gradient criterion is asked for.
"""

from .check import Agreement, OutputAgreement, bridge, check_against_onnxruntime
from .finetune import FinetuneConfig, FinetuneLog, finetune
from .masks import MaskSet
from .module import OnnxModule, to_torch
from .teacher import TeacherCache
from .write_back import write_back

__all__ = ["Agreement", "FinetuneConfig", "FinetuneLog", "MaskSet", "OnnxModule", "OutputAgreement",
           "TeacherCache", "bridge", "check_against_onnxruntime", "finetune", "to_torch", "write_back"]
