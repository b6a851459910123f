"""The validation stage's headline for `dvc metrics show` / `dvc exp show`: the numbers runs are compared by.

The full summary (every check, every bias type) stays in validation_summary.json, a plain DVC out: as
metrics it would add a column per check and category to every `dvc exp show` row.
"""

from __future__ import annotations

from typing import Any


def validation_headline(summary: dict[str, Any]) -> dict[str, Any]:
    return {
        "pairs_in": summary["rows_read"],
        "validated": summary["rows_kept"],
        "quarantined": summary["rows_quarantined"],
        "error_rate": summary["quarantined_share"],
        "passed": summary["passed"],
    }
