"""Render the README's zoo coverage table from tests/zoo/coverage.json (written by the zoo suite).

    ONNXTRIM_ZOO_COVERAGE=1 pytest tests/zoo      # measure
    python tests/zoo/render_coverage.py           # rewrite the README block between the markers
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.zoo.limits import LIMITS

START, END = "<!-- zoo-coverage:start -->", "<!-- zoo-coverage:end -->"
EXPORTERS = (("torchscript", "TorchScript"), ("dynamo", "dynamo"))


def render(coverage: dict[str, dict]) -> str:
    models = sorted({key.split("/")[0] for key in coverage})
    lines = [
        "| model | " + " | ".join(f"{label}: prunable groups / channels" for _, label in EXPORTERS)
        + " | what stays whole |",
        "|---|" + "---|" * (len(EXPORTERS) + 1),
    ]
    for model in models:
        cells = []
        for exporter, _ in EXPORTERS:
            row = coverage.get(f"{model}/{exporter}")
            cells.append("—" if row is None else
                         f"{row['prunable_groups']}/{row['groups']} groups{_kinds(row)}, "
                         f"{row['prunable_channels']:,}/{row['channels']:,} channels")
        lines.append(f"| {model} | " + " | ".join(cells) + f" | {LIMITS.get(model, 'only the classifier output')} |")
    return "\n".join(lines)


def _kinds(row: dict) -> str:
    """How many of the prunable groups are attention heads and residual streams."""
    parts = [f"{row[key]} {label}" for key, label in (("prunable_heads", "of heads"), ("prunable_stream", "stream"))
             if row.get(key)]
    return f" ({', '.join(parts)})" if parts else ""


def rewrite(readme: str, coverage: dict[str, dict]) -> str:
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{render(coverage)}\n{END}{tail}"


if __name__ == "__main__":
    coverage = json.loads((ROOT / "tests/zoo/coverage.json").read_text())
    readme = ROOT / "README.md"
    readme.write_text(rewrite(readme.read_text(), coverage))
    print(f"rendered {len(coverage)} rows into {readme}")
