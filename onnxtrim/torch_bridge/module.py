"""`OnnxModule`: an ONNX graph as a trainable `torch.nn.Module`.

Why an interpreter of our own rather than an existing converter (checked on this project's
machines with torch 2.14.1): onnx2torch 1.5.15, the most used one, has no converter for Shape-19
and so fails on the default (dynamo) export of a ViT ("Converter is not implemented ... Shape,
version=19"), the same for Split-18, Reshape-19, Gelu-20 and others the dynamo exporter emits; on
the TorchScript export of the same ViT it converts, but keeps 68,350 weight values as buffers
against 13,002 as Parameters (MatMul weights are untrainable). onnx2pytorch 0.6.0 leaves
LayerNorm untrainable and onnx2fx 0.0.1 trains nothing unless told (shared/README.md). None of
them keeps the ONNX initializer names, which write-back needs, and onnxtrim does not need the
torch module to be re-exported (the ONNX graph stays the model): so the bridge is a small
interpreter of the graph itself, one function per op revision (`ops/`), whose Parameters are the
ONNX initializers by name.

What becomes what:

- a float initializer of two or more elements read as data (directly or through Identity) is one
  `nn.Parameter`, keyed by a sanitised form of its ONNX name (`module.weights`; `onnx_names` maps
  back, `parameter(onnx_name)` looks up); the same initializer used by several nodes, as the
  TorchScript exporter shares identical biases through Identity, is one tied Parameter;
- other initializers, Constant nodes and everything folded from them are buffers;
- an initializer that is also a graph input is an optional input: fed by name it overrides, else
  its initializer value (a buffer, never trained) is used; positional inputs are the graph inputs
  that are not initializers, as onnxruntime's calibration readers see them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from ..errors import BridgeError, one_line
from .program import Program, compile_graph, sanitize

Feeds = Mapping[str, Any] | Sequence[Any]


class OnnxModule(nn.Module):
    """The graph of an ONNX model run by torch; build with `to_torch(model)`.

    `module(x1, x2)` or `module({"x1": x1, ...})` returns a tuple of the graph outputs in graph
    order (numpy arrays are accepted and moved to the module's device). `capture=[names]` also
    returns `{name: tensor}` for those intermediate tensors; a captured tensor that requires grad
    retains its gradient, so after `loss.backward()` `captured[name].grad` is ∂L/∂a (Taylor).
    """

    def __init__(self, program: Program) -> None:
        super().__init__()
        self._program = program
        self.input_names = list(program.inputs)
        self.optional_input_names = list(program.optional_inputs)
        self.output_names = list(program.outputs)
        keys = sanitize(program.parameters)
        self.weights = nn.ParameterDict()
        for name, value in program.parameters.items():
            self.weights[keys[name]] = nn.Parameter(value)
        self.onnx_names = {key: name for name, key in keys.items()}
        # slots in the dict's own iteration order, whatever order it keeps
        self._param_slots = [program.slots[self.onnx_names[key]] for key in self.weights]
        self.consts = nn.Module()
        buffer_keys = sanitize(program.buffers)
        for name, value in program.buffers.items():
            self.consts.register_buffer(buffer_keys[name], value, persistent=False)
        self._buffer_slots = [program.slots[n] for n in program.buffers]
        self._template: list[Any] = [None] * program.n_slots
        for s, value in program.baked.items():
            self._template[s] = value
        self._input_slots = [program.slots[n] for n in program.inputs]
        self._output_slots = [program.slots[n] for n in program.outputs]
        program.parameters.clear()  # the Parameters and buffers own the values now (and follow .to())
        program.buffers.clear()

    # -- names ----------------------------------------------------------------------------------

    def parameter(self, onnx_name: str) -> nn.Parameter:
        """The Parameter of the ONNX initializer `onnx_name`."""
        for key, name in self.onnx_names.items():
            if name == onnx_name:
                return self.weights[key]
        raise KeyError(f"no Parameter for initializer '{onnx_name}'")

    @torch.no_grad()
    def assign(self, onnx_name: str, value: np.ndarray, *, trainable: bool | None = None) -> None:
        """Set the Parameter of `onnx_name` to `value` (of its shape); `trainable=False` stops
        training it (a mask a schedule sets, say)."""
        param = self.parameter(onnx_name)
        param.copy_(torch.as_tensor(np.asarray(value)).reshape(param.shape).to(param))
        if trainable is not None:
            param.requires_grad_(trainable)

    def onnx_parameters(self) -> dict[str, nn.Parameter]:
        """ONNX initializer name → Parameter, in initializer order."""
        return {self.onnx_names[key]: p for key, p in self.weights.items()}

    @property
    def tensor_names(self) -> list[str]:
        """Every tensor that `capture` can name (folded constants are not among them)."""
        computed = {s for step in self._program.steps for s in step.outputs}
        return [n for n, s in self._program.slots.items() if s in computed or s in self._input_slots]

    # -- running --------------------------------------------------------------------------------

    def forward(self, *args: Any, capture: Sequence[str] | None = None) -> Any:
        env = self._environment(args)
        steps, release = self._program.steps, self._program.release
        keep = capture is not None
        index = 0
        try:
            for index, step in enumerate(steps):
                result = step.fn(*[None if s < 0 else env[s] for s in step.inputs])
                if len(step.outputs) == 1:
                    env[step.outputs[0]] = result[0] if type(result) is tuple else result  # a Split in one
                else:
                    for s, value in zip(step.outputs, result):
                        if s >= 0:
                            env[s] = value
                if not keep:
                    for s in release[index]:
                        env[s] = None
        except BridgeError as exc:
            step = steps[index]
            raise BridgeError(f"op '{step.op}' at node '{step.label}': {exc}") from None
        except (RuntimeError, ValueError, IndexError, TypeError) as exc:
            step = steps[index]
            raise BridgeError(f"op '{step.op}' at node '{step.label}' failed in torch: {one_line(exc)}") from exc
        outputs = tuple(env[s] for s in self._output_slots)
        if not keep:
            return outputs
        return outputs, self._captured(env, capture or ())

    def _captured(self, env: list[Any], names: Sequence[str]) -> dict[str, torch.Tensor]:
        found: dict[str, torch.Tensor] = {}
        for name in names:
            s = self._program.slots.get(name)
            value = None if s is None else env[s]
            if not isinstance(value, torch.Tensor):
                raise KeyError(f"tensor '{name}' is not computed by the module (unknown or folded constant)")
            if value.requires_grad and not value.is_leaf:
                value.retain_grad()
            found[name] = value
        return found

    def _environment(self, args: tuple[Any, ...]) -> list[Any]:
        env = list(self._template)
        for s, p in zip(self._param_slots, self.weights.values()):
            env[s] = p
        for s, b in zip(self._buffer_slots, self.consts._buffers.values()):
            env[s] = b
        device = self._device()
        if len(args) == 1 and isinstance(args[0], Mapping):
            feeds = dict(args[0])
            unknown = set(feeds) - set(self.input_names) - set(self.optional_input_names)
            if unknown:
                raise BridgeError(f"unknown input(s) {', '.join(sorted(map(str, unknown)))}; the model takes "
                                  f"{', '.join(self.input_names + self.optional_input_names)}")
            missing = [n for n in self.input_names if n not in feeds]
            if missing:
                raise BridgeError(f"input '{missing[0]}' not given")
            for name, value in feeds.items():
                env[self._program.slots[name]] = _as_tensor(value, device)
        else:
            if len(args) != len(self.input_names):
                raise BridgeError(f"{len(args)} inputs given, the model takes {len(self.input_names)} "
                                  f"({', '.join(self.input_names)})")
            for s, value in zip(self._input_slots, args):
                env[s] = _as_tensor(value, device)
        for name, default_slot in self._program.optional_inputs.items():
            s = self._program.slots[name]
            if env[s] is None:
                env[s] = env[default_slot]
        return env

    def _device(self) -> torch.device | None:
        for p in self.weights.values():
            return p.device
        for b in self.consts._buffers.values():
            return b.device if b is not None else None
        return None


def _as_tensor(value: Any, device: torch.device | None) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value if device is None or value.device == device else value.to(device)
    return torch.as_tensor(np.asarray(value), device=device)


def to_torch(model: onnx.ModelProto, *,
             trainable: Callable[[onnx.TensorProto], bool] | None = None) -> OnnxModule:
    """The ONNX model as a trainable module; raises BridgeError naming the op and node it cannot map.

    `trainable(initializer) -> bool` overrides which float initializers become Parameters (the
    default rule is in `program.default_trainable`). External data must already be loaded.
    """
    return OnnxModule(compile_graph(model, trainable))
