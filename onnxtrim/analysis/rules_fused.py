"""onnxruntime's fused transformer ops (domain com.microsoft), as its transformer optimiser emits them.

The elementwise ones are rules like any other: BiasGelu(x, b) = Gelu(x + b) and FastGelu(x, b)
broadcast their bias along the last axis (the elementwise rule slices it with the channels),
Gelu and QuickGelu act per value. The fused attention and normalisation ops hide the head
split and the residual Add inside one kernel, with head counts in attributes and packed
weights in layouts of their own; they are barriers with a reason that says what to do
instead: trim the unfused model (which onnxtrim understands), then fuse.
"""

from __future__ import annotations

from .rule_context import Barrier, Rule, RuleContext
from .rules_pointwise import elementwise, unary

MS_DOMAIN = "com.microsoft"

FUSED_BARRIERS = {
    "Attention": "fuses the Q/K/V projections and every head into one kernel",
    "MultiHeadAttention": "fuses every head into one kernel (num_heads is an attribute)",
    "GroupQueryAttention": "fuses every head into one kernel (num_heads is an attribute)",
    "PackedAttention": "fuses every head into one kernel",
    "SkipLayerNormalization": "fuses the residual Add with a LayerNormalization over the channels",
    "SkipSimplifiedLayerNormalization": "fuses the residual Add with an RMS normalisation over the channels",
    "EmbedLayerNormalization": "fuses the embeddings with a LayerNormalization over the channels",
}


def fused_barrier(ctx: RuleContext) -> None:
    what = FUSED_BARRIERS.get(ctx.node.op, "is a fused op without a channel rule")
    raise Barrier(f"{MS_DOMAIN} op '{ctx.node.op}' at node '{ctx.name}' {what}: trim the model before "
                  "onnxruntime's transformer optimiser fuses it, then fuse")


MS_RULES: dict[str, Rule] = {
    "BiasGelu": elementwise,
    "FastGelu": elementwise,
    "Gelu": unary,
    "QuickGelu": unary,
    **{op: fused_barrier for op in FUSED_BARRIERS},
}


def rule_for(domain: str | None, op: str, rules: dict[str, Rule]) -> Rule | None:
    """The rule of an op in its domain: the ONNX table, this table for com.microsoft, else none."""
    if domain in (None, "", "ai.onnx"):
        return rules.get(op)
    if domain == MS_DOMAIN:
        return MS_RULES.get(op, fused_barrier)
    return None
