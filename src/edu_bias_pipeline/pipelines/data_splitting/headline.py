"""The split stage's headline for `dvc metrics show` / `dvc exp show`: pairs per split and realised ratios.

Per-category counts and targets stay in split_report.json, a plain DVC out.
"""

from __future__ import annotations

from typing import Any

SPLITS = ("train", "val", "test")


def split_headline(report: dict[str, Any]) -> dict[str, Any]:
    headline: dict[str, Any] = {"input_pairs": report["input_pairs"]}
    headline.update({f"{split}_pairs": report["totals"][split] for split in SPLITS})
    headline.update({f"{split}_ratio": report["realised_ratios"][split] for split in SPLITS})
    return headline
