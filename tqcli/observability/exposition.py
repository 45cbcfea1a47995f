"""Metrics as Prometheus's text exposition format (version 0.0.4) or as JSON samples."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

from tqcli.observability.metrics import Metrics

if TYPE_CHECKING:
    from pathlib import Path

    from tqcli.core.context import Context

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def to_text(metrics: Metrics) -> str:
    """The text exposition: `# HELP` and `# TYPE` for each family that has samples, then its samples."""
    lines: list[str] = []
    for family, samples in metrics.families:
        if not samples:
            continue
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.type}")
        for sample in samples:
            lines.append(f"{sample.name}{_labels(sample.labels)} {format_value(sample.value)}")
    return "\n".join(lines) + "\n" if lines else ""


def to_json(metrics: Metrics) -> str:
    """`metrics --format json`: a list of samples `{"name", "labels", "value"}`, the text exposition's in its order."""
    return json.dumps([sample.to_json() for sample in metrics.samples()], indent=2) + "\n"


def format_value(value: float) -> str:
    """A sample value as Prometheus writes it: whole numbers without a fraction, `+Inf`, `NaN`."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    # `le` last, as client libraries write it; the others in the family's order as given.
    items = [(key, value) for key, value in labels.items() if key != "le"] + [(key, value) for key, value in labels.items() if key == "le"]
    return "{" + ",".join(f'{key}="{_escape_label(str(value))}"' for key, value in items) + "}"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


FORMATS = ("prometheus", "json")


def render(metrics: Metrics, fmt: str = "prometheus") -> str:
    """The metrics in `fmt` (`prometheus` or `json`)."""
    return to_json(metrics) if fmt == "json" else to_text(metrics)


def write_metrics_file(ctx: "Context", path: "str | Path", fmt: str = "prometheus") -> None:
    """Collect the metrics and replace `path` with them atomically (node_exporter's textfile collector reads it)."""
    from tqcli.files import write_atomically
    from tqcli.observability.metrics import collect

    write_atomically(path, render(collect(ctx), fmt), what="metrics file", example="--output /var/lib/node_exporter/tqcli.prom")
