"""`--plot DIR`: the figures a user would rather look at than read, as PNG bytes for the publication.

- `channels.png`: every channel group's size before and after, by layer (named by weight where the
  exporter generated the node names), the most trimmed first;
- `scores.png`: a histogram of the criterion's scores per group, kept and removed channels apart, with
  the threshold where one decided;
- `tradeoff.png` (with recovery): accuracy, top-1 agreement or cosine against the share of MACs kept,
  one point per Network Trimming iteration (or before and after fine-tuning).

matplotlib is an optional extra (`pip install 'onnxtrim[plot]'`); without it `--plot` is a
DependencyError (exit code 7) raised before any work. Figures are drawn on the Agg canvas directly,
never through pyplot's global state, and returned as bytes: the publication writes them with every
other output, all or none.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from .criteria.base import Scores
from .errors import DependencyError
from .outputs import TRADEOFF_PLOT
from .plan import PrunePlan

MAX_GROUPS = 40  # bars in channels.png
MAX_HISTOGRAMS = 24  # panels in scores.png
KEPT, REMOVED, BEFORE = "#1f77b4", "#d62728", "#c7d7e8"


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise DependencyError("--plot draws with matplotlib, which is not installed: pip install "
                              "'onnxtrim[plot]' (or matplotlib)") from exc


def figures(report: dict[str, Any], plan: PrunePlan, scores: Scores | None) -> dict[str, bytes]:
    """File name -> PNG bytes for every figure this run has data for."""
    require_matplotlib()
    out = {"channels.png": _png(_channels(report)), "scores.png": _png(_scores(report, plan, scores))}
    recovery = report.get("recovery")
    if recovery:
        out[TRADEOFF_PLOT] = _png(_tradeoff(report, recovery))
    return out


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _label(group: dict[str, Any]) -> str:
    """The group's first producer, by its weight's name where the node name was generated."""
    member = group["members"][0] if group["members"] else f"group {group['id']}"
    weights = group.get("weights") or []
    weight = weights[0] if weights else None
    name = weight if weight and (member.startswith("node_") or "#" in member) else member
    more = f" +{len(group['members']) - 1}" if len(group["members"]) > 1 else ""
    return f"{group['id']}: {name[-40:]}{more}"


def _channels(report: dict[str, Any]) -> Any:
    groups = sorted(report["groups"], key=lambda g: (-g["removed"] / max(g["size"], 1), g["id"]))[:MAX_GROUPS]
    figure = _figure(9, 1.2 + 0.28 * max(len(groups), 1))
    axes = figure.add_subplot()
    rows = np.arange(len(groups))
    axes.barh(rows, [g["size"] for g in groups], color=BEFORE, label="before")
    axes.barh(rows, [g["kept"] for g in groups], color=KEPT, height=0.5, label="kept")
    axes.set_yticks(rows, [_label(g) for g in groups], fontsize=7)
    axes.invert_yaxis()
    axes.set_xlabel("channels")
    c = report["cost"]
    axes.set_title(f"channels per group, before and after ({report['removed_channels']:,} removed; MACs kept "
                   f"{_share(c['macs_ratio'])}{', projected' if c.get('projected') else ''})", fontsize=9)
    axes.legend(loc="lower right", fontsize=7)
    hidden = len(report["groups"]) - len(groups)
    if hidden > 0:
        axes.text(1.0, -0.6 / max(len(groups), 1), f"{hidden} more group{'s' if hidden != 1 else ''} in the report",
                  transform=axes.transAxes, ha="right", va="top", fontsize=7)
    return figure


def _scores(report: dict[str, Any], plan: PrunePlan, scores: Scores | None) -> Any:
    keep = plan.keep_map()
    rows = {g["id"]: g for g in report["groups"]}
    values = {} if scores is None else {gid: np.asarray(v, dtype=np.float64) for gid, v in scores.values.items()}
    for decided in plan.groups:  # a replayed plan carries the scores it was made from
        values.setdefault(decided.group, np.array([np.nan if v is None else v for v in decided.scores], np.float64))
    shown = sorted((gid for gid, v in values.items() if np.isfinite(v).any()),
                   key=lambda gid: (-rows[gid]["removed"] if gid in rows else 0, gid))[:MAX_HISTOGRAMS]
    columns = min(4, max(len(shown), 1))
    lines = max(1, -(-len(shown) // columns))
    figure = _figure(3.0 * columns, 0.6 + 2.1 * lines)
    criterion = report["criterion"]
    threshold = (criterion.get("selection") or {}).get("threshold")
    unit = criterion.get("unit") or criterion["name"]
    if not shown:
        figure.text(0.5, 0.5, f"no channel scores ({criterion['name']} scored no group)", ha="center")
        return figure
    for panel, gid in enumerate(shown, start=1):
        axes = figure.add_subplot(lines, columns, panel)
        score = values[gid]
        kept = np.zeros(score.size, bool)
        kept[list(keep.get(gid, range(score.size)))] = True
        finite = np.isfinite(score)
        bins = np.histogram_bin_edges(score[finite], bins=20)
        axes.hist([score[finite & kept], score[finite & ~kept]], bins=bins, stacked=True, color=[KEPT, REMOVED],
                  label=["kept", "removed"])
        if threshold is not None and (criterion.get("selection") or {}).get("fraction") is None:
            axes.axvline(threshold, color="black", linewidth=0.8, linestyle="--")
        axes.set_title(_label(rows[gid]) if gid in rows else f"group {gid}", fontsize=7)
        axes.tick_params(labelsize=6)
        if panel == 1:
            axes.legend(fontsize=6)
    figure.suptitle(f"{criterion['name']} scores per group ({unit}; removes {criterion['removes']})", fontsize=9)
    return figure


def _tradeoff(report: dict[str, Any], recovery: dict[str, Any]) -> Any:
    figure = _figure(6, 4)
    axes = figure.add_subplot()
    points = _tradeoff_points(report, recovery)
    measure = next((m for m in ("accuracy", "top-1 agreement", "cosine") if any(p[2] == m for p in points)), None)
    chosen = [p for p in points if p[2] == measure]
    if chosen:
        axes.plot([p[0] for p in chosen], [p[1] for p in chosen], marker="o", color=KEPT)
        for x, y, _, label in chosen:
            axes.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    axes.set_xlabel("share of the original's MACs kept")
    axes.set_ylabel(f"{measure or 'fidelity'} on the holdout")
    axes.set_title(f"{measure or 'fidelity'} against MACs kept ({recovery.get('mode', 'recovery')})", fontsize=9)
    axes.grid(alpha=0.3)
    return figure


def _tradeoff_points(report: dict[str, Any], recovery: dict[str, Any]) -> list[tuple[float, float, str, str]]:
    base = report["cost"]["macs_before"] or 1
    points: list[tuple[float, float, str, str]] = []
    if recovery.get("mode") == "iterative":
        for row in recovery.get("iterations", []):
            measured = _measure(row.get("fidelity"))
            if measured is not None:
                points.append((row["macs"] / base, measured[1], measured[0], f"iteration {row['iteration']}"))
    else:
        ratio = report["cost"]["macs_ratio"] or 0.0
        for key, label in (("fidelity_before", "before fine-tuning"), ("fidelity_after", "after fine-tuning")):
            measured = _measure(recovery.get(key))
            if measured is not None:
                points.append((ratio, measured[1], measured[0], label))
    fidelity = report.get("fidelity") or {}
    if fidelity.get("accuracy_original") is not None:
        points.insert(0, (1.0, float(fidelity["accuracy_original"]), "accuracy", "original"))
    return points


def _measure(fidelity: dict[str, Any] | None) -> tuple[str, float] | None:
    if not fidelity:
        return None
    for key, name in (("accuracy_trimmed", "accuracy"), ("top1_agreement", "top-1 agreement"),
                      ("mean_cosine", "cosine")):
        if fidelity.get(key) is not None:
            return name, float(fidelity[key])
    return None


def _share(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio:.1%}"


__all__ = ["figures", "require_matplotlib"]
