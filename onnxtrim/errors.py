"""Typed errors: the library raises these, the CLI maps each class to an exit code.

Every message is meant to be read by a user in one line: it names the file, tensor or node
and the rule that was broken, and where possible what to do about it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def one_line(detail: object, limit: int = 400) -> str:
    """A library's (often multi-line) message as one line for our errors, cut at `limit` characters."""
    line = " ".join(str(detail).split())
    return line if len(line) <= limit else line[:limit] + "..."


class OnnxTrimError(Exception):
    """Base class of every error onnxtrim raises on purpose.

    A message that tells the user to set an option spells it as a Python caller writes it
    (`overwrite=True`) and lists it in `options` (that text -> the `TrimConfig` field), so that the
    command line can name its own flag instead (`--overwrite`) without the library knowing about flags.
    """

    def __init__(self, *args: object, options: Mapping[str, str] | None = None) -> None:
        super().__init__(*args)
        self.options: dict[str, str] = dict(options or {})

    def render(self, flag: Callable[[str], str] | None = None) -> str:
        """The message, with each option named by `flag(field)` when given (the CLI's spelling)."""
        text = str(self)
        if flag is not None:
            for spelled, option in self.options.items():
                text = text.replace(spelled, flag(option))
        return text


class ConfigError(OnnxTrimError):
    """Options that contradict each other or are out of range."""


class DependencyError(OnnxTrimError):
    """An optional dependency (onnxruntime, torch) is missing for the requested work."""


class ModelError(OnnxTrimError):
    """The model file cannot be read, is invalid, or is unsafe to process."""


class CalibrationError(OnnxTrimError):
    """Calibration data cannot be read or does not fit the model's inputs."""


class PlanError(OnnxTrimError):
    """A pruning plan does not match the model it is applied to."""


class PassError(OnnxTrimError):
    """A graph rewrite failed; the message names the pass and the passes before it."""


class VerificationError(OnnxTrimError):
    """The trimmed model differs from the original beyond the requested tolerance.

    `result` holds the finished `TrimResult` when trimming got that far, so a caller can still
    save the report (the command line does; the model is then not written).
    """

    result: Any = None


class OutputError(OnnxTrimError):
    """An output cannot be written (exists, is the input, read-only destination, disk full)."""


class BridgeError(OnnxTrimError):
    """The ONNX model cannot be run faithfully as a torch module: an op or attribute value without a torch
    mapping (the message names the op and the node), or outputs that differ from onnxruntime's."""


class FinetuneError(OnnxTrimError):
    """Fine-tuning diverged: the loss became NaN or Inf (the message names the step and what to try).

    Not a BridgeError: the bridge ran the model faithfully, the training did not converge. Nothing
    trained is kept (weights that produced NaN are no model), so the command line writes nothing
    and exits with its own code; `--iterations` keeps the rounds finished before (see recovery.iterate).
    """
