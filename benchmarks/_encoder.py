"""A small BERT-style encoder with trained weights, for `recovery.py`: trained here, no download.

Recovery has to be measured on weights that learned something: a random encoder's MLP units carry
no structure, so removing any of them costs the same and distillation has nothing to restore.
No pretrained encoder ships offline with the packages this project may install, so one is trained
in the benchmark on a synthetic but learnable task:

  data   token sequences (length 16, vocabulary 64) from a seeded first-order Markov chain whose
         every token has 4 likely successors (90% of the mass, the rest uniform): context tells a
         lot about each token, and nothing memorises a finite dataset;
  task   masked-token prediction (BERT's objective): 15% of positions replaced by a mask id, predicted
         by a linear head on the encoder's output; the head is dropped after training;
  model  token + position embedding, LayerNorm, 2 of torch's post-norm `TransformerEncoderLayer`
         (hidden 64, 4 heads, MLP 64→256 → exact GELU → 256→64, no dropout); exported with the
         TorchScript exporter (opset 17, batch and sequence dynamic), its one output the token
         embeddings [batch, seq, 64].

Splits come from separate seeds of the same chain: training sequences (the encoder's training and
the recovery's fine-tuning), calibration sequences, and held-out test sequences nothing trains or
calibrates on. Seeded, one CPU thread, deterministic; the export is cached by recipe.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

VOCAB, SEQ, HIDDEN, HEADS, FF, LAYERS = 64, 16, 64, 4, 256, 2
MASK = VOCAB  # the mask token's id (one past the vocabulary)


@dataclass(frozen=True)
class EncoderRecipe:
    steps: int = 1500
    batch: int = 64
    lr: float = 1e-3
    seed: int = 0


@dataclass(frozen=True)
class Encoder:
    model: onnx.ModelProto
    train: np.ndarray  # int64 [n, SEQ] token ids
    calib: np.ndarray
    test: np.ndarray
    mlm_accuracy: float  # masked-token accuracy on the test sequences (chance is 1/64)
    recipe: EncoderRecipe


def sequences(count: int, seed: int) -> np.ndarray:
    """Token sequences from the fixed chain (its transitions come from seed 1234, the walks from `seed`)."""
    chain = np.random.default_rng(1234)
    successors = np.stack([chain.choice(VOCAB, 4, replace=False) for _ in range(VOCAB)])
    rng = np.random.default_rng(seed)
    out = np.empty((count, SEQ), dtype=np.int64)
    out[:, 0] = rng.integers(0, VOCAB, count)
    for t in range(1, SEQ):
        likely = successors[out[:, t - 1], rng.integers(0, 4, count)]
        out[:, t] = np.where(rng.random(count) < 0.9, likely, rng.integers(0, VOCAB, count))
    return out


def encoder(cache_dir: Path, recipe: EncoderRecipe, sizes: tuple[int, int, int] = (4096, 256, 512)) -> Encoder:
    """The trained encoder (cached) and its train / calibration / test sequences."""
    train, calib, test = (sequences(n, seed) for n, seed in zip(sizes, (1, 2, 3)))
    key = hashlib.sha256(f"encoder|{recipe}|{sizes[0]}|{torch_version()}|v2".encode()).hexdigest()[:12]
    path = Path(cache_dir) / f"recovery-encoder-{key}.onnx"
    accuracy_path = path.with_suffix(".mlm.txt")
    if not path.exists():
        accuracy = _train_and_export(path, recipe, train, test)
        accuracy_path.write_text(f"{accuracy}\n")
    return Encoder(onnx.load(str(path)), train, calib, test, float(accuracy_path.read_text()), recipe)


def torch_version() -> str:
    import torch

    return str(torch.__version__)


def _body():
    """Embeddings, LayerNorm and torch's own post-norm encoder layers (exact GELU, no dropout)."""
    import torch
    from torch import nn

    class Body(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tok, self.pos = nn.Embedding(VOCAB + 1, HIDDEN), nn.Embedding(SEQ, HIDDEN)
            self.ln = nn.LayerNorm(HIDDEN)
            layer = nn.TransformerEncoderLayer(HIDDEN, HEADS, FF, dropout=0.0, activation="gelu", batch_first=True)
            self.layers = nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False)

        def forward(self, ids):
            positions = torch.arange(ids.shape[1], device=ids.device)
            return self.layers(self.ln(self.tok(ids) + self.pos(positions)[None]))

    return Body()


def _train_and_export(path: Path, recipe: EncoderRecipe, train: np.ndarray, test: np.ndarray) -> float:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    torch.manual_seed(recipe.seed)
    body = _body()
    head = torch.nn.Linear(HIDDEN, VOCAB)
    params = [*body.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=recipe.steps, pct_start=0.1)
    gen = np.random.default_rng(recipe.seed)
    data = torch.from_numpy(train)
    body.train()
    for _ in range(recipe.steps):
        ids = data[torch.from_numpy(gen.integers(0, len(train), recipe.batch))]
        masked, chosen = _mask(ids, gen)
        loss = F.cross_entropy(head(body(masked))[chosen], ids[chosen])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    body.eval()
    with torch.no_grad():
        ids = torch.from_numpy(test)
        masked, chosen = _mask(ids, np.random.default_rng(99))
        accuracy = float((head(body(masked))[chosen].argmax(-1) == ids[chosen]).float().mean())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(body, (torch.from_numpy(test[:2]),), str(tmp), dynamo=False, opset_version=17,
                          input_names=["ids"], output_names=["embeddings"],
                          dynamic_axes={"ids": {0: "batch", 1: "seq"}, "embeddings": {0: "batch", 1: "seq"}})
    os.replace(tmp, path)
    return accuracy


def _mask(ids, gen: np.random.Generator):
    import torch

    chosen = torch.from_numpy(gen.random(tuple(ids.shape)) < 0.15)
    return torch.where(chosen, torch.full_like(ids, MASK), ids), chosen
