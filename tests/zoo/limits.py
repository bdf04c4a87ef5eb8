"""What stays whole in each zoo model, and why: the explicit reasons the zoo suite checks
against the analysis' barrier reports, and that the README's coverage table prints."""

from __future__ import annotations

_VIT = ("the patch embedding is reshaped into tokens and joined with the class token (reported barriers), so the "
        "residual stream stays; attention heads are split by Reshape and stay; MLP units are prunable")
_SWIN = ("the residual stream passes LayerNormalization over channels, shifted windows and attention heads are "
         "split by Reshape: all stay; MLP units are prunable")

LIMITS: dict[str, str] = {
    "shufflenet_v2_x1_0": "channel shuffle (Reshape → Transpose → Reshape) permutes channels across branches: "
                          "a reported barrier, so channels flowing through it stay",
    "convnext_tiny": "the residual stream passes LayerNormalization over channels; MLP units are prunable",
    "vit_b_16": _VIT,
    "vit_tiny": _VIT,
    "swin_t": _SWIN,
    "swin_tiny": _SWIN,
}

# A word the analysis' barrier reasons must contain for each limited model.
BARRIER_WORDS: dict[str, str] = {
    "shufflenet_v2_x1_0": "Reshape",
    "convnext_tiny": "LayerNormalization",
    "vit_b_16": "Reshape",
    "vit_tiny": "Reshape",
    "swin_t": "LayerNormalization",
    "swin_tiny": "LayerNormalization",
}
