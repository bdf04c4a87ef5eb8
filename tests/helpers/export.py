"""Export torchvision architectures (random weights) to ONNX for the test zoo.

Two exporters, because users meet both:

- ``"torchscript"``: ``torch.onnx.export(..., dynamo=False, opset_version=17)``, weights inside the
  ``.onnx`` file, anonymous initializer names, identical tensors shared through ``Identity`` nodes.
- ``"dynamo"``: ``torch.onnx.export(..., dynamo=True)`` with torch's defaults (opset 20 on torch 2.14,
  onnxscript's optimiser, BatchNorm folded, identical initializers deduplicated), weights in a
  ``<name>.onnx.data`` external-data file next to the model, which is the form users get by default.

Both keep the batch dimension dynamic unless ``dynamic_batch=False``. Export chatter (prints, warnings,
C++-level log lines) is captured; it is attached to the exception if the export fails.

Input sizes: each architecture gets the smallest square input it accepts, but at least 32 pixels, so that
every stride-32 network still ends on a real 1x1 map (torchvision convnets mostly accept 16, where the
last stage works on padding). inception_v3 needs 75. vgg16_bn and alexnet get 224: below that their
``AdaptiveAvgPool2d((7, 7))``/``((6, 6))`` upsamples a smaller map, which the TorchScript exporter refuses
("output size that are not factor of input size") and the dynamo exporter writes as a GatherND, not the
Flatten -> Linear over 512x7x7 / 256x6x6 that real users have. vit_b_16 keeps its full widths at
``image_size=32``; vit_tiny and swin_tiny are small configurations of the same torchvision classes.

Weights: torchvision's own random init, seeded, then (``normalize=True``, the default) three changes that
keep the architecture and its exported graph but give activations of order one, so that equivalence tests
with tolerances mean something (with the raw init the outputs are ~1e-14 for efficientnet_b0, ~1e-10 for
the mobilenets, ~1e8 for inception_v3, and exactly 0 for vit, whose head is zero-initialised):

- every BatchNorm's ``running_var`` is set to the mean square of its input over one random batch (measured
  in order, so each BN sees already-normalised inputs; floored at 0.1x the mean over channels);
  ``running_mean`` stays 0, so folded biases stay identical and the TorchScript exporter still shares them
  through ``Identity`` nodes, as it does for the raw init;
- weights the constructor sets to all zeros (vit's head) are drawn from N(0, 0.02^2);
- ConvNeXt's ``layer_scale`` (1e-6 at init, which silences every residual branch) is drawn from U(0.1, 1).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

Exporter = Literal["torchscript", "dynamo"]
EXPORTERS: tuple[Exporter, ...] = ("torchscript", "dynamo")

TORCHSCRIPT_OPSET = 17
EXAMPLE_BATCH = 2  # torch.export specialises a dimension of size 1, so a dynamic batch needs >= 2
SEED = 0


@dataclass(frozen=True)
class ZooEntry:
    """How to build one zoo architecture: a constructor and the input side length (or, for
    models that do not read images, a function making a batch of inputs from a generator)."""

    build: Callable[[], torch.nn.Module]
    size: int
    note: str = ""
    example: Callable[[torch.Generator, int], torch.Tensor] | None = None


def _tv(name: str, **kwargs: object) -> Callable[[], torch.nn.Module]:
    def build() -> torch.nn.Module:
        import torchvision

        return torchvision.models.get_model(name, weights=None, **kwargs)

    return build


def _vit_tiny() -> torch.nn.Module:
    from torchvision.models import VisionTransformer

    return VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=64, mlp_dim=128, num_classes=10
    )


def _swin_tiny() -> torch.nn.Module:
    from torchvision.models import SwinTransformer

    return SwinTransformer(
        patch_size=[4, 4], embed_dim=32, depths=[2, 2], num_heads=[2, 4], window_size=[4, 4], num_classes=10
    )


_CONVNETS_32 = [
    "resnet18",
    "resnet50",
    "resnext50_32x4d",
    "wide_resnet50_2",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "efficientnet_v2_s",
    "densenet121",
    "googlenet",
    "squeezenet1_1",
    "shufflenet_v2_x1_0",
    "regnet_x_400mf",
    "regnet_y_400mf",
    "mnasnet1_0",
    "convnext_tiny",
]

ZOO: dict[str, ZooEntry] = {name: ZooEntry(_tv(name), 32) for name in _CONVNETS_32}
ZOO["googlenet"] = ZooEntry(
    _tv("googlenet", aux_logits=False, init_weights=True), 32, "aux_logits=False (eval drops them anyway)"
)
ZOO["inception_v3"] = ZooEntry(
    _tv("inception_v3", aux_logits=False, init_weights=True), 75, "75 is the documented minimum"
)
ZOO["alexnet"] = ZooEntry(_tv("alexnet"), 224, "224: AdaptiveAvgPool2d(6) sees 6x6, Flatten -> Linear(9216)")
ZOO["vgg16_bn"] = ZooEntry(
    _tv("vgg16_bn"), 224, "224: AdaptiveAvgPool2d(7) sees 7x7, Flatten -> Linear(25088)"
)
ZOO["vit_b_16"] = ZooEntry(
    _tv("vit_b_16", image_size=32),
    32,
    "full vit_b_16 widths (12 layers, 768 hidden, 16px patches); image_size=32 gives 4 patches + class token",
)
ZOO["swin_t"] = ZooEntry(_tv("swin_t"), 32, "full swin_t; 32 px gives 8x8 -> 1x1 maps, windows padded")
ZOO["vit_tiny"] = ZooEntry(
    _vit_tiny, 32, "VisionTransformer(image_size=32, patch_size=8, 2 layers, 2 heads, hidden 64, mlp 128)"
)
ZOO["swin_tiny"] = ZooEntry(
    _swin_tiny, 32, "SwinTransformer(patch 4, embed 32, depths [2,2], heads [2,4], window 4): real shifts"
)


def _bert_encoder() -> torch.nn.Module:
    from tests.helpers.encoder import TinyEncoder

    return TinyEncoder()


def _token_ids(gen: torch.Generator, batch: int) -> torch.Tensor:
    from tests.helpers.encoder import SEQ, VOCAB

    return torch.randint(0, VOCAB, (batch, SEQ), generator=gen)


ZOO["bert_encoder"] = ZooEntry(
    _bert_encoder, 8, "tests/helpers/encoder.py: BERT-style, 2 layers, hidden 32, 4 heads; token ids [batch, 8]",
    example=_token_ids,
)

#: Zoo models the default run leaves to ``pytest -m slow`` (both exporters), each because a smaller
#: model of the same architecture runs by default; the zoo suites take 1.5 minutes each on 2 cores.
SLOW_ZOO: dict[str, str] = {
    "vit_b_16": "86M parameters; vit_tiny is the same VisionTransformer, run by default",
    "swin_t": "28M parameters, 12 attention layers; swin_tiny is the same SwinTransformer, run by default",
    "wide_resnet50_2": "69M parameters; resnet50 is the same bottleneck ResNet, run by default",
    "vgg16_bn": "138M parameters (90 s per exporter); its Conv-BN-ReLU chain runs by default in every ResNet and "
                "MobileNet, its Flatten into a 4096-wide classifier in alexnet",
}
#: (model, exporter) pairs left to ``-m slow``: heavy models keep their TorchScript export in the default run.
SLOW_ZOO_CASES: dict[tuple[str, Exporter], str] = {
    ("alexnet", "dynamo"): "61M parameters; its TorchScript export runs by default",
    ("efficientnet_v2_s", "dynamo"): "21M parameters, 40 SE blocks; its TorchScript export runs by default",
}


def slow_reason(name: str, exporter: Exporter) -> str:
    """Why (name, exporter) is out of the default run, or "" where it is in."""
    return SLOW_ZOO_CASES.get((name, exporter), SLOW_ZOO.get(name, ""))


def zoo_model(
    name: str, *, batch: int = EXAMPLE_BATCH, normalize: bool = True
) -> tuple[torch.nn.Module, torch.Tensor]:
    """Build zoo architecture ``name`` with seeded random weights, in eval mode, and an example input.

    The example is ``torch.randn(batch, 3, size, size)`` from a generator seeded with ``SEED``.
    ``normalize`` rescales the init so that activations are of order one (module docstring).
    """
    try:
        entry = ZOO[name]
    except KeyError:
        raise KeyError(f"unknown zoo model {name!r}; known: {', '.join(ZOO)}") from None
    torch.manual_seed(SEED)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. googlenet's init_weights FutureWarning
        model = entry.build().eval()
    gen = torch.Generator().manual_seed(SEED)

    def inputs(count: int) -> torch.Tensor:
        if entry.example is not None:
            return entry.example(gen, count)
        return torch.randn(count, 3, entry.size, entry.size, generator=gen)

    example = inputs(batch)
    if normalize:
        calibration_batch = 16 if entry.size <= 75 else 4  # enough pixels per channel in the 1x1 stages
        _normalize(model, inputs(calibration_batch), gen)
    return model, example


@torch.no_grad()
def _normalize(model: torch.nn.Module, calibration: torch.Tensor, gen: torch.Generator) -> None:
    for pname, param in model.named_parameters():
        if pname.endswith("layer_scale"):
            param.copy_(torch.rand(param.shape, generator=gen) * 0.9 + 0.1)
        elif pname.endswith("weight") and param.dim() >= 2 and not param.any():
            param.copy_(torch.randn(param.shape, generator=gen) * 0.02)

    def set_var(module: torch.nn.modules.batchnorm._BatchNorm, args: tuple[torch.Tensor, ...]) -> None:
        x = args[0]
        dims = [d for d in range(x.dim()) if d != 1]
        square = x.pow(2).mean(dim=dims)
        module.running_mean.zero_()
        # the floor stops channels that are near zero on the calibration batch from being amplified
        # up to 1/sqrt(eps) on other inputs (and compounding through the network)
        module.running_var.copy_(square.clamp(min=0.1 * float(square.mean())))

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    hooks = [m.register_forward_pre_hook(set_var) for m in norms]
    try:
        model(calibration)
    finally:
        for hook in hooks:
            hook.remove()


@contextlib.contextmanager
def captured_output() -> Iterator[io.StringIO]:
    """Silence stdout/stderr at file-descriptor level (C++ logs too), ``sys.stdout``/``sys.stderr``
    and Python warnings; the captured text is in the yielded buffer once the block has ended."""
    buffer = io.StringIO()
    python_level = io.StringIO()
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    caught: list[warnings.WarningMessage] = []
    with tempfile.TemporaryFile() as sink:
        try:
            for fd in saved:
                os.dup2(sink.fileno(), fd)
            with (
                contextlib.redirect_stdout(python_level),
                contextlib.redirect_stderr(python_level),
                warnings.catch_warnings(record=True) as caught,
            ):
                warnings.simplefilter("always")
                yield buffer
        finally:
            for fd, dup in saved.items():
                os.dup2(dup, fd)
                os.close(dup)
            sink.seek(0)
            buffer.write(sink.read().decode("utf-8", "replace"))
            buffer.write(python_level.getvalue())
            buffer.writelines(f"{w.category.__name__}: {w.message}\n" for w in caught)


def export_torch(
    model: torch.nn.Module,
    example: torch.Tensor,
    path: Path,
    exporter: Exporter,
    *,
    dynamic_batch: bool = True,
) -> Path:
    """Export ``model`` (switched to eval mode) called on ``example`` to ``path`` and return ``path``.

    The graph has one input ``input`` and one output ``output``; axis 0 of both is named ``batch`` and
    left dynamic when ``dynamic_batch``. With ``exporter="dynamo"`` the weights go to
    ``path.name + ".data"`` beside ``path``; an existing data file there is removed first, because
    onnx appends to external-data files.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    log = io.StringIO()
    try:
        # no torch.no_grad(): under no_grad nn.MultiheadAttention takes its fused fast path
        # (aten::_native_multi_head_attention), which the TorchScript exporter cannot export
        with captured_output() as log:
            if exporter == "torchscript":
                _export_torchscript(model, example, path, dynamic_batch)
            elif exporter == "dynamo":
                _export_dynamo(model, example, path, dynamic_batch)
            else:
                raise ValueError(f"unknown exporter {exporter!r}; use one of {EXPORTERS}")
    except Exception as exc:
        if hasattr(exc, "add_note"):  # Python >= 3.11
            exc.add_note(f"exporter output:\n{log.getvalue()[-4000:]}")
        raise
    return path


def _export_torchscript(model: torch.nn.Module, example: torch.Tensor, path: Path, dynamic: bool) -> None:
    axes = {"input": {0: "batch"}, "output": {0: "batch"}} if dynamic else None
    torch.onnx.export(
        model,
        (example,),
        str(path),
        dynamo=False,
        opset_version=TORCHSCRIPT_OPSET,
        input_names=["input"],
        output_names=["output"],
        dynamic_axes=axes,
    )


def _export_dynamo(model: torch.nn.Module, example: torch.Tensor, path: Path, dynamic: bool) -> None:
    data = path.with_name(path.name + ".data")
    data.unlink(missing_ok=True)
    shapes = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic else None
    with tempfile.TemporaryDirectory(prefix="onnxtrim-export-") as artifacts:
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=True,
            external_data=True,
            input_names=["input"],
            output_names=["output"],
            dynamic_shapes=shapes,
            verbose=False,
            artifacts_dir=artifacts,
        )
