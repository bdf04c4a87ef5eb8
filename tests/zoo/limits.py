"""What stays whole in each zoo model, and why: the explicit reasons the zoo suite checks
against the analysis' barrier reports, and that the README's coverage table prints. A model
without an entry keeps only its classifier output whole (the suite checks it has no barrier)."""

from __future__ import annotations

_SWIN = ("dynamo: the last stage's stream reaches the Gather that its average pool over a 1x1 map "
         "becomes (as_strided, indices computed at run time) and stays; heads, streams and MLP units are "
         "prunable")

LIMITS: dict[str, str] = {
    "swin_t": _SWIN,
    "swin_tiny": _SWIN,
}

# A word the analysis' barrier reasons must contain, per (model, exporter) with a barrier.
BARRIER_WORDS: dict[tuple[str, str], str] = {
    ("swin_t", "dynamo"): "Gather",
    ("swin_tiny", "dynamo"): "Gather",
}
