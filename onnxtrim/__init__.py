"""onnxtrim: structured channel pruning of ONNX models from activation statistics."""

from .errors import (
    BridgeError,
    CalibrationError,
    ConfigError,
    DependencyError,
    FinetuneError,
    ModelError,
    OnnxTrimError,
    OutputError,
    PassError,
    PlanError,
    VerificationError,
)

__version__ = "0.1.0"

__all__ = [
    "BridgeError",
    "CalibrationError",
    "ConfigError",
    "DependencyError",
    "FinetuneError",
    "ModelError",
    "OnnxTrimError",
    "OutputError",
    "PassError",
    "PlanError",
    "VerificationError",
    "__version__",
]
