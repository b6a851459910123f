"""Pair-quality and label-consistency checks: the registry.

Checks are data: each is a named function that takes the frame of parsed pairs and returns a boolean
Series (True = the row offends), registered once in `ROW_CHECKS` with its default severity. An `error`
quarantines the row, a `warning` keeps it and reports it. Adding a check is one function + one line, and
tests/pipelines/data_validation/test_checks.py fails until the new check has an offending example there.

Checks run in registry order; `CheckContext.kept` holds the rows no earlier error has quarantined, for
the checks that should only look at survivors (e.g. the per-category minimum). The frame columns they see:
`source_line`, `prompt` (str or None), `chosen`, `rejected` (normalised str), `bias_label` (the raw label
or None), `bias_type` (canonical name or None) and `pair_id`. The string measures come from `text.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from edu_bias_pipeline.pairs import nearest
from edu_bias_pipeline.pipelines.data_validation import text
from edu_bias_pipeline.pipelines.data_validation.config import Severity, ValidationConfig
from edu_bias_pipeline.taxonomy import label_key


@dataclass
class CheckContext:
    config: ValidationConfig
    kept: pd.Series  # bool, rows not quarantined by an earlier check
    taxonomy: dict[str, Sequence[str] | None] = field(default_factory=dict)
    _cache: dict[str, Any] = field(default_factory=dict)

    def cached(self, key: str, compute: Callable[[], Any]) -> Any:
        """Intermediate columns several checks share (near-duplicate keys, scripts), computed once."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]


CheckFunc = Callable[[pd.DataFrame, CheckContext], pd.Series]
# Given the frame, the context and the row positions a check flagged: one detail text per position, saying
# what exactly is wrong in that row (the field, its value, the bound). Checks without one use description.
ExplainFunc = Callable[[pd.DataFrame, CheckContext, np.ndarray], list[str]]


@dataclass(frozen=True)
class Check:
    name: str
    severity: Severity
    func: CheckFunc
    description: str
    explain: ExplainFunc | None = None


# Checks applied while reading a line, before a pair exists (see nodes.ingest_lines).
PARSE_CHECKS: dict[str, str] = {
    "invalid_utf8": "the line is not valid UTF-8",
    "invalid_json": "the line is not valid (standard) JSON",
    "not_an_object": "the line is JSON but not an object",
    "missing_field": "a required field (chosen, rejected) is missing",
    "wrong_type": "a field has the wrong type (texts must be strings, meta an object)",
    "invalid_characters": "lone surrogates, U+FFFD replacement characters or Unicode noncharacters",
}


# ---------------------------------------------------------------------------------------------- helpers
TEXT_COLUMNS = ("prompt", "chosen", "rejected")
PAIR_COLUMNS = ("chosen", "rejected")


def _column(frame: pd.DataFrame, ctx: CheckContext, column: str) -> pa.Array:
    """A text column as an Arrow array, converted once per run and shared by the checks."""
    return ctx.cached(f"arrow:{column}", lambda: text.arrow_strings(frame[column]))


def _matches(frame: pd.DataFrame, ctx: CheckContext, columns: Sequence[str], pattern: str) -> pd.Series:
    """Rows where any of `columns` matches the RE2 `pattern` (None never matches)."""
    hit = np.zeros(len(frame), dtype=bool)
    for column in columns:
        hit |= text.matches(_column(frame, ctx, column), pattern)
    return pd.Series(hit, index=frame.index)


def _keys(frame: pd.DataFrame, ctx: CheckContext) -> dict[str, pa.Array]:
    return ctx.cached(
        "near_keys", lambda: {c: text.near_keys(frame[c], _column(frame, ctx, c)) for c in TEXT_COLUMNS}
    )


def _nonempty(frame: pd.DataFrame, ctx: CheckContext, column: str) -> np.ndarray:
    return ctx.cached(f"nonempty:{column}", lambda: text.lengths(_column(frame, ctx, column)) > 0)


def _text_codes(frame: pd.DataFrame, ctx: CheckContext) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes of chosen/rejected texts (one shared codebook): set logic on ints, not strings."""

    def compute() -> tuple[np.ndarray, np.ndarray]:
        both = pa.concat_arrays([_column(frame, ctx, "chosen"), _column(frame, ctx, "rejected")])
        codes = text.codes(both)
        return codes[: len(frame)], codes[len(frame) :]

    return ctx.cached("text_codes", compute)


# ------------------------------------------------------------------------------------------- label checks
def missing_bias_type(frame: pd.DataFrame, ctx: CheckContext) -> pd.Series:
    trimmed = pc.utf8_trim_whitespace(_column(frame, ctx, "bias_label"))
    empty = pc.equal(pc.utf8_length(trimmed), 0).fill_null(True)
    return pd.Series(empty.to_numpy(zero_copy_only=False), index=frame.index)


def unknown_bias_type(frame: pd.DataFrame, ctx: CheckContext) -> pd.Series:
    return frame["bias_type"].isna() & ~missing_bias_type(frame, ctx)


def nearest_labels(label: str, taxonomy: dict[str, Sequence[str] | None], n: int = 3) -> list[str]:
    """Up to `n` allowed spellings closest to `label` ("canonical" or "alias (-> canonical)")."""
    spellings: dict[str, str] = {}
    for canonical, aliases in taxonomy.items():
        spellings.setdefault(label_key(canonical), canonical)
        for alias in aliases or ():
            spellings.setdefault(label_key(str(alias)), f"{alias} (-> {canonical})")
    return [spellings[key] for key in nearest(label_key(label), spellings, n)]


def explain_unknown_bias_type(frame: pd.DataFrame, ctx: CheckContext, positions: np.ndarray) -> list[str]:
    allowed = ", ".join(ctx.taxonomy) or "(the taxonomy is empty)"
    out = []
    for label in frame["bias_label"].to_numpy()[positions]:
        near = nearest_labels(str(label), ctx.taxonomy)
        hint = f"nearest allowed: {', '.join(near)}" if near else f"allowed: {allowed}"
        out.append(
            f"meta.bias_type {label!r} is not in the taxonomy or its aliases; {hint}. Fix the label, or add "
            "it as an alias under `taxonomy` in conf/base/parameters_data_validation.yml"
        )
    return out


def conflicting_bias_type(frame: pd.DataFrame, ctx: CheckContext) -> pd.Series:
    """The same text carries different bias types in different pairs."""
    chosen, rejected = _text_codes(frame, ctx)
    type_codes, _ = pd.factorize(frame["bias_type"], use_na_sentinel=True)
    known = (type_codes >= 0) & _nonempty(frame, ctx, "chosen") & _nonempty(frame, ctx, "rejected")
    labelled = pd.DataFrame(
        {
            "text": np.concatenate([chosen[known], rejected[known]]),
            "kind": np.concatenate([type_codes[known], type_codes[known]]),
        }
    ).drop_duplicates()
    n_texts = int(max(chosen.max(initial=-1), rejected.max(initial=-1))) + 1
    conflicted = np.bincount(labelled["text"].to_numpy(), minlength=n_texts) > 1
    return pd.Series(known & (conflicted[chosen] | conflicted[rejected]), index=frame.index)


def contradictory_preference(frame: pd.DataFrame, ctx: CheckContext) -> pd.Series:
    """A text preferred in one pair and rejected in another (A>B here, B>A or B>X elsewhere)."""
    chosen, rejected = _text_codes(frame, ctx)
    usable = _nonempty(frame, ctx, "chosen") & _nonempty(frame, ctx, "rejected") & (chosen != rejected)
    n_texts = int(max(chosen.max(initial=-1), rejected.max(initial=-1))) + 1
    as_chosen = np.bincount(chosen[usable], minlength=n_texts) > 0
    as_rejected = np.bincount(rejected[usable], minlength=n_texts) > 0
    both = as_chosen & as_rejected  # identical_pair reports chosen == rejected, so not counted here
    return pd.Series(usable & (both[chosen] | both[rejected]), index=frame.index)


def category_below_minimum(frame: pd.DataFrame, ctx: CheckContext) -> pd.Series:
    """Pairs of a bias type with fewer surviving pairs than `min_pairs_per_category`."""
    survivors = frame.loc[ctx.kept & frame["bias_type"].notna(), "bias_type"]
    counts = survivors.value_counts()
    small = counts.index[counts < ctx.config.min_pairs_per_category]
    return ctx.kept & frame["bias_type"].isin(small)


# ------------------------------------------------------------------------------------------- text checks
def empty_text(frame: pd.DataFrame, ctx: CheckContext) -> pd.Series:
    return (frame["chosen"] == "") | (frame["rejected"] == "")


def identical_pair(frame: pd.DataFrame, ctx: CheckContext) -> pd.Series:
    return (frame["chosen"] == frame["rejected"]) & (frame["chosen"] != "")


def length_out_of_bounds(frame: pd.DataFrame, ctx: CheckContext) -> pd.Series:
    cfg = ctx.config
    bad = np.zeros(len(frame), dtype=bool)
    for column in PAIR_COLUMNS:
        n = text.lengths(_column(frame, ctx, column))
        bad |= (n > 0) & ((n < cfg.min_chars) | (n > cfg.max_chars))
    prompt_len = text.lengths(_column(frame, ctx, "prompt"))
    bad |= prompt_len > cfg.max_prompt_chars
    return pd.Series(bad, index=frame.index)


def explain_length(frame: pd.DataFrame, ctx: CheckContext, positions: np.ndarray) -> list[str]:
    cfg = ctx.config
    bounds = [(c, cfg.min_chars, cfg.max_chars, "min_chars", "max_chars") for c in PAIR_COLUMNS]
    bounds.append(("prompt", 0, cfg.max_prompt_chars, None, "max_prompt_chars"))
    lengths = {column: text.lengths(_column(frame, ctx, column)) for column, *_ in bounds}
    out = []
    for pos in positions:
        parts = []
        for column, low, high, low_name, high_name in bounds:
            n = int(lengths[column][pos])
            chars = f"{n} character{'s' if n != 1 else ''}"
            if n > high:
                parts.append(f"field '{column}' has {chars}, above {high_name}={high}")
            elif 0 < n < low:
                parts.append(f"field '{column}' has {chars}, below {low_name}={low}")
        out.append("; ".join(parts) or "a text is out of the configured bounds")
    return out


def truncated_text(frame: pd.DataFrame, ctx: CheckContext) -> pd.Series:
    """A text cut off mid-sentence: ends in an ellipsis (…, ⋯, ..., 。。。)."""
    return _matches(frame, ctx, PAIR_COLUMNS, r"(\.\.\.|…|⋯|。。。)$")


def mojibake(frame: pd.DataFrame, ctx: CheckContext) -> pd.Series:
    """UTF-8 text that was decoded as Latin-1/cp1252 somewhere upstream, e.g. 教育 -> æ•™è‚²."""
    candidates = _matches(frame, ctx, TEXT_COLUMNS, text.MOJIBAKE_CANDIDATE)
    hit = pd.Series(False, index=frame.index)
    for idx in candidates[candidates].index:
        hit.at[idx] = any(
            isinstance(frame.at[idx, c], str) and text.is_mojibake(frame.at[idx, c]) for c in TEXT_COLUMNS
        )
    return hit


def control_characters(frame: pd.DataFrame, ctx: CheckContext) -> pd.Series:
    """C0/C1 control characters other than tab and line breaks."""
    return _matches(
        frame, ctx, TEXT_COLUMNS, r"[\x{0000}-\x{0008}\x{000B}\x{000C}\x{000E}-\x{001F}\x{007F}-\x{009F}]"
    )


def invalid_characters(frame: pd.DataFrame, ctx: CheckContext) -> pd.Series:
    """U+FFFD (a decoder already gave up on this text) and Unicode noncharacters."""
    return _matches(frame, ctx, TEXT_COLUMNS, r"[\x{FFFD}\x{FFFE}\x{FFFF}\x{FDD0}-\x{FDEF}]")


def invisible_characters(frame: pd.DataFrame, ctx: CheckContext) -> pd.Series:
    """Zero-width and bidi-control characters: invisible, yet they change tokens and duplicate keys."""
    return _matches(
        frame, ctx, TEXT_COLUMNS, r"[\x{200B}-\x{200F}\x{202A}-\x{202E}\x{2060}-\x{2064}\x{FEFF}]"
    )


def language_mismatch(frame: pd.DataFrame, ctx: CheckContext) -> pd.Series:
    """Chosen and rejected are written in different scripts (e.g. Chinese vs English)."""
    a = text.scripts(_column(frame, ctx, "chosen"))
    b = text.scripts(_column(frame, ctx, "rejected"))
    return pd.Series((a != "") & (b != "") & (a != b), index=frame.index)


# ------------------------------------------------------------------------------------------- duplicates
def duplicate_pair(frame: pd.DataFrame, ctx: CheckContext) -> pd.Series:
    """Same normalised prompt, chosen and rejected (same pair_id) as an earlier line: later copies go."""
    return frame["pair_id"].duplicated(keep="first")


def near_duplicate_pair(frame: pd.DataFrame, ctx: CheckContext) -> pd.Series:
    """Equal to an earlier pair up to punctuation, whitespace, case and full-width forms."""
    keys = _keys(frame, ctx)
    combined = np.zeros(len(frame), dtype=np.int64)
    for column in TEXT_COLUMNS:  # fold the three key codes into one dense code per pair
        codes = text.codes(keys[column])
        combined, _ = pd.factorize(combined * (int(codes.max(initial=0)) + 1) + codes)
    near = pd.Series(combined).duplicated(keep="first").to_numpy()
    return pd.Series(near, index=frame.index) & ~frame["pair_id"].duplicated(keep="first")


def similar_pair(frame: pd.DataFrame, ctx: CheckContext) -> pd.Series:
    """Chosen and rejected both at least `similarity_threshold` (rapidfuzz ratio, 0..100) alike to those
    of an earlier pair with the same prompt.

    Sorted-neighbourhood blocking instead of all pairs: rows are sorted by (chosen key, rejected key) and
    by (rejected key, chosen key), and each row is compared with its next `similarity_window` rows in
    either order. rapidfuzz's `cpdist` scores those aligned lists in C++, so cost is O(n log n + n*w).
    """
    from rapidfuzz import fuzz
    from rapidfuzz.process import cpdist

    n = len(frame)
    flagged = np.zeros(n, dtype=bool)
    candidates = np.flatnonzero(ctx.kept.to_numpy())
    if len(candidates) < 2:
        return pd.Series(flagged, index=frame.index)
    keys = _keys(frame, ctx)
    picked = pa.array(candidates)
    table = pa.table({"c": keys["chosen"].take(picked), "r": keys["rejected"].take(picked)})
    ck = table["c"].to_numpy()
    rk = table["r"].to_numpy()
    c_len = pc.utf8_length(table["c"]).to_numpy().astype(np.int64)
    r_len = pc.utf8_length(table["r"]).to_numpy().astype(np.int64)
    pk = text.codes(keys["prompt"])[candidates]
    threshold = ctx.config.similarity_threshold
    for first, second in (("c", "r"), ("r", "c")):
        order = pc.sort_indices(table, sort_keys=[(first, "ascending"), (second, "ascending")]).to_numpy()
        for step in range(1, min(ctx.config.similarity_window, len(order) - 1) + 1):
            a, b = order[:-step], order[step:]
            # ratio = 2*matches/(len_a+len_b) <= 2*min/(len_a+len_b): most neighbours fail on lengths alone.
            keep = (pk[a] == pk[b]) & (c_len[a] > 0)
            for lens in (c_len, r_len):
                keep &= 200 * np.minimum(lens[a], lens[b]) >= threshold * (lens[a] + lens[b])
            a, b = a[keep], b[keep]
            # Score chosen first; rejected only where chosen is already close enough.
            close = cpdist(ck[a], ck[b], scorer=fuzz.ratio, score_cutoff=threshold, workers=-1) >= threshold
            a, b = a[close], b[close]
            close = cpdist(rk[a], rk[b], scorer=fuzz.ratio, score_cutoff=threshold, workers=-1) >= threshold
            # Flag the later line of each close pair; the first occurrence stays clean.
            flagged[np.maximum(candidates[a[close]], candidates[b[close]])] = True
    return pd.Series(flagged, index=frame.index)


# Registry order matters only for checks that read `ctx.kept` (similar_pair, category_below_minimum).
ROW_CHECKS: tuple[Check, ...] = (
    Check("missing_bias_type", "error", missing_bias_type, "meta.bias_type is missing or empty"),
    Check(
        "unknown_bias_type",
        "error",
        unknown_bias_type,
        "meta.bias_type is not in the taxonomy (after aliases)",
        explain_unknown_bias_type,
    ),
    Check("empty_text", "error", empty_text, "chosen or rejected is empty or whitespace only"),
    Check("identical_pair", "error", identical_pair, "chosen equals rejected after normalisation"),
    Check(
        "length_out_of_bounds",
        "error",
        length_out_of_bounds,
        "a text is shorter/longer than the configured bounds",
        explain_length,
    ),
    Check("truncated_text", "error", truncated_text, "a text ends in an ellipsis (…, ..., 。。。): cut off"),
    Check("mojibake", "error", mojibake, "UTF-8 decoded as Latin-1/cp1252 upstream (e.g. æ•™è‚²)"),
    Check(
        "control_characters", "error", control_characters, "C0/C1 control characters other than tab/newline"
    ),
    Check(
        "invalid_characters", "error", invalid_characters, "U+FFFD replacement characters or noncharacters"
    ),
    Check("invisible_characters", "warning", invisible_characters, "zero-width or bidi-control characters"),
    Check("language_mismatch", "error", language_mismatch, "chosen and rejected are in different scripts"),
    Check("duplicate_pair", "error", duplicate_pair, "exact copy of an earlier pair (first kept)"),
    Check(
        "near_duplicate_pair",
        "error",
        near_duplicate_pair,
        "an earlier pair differs only in punctuation, spacing, case or full-width forms",
    ),
    Check(
        "contradictory_preference",
        "error",
        contradictory_preference,
        "a text is chosen in one pair and rejected in another",
    ),
    Check(
        "conflicting_bias_type",
        "warning",
        conflicting_bias_type,
        "the same text is labelled with different bias types in different pairs",
    ),
    Check(
        "similar_pair",
        "warning",
        similar_pair,
        "chosen and rejected are both near-identical (rapidfuzz ratio) to an earlier pair's",
    ),
    Check(
        "category_below_minimum",
        "warning",
        category_below_minimum,
        "the pair's bias type has fewer kept pairs than min_pairs_per_category",
    ),
)


def configured_checks(config: ValidationConfig) -> list[Check]:
    """`ROW_CHECKS` with the severities of `config.severity` applied (`off` drops a check)."""
    known = {c.name for c in ROW_CHECKS} | set(PARSE_CHECKS)
    unknown = sorted(set(config.severity) - known)
    if unknown:
        raise ValueError(
            f"data_validation.severity names unknown checks {unknown}; known checks: {sorted(known)}"
        )
    checks = []
    for check in ROW_CHECKS:
        setting = config.severity.get(check.name, check.severity)
        if setting == "off":
            continue
        checks.append(Check(check.name, setting, check.func, check.description, check.explain))
    return checks


def check_descriptions() -> dict[str, str]:
    return {**PARSE_CHECKS, **{c.name: c.description for c in ROW_CHECKS}}
