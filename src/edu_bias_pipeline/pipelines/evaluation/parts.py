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


def md_text(label: Any) -> str:
    """A label read from a user's file (a bias type, language, CBBQ category) as inert Markdown text, for
    a table cell or running text: `|`, `<`, `>`, `&`, backticks and backslashes escaped, line breaks made
    spaces, so it can neither split a table row nor reach the report as HTML. The one escaper of the
    evaluation reports; labels go in as plain text, not in a code span (no escape works inside one)."""
    text = " ".join(str(label).replace("\r", " ").replace("\n", " ").split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("\\", "\\\\").replace("`", "\\`").replace("|", "\\|")


def scope_cell(scope: str) -> str:
    """A scope (a bias type or language, read from the user's file) as a Markdown table cell: `overall` in
    bold, anything else through `md_text`."""
    if scope == "overall":
        return "**overall**"
    return md_text(scope)
