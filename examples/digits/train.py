"""Train the small digits CNN that ships as onnxtrim's example model, and export it to ONNX.

Deterministic (fixed seeds, deterministic torch algorithms, one CPU thread) and quick (a few
seconds on a laptop CPU). Uses scikit-learn's bundled 8x8 digits, so nothing is downloaded.

The training recipe (plain SGD with a large initial learning rate, cosine decay, no warm-up) is
chosen so that many ReLUs of the wide hidden layer die *during training*: the first large steps
push their pre-activations negative for every input and they never recover. Nothing is edited
after training. Those neurons have an Average Percentage of Zeros (APoZ, Hu et al. 2016) of or
near 1.0 on the held-out calibration set, which is what onnxtrim is meant to find and remove.

Writes, next to this file:
  digits.onnx          TorchScript exporter (dynamo=False), opset 17, dynamic batch
  digits_dynamo.onnx   torch.export-based exporter (dynamo=True), if that export works
  calib/batch_NNN.npy  held-out images, float32 [<=128, 1, 8, 8] in [0, 1], never trained on
  calib_labels.npy     int64 [600], labels of the concatenated calib batches in sorted file order
  summary.json         the numbers printed at the end

Run from anywhere:  python examples/digits/train.py
"""

from __future__ import annotations

import json
import math
import random
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

HERE = Path(__file__).resolve().parent

SEED = 0
N_CALIB = 600  # held-out calibration/test samples (1/3 of the 1797)
CALIB_BATCH = 128
HIDDEN = 128
EPOCHS = 15
BATCH = 64
LR = 0.2  # large on purpose: the first steps kill a good share of the hidden ReLUs
MOMENTUM = 0.9
WEIGHT_DECAY = 1e-3
APOZ_THRESHOLD = 0.9


class DigitsCNN(nn.Module):
    """conv(1->16)+BN+ReLU, conv(16->32)+BN+ReLU, maxpool 2, flatten, fc(512->128)+ReLU, fc(128->10)."""

    def __init__(self, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm2d(32)
        self.relu2 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(32 * 4 * 4, hidden)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = self.flatten(self.pool(x))
        x = self.relu3(self.fc1(x))
        return self.fc2(x)


def set_determinism(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)


def load_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]  # [1797, 1, 8, 8] in [0, 1]
    y = digits.target.astype(np.int64)
    x_train, x_calib, y_train, y_calib = train_test_split(
        x, y, test_size=N_CALIB, random_state=SEED, stratify=y
    )
    return x_train, y_train, np.ascontiguousarray(x_calib), np.ascontiguousarray(y_calib)


def train(model: nn.Module, x_train: np.ndarray, y_train: np.ndarray) -> None:
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    steps = EPOCHS * math.ceil(len(xt) / BATCH)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    gen = torch.Generator().manual_seed(SEED)
    for epoch in range(EPOCHS):
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for i in range(0, len(xt), BATCH):
            idx = perm[i : i + BATCH]
            opt.zero_grad()
            loss = F.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        print(f"epoch {epoch + 1:2d}/{EPOCHS}  train loss {total / len(xt):.4f}")


@torch.no_grad()
def evaluate(
    model: DigitsCNN,
    x: np.ndarray,
    y: np.ndarray,
    masks: dict[str, torch.Tensor] | None = None,
) -> tuple[float, dict[str, np.ndarray]]:
    """Accuracy and per-channel APoZ of the three ReLU outputs.

    masks maps a ReLU module name to a 0/1 vector multiplied into that ReLU's output (channel
    axis 1), which is what removing those channels/neurons does to the rest of the network.
    """
    model.eval()
    outputs: dict[str, torch.Tensor] = {}
    hooks = []
    for name in ("relu1", "relu2", "relu3"):

        def hook(_mod, _inp, out, name=name):
            if masks is not None and name in masks:
                shape = [1, -1] + [1] * (out.dim() - 2)
                out = out * masks[name].view(shape)
            outputs[name] = out
            return out

        hooks.append(getattr(model, name).register_forward_hook(hook))
    try:
        logits = model(torch.from_numpy(x))
    finally:
        for h in hooks:
            h.remove()
    acc = float((logits.argmax(1).numpy() == y).mean())
    apoz = {}
    for name, out in outputs.items():
        zero = (out == 0).to(torch.float64)
        dims = (0, 2, 3) if out.dim() == 4 else (0,)
        apoz[name] = zero.mean(dim=dims).numpy()
    return acc, apoz


def export_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        )


def export_dynamo(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    batch = torch.export.Dim("batch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            external_data=False,
            input_names=["image"],
            output_names=["logits"],
            dynamic_shapes={"x": {0: batch}},
            verbose=False,
        )
        program.save(str(path), external_data=False)


def check_onnx(path: Path, model: nn.Module, x: np.ndarray) -> float:
    import onnx
    import onnxruntime as ort

    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = sess.run(["logits"], {"image": x})
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    diff = float(np.abs(got - want).max())
    ops = [n.op_type for n in proto.graph.node]
    print(
        f"  {path.name}: {path.stat().st_size} bytes, opset "
        f"{[(o.domain or 'ai.onnx', o.version) for o in proto.opset_import]}"
    )
    print(f"  ops: {' '.join(ops)}")
    print(f"  onnxruntime vs torch max |diff| = {diff:.3g}")
    if diff >= 1e-4:
        raise SystemExit(f"{path.name}: onnxruntime output differs from torch by {diff}")
    return diff


def write_calibration(x: np.ndarray, y: np.ndarray) -> None:
    calib_dir = HERE / "calib"
    calib_dir.mkdir(exist_ok=True)
    for old in calib_dir.glob("batch_*.npy"):
        old.unlink()
    for k, start in enumerate(range(0, len(x), CALIB_BATCH)):
        np.save(calib_dir / f"batch_{k:03d}.npy", x[start : start + CALIB_BATCH])
    np.save(HERE / "calib_labels.npy", y)


def main() -> int:
    set_determinism(SEED)
    x_train, y_train, x_calib, y_calib = load_split()
    print(f"train {x_train.shape}, calibration/test {x_calib.shape} (held out, never trained on)")

    model = DigitsCNN()
    train(model, x_train, y_train)
    model.eval()

    acc, apoz = evaluate(model, x_calib, y_calib)
    counts = {
        name: {
            "channels": int(a.size),
            "apoz_ge_0.9": int((a >= APOZ_THRESHOLD).sum()),
            "apoz_eq_1.0": int((a == 1.0).sum()),
        }
        for name, a in apoz.items()
    }
    hidden_mask = torch.from_numpy((apoz["relu3"] < APOZ_THRESHOLD).astype(np.float32))
    acc_hidden_masked, _ = evaluate(model, x_calib, y_calib, masks={"relu3": hidden_mask})
    all_masks = {n: torch.from_numpy((a < APOZ_THRESHOLD).astype(np.float32)) for n, a in apoz.items()}
    acc_all_masked, _ = evaluate(model, x_calib, y_calib, masks=all_masks)

    print("exporting")
    example = torch.from_numpy(x_calib[:4])
    ts_path = HERE / "digits.onnx"
    export_torchscript(model, example, ts_path)
    diffs = {"digits.onnx": check_onnx(ts_path, model, x_calib)}
    dyn_path = HERE / "digits_dynamo.onnx"
    try:
        export_dynamo(model, example, dyn_path)
        diffs["digits_dynamo.onnx"] = check_onnx(dyn_path, model, x_calib)
    except Exception as exc:  # noqa: BLE001 - the TorchScript export is the one the example needs
        print(f"  dynamo export failed: {type(exc).__name__}: {exc}")
        dyn_path.unlink(missing_ok=True)

    write_calibration(x_calib, y_calib)

    names = {"relu1": "conv1 (16 ch)", "relu2": "conv2 (32 ch)", "relu3": f"hidden fc1 ({HIDDEN})"}
    print()
    print(f"=== summary (calibration/test set, {len(y_calib)} samples) ===")
    print(f"test accuracy                                  {acc * 100:.2f} %")
    for name, c in counts.items():
        print(f"{names[name]:<18} APoZ >= 0.9: {c['apoz_ge_0.9']:3d}   APoZ == 1.0: {c['apoz_eq_1.0']:3d}")
    print(f"accuracy, hidden APoZ>=0.9 neurons masked     {acc_hidden_masked * 100:.2f} %")
    print(f"accuracy, all APoZ>=0.9 channels masked       {acc_all_masked * 100:.2f} %")

    summary = {
        "seed": SEED,
        "n_train": len(y_train),
        "n_calib": len(y_calib),
        "test_accuracy": acc,
        "apoz_threshold": APOZ_THRESHOLD,
        "apoz_counts": counts,
        "accuracy_hidden_masked": acc_hidden_masked,
        "accuracy_all_masked": acc_all_masked,
        "onnx_max_abs_diff": diffs,
        "torch": torch.__version__,
    }
    (HERE / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if acc < 0.95 or abs(acc_hidden_masked - acc) > 0.005:
        print("WARNING: the example no longer shows what it is meant to show", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
