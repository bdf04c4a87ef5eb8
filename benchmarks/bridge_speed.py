"""Training speed of the ONNX → torch bridge against the same network written natively in torch.

One fine-tune step = zero_grad, forward, mean-squared loss on the logits, backward, Adam step, on the
same batch every time, on CPU. The bridged modules come from torchvision resnet18 (random seeded weights)
exported by both torch exporters; both exports fold BatchNorm into the convolutions, so the strict
baseline is native resnet18 with its BatchNorms folded the same way (`fuse_conv_bn_eval`): the same
arithmetic, written as torch modules. Native resnet18 in train() mode (batch statistics, what a user
of torch would fine-tune) is timed too, for scale. Variants run interleaved (A B C D A B C D ...) so drift
affects all alike; the medians of the timed steps are compared.

    PYTHONPATH=. python benchmarks/bridge_speed.py                  # batch 16, 224x224
    PYTHONPATH=. python benchmarks/bridge_speed.py --size 64 --steps 20
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path
from typing import Any

import _common

TARGET = 1.2


def build_native(folded: bool) -> Any:
    import torch
    import torchvision
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None)
    if not folded:
        return net.train()
    net.eval()

    def fold(module: torch.nn.Module) -> None:
        names = list(module._modules)
        for name in names:
            child = module._modules[name]
            fold(child)
        for conv_name, bn_name in (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")):
            if isinstance(module._modules.get(conv_name), torch.nn.Conv2d) and bn_name in module._modules:
                module._modules[conv_name] = fuse_conv_bn_eval(module._modules[conv_name], module._modules[bn_name])
                module._modules[bn_name] = torch.nn.Identity()
        down = module._modules.get("downsample")
        if isinstance(down, torch.nn.Sequential) and len(down) == 2:
            module._modules["downsample"] = torch.nn.Sequential(fuse_conv_bn_eval(down[0], down[1]))

    fold(net)
    return net


def export(exporter: str, size: int, cache_dir: Path) -> Path:
    """The TorchScript export is the other benchmarks' cached one; the dynamo export is cached beside it."""
    import torch

    if exporter == "torchscript":
        return _common.zoo_model("resnet18", size, cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"resnet18_{size}_dynamo.onnx"
    if path.exists():
        return path
    net = build_native(folded=False).eval()
    x = torch.randn(2, 3, size, size)
    tmp = path.with_name(f".{path.name}.tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), str(tmp), dynamo=True, external_data=False, input_names=["input"],
                          output_names=["output"], verbose=False,
                          dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},))
    tmp.replace(path)
    return path


def train_step(module: Any, optimizer: Any, x: Any, target: Any, bridged: bool) -> float:
    import torch

    started = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    out = module(x)[0] if bridged else module(x)
    loss = torch.nn.functional.mse_loss(out, target)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    p = _common.parser(__doc__ or "")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--steps", type=int, default=10, help="timed steps per variant (after warm-up)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--exporters", default="torchscript,dynamo", help="which exports to bridge (default both)")
    args = p.parse_args(argv)
    exporters = _common.csv(args.exporters)
    if args.quick:  # seconds: the dynamo export alone takes a minute on 2 cores
        args.batch, args.size, args.steps, args.warmup, exporters = 4, 64, 3, 1, ["torchscript"]

    import onnx
    import torch

    from onnxtrim.torch_bridge import check_against_onnxruntime, to_torch

    if args.threads:
        torch.set_num_threads(args.threads)
    info = _common.machine()
    info["torch"] = torch.__version__
    info["torch_threads"] = torch.get_num_threads()
    _common.print_header("bridge training speed: one fine-tune step, bridged vs native resnet18", info)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {args.batch}, "
          f"{args.size}x{args.size}, {args.steps} timed steps per variant after {args.warmup} warm-up\n")

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=gen)
    target = torch.randn(args.batch, 1000, generator=gen)
    variants: dict[str, tuple[Any, bool]] = {
        "native (BN folded)": (build_native(folded=True), False),
        "native train()": (build_native(folded=False), False),
    }
    agreement: dict[str, float] = {}
    for exporter in exporters:
        model = onnx.load(export(exporter, args.size, args.cache_dir))
        module = to_torch(model)
        agreement[exporter] = check_against_onnxruntime(model, module, {"input": x[:2].numpy()}, rtol=1e-3,
                                                        atol=1e-4).max_rel
        variants[f"bridge ({exporter})"] = (module, True)
    runs = {name: (m, torch.optim.Adam(m.parameters(), lr=1e-5), bridged)
            for name, (m, bridged) in variants.items()}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(args.warmup + args.steps):
        for name, (module, optimizer, bridged) in runs.items():
            elapsed = train_step(module, optimizer, x, target, bridged)
            if i >= args.warmup:
                times[name].append(elapsed)

    med = {name: _common.median(values) for name, values in times.items()}
    native = "native (BN folded)"
    base = med[native]

    def paired(name: str) -> float:
        return _common.median([a / b for a, b in zip(times[name], times[native])])

    rows = [(name, med[name], min(times[name]), paired(name), med[name] / base, min(times[name]) / min(times[native]))
            for name in runs]
    print(_common.table(["variant", "median step s", "min s", "ratio (paired)", "ratio of medians",
                         "ratio of mins"], rows))
    ratios = {e: paired(f"bridge ({e})") for e in exporters}
    print()
    for exporter, ratio in ratios.items():
        print(f"bridge ({exporter}) / native: {ratio:.3f}x ({_common.verdict(ratio, TARGET)} <= {TARGET}x); "
              f"bridge vs onnxruntime before training: max |Δ| / max |out| = {agreement[exporter]:.1e}")
    _common.finish(info)
    _common.write_json(args.json, {
        "benchmark": "bridge_speed", "machine": info, "target": TARGET,
        "settings": {"batch": args.batch, "size": args.size, "steps": args.steps, "warmup": args.warmup},
        "models": {"resnet18": {
            "median_step_s": med, "step_s": times,
            **{f"ratio_bridge_{e}_over_native": r for e, r in ratios.items()},
            "ratio_native_train_over_native": paired("native train()"),
            "ratio_of_medians": {name: med[name] / base for name in runs},
            "ratio_of_mins": {name: min(times[name]) / min(times[native]) for name in runs},
            "bridge_max_rel_vs_onnxruntime": agreement,
        }},
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
