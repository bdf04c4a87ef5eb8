"""What `onnxtrim MODEL ...` prints when it is done: the groups table and one line per figure.

Figures are printed with significant digits, never rounded to a fixed number of decimals (a model
with outputs of order 1e-6 showed "max |Δ| 0" beside a cosine of 0.9998), with the relative error
next to the absolute one. The table fits the terminal: names are shortened with an ellipsis rather
than broken mid-word, and only the prose column wraps (at spaces). Nodes whose names the exporter
generated (dynamo's `node_Conv_296`) are shown with their weight's name, which names the layer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ..api import TrimResult
from ..bench.device import cpu_channel_block

MAX_ROWS = 12
#: Node names an exporter generated: torch's dynamo exporter (`node_Conv_296`, `node_linear_1`), or none at all
#: (onnxtrim labels those `Op#index`).
_GENERATED = re.compile(r"^(node_\w+|[A-Za-z]+#\d+)$")


def plural(count: int, word: str, many: str | None = None) -> str:
    """'1 group', '2 groups' (and '1 more group', with word='more group')."""
    return f"{count:,} {word if count == 1 else many or word + 's'}"


def sig(value: Any, digits: int = 3) -> str:
    """A number with `digits` significant digits (3.1e-07, 0.000412, 2.47), or '-'."""
    if value is None:
        return "-"
    if isinstance(value, str):  # non-finite numbers are strings in the report
        return value
    return f"{float(value):.{digits}g}"


def score_cell(value: Any) -> str:
    """A score: three decimals where that shows three significant digits (APoZ 0.723), else significant
    digits (a mean |a| of 3.1e-07 is not 0.000)."""
    if value is None or isinstance(value, str):
        return "-" if value is None else value
    return f"{float(value):.3f}" if value == 0 or 0.1 <= abs(float(value)) < 1000 else sig(value)


def member_label(name: str, weight: str | None) -> str:
    """A producer as a user can find it: its weight's name beside a generated node name."""
    return f"{name} ({weight})" if weight and _GENERATED.match(name) else name


def groups_table(report: dict[str, Any], width: int = 80) -> Table:
    """The groups, trimmed ones first; producers get up to a third of `width` before they wrap (between
    names and words, never inside one), the reasons take what is left."""
    criterion = report["criterion"]
    extreme = "max" if criterion["removes"] == "high" else "min"
    changed = [g for g in report["groups"] if g["removed"]]
    untouched = [g for g in report["groups"] if not g["removed"]]
    rows = []
    for g in changed + untouched[: max(0, MAX_ROWS - len(changed))]:
        weights = g.get("weights") or [None] * len(g["members"])
        labels = [member_label(m, w) for m, w in zip(g["members"], weights)]
        members = ", ".join(labels[:2]) + (f" +{len(labels) - 2}" if len(labels) > 2 else "")
        rows.append((str(g["id"]), members, f"{g['size']} → {g['kept']}", score_cell(g[f"{extreme}_score"]),
                     "; ".join(g["reasons"][:1])))
    headers = ("group", "producers", "channels", f"{extreme} {criterion['unit'] or criterion['name']}",
               "left alone because")
    fixed = [max([len(headers[k])] + [len(row[k]) for row in rows]) for k in (0, 2, 3)]
    spare = width - sum(fixed) - 16 - 12  # borders and padding (16); the reasons keep 12
    longest = max((len(row[1]) for row in rows), default=12)
    table = Table(title="onnxtrim: channel groups", title_justify="left")
    table.add_column(headers[0], no_wrap=True)
    table.add_column(headers[1], overflow="ellipsis", width=max(8, min(longest, spare)))
    table.add_column(headers[2], no_wrap=True)
    table.add_column(headers[3], no_wrap=True)
    table.add_column(headers[4], ratio=1, min_width=12)
    for row in rows:
        table.add_row(*row)
    hidden = len(report["groups"]) - table.row_count
    if hidden > 0:
        table.caption = f"{plural(hidden, 'more group')} left unchanged (see the JSON report)"
    return table


def print_summary(console: Console, result: TrimResult, written: Sequence[Path]) -> None:
    report = result.report
    console.print(groups_table(report, console.width))
    for line in summary_lines(result):
        console.print(line)
    for path in written:
        console.print(f"wrote {path}")


def summary_lines(result: TrimResult) -> list[str]:
    report = result.report
    lines = [_calibration_line(result), _rounding_line(report), _cost_line(report)]
    lat = report.get("latency") or {}
    for row in lat.get("rows", []):
        lines.append(f"latency {row['provider'].replace('ExecutionProvider', '')} batch {row['batch']}: "
                     f"{sig(row['original_ms'])} → {sig(row['trimmed_ms'])} ms median, speedup "
                     f"{row['speedup']:.2f}× (MACs ratio {_pct(lat['macs_ratio'])})")
    for gate in report.get("gates", []):
        lines.append(f"gate {gate['name']} {'passed' if gate['passed'] else 'FAILED'}: {gate['measure']} "
                     f"{sig(gate['value'], 4)} (limit {gate['limit']:g})")
    if report["masks"]:
        weights = sum(m["weights"] for m in report["masks"])
        lines.append(f"weights set to zero: {report['masked_weights']:,} of {weights:,} "
                     f"({report['masked_weights'] / max(weights, 1):.1%}) in {plural(len(report['masks']), 'tensor')}")
    lines += [f"note: {note}" for note in report["notes"]]
    lines += recovery_lines(report.get("recovery"))
    lines += fidelity_lines(report["fidelity"])
    lines += [f"warning: {w}" for w in report.get("warnings", [])]
    hint = _block_hint(report)
    if hint:
        lines.append(hint)
    return [line for line in lines if line]


def _calibration_line(result: TrimResult) -> str:
    samples = result.report["calibration"]["samples"]
    if not samples:
        return ""
    source = " (from --load-stats)" if result.config.load_stats is not None else ""
    return f"calibrated on {plural(samples, 'sample')}{source}"


def _rounding_line(report: dict[str, Any]) -> str:
    rounding = report["criterion"].get("rounding")
    if not rounding or rounding["multiple"] == 1:
        return ""
    how = rounding["reason"] if rounding["auto"] else f"--round-to {rounding['multiple']}"
    return (f"kept channel counts rounded up to multiples of {rounding['multiple']} ({how}; "
            "--round-to 1 turns rounding off)")


def _cost_line(report: dict[str, Any]) -> str:
    c = report["cost"]
    projected = "   (projected from the plan; no model written)" if c.get("projected") else ""
    return (f"parameters {c['params_before']:,} → {c['params_after']:,} ({_pct(c['params_ratio'])})   "
            f"MACs/sample {c['macs_before']:,} → {c['macs_after']:,} ({_pct(c['macs_ratio'])})   "
            f"channels removed {report['removed_channels']:,}{projected}")


KIND_WORDS = {"class_scores": "class scores", "embedding": "embedding", "regression": "regression",
              "integer": "integer"}


def fidelity_lines(f: dict[str, Any] | None) -> list[str]:
    if f is None:
        return []
    outputs = f.get("outputs") or []
    head = f"fidelity on {plural(f['samples'], f['data'] + ' sample')}"
    if not outputs:
        return [head + f": max |Δ| {sig(f['max_abs_diff'])}"]
    lines = []
    for number, o in enumerate(sorted(outputs, key=lambda o: o["name"] != f["primary"])):
        what = f"output '{o['name']}' ({KIND_WORDS.get(o['kind'], o['kind'])})"
        parts = _output_metrics(o, f if o["name"] == f["primary"] else None)
        lines.append((f"{head}, {what}: " if number == 0 else f"  {what}: ") + ", ".join(parts))
    return lines


def _output_metrics(o: dict[str, Any], primary: dict[str, Any] | None) -> list[str]:
    parts = []
    if o["kind"] == "class_scores" and o["top1_agreement"] is not None:
        parts.append(f"top-1 agreement {float(o['top1_agreement']):.2%}")
    if primary is not None and primary.get("accuracy_original") is not None:
        parts.append(f"accuracy {float(primary['accuracy_original']):.2%} → {float(primary['accuracy_trimmed']):.2%}")
    if o["kind"] == "integer":
        parts.append(f"exact match {float(o['exact_match']):.2%}")
    if o["kind"] in ("class_scores", "embedding") and o["mean_cosine"] is not None:
        parts.append(f"cosine {sig(o['mean_cosine'], 6)}")
    if o["kind"] != "integer":
        parts.append(f"max |Δ| {sig(o['max_abs_diff'])} (relative {sig(o['max_rel_diff'])})")
    return parts


def _block_hint(report: dict[str, Any]) -> str:
    block = cpu_channel_block()
    odd = [g for g in report["groups"] if g["removed"] and g["kept"] % block]
    selection = report["criterion"]["selection"] or {}
    if not odd or selection.get("round_to", 1) % block == 0:
        return ""
    return (f"hint: {plural(len(odd), 'trimmed group')} keep{'s' if len(odd) == 1 else ''} channel counts that are "
            f"not multiples of {block}, the channel block of onnxruntime's CPU kernels on this machine (16 with "
            "AVX-512, 8 with AVX2); such convolutions lose its fastest kernels (benchmarks/speedup.py measured up to "
            "3x slower per MAC). Try --round-to auto (the default) and --bench.")


def recovery_lines(recovery: dict[str, Any] | None) -> list[Any]:
    if not recovery:
        return []
    if recovery["mode"] == "iterative":
        table = Table(title=f"Network Trimming iterations ({recovery['stopped']})", title_justify="left")
        for column in ("iteration", "removed", "parameters", "MACs", "holdout fidelity", "kept"):
            table.add_column(column)
        for row in recovery["iterations"]:
            table.add_row(str(row["iteration"]), str(row["removed_channels"]), f"{row['params']:,}", f"{row['macs']:,}",
                          fidelity_cell(row["fidelity"]), "yes" if row["kept"] else "no (undone)")
        return [table]
    training = recovery["training"]
    losses = ", ".join(f"{e['loss']:.4g}" for e in training["epochs"] if "loss" in e)
    where = training["device"]
    if training.get("world_size", 1) > 1:
        where += f" x {training['world_size']} processes"
    lines: list[Any] = [(f"fine-tuned {plural(len(training['epochs']), 'epoch')} ({plural(training['steps'], 'step')}, "
                        f"{training['seconds']:.1f} s on {where}); loss per epoch: {losses}")]
    if recovery.get("fidelity_before") or recovery.get("fidelity_after"):
        lines.append(f"holdout fidelity before fine-tuning: {fidelity_cell(recovery.get('fidelity_before'))}; "
                     f"after: {fidelity_cell(recovery.get('fidelity_after'))}")
    return lines


def fidelity_cell(f: dict | None) -> str:
    if not f:
        return "-"
    if f.get("accuracy_trimmed") is not None:
        return f"accuracy {f['accuracy_trimmed']:.2%} (original {f['accuracy_original']:.2%})"
    if f.get("top1_agreement") is not None:
        return f"top-1 agreement {f['top1_agreement']:.2%}, cosine {sig(f['mean_cosine'], 4)}"
    return f"cosine {sig(f.get('mean_cosine'), 4)}"


def _pct(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio:.1%}"
