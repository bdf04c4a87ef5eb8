"""A small BERT-style encoder in plain torch, for the encoder tests and the zoo.

Token + position embedding, LayerNorm, two post-norm encoder layers (separate q/k/v Linear,
4-head scaled dot-product attention written out, output projection, residual + LayerNorm,
Linear 32→64 → exact (erf) GELU → Linear 64→32, residual + LayerNorm), and a pooled head on
token 0 (Linear 32→32 → tanh → Linear 32→3). Input: int64 token ids [batch, sequence].
"""

from __future__ import annotations

import math

import torch

nn = torch.nn

VOCAB, HIDDEN, HEADS, SEQ, FF = 50, 32, 4, 8, 64


class EncoderLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(HIDDEN, HIDDEN) for _ in range(4))
        self.ln1, self.ln2 = nn.LayerNorm(HIDDEN), nn.LayerNorm(HIDDEN)
        self.fc1, self.fc2 = nn.Linear(HIDDEN, FF), nn.Linear(FF, HIDDEN)

    def forward(self, x):
        b, t, _ = x.shape
        d = HIDDEN // HEADS

        def heads(y):
            return y.reshape(b, t, HEADS, d).transpose(1, 2)

        q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
        attention = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d), dim=-1)
        context = (attention @ v).transpose(1, 2).reshape(b, t, HIDDEN)
        x = self.ln1(x + self.o(context))
        return self.ln2(x + self.fc2(nn.functional.gelu(self.fc1(x))))  # exact (erf) GELU


class TinyEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.tok, self.pos = nn.Embedding(VOCAB, HIDDEN), nn.Embedding(SEQ, HIDDEN)
        self.ln = nn.LayerNorm(HIDDEN)
        self.layers = nn.ModuleList([EncoderLayer(), EncoderLayer()])
        self.pool, self.cls = nn.Linear(HIDDEN, HIDDEN), nn.Linear(HIDDEN, 3)

    def forward(self, ids):
        x = self.ln(self.tok(ids) + self.pos.weight[: ids.shape[1]])
        for layer in self.layers:
            x = layer(x)
        return self.cls(torch.tanh(self.pool(x[:, 0])))
