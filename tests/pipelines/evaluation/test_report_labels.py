"""Labels read from the user's files (bias types) cannot break eval_report.md: every table row keeps its
header's cells and no label reaches the report as raw HTML."""

from __future__ import annotations

import re

from pipelines.evaluation.test_length_confound import _pairs as scored_pairs

from edu_bias_pipeline.pipelines.evaluation.nodes import (
    build_metrics,
    compute_category_metrics,
    render_report,
)

HOSTILE = ["<svg onload=alert(1)>|pipe", "new\nline `tick`"]


def _pairs(bias_types):
    return scored_pairs([(bias_type, 5, 6, -5.0, -6.0) for bias_type in bias_types])


def _cells(row: str) -> int:
    """Cells of a Markdown table row: `|` separators not escaped by a backslash."""
    return len(re.split(r"(?<!\\)\|", row.strip().strip("|")))


def test_a_hostile_bias_type_label_cannot_split_a_row_or_inject_html():
    frame = _pairs(["age", *HOSTILE])
    per_category = compute_category_metrics(frame, {"age": None, "<b>missing</b>": None})
    run_info = {
        "model": "m",
        "model_source": "trained_model",
        "beta": 0.1,
        "is_adapter": False,
        "reference": "ref",
        "reference_logps": "computed",
        "dtype": "float32",
        "device": "cpu",
        "metadata_source": "file",
        "n_pairs": len(frame),
    }
    report = render_report(per_category, build_metrics(frame, per_category, run_info), run_info)
    assert "<svg" not in report and "<b>" not in report
    lines = report.splitlines()
    tables = 0
    for i, line in enumerate(lines):
        if line.startswith("|") and (i == 0 or not lines[i - 1].startswith("|")):
            tables += 1
            header = _cells(line)
            j = i
            while j < len(lines) and lines[j].startswith("|"):
                assert _cells(lines[j]) == header, lines[j]
                j += 1
            assert j - i == 2 + 5  # header, rule, 3 bias types, micro, macro
    assert tables == 1
    assert "| new line \\`tick\\` | 1 |" in report
    assert "| &lt;svg onload=alert(1)&gt;\\|pipe | 1 |" in report
    assert "not in the taxonomy: &lt;svg onload=alert(1)&gt;\\|pipe, new line \\`tick\\`." in report
    assert "about them: &lt;b&gt;missing&lt;/b&gt;." in report
