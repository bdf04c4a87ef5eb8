"""onnxtrim: structured channel pruning of ONNX models from activation statistics.

    import onnxtrim
    result = onnxtrim.trim(onnxtrim.TrimConfig(model="model.onnx", data="calib/", apoz=0.9))
    result.save()
"""

import importlib
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from .api import TrimResult, trim
    from .config import TrimConfig

# `import onnxtrim` stays as light as the errors: `trim`, `TrimConfig` and `TrimResult` load with their
# modules on first use (PEP 562), so a caller that only catches onnxtrim's errors, and `onnxtrim --help`,
# never import onnx, onnxruntime or (ever, on a plain trim) torch.
_LAZY = {"trim": "api", "TrimResult": "api", "TrimConfig": "config"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'onnxtrim' has no attribute {name!r}")


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
    "TrimConfig",
    "TrimResult",
    "VerificationError",
    "__version__",
    "trim",
]


def __dir__() -> list[str]:
    return sorted(__all__)
