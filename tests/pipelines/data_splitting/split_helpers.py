"""Builders of validated-pairs fixtures (the data_validation output contract) for the splitting tests."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from conftest import read_jsonl, write_jsonl

from edu_bias_pipeline.files import fingerprint_file
from edu_bias_pipeline.pairs import near_duplicate_key, normalize_text, pair_id

VALIDATED = Path("data/02_intermediate/validated_pairs.jsonl")
SUMMARY = Path("data/08_reporting/validation_summary.json")
SPLIT_FILES = {s: Path(f"data/05_model_input/{s}.jsonl") for s in ("train", "val", "test")}
REPORT = Path("data/08_reporting/split_report.json")
CHART = Path("data/08_reporting/split_per_category.png")


def validated_row(
    chosen: str,
    rejected: str,
    bias_type: str,
    line: int,
    prompt: str | None = None,
    eval_only: bool | None = None,
    **meta: Any,
) -> dict[str, Any]:
    if eval_only is not None:
        meta["eval_only"] = eval_only
    return {
        "pair_id": pair_id(prompt, chosen, rejected),
        "source_line": line,
        "prompt": prompt,
        "chosen": normalize_text(chosen),
        "rejected": normalize_text(rejected),
        "bias_type": bias_type,
        "warnings": [],
        "meta": {"source": "test", **meta},
    }


def distinct_rows(counts: dict[str, int], start_line: int = 1, **kwargs: Any) -> list[dict[str, Any]]:
    """`counts[c]` pairs per bias_type, every text unique (so every pair is its own leakage group)."""
    rows = []
    line = start_line
    for category, n in counts.items():
        for i in range(n):
            rows.append(
                validated_row(
                    f"{category} pupils of every background learn well, case {i}",
                    f"{category} pupils of that background cannot learn, case {i}",
                    category,
                    line,
                    prompt=kwargs.get("prompt") if "prompt" in kwargs else (None if i % 2 else f"Q{i}?"),
                )
            )
            line += 1
    return rows


def write_validated(project: Path, rows: Iterable[dict[str, Any]]) -> Path:
    """The file plus the passed validation_summary.json that describes it (data_splitting's gate)."""
    path = write_jsonl(project / VALIDATED, list(rows))
    summary = {
        "passed": True,
        "reports": {"summary": SUMMARY.as_posix()},
        "validated_pairs": {"path": VALIDATED.as_posix(), **fingerprint_file(path)},
    }
    (project / SUMMARY).write_text(json.dumps(summary), encoding="utf-8")
    return path


def read_splits(project: Path) -> dict[str, list[dict[str, Any]]]:
    return {s: read_jsonl(project / p) for s, p in SPLIT_FILES.items()}


def text_keys(row: dict[str, Any]) -> set[tuple[str, str]]:
    """Every form under which a row's texts count as 'the same text' (the no-leakage definition)."""
    keys = set()
    for text in (row["chosen"], row["rejected"]):
        keys.add(("exact", normalize_text(text)))
        if near_duplicate_key(text):
            keys.add(("near", near_duplicate_key(text)))
    return keys


def leaked_keys(splits: dict[str, list[dict[str, Any]]]) -> dict[tuple[str, str], set[str]]:
    """Text keys found in more than one split, with the splits they appear in."""
    seen: dict[tuple[str, str], set[str]] = {}
    for split, rows in splits.items():
        for row in rows:
            for key in text_keys(row):
                seen.setdefault(key, set()).add(split)
    return {k: v for k, v in seen.items() if len(v) > 1}
