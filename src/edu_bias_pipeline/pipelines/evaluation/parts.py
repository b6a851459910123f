"""What the optional parts of the evaluation stage (CrowS-Pairs, retention) share: their headline for
`dvc metrics show` and the chart a switched-off part leaves in its place."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def part_headline(metrics: Mapping[str, Any], part: str, keys: Sequence[str]) -> dict[str, Any]:
    """The model, whether the part ran, and its `keys` that the run produced, prefixed `<part>/`."""
    headline = {"model": metrics["model"], f"{part}/enabled": bool(metrics["enabled"])}
    headline.update({f"{part}/{k}": metrics[k] for k in keys if k in metrics})
    return headline


def switched_off_figure(text: str):
    """A small figure saying the part is off, so the chart file is never a stale one from an earlier run."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 1.5))
    fig.text(0.5, 0.5, text, ha="center")
    return fig


def scope_cell(scope: str) -> str:
    """A scope (a bias type or language, read from the user's file) as a Markdown table cell: `overall` in
    bold, a `|` or line break in a label cannot split the row."""
    if scope == "overall":
        return "**overall**"
    return " ".join(str(scope).split()).replace("|", "\\|")
