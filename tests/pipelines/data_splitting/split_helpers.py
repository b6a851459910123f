"""Builders of validated-pairs fixtures (the data_validation output contract) for the splitting tests."""

from __future__ import annotations

import json
from collections import Counter
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
                    prompt=kwargs.get("prompt")
                    if "prompt" in kwargs
                    else (None if i % 2 else f"{category} Q{i}?"),
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
    for text in (row.get("prompt"), row["chosen"], row["rejected"]):
        if not isinstance(text, str) or not text.strip():
            continue
        keys.add(("exact", normalize_text(text)))
        if near_duplicate_key(text):
            keys.add(("near", near_duplicate_key(text)))
    return keys


def common_keys(rows: list[dict[str, Any]], common_text_pairs: int | None) -> set[tuple[str, str]]:
    """Keys held by more than `common_text_pairs` input rows: boilerplate the split may spread (the rule,
    recomputed here independently of the code under test)."""
    if common_text_pairs is None:
        return set()
    held = Counter(key for row in rows for key in text_keys(row))
    return {k for k, n in held.items() if n > common_text_pairs}


def leaked_keys(
    splits: dict[str, list[dict[str, Any]]], common: set[tuple[str, str]] = frozenset()
) -> dict[tuple[str, str], set[str]]:
    """Text keys, other than the `common` ones, found in more than one split, with the splits they are in."""
    seen: dict[tuple[str, str], set[str]] = {}
    for split, rows in splits.items():
        for row in rows:
            for key in text_keys(row) - common:
                seen.setdefault(key, set()).add(split)
    return {k: v for k, v in seen.items() if len(v) > 1}


# ------------------------------------------------------------------- imported-QA-benchmark-shaped data
UNKNOWN_ANSWERS = ("无法确定", "cannot be determined", "不知道")
STOCK_PROMPT = "请阅读以下情境并回答问题。"
QA_GROUPS = {
    "age": ("老年人", "年轻人", "中年人", "60岁的人", "20岁的人"),
    "region": ("农村人", "城市人", "外地人", "本地人", "山区的人"),
    "religion": ("基督教信徒", "佛教信徒", "伊斯兰教信徒", "无宗教信仰者", "道教信徒"),
}
QA_QUESTIONS = {"age": 120, "region": 90, "religion": 70}


def qa_context(category: str, q: int) -> str:
    a, b = QA_GROUPS[category][q % 5], QA_GROUPS[category][(q + 1 + q // 5) % 5]
    if a == b:
        b = QA_GROUPS[category][(q + 2) % 5]
    return (
        f"第{q}次家长会（{category}）上，一位{a}家长和一位{b}家长都来了。"
        "老师说其中一位的孩子数学不好。谁的孩子数学不好？"
    )


def qa_distinctive_answer(category: str, q: int) -> str:
    # Questions 2k and 2k+1 get the same one.
    return f"{category}第{q // 2}组里那个总坐在最后一排、名叫小明的孩子"


def qa_benchmark_rows(questions: dict[str, int] = QA_QUESTIONS) -> list[dict[str, Any]]:
    """Pairs shaped like an imported QA bias benchmark (CBBQ's ambiguous contexts):

    - the prompt is a context + question shared by the 2-4 pairs asked about it (distinctive);
    - `chosen` is one of three "cannot be determined" wordings, each held by hundreds of pairs over the
      categories (common), `rejected` usually one of five group answers per category, each held by dozens
      of pairs (common);
    - every tenth question pair shares a distinctive rejected answer ("... 名叫小明的 ...") across two
      contexts, so grouping chains them (a group of up to 8 pairs);
    - 30 pairs per category carry one stock instruction as prompt (common) and their own texts.
    """
    rows: list[dict[str, Any]] = []
    line = 1
    for category, n_questions in questions.items():
        groups = QA_GROUPS[category]
        for q in range(n_questions):
            context = qa_context(category, q)
            answers = [groups[(q + k) % 5] for k in range(4)]
            if q % 10 in (0, 1):
                answers[1] = qa_distinctive_answer(category, q)
            for j in range(2 + q % 3):
                chosen = UNKNOWN_ANSWERS[(q + j) % 3] if j else UNKNOWN_ANSWERS[0]
                rows.append(validated_row(chosen, answers[j], category, line, prompt=context, source="qa"))
                line += 1
        for i in range(30):
            rows.append(
                validated_row(
                    f"{category}学生各有所长，第{i}例",
                    f"{category}学生天生学不好，第{i}例",
                    category,
                    line,
                    prompt=STOCK_PROMPT,
                    source="qa",
                )
            )
            line += 1
    return rows
