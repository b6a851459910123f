"""Ingest + validate: raw JSONL lines -> validated pairs, quarantine, summary, Data Docs, fail gate.

Every non-blank input line ends up in exactly one of validated_pairs / quarantined_pairs
(rows read = rows kept + rows quarantined); the gate runs last, so the reports exist even when it fails.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson
import pandas as pd

from edu_bias_pipeline import pairs
from edu_bias_pipeline.pipelines.data_validation.checks import (
    PARSE_CHECKS,
    CheckContext,
    ValidationConfig,
    check_descriptions,
    configured_checks,
)
from edu_bias_pipeline.taxonomy import alias_table, label_key

logger = logging.getLogger(__name__)

BOM = b"\xef\xbb\xbf"
_WHITESPACE = b" \t\r\n\x0b\x0c"
INGEST_COLUMNS = (
    "source_line", "raw", "parse_reasons", "parse_details",
    "prompt", "chosen", "rejected", "bias_label", "meta",
)
VALIDATED_COLUMNS = (
    pairs.PAIR_ID, pairs.SOURCE_LINE, pairs.PROMPT, pairs.CHOSEN, pairs.REJECTED,
    pairs.BIAS_TYPE, pairs.WARNINGS, pairs.META,
)
QUARANTINE_COLUMNS = ("source_line", "reasons", "raw", "details")
_RECORD_FIELDS = frozenset((pairs.PROMPT, pairs.CHOSEN, pairs.REJECTED, pairs.META))


class DataValidationError(RuntimeError):
    """The input has more bad rows than `data_validation.max_error_rate` allows."""


def _has_errors(checked: pd.DataFrame) -> np.ndarray:
    return np.fromiter((bool(e) for e in checked["errors"]), dtype=bool, count=len(checked))


def _has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= ch <= "\udfff" for ch in value)
    if isinstance(value, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogate(v) for v in value)
    return False


def _parse_line(line: bytes) -> tuple[Any, str | None, str | None]:
    """(object, reason, detail) of one non-blank line; reason None when it parsed."""
    try:
        return orjson.loads(line), None, None
    except orjson.JSONDecodeError as exc:
        first_error = str(exc)
    # orjson rejects lone surrogate escapes and NaN/Infinity; the stdlib tells those apart.
    try:
        obj = json.loads(line.decode("utf-8"))
    except ValueError:
        return None, "invalid_json", first_error
    if _has_surrogate(obj):
        return None, "invalid_characters", "a string holds a lone surrogate escape (\\ud800-\\udfff)"
    return None, "invalid_json", f"non-standard JSON: {first_error}"


def ingest_lines(raw_lines: list[bytes]) -> tuple[pd.DataFrame, dict[str, int]]:
    """Decode and parse raw lines; structural problems become `parse_reasons`, never exceptions.

    Blank lines are skipped (counted in the stats); a UTF-8 BOM on the first line is dropped.
    Text fields are normalised (`pairs.normalize_text`); an empty prompt becomes None.
    """
    cols: dict[str, list[Any]] = {c: [] for c in INGEST_COLUMNS}
    blank = 0
    normalize = pairs.normalize_text
    for number, line in enumerate(raw_lines, start=1):
        if number == 1 and line.startswith(BOM):
            line = line[len(BOM):]
        if not line.strip(_WHITESPACE):
            blank += 1
            continue
        reasons: list[str] = []
        details: list[str] = []
        prompt = chosen = rejected = label = None
        meta: dict[str, Any] | None = None
        try:
            raw = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raw = line.decode("utf-8", errors="backslashreplace")
            reasons.append("invalid_utf8")
            details.append(f"byte {exc.start}: {exc.reason}")
        if not reasons:
            obj, reason, detail = _parse_line(line)
            if reason:
                reasons.append(reason)
                details.append(detail or "")
            elif not isinstance(obj, dict):
                reasons.append("not_an_object")
                details.append(f"top-level JSON value is a {type(obj).__name__}")
            else:
                for name in (pairs.CHOSEN, pairs.REJECTED):
                    value = obj.get(name)
                    if name not in obj:
                        reasons.append("missing_field")
                        details.append(f"field '{name}' is missing")
                    elif not isinstance(value, str):
                        reasons.append("wrong_type")
                        details.append(f"field '{name}' is {type(value).__name__}, not a string")
                value = obj.get(pairs.PROMPT)
                if value is not None and not isinstance(value, str):
                    reasons.append("wrong_type")
                    details.append(f"field 'prompt' is {type(value).__name__}, not a string or null")
                raw_meta = obj.get(pairs.META, {})
                if raw_meta is None:
                    raw_meta = {}
                if not isinstance(raw_meta, dict):
                    reasons.append("wrong_type")
                    details.append(f"field 'meta' is {type(raw_meta).__name__}, not an object")
                else:
                    label = raw_meta.get(pairs.BIAS_TYPE)
                    if label is not None and not isinstance(label, str):
                        reasons.append("wrong_type")
                        details.append(f"field 'meta.bias_type' is {type(label).__name__}, not a string")
                        label = None
                    # Unknown top-level fields travel in meta (meta wins a clash): never a silent drop.
                    meta = {k: v for k, v in obj.items() if k not in _RECORD_FIELDS}
                    meta.update((k, v) for k, v in raw_meta.items() if k != pairs.BIAS_TYPE)
                if not reasons:
                    chosen = normalize(obj[pairs.CHOSEN])
                    rejected = normalize(obj[pairs.REJECTED])
                    prompt = normalize(obj[pairs.PROMPT]) if obj.get(pairs.PROMPT) else None
                    prompt = prompt or None
        cols["source_line"].append(number)
        cols["raw"].append(raw)
        cols["parse_reasons"].append(reasons)
        cols["parse_details"].append(details)
        cols["prompt"].append(prompt)
        cols["chosen"].append(chosen)
        cols["rejected"].append(rejected)
        cols["bias_label"].append(label)
        cols["meta"].append(meta)
    frame = pd.DataFrame({c: pd.Series(v, dtype=object) for c, v in cols.items()})
    frame["source_line"] = frame["source_line"].astype("int64")
    stats = {"lines_total": len(raw_lines), "blank_lines": blank, "rows_read": len(frame)}
    return frame, stats


def check_pairs(
    ingested: pd.DataFrame, taxonomy: Mapping[str, Sequence[str] | None], params: dict[str, Any]
) -> pd.DataFrame:
    """Apply every configured check; adds `pair_id`, `bias_type`, `errors`, `warnings`, `details`."""
    config = ValidationConfig(**params)
    frame = ingested.copy()
    parsed = np.fromiter((not r for r in frame["parse_reasons"]), dtype=bool, count=len(frame))
    table = alias_table(taxonomy)
    frame["bias_type"] = [table.get(label_key(v)) if isinstance(v, str) else None for v in frame["bias_label"]]
    frame["pair_id"] = [
        pairs.pair_id(p, c, r) if ok else None
        for ok, p, c, r in zip(parsed, frame["prompt"], frame["chosen"], frame["rejected"], strict=True)
    ]

    sub = frame.loc[parsed].reset_index(drop=True)
    kept = pd.Series(True, index=sub.index)
    ctx = CheckContext(config=config, taxonomy=taxonomy, kept=kept)
    checks = configured_checks(config)
    flags: dict[str, np.ndarray] = {}
    for check in checks:
        mask = check.func(sub, ctx).reindex(sub.index, fill_value=False).to_numpy(dtype=bool)
        flags[check.name] = mask
        if check.severity == "error":
            ctx.kept = ctx.kept & ~mask
        logger.debug("check %s (%s): %d rows", check.name, check.severity, int(mask.sum()))

    positions = np.flatnonzero(parsed)
    n = len(frame)
    errors: list[list[str]] = [list(r) for r in frame["parse_reasons"]]
    warnings: list[list[str]] = [[] for _ in range(n)]
    for check in checks:
        target = errors if check.severity == "error" else warnings
        for pos in positions[flags[check.name]]:
            target[pos].append(check.name)
    frame["errors"] = errors
    frame[pairs.WARNINGS] = warnings
    descriptions = {c.name: c.description for c in checks}
    frame["details"] = [
        list(parse_details) + [f"{name}: {descriptions[name]}" for name in errs[len(parse_details):]]
        for parse_details, errs in zip(frame["parse_details"], errors, strict=True)
    ]
    return frame


def partition_pairs(
    checked: pd.DataFrame, ingest_stats: dict[str, int], params: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Split into validated / quarantined rows and build the summary (all written before the gate)."""
    config = ValidationConfig(**params)
    has_error = _has_errors(checked)
    kept = checked.loc[~has_error]
    bad = checked.loc[has_error]

    validated = pd.DataFrame(
        {
            pairs.PAIR_ID: kept["pair_id"],
            pairs.SOURCE_LINE: kept["source_line"],
            pairs.PROMPT: kept["prompt"],
            pairs.CHOSEN: kept["chosen"],
            pairs.REJECTED: kept["rejected"],
            pairs.BIAS_TYPE: kept["bias_type"],
            pairs.WARNINGS: kept[pairs.WARNINGS],
            pairs.META: kept["meta"],
        },
        columns=list(VALIDATED_COLUMNS),
    ).reset_index(drop=True)
    quarantined = pd.DataFrame(
        {
            "source_line": bad["source_line"],
            "reasons": bad["errors"],
            "raw": bad["raw"],
            "details": [
                [f"{config.input_path}:{line}: {d}" for d in ds]
                for line, ds in zip(bad["source_line"], bad["details"], strict=True)
            ],
        },
        columns=list(QUARANTINE_COLUMNS),
    ).reset_index(drop=True)

    summary = build_summary(checked, validated, quarantined, ingest_stats, config)
    return validated, quarantined, summary


def build_summary(
    checked: pd.DataFrame,
    validated: pd.DataFrame,
    quarantined: pd.DataFrame,
    ingest_stats: dict[str, int],
    config: ValidationConfig,
) -> dict[str, Any]:
    rows_read = int(ingest_stats["rows_read"])
    if rows_read != len(validated) + len(quarantined):
        raise AssertionError(  # the conservation invariant: a bug here must never pass silently
            f"rows read {rows_read} != kept {len(validated)} + quarantined {len(quarantined)}"
        )
    severities = {name: "error" for name in PARSE_CHECKS}
    severities.update({c.name: c.severity for c in configured_checks(config)})
    descriptions = check_descriptions()
    error_counts = pd.Series([r for rs in checked["errors"] for r in set(rs)], dtype=object).value_counts()
    warning_counts = pd.Series([w for ws in checked[pairs.WARNINGS] for w in ws], dtype=object).value_counts()
    checks = {
        name: {
            "severity": severity,
            "rows": int(error_counts.get(name, 0) + warning_counts.get(name, 0)),
            "description": descriptions.get(name, ""),
        }
        for name, severity in severities.items()
    }

    per_type: dict[str, dict[str, int]] = {}
    read_by_type = checked["bias_type"].value_counts()
    kept_by_type = validated[pairs.BIAS_TYPE].value_counts()
    for name in sorted(set(read_by_type.index) | set(kept_by_type.index)):
        read, kept = int(read_by_type.get(name, 0)), int(kept_by_type.get(name, 0))
        per_type[name] = {"read": read, "kept": kept, "quarantined": read - kept}
    unknown = checked.loc[checked["bias_type"].isna() & checked["bias_label"].notna(), "bias_label"]
    below = sorted(k for k, v in per_type.items() if v["kept"] < config.min_pairs_per_category)

    warning_list = [
        {"source_line": int(line), "check": name}
        for line, names in zip(validated[pairs.SOURCE_LINE], validated[pairs.WARNINGS], strict=True)
        for name in names
    ]
    rate = (len(quarantined) / rows_read) if rows_read else 0.0
    return {
        "input": config.input_path,
        "lines_total": int(ingest_stats["lines_total"]),
        "blank_lines": int(ingest_stats["blank_lines"]),
        "rows_read": rows_read,
        "rows_kept": len(validated),
        "rows_quarantined": len(quarantined),
        "quarantined_share": round(rate, 6),
        "max_error_rate": config.max_error_rate,
        "passed": bool(rows_read > 0 and rate <= config.max_error_rate),
        "checks": checks,
        "per_bias_type": per_type,
        "unknown_bias_labels": {str(k): int(v) for k, v in unknown.value_counts().items()},
        "categories_below_minimum": below,
        "min_pairs_per_category": config.min_pairs_per_category,
        "rows_with_warnings": int(sum(1 for ws in validated[pairs.WARNINGS] if ws)),
        "warnings": warning_list,
        "reports": {
            "summary": config.summary_path,
            "quarantine": config.quarantine_path,
            "data_docs": f"{config.data_docs_dir.rstrip('/')}/index.html",
        },
    }


def build_data_docs(checked: pd.DataFrame, taxonomy: Mapping[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Run the GX suite over the validated rows and write the Data Docs site; returns its statistics."""
    from edu_bias_pipeline.pipelines.data_validation.expectations import run_data_docs

    config = ValidationConfig(**params)
    kept = checked.loc[~_has_errors(checked)]
    return run_data_docs(kept, list(taxonomy), config)


def enforce_error_rate(summary: dict[str, Any], data_docs: dict[str, Any], params: dict[str, Any]) -> None:
    """The fail policy. Runs last: the summary, quarantine and Data Docs already exist when it raises."""
    config = ValidationConfig(**params)
    reports = summary["reports"]
    where = (
        f"See the summary {reports['summary']}, the quarantine {reports['quarantine']} "
        f"and the Data Docs {reports['data_docs']}."
    )
    counts = (
        f"{summary['rows_read']} rows read from {summary['input']}: {summary['rows_kept']} kept, "
        f"{summary['rows_quarantined']} quarantined ({summary['quarantined_share']:.1%})"
    )
    if summary["rows_read"] == 0:
        raise DataValidationError(f"No pairs read from {summary['input']} (empty or blank file). {where}")
    if summary["quarantined_share"] > config.max_error_rate:
        top = sorted(
            ((v["rows"], k) for k, v in summary["checks"].items() if v["severity"] == "error" and v["rows"]),
            reverse=True,
        )[:5]
        raise DataValidationError(
            f"Data validation failed: {counts}, above max_error_rate={config.max_error_rate:.1%} "
            f"(data_validation.max_error_rate in conf/base/parameters_data_validation.yml). "
            f"Most frequent errors: {', '.join(f'{k}={n}' for n, k in top)}. {where}"
        )
    logger.info(
        "Data validation passed: %s; %d rows with warnings; GX suite '%s' %d/%d expectations met. %s",
        counts, summary["rows_with_warnings"], data_docs.get("suite"),
        data_docs.get("successful_expectations", 0), data_docs.get("evaluated_expectations", 0), where,
    )
