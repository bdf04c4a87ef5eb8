"""Trained networks for `criteria.py`: scikit-learn's digits, one fixed split, three networks.

Criteria can only be compared on networks that learned something: with random weights every
ranking of channels is as good as any other. So this module trains small classifiers on
scikit-learn's bundled 8x8 digits (no download) and exports them to ONNX.

The split. `examples/digits/train.py` holds out 600 of the 1797 images (stratified, seed 0)
and trains the shipped CNN on the other 1197. The same 1197 images train every network here
(so the shipped model can be used as it is), and the 600 held-out images are split again
(stratified, seed 0) into 200 for calibration and 400 for test. No network is trained, and
no criterion calibrated, on a test image.

The networks:
  digits  the shipped example, `examples/digits/digits.onnx`, as committed (8x8 input);
  vgg     conv3x3-BN-ReLU blocks [32, 32, pool, 64, 64, pool, 128, 128, pool] then one linear
          classifier, on the images upsampled 2x to 16x16 (bilinear, `scipy.ndimage.zoom`,
          order 1), so that three poolings leave a 2x2 map;
  mlp     64-512-256-10 with ReLU, on the 64 pixels flattened.
vgg and mlp are trained with torch here (seeded, deterministic, one CPU thread; SGD with
momentum, cosine decay) and exported with the TorchScript exporter (`dynamo=False`, opset 17,
dynamic batch, BatchNorm folded into the convolutions), as the digits example is. Exports are
cached under the benchmark cache, keyed by the recipe, so a rerun does not train again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx

REPO = Path(__file__).resolve().parents[1]
DIGITS_EXAMPLE = REPO / "examples" / "digits"
SEED = 0
N_CALIB = 200  # of the 600 images the digits example held out; the other 400 are the test split
NETWORKS = ("digits", "vgg", "mlp")


@dataclass(frozen=True)
class Split:
    """Images in the layout a network reads, and their labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_calib: np.ndarray
    y_calib: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass(frozen=True)
class Recipe:
    """How a network is trained; part of its cache key."""

    epochs: int
    lr: float
    batch: int = 64
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = SEED


RECIPES = {"vgg": Recipe(epochs=12, lr=0.05), "mlp": Recipe(epochs=40, lr=0.05)}


@dataclass(frozen=True)
class Network:
    name: str
    model: onnx.ModelProto
    data: Split
    source: str  # where the model came from, for the report


def network(name: str, cache_dir: Path, epochs: int | None = None) -> Network:
    """The trained network `name` and the split in its input layout (`epochs` overrides the recipe)."""
    data = split(name)
    if name == "digits":
        path = DIGITS_EXAMPLE / "digits.onnx"
        return Network(name, onnx.load(str(path)), data, f"{path.relative_to(REPO)} as committed")
    recipe = RECIPES[name] if epochs is None else Recipe(**{**asdict(RECIPES[name]), "epochs": epochs})
    path = _cached(name, recipe, data, Path(cache_dir))
    return Network(name, onnx.load(str(path)), data, f"trained here: {recipe}")


def split(name: str) -> Split:
    """The fixed train / calibration / test split, shaped for network `name`."""
    from sklearn.model_selection import train_test_split

    x_train, y_train, x_held, y_held = _digits_example().load_split()
    x_calib, x_test, y_calib, y_test = train_test_split(x_held, y_held, train_size=N_CALIB, random_state=SEED,
                                                        stratify=y_held)
    shape = _layout(name)
    return Split(*(np.ascontiguousarray(v) for v in (shape(x_train), y_train, shape(x_calib), y_calib,
                                                       shape(x_test), y_test)))


def _layout(name: str):
    """[N, 1, 8, 8] images in [0, 1] to what network `name` reads."""
    if name == "mlp":
        return lambda x: x.reshape(len(x), -1)
    if name == "vgg":
        from scipy import ndimage

        return lambda x: ndimage.zoom(x, (1, 1, 2, 2), order=1).astype(np.float32)
    return lambda x: x


def _digits_example():
    """examples/digits/train.py as a module (not a package): its split is the one the shipped model saw."""
    spec = importlib.util.spec_from_file_location("digits_example_train", DIGITS_EXAMPLE / "train.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cached(name: str, recipe: Recipe, data: Split, cache_dir: Path) -> Path:
    import torch

    key = hashlib.sha256(f"{name}|{recipe}|{torch.__version__}|v1".encode()).hexdigest()[:12]
    path = cache_dir / f"criteria-{name}-{key}.onnx"
    if path.exists():
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(recipe.seed)  # the initial weights are part of the recipe
    net = _build(name)
    _train(net, data, recipe)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    _export(net, data.x_calib[:4], tmp)
    os.replace(tmp, path)
    return path


def _build(name: str):
    from torch import nn

    if name == "mlp":
        return nn.Sequential(nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                             nn.Linear(256, 10))
    layers: list[nn.Module] = []
    channels = 1
    for width in (32, 32, "pool", 64, 64, "pool", 128, 128, "pool"):
        if width == "pool":
            layers.append(nn.MaxPool2d(2))
            continue
        layers += [nn.Conv2d(channels, int(width), 3, padding=1), nn.BatchNorm2d(int(width)), nn.ReLU()]
        channels = int(width)
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels * 2 * 2, 10))


def _train(net, data: Split, recipe: Recipe) -> None:
    """Plain SGD with momentum and cosine decay; seeded and deterministic on one CPU thread."""
    import math

    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    opt = torch.optim.SGD(net.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                          weight_decay=recipe.weight_decay)
    steps = recipe.epochs * math.ceil(len(x) / recipe.batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    gen = torch.Generator().manual_seed(recipe.seed)
    net.train()
    for _ in range(recipe.epochs):
        for idx in torch.randperm(len(x), generator=gen).split(recipe.batch):
            opt.zero_grad()
            F.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
            sched.step()
    net.eval()


def _export(net, example: np.ndarray, path: Path) -> None:
    """TorchScript exporter, as examples/digits/train.py: opset 17, dynamic batch, checked against torch."""
    import torch

    from onnxtrim import runtime

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.from_numpy(example),), str(path), dynamo=False, opset_version=17,
                          input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
    with torch.no_grad():
        want = net(torch.from_numpy(example)).numpy()
    (got,) = runtime.run(runtime.make_session(onnx.load(str(path))), None, {"image": example})
    if not np.allclose(got, want, atol=1e-4):
        raise RuntimeError(f"{path.name}: onnxruntime differs from torch by {np.abs(got - want).max():.3g}")
