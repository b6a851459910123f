"""Ingest + validate: raw JSONL lines -> validated pairs, quarantine, summary, Data Docs, fail gate.

Every non-blank input line ends up in exactly one of validated_pairs / quarantined_pairs
(rows read = rows kept + rows quarantined); the gate runs last, so the reports exist even when it fails.
"""

from __future__ import annotations

import functools
import gc
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import orjson
import pandas as pd

from edu_bias_pipeline import pairs
from edu_bias_pipeline.pipelines.data_validation.checks import (
    PARSE_CHECKS,
    CheckContext,
    check_descriptions,
    configured_checks,
)
from edu_bias_pipeline.pipelines.data_validation.config import ValidationConfig
from edu_bias_pipeline.taxonomy import resolver

logger = logging.getLogger(__name__)

BOM = b"\xef\xbb\xbf"
QUARANTINE_COLUMNS = ("source_line", "reasons", "raw", "details")
_RECORD_FIELDS = frozenset((pairs.PROMPT, pairs.CHOSEN, pairs.REJECTED, pairs.META))


def _gc_paused(func: Callable[..., Any]) -> Callable[..., Any]:
    """Run `func` with the cyclic garbage collector paused.

    These nodes build millions of small acyclic containers (parsed dicts, lists, tuples); each allocation
    burst triggers full collections that find nothing, which cost more than half of the ingest time at
    1M rows. Reference counting still frees everything; collection resumes afterwards.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        enabled = gc.isenabled()
        gc.disable()
        try:
            return func(*args, **kwargs)
        finally:
            if enabled:
                gc.enable()

    return wrapper


class DataValidationError(RuntimeError):
    """The input has more bad rows than `data_validation.max_error_rate` allows."""


class VerdictMismatchError(RuntimeError):
    """The Data Docs verdict and validation_summary.json's `passed` disagree: a bug in this project (the
    verdict suite must re-state the summary's gate), never something a user's data can cause."""


class ValidatedFileMismatchError(RuntimeError):
    """validated_pairs.jsonl on disk is not the frame this run kept (changed while the run saved it)."""


def _has_reasons(reasons: Sequence[Any]) -> np.ndarray:
    """Per row: whether its list of check names (parse reasons, errors) is non-empty."""
    return np.fromiter((bool(r) for r in reasons), dtype=bool, count=len(reasons))


def _has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= ch <= "\udfff" for ch in value)
    if isinstance(value, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogate(v) for v in value)
    return False


_PARSE_CHUNK = 4096
NO_REASONS: tuple[str, ...] = ()  # shared by every clean row: a million empty lists cost ~100 MB


class _Bad:
    """A line that failed before it became a pair: its reasons and their details."""

    __slots__ = ("reasons", "details")

    def __init__(self, reason: str, detail: str) -> None:
        self.reasons = [reason]
        self.details = [detail]


def _parse_one(line: bytes) -> Any:
    """The JSON value of one line, or a `_Bad` saying why there is none."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        first_error = str(exc)
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _Bad("invalid_utf8", f"byte {exc.start}: {exc.reason}")
    # orjson rejects lone surrogate escapes and NaN/Infinity; the stdlib tells those apart.
    try:
        obj = json.loads(text)
    except ValueError:
        return _Bad("invalid_json", first_error)
    if _has_surrogate(obj):
        return _Bad("invalid_characters", "a string holds a lone surrogate escape (\\ud800-\\udfff)")
    return _Bad("invalid_json", f"non-standard JSON: {first_error}")


def _parse_all(lines: list[bytes]) -> list[Any]:
    """`_parse_one` over all lines; chunks of good lines go through one list comprehension."""
    loads = orjson.loads
    out: list[Any] = []
    for start in range(0, len(lines), _PARSE_CHUNK):
        chunk = lines[start : start + _PARSE_CHUNK]
        try:
            out.extend([loads(line) for line in chunk])
        except orjson.JSONDecodeError:
            out.extend(_parse_one(line) for line in chunk)
    return out


def _is_clean(obj: Any) -> bool:
    """The common case, tested cheaply: an object with string texts, optional string prompt, and an
    optional meta object whose bias_type is a string or absent."""
    if type(obj) is not dict:
        return False
    prompt, meta = obj.get(pairs.PROMPT), obj.get(pairs.META)
    if type(obj.get(pairs.CHOSEN)) is not str or type(obj.get(pairs.REJECTED)) is not str:
        return False
    if prompt is not None and type(prompt) is not str:
        return False
    if meta is None:
        return True
    if type(meta) is not dict:
        return False
    label = meta.get(pairs.BIAS_TYPE)
    return label is None or type(label) is str


def _problems(obj: Any) -> tuple[list[str], list[str]]:
    """Reasons and details for a parsed line that `_is_clean` refused."""
    if isinstance(obj, _Bad):
        return obj.reasons, obj.details
    if not isinstance(obj, dict):
        return ["not_an_object"], [f"top-level JSON value is a {type(obj).__name__}"]
    reasons: list[str] = []
    details: list[str] = []
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
    meta = obj.get(pairs.META)
    if meta is not None and not isinstance(meta, dict):
        reasons.append("wrong_type")
        details.append(f"field 'meta' is {type(meta).__name__}, not an object")
    elif isinstance(meta, dict):
        label = meta.get(pairs.BIAS_TYPE)
        if label is not None and not isinstance(label, str):
            reasons.append("wrong_type")
            details.append(f"field 'meta.bias_type' is {type(label).__name__}, not a string")
    return reasons, details


def _meta_of(obj: dict[str, Any]) -> dict[str, Any]:
    """meta without bias_type; unknown top-level fields join it (meta wins a clash): never a silent drop.

    Reuses the freshly parsed meta dict instead of copying it: a million copies are ~0.3 GiB.
    """
    meta = obj.get(pairs.META) or {}
    meta.pop(pairs.BIAS_TYPE, None)
    if obj.keys() <= _RECORD_FIELDS:
        return meta
    merged = {k: v for k, v in obj.items() if k not in _RECORD_FIELDS and k != pairs.BIAS_TYPE}
    merged.update(meta)
    return merged


def input_hints(fmt: str | None, path: str) -> list[str]:
    """What the whole file at `path` is when it is not UTF-8 JSON Lines (`pairs.file_format`), and how
    to convert it. Such a file fails line by line (every line invalid_utf8 / invalid_json /
    not_an_object); the hint says why at once."""
    if fmt is None:
        return []
    command = pairs.convert_command(fmt, path)
    if fmt == pairs.JSON_ARRAY:
        return [
            "the file starts with '[': it looks like one JSON array, not JSON Lines. Convert it to JSONL, "
            f"one object per line, e.g. `{command}`"
        ]
    return [
        f"the file looks like {fmt} (a byte-order mark or NUL bytes between characters); this stage "
        f"reads UTF-8. Save it as UTF-8, e.g. `{command}`"
    ]


@_gc_paused
def ingest_lines(raw_lines: list[bytes]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Parse raw lines into a frame of candidate pairs; structural problems become `parse_reasons`.

    Blank lines are skipped (counted in the stats); a UTF-8 BOM on the first line is dropped. `raw` keeps
    the line's bytes (decoded only for quarantined rows). Texts are normalised with `pairs.normalize_text`
    (NFC, trimmed); an empty prompt becomes None. Nothing here raises on bad input.
    """
    lines = list(raw_lines)
    if lines and lines[0].startswith(BOM):
        lines[0] = lines[0][len(BOM) :]
    numbers = [i for i, line in enumerate(lines, start=1) if line and not line.isspace()]
    kept_lines = [lines[i - 1] for i in numbers]
    objs = _parse_all(kept_lines)

    normalize = pairs.normalize_text
    n = len(objs)
    prompt: list[str | None] = [None] * n
    chosen: list[str | None] = [None] * n
    rejected: list[str | None] = [None] * n
    label: list[str | None] = [None] * n
    meta: list[dict[str, Any] | None] = [None] * n
    reasons: list[Any] = [NO_REASONS] * n
    details: list[Any] = [NO_REASONS] * n
    for i, obj in enumerate(objs):
        if not _is_clean(obj):
            reasons[i], details[i] = _problems(obj)
            continue
        chosen[i] = normalize(obj[pairs.CHOSEN])
        rejected[i] = normalize(obj[pairs.REJECTED])
        p = obj.get(pairs.PROMPT)
        if p:
            prompt[i] = normalize(p) or None
        m = obj.get(pairs.META)
        label[i] = m.get(pairs.BIAS_TYPE) if m else None
        if label[i] is None and type(obj.get(pairs.BIAS_TYPE)) is str:
            label[i] = obj[pairs.BIAS_TYPE]  # a top-level bias_type is read when meta has none
        meta[i] = _meta_of(obj)
        objs[i] = None  # the parsed dict is not needed any more; its strings live on in the columns
    frame = pd.DataFrame(
        {
            "source_line": np.asarray(numbers, dtype=np.int64),
            "raw": pd.Series(kept_lines, dtype=object),
            "parse_reasons": pd.Series(reasons, dtype=object),
            "parse_details": pd.Series(details, dtype=object),
            "prompt": pd.Series(prompt, dtype=object),
            "chosen": pd.Series(chosen, dtype=object),
            "rejected": pd.Series(rejected, dtype=object),
            "bias_label": pd.Series(label, dtype=object),
            "meta": pd.Series(meta, dtype=object),
        }
    )
    stats = {
        "lines_total": len(raw_lines),
        "blank_lines": len(raw_lines) - n,
        "rows_read": n,
        "file_format": pairs.file_format(lines[:50]),
    }
    return frame, stats


@_gc_paused
def check_pairs(
    ingested: pd.DataFrame, taxonomy: Mapping[str, Sequence[str] | None], params: ValidationConfig
) -> pd.DataFrame:
    """Apply every configured check; adds `pair_id`, `bias_type`, `errors`, `warnings`, `details`.

    `params` is typed, so Kedro validates the `data_validation` group (e.g. min_chars <= max_chars) when
    the run starts, before any node runs.
    """
    config = ValidationConfig.parse(params)
    frame = ingested.copy()
    parsed = ~_has_reasons(frame["parse_reasons"])
    labels = frame["bias_label"]
    to_canonical = resolver(taxonomy)
    canonical = {label: to_canonical(label) for label in pd.unique(labels.dropna())}
    frame["bias_type"] = pd.Series([canonical.get(v) for v in labels], index=frame.index, dtype=object)
    frame["pair_id"] = pd.Series(
        _pair_ids(frame["prompt"], frame["chosen"], frame["rejected"], parsed),
        index=frame.index,
        dtype=object,
    )

    sub = frame.loc[parsed].reset_index(drop=True)
    kept = pd.Series(True, index=sub.index)
    ctx = CheckContext(config=config, kept=kept, taxonomy=dict(taxonomy))
    checks = configured_checks(config)
    flags: dict[str, np.ndarray] = {}
    for check in checks:
        mask = check.func(sub, ctx).reindex(sub.index, fill_value=False).to_numpy(dtype=bool)
        flags[check.name] = mask
        if check.severity == "error":
            ctx.kept = ctx.kept & ~mask
        logger.debug("check %s (%s): %d rows", check.name, check.severity, int(mask.sum()))

    positions = np.flatnonzero(parsed)
    errors: list[Any] = list(frame["parse_reasons"])
    warnings: list[Any] = [NO_REASONS] * len(frame)
    for check in checks:
        target = errors if check.severity == "error" else warnings
        for pos in positions[flags[check.name]]:
            target[pos] = (*target[pos], check.name)
    descriptions = {c.name: c.description for c in checks}
    # Row-specific texts (which field, its length, the bound; the label and the nearest allowed ones)
    # for the error checks that can say more than their description.
    explained: dict[str, dict[int, str]] = {}
    for check in checks:
        if check.severity == "error" and check.explain is not None and flags[check.name].any():
            flagged = np.flatnonzero(flags[check.name])
            texts = check.explain(sub, ctx, flagged)
            explained[check.name] = dict(zip(positions[flagged].tolist(), texts, strict=True))
    details: list[Any] = list(frame["parse_details"])
    for i in np.flatnonzero(_has_reasons(errors)):
        known = details[i]
        details[i] = [
            *known,
            *(
                f"{name}: {explained.get(name, {}).get(i, descriptions[name])}"
                for name in errors[i][len(known) :]
            ),
        ]
    frame["errors"] = pd.Series(errors, index=frame.index, dtype=object)
    frame[pairs.WARNINGS] = pd.Series(warnings, index=frame.index, dtype=object)
    frame["details"] = pd.Series(details, index=frame.index, dtype=object)
    return frame


def _pair_ids(
    prompts: pd.Series, chosen: pd.Series, rejected: pd.Series, parsed: np.ndarray
) -> list[str | None]:
    """`pairs.pair_id` of every parsed row (its texts are normalised already)."""
    return [
        pairs.pair_id(p, c, r, normalized=True) if ok else None
        for ok, p, c, r in zip(parsed, prompts, chosen, rejected, strict=True)
    ]


@_gc_paused
def partition_pairs(
    checked: pd.DataFrame,
    ingest_stats: dict[str, Any],
    params: ValidationConfig,
    locations: Mapping[str, str],
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Split into validated / quarantined rows and build the summary (all written before the gate).

    `locations` (catalog `data_validation_locations`): the input, summary, quarantine and Data Docs paths
    the summary and the messages name, as the catalog sets them."""
    config = ValidationConfig.parse(params)
    has_error = _has_reasons(checked["errors"])
    kept = checked.loc[~has_error]
    bad = checked.loc[has_error]

    # The working frame's columns already carry the contract's names.
    validated = kept[list(pairs.VALIDATED_FIELDS)].reset_index(drop=True)
    quarantined = pd.DataFrame(
        {
            "source_line": bad["source_line"],
            "reasons": bad["errors"],
            "raw": [line.decode("utf-8", errors="backslashreplace") for line in bad["raw"]],
            "details": [
                [f"{locations['input']}:{line}: {d}" for d in ds]
                for line, ds in zip(bad["source_line"], bad["details"], strict=True)
            ],
        },
        columns=list(QUARANTINE_COLUMNS),
    ).reset_index(drop=True)

    summary = build_summary(checked, validated, quarantined, ingest_stats, config, locations)
    return validated, quarantined, summary


def build_summary(
    checked: pd.DataFrame,
    validated: pd.DataFrame,
    quarantined: pd.DataFrame,
    ingest_stats: dict[str, Any],
    config: ValidationConfig,
    locations: Mapping[str, str],
) -> dict[str, Any]:
    rows_read = int(ingest_stats["rows_read"])
    if rows_read != len(validated) + len(quarantined):
        raise AssertionError(  # the conservation invariant: a bug here must never pass silently
            f"rows read {rows_read} != kept {len(validated)} + quarantined {len(quarantined)}"
        )
    hints = input_hints(ingest_stats.get("file_format"), locations["input"])
    for hint in hints:
        logger.warning("Input %s: %s", locations["input"], hint)
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
        "input": locations["input"],
        "lines_total": int(ingest_stats["lines_total"]),
        "blank_lines": int(ingest_stats["blank_lines"]),
        "rows_read": rows_read,
        "rows_kept": len(validated),
        "rows_quarantined": len(quarantined),
        "quarantined_share": round(rate, 6),
        "max_error_rate": config.max_error_rate,
        "passed": bool(rows_read > 0 and rate <= config.max_error_rate),
        "input_hints": hints,
        "checks": checks,
        "per_bias_type": per_type,
        "unknown_bias_labels": {str(k): int(v) for k, v in unknown.value_counts().items()},
        "categories_below_minimum": below,
        "min_pairs_per_category": config.min_pairs_per_category,
        "rows_with_warnings": int(sum(1 for ws in validated[pairs.WARNINGS] if ws)),
        "warnings": warning_list,
        "reports": {
            "summary": locations["summary"],
            "quarantine": locations["quarantine"],
            "data_docs": f"{locations['data_docs'].rstrip('/')}/index.html",
        },
    }


def seal_summary(summary: dict[str, Any], validated_fingerprint: dict[str, Any]) -> dict[str, Any]:
    """The summary plus the fingerprint of the validated_pairs file as saved (lines, bytes, sha256).

    Runs after `partition_pairs` has saved validated_pairs (its `summary` input is that node's output),
    and the summary is saved after it: whatever point a run is killed at, validation_summary.json either
    describes the validated_pairs.jsonl beside it byte for byte or it does not match, and data_splitting
    refuses the pair (see data_splitting/gate.py). Every save is atomic (edu_bias_pipeline.datasets).
    """
    # (An empty frame is written as one blank line, hence the rows_kept test.)
    if summary["rows_kept"] and validated_fingerprint["lines"] != summary["rows_kept"]:
        raise ValidatedFileMismatchError(  # never describe a file that is not the one this run kept
            f"{validated_fingerprint['path']} has {validated_fingerprint['lines']} lines after saving, "
            f"but this run kept {summary['rows_kept']} rows: the file changed while it was saved (another "
            f"run or process writing it?). No summary was written for it; rerun "
            f"`kedro run --pipelines data_validation` (one run at a time)."
        )
    return {**summary, "validated_pairs": validated_fingerprint}


def build_data_docs(
    checked: pd.DataFrame, taxonomy: Mapping[str, Any], params: ValidationConfig, site_dir: str
) -> dict[str, Any]:
    """Run the GX suites over every row read and write the Data Docs site into `site_dir` (catalog
    `data_docs`); returns its statistics.

    All rows, not only the kept ones: the verdict suite re-states the quality gate (so the pages and
    validation_summary.json agree) and the row-check suite lists what every check flagged.
    """
    from edu_bias_pipeline.pipelines.data_validation.expectations import run_data_docs

    config = ValidationConfig.parse(params)
    kept = checked.loc[~_has_reasons(checked["errors"])]
    counts = {
        "rows read": len(checked),
        "rows kept": len(kept),
        "rows quarantined": len(checked) - len(kept),
        **{f"kept {name}": int(n) for name, n in kept["bias_type"].value_counts().sort_index().items()},
    }
    return run_data_docs(checked, list(taxonomy), config, site_dir, counts)


def enforce_error_rate(summary: dict[str, Any], data_docs: dict[str, Any]) -> None:
    """The fail policy, as `build_summary` decided it (`passed`). Runs last: the summary, quarantine and
    Data Docs already exist when it raises."""
    reports = summary["reports"]
    where = (
        f"See the summary {reports['summary']}, the quarantine {reports['quarantine']} "
        f"and the Data Docs {reports['data_docs']}."
    )
    counts = (
        f"{summary['rows_read']} rows read from {summary['input']}: {summary['rows_kept']} kept, "
        f"{summary['rows_quarantined']} quarantined ({summary['quarantined_share']:.1%})"
    )
    hints = "".join(f" Hint: {summary['input']}: {h}." for h in summary.get("input_hints", []))
    if bool(data_docs.get("success")) is not bool(summary["passed"]):
        raise VerdictMismatchError(
            f"Bug in edu_bias_pipeline: the Data Docs verdict (suite '{data_docs.get('suite')}': "
            f"{'passed' if data_docs.get('success') else 'failed'}) contradicts validation_summary.json "
            f"(passed={summary['passed']}). Failed expectations: {data_docs.get('failed_expectations')}. "
            f"Please report it with {reports['summary']} and {reports['data_docs']}."
        )
    if summary["rows_read"] == 0:
        raise DataValidationError(f"No pairs read from {summary['input']} (empty or blank file). {where}")
    if not summary["passed"]:
        top = sorted(
            ((v["rows"], k) for k, v in summary["checks"].items() if v["severity"] == "error" and v["rows"]),
            reverse=True,
        )[:5]
        raise DataValidationError(
            f"Data validation failed: {counts}, above max_error_rate={summary['max_error_rate']:.1%} "
            f"(data_validation.max_error_rate in conf/base/parameters_data_validation.yml). "
            f"Most frequent errors: {', '.join(f'{k}={n}' for n, k in top)}.{hints} {where}"
        )
    logger.info(
        "Data validation passed: %s; %d rows with warnings; GX suite '%s' %d/%d expectations met. %s",
        counts,
        summary["rows_with_warnings"],
        data_docs.get("suite"),
        data_docs.get("successful_expectations", 0),
        data_docs.get("evaluated_expectations", 0),
        where,
    )
