"""Pair-quality and label-consistency checks.

Checks are data: each is a named function that takes the frame of parsed pairs and returns a boolean
Series (True = the row offends), registered once in `ROW_CHECKS` with its default severity. An `error`
quarantines the row, a `warning` keeps it and reports it. Adding a check is one function + one line.

Checks run in registry order; `CheckContext.kept` holds the rows no earlier error has quarantined, for
the checks that should only look at survivors (e.g. the per-category minimum). The frame columns they see:
`source_line`, `prompt` (str or None), `chosen`, `rejected` (normalised str), `bias_label` (the raw label
or None), `bias_type` (canonical name or None) and `pair_id`. The string work is vectorised with pyarrow
compute (RE2) so a million pairs take seconds, not minutes.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

Severity = Literal["error", "warning"]
SeveritySetting = Literal["error", "warning", "off"]


class ValidationConfig(BaseModel):
    """The `data_validation` parameters (conf/base/parameters_data_validation.yml)."""

    model_config = ConfigDict(extra="forbid")

    input_path: str = "data/01_raw/edu_bias_pairs.jsonl"
    min_chars: int = Field(2, ge=0)
    max_chars: int = Field(1000, ge=1)
    max_prompt_chars: int = Field(2000, ge=1)
    similarity_threshold: float = Field(96.0, ge=0, le=100)
    similarity_window: int = Field(3, ge=1)
    min_pairs_per_category: int = Field(30, ge=0)
    max_error_rate: float = Field(0.1, ge=0, le=1)
    severity: dict[str, SeveritySetting] = Field(default_factory=dict)
    suite_name: str = "validated_pairs"
    data_docs_dir: str = "data/08_reporting/data_docs"
    summary_path: str = "data/08_reporting/validation_summary.json"
    quarantine_path: str = "data/02_intermediate/quarantined_pairs.jsonl"


@dataclass
class CheckContext:
    config: ValidationConfig
    taxonomy: Mapping[str, Sequence[str] | None]
    kept: pd.Series  # bool, rows not quarantined by an earlier check
    _cache: dict[str, Any] = field(default_factory=dict)

    def cached(self, key: str, compute: Callable[[], Any]) -> Any:
        """Intermediate columns several checks share (near-duplicate keys, scripts), computed once."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]


CheckFunc = Callable[[pd.DataFrame, CheckContext], pd.Series]


@dataclass(frozen=True)
class Check:
    name: str
    severity: Severity
    func: CheckFunc
    description: str


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
def _arrow(values: pd.Series) -> pa.Array:
    return pa.array(values.tolist(), type=pa.large_string(), from_pandas=True)


def _series(values: pa.Array | pa.ChunkedArray | np.ndarray, index: pd.Index) -> pd.Series:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        values = values.to_numpy(zero_copy_only=False)
    return pd.Series(np.asarray(values, dtype=bool), index=index)


def _matches(frame: pd.DataFrame, columns: Sequence[str], pattern: str) -> pd.Series:
    """Rows where any of `columns` matches the RE2 `pattern` (None never matches)."""
    hit = np.zeros(len(frame), dtype=bool)
    for column in columns:
        found = pc.match_substring_regex(_arrow(frame[column]), pattern)
        hit |= found.fill_null(False).to_numpy(zero_copy_only=False)
    return pd.Series(hit, index=frame.index)


TEXT_COLUMNS = ("prompt", "chosen", "rejected")
PAIR_COLUMNS = ("chosen", "rejected")


@lru_cache(maxsize=1)
def _near_key_pattern() -> re.Pattern[str]:
    """One character class of every code point `pairs.near_duplicate_key` drops (space, P*, S*, C*).

    Built from unicodedata once (about a second) so keys are a regex substitution per text instead of a
    Python loop per character; tests check it agrees with `pairs.near_duplicate_key`.
    """
    ranges: list[tuple[int, int]] = []
    for cp in range(sys.maxunicode + 1):
        ch = chr(cp)
        if ch.isspace() or unicodedata.category(ch)[0] in ("P", "S", "C"):
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1] = (ranges[-1][0], cp)
            else:
                ranges.append((cp, cp))
    parts = [
        re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges
    ]
    return re.compile("[" + "".join(parts) + "]+")


def near_keys(texts: pd.Series) -> pd.Series:
    """Vectorised `pairs.near_duplicate_key`: NFKC, case-folded, without spaces/punctuation/symbols."""
    drop = _near_key_pattern().sub
    nfkc = unicodedata.normalize
    return pd.Series(
        [drop("", nfkc("NFKC", t).casefold()) if isinstance(t, str) else "" for t in texts],
        index=texts.index,
        dtype=object,
    )


def _keys(frame: pd.DataFrame, ctx: CheckContext) -> dict[str, pd.Series]:
    return ctx.cached("near_keys", lambda: {c: near_keys(frame[c]) for c in TEXT_COLUMNS})


# ------------------------------------------------------------------------------------------- label checks
def missing_bias_type(frame: pd.DataFrame, ctx: CheckContext) -> pd.Series:
    label = frame["bias_label"]
    return label.isna() | (label.astype(object).map(lambda v: isinstance(v, str) and not v.strip()))


def unknown_bias_type(frame: pd.DataFrame, ctx: CheckContext) -> pd.Series:
    return frame["bias_type"].isna() & ~missing_bias_type(frame, ctx)


def conflicting_bias_type(frame: pd.DataFrame, ctx: CheckContext) -> pd.Series:
    """The same text carries different bias types in different pairs."""
    known = frame[frame["bias_type"].notna()]
    long = pd.DataFrame(
        {
            "text": pd.concat([known["chosen"], known["rejected"]], ignore_index=True),
            "bias_type": pd.concat([known["bias_type"], known["bias_type"]], ignore_index=True),
        }
    )
    long = long[long["text"] != ""]
    kinds = long.groupby("text", sort=False)["bias_type"].nunique()
    conflicted = kinds.index[kinds > 1]
    return frame["chosen"].isin(conflicted) | frame["rejected"].isin(conflicted)


def contradictory_preference(frame: pd.DataFrame, ctx: CheckContext) -> pd.Series:
    """A text preferred in one pair and rejected in another (A>B here, B>A or B>X elsewhere)."""
    chosen, rejected = frame["chosen"], frame["rejected"]
    usable = (chosen != "") & (rejected != "") & (chosen != rejected)  # identical_pair reports those
    both = pd.Index(chosen[usable].unique()).intersection(pd.Index(rejected[usable].unique()))
    if both.empty:
        return pd.Series(False, index=frame.index)
    return usable & (chosen.isin(both) | rejected.isin(both))


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
        n = pc.utf8_length(_arrow(frame[column])).to_numpy(zero_copy_only=False)
        bad |= (n > 0) & ((n < cfg.min_chars) | (n > cfg.max_chars))
    prompt_len = pc.utf8_length(_arrow(frame["prompt"])).fill_null(0).to_numpy(zero_copy_only=False)
    bad |= prompt_len > cfg.max_prompt_chars
    return pd.Series(bad, index=frame.index)


def truncated_text(frame: pd.DataFrame, ctx: CheckContext) -> pd.Series:
    """A text cut off mid-sentence: ends in an ellipsis (…, ⋯, ..., 。。。)."""
    return _matches(frame, PAIR_COLUMNS, r"(\.\.\.|…|⋯|。。。)$")


# A UTF-8 lead byte read as Latin-1/cp1252 (Â..ô) followed by a continuation byte read the same way
# (U+0080..U+00BF, or the cp1252 letters/punctuation that bytes 0x80..0x9F decode to).
_MOJIBAKE_RE2 = (
    r"[\x{00C2}-\x{00F4}][\x{0080}-\x{00BF}\x{0152}\x{0153}\x{0160}\x{0161}\x{0178}\x{017D}\x{017E}"
    r"\x{0192}\x{02C6}\x{02DC}\x{2013}\x{2014}\x{2018}-\x{201A}\x{201C}-\x{201E}\x{2020}-\x{2022}"
    r"\x{2026}\x{2030}\x{2039}\x{203A}\x{20AC}\x{2122}]"
)
_MOJIBAKE_RUN = re.compile(
    "[\u00c2-\u00f4][\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc"
    "\u2013\u2014\u2018-\u201a\u201c-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a\u20ac\u2122]{1,3}"
)


def is_mojibake(text: str) -> bool:
    """True when a suspicious run re-encodes (cp1252 or Latin-1) into valid multi-byte UTF-8."""
    for match in _MOJIBAKE_RUN.finditer(text):
        run = match.group()
        for codec in ("cp1252", "latin-1"):
            try:
                decoded = run.encode(codec).decode("utf-8")
            except (UnicodeEncodeError, UnicodeDecodeError):
                continue
            if decoded and ord(decoded[0]) > 0x7F:
                return True
    return False


def mojibake(frame: pd.DataFrame, ctx: CheckContext) -> pd.Series:
    """UTF-8 text that was decoded as Latin-1/cp1252 somewhere upstream, e.g. 教育 -> æ•™è‚²."""
    candidates = _matches(frame, TEXT_COLUMNS, _MOJIBAKE_RE2)
    hit = pd.Series(False, index=frame.index)
    for idx in candidates[candidates].index:
        hit.at[idx] = any(isinstance(frame.at[idx, c], str) and is_mojibake(frame.at[idx, c]) for c in TEXT_COLUMNS)
    return hit


def control_characters(frame: pd.DataFrame, ctx: CheckContext) -> pd.Series:
    """C0/C1 control characters other than tab and line breaks."""
    return _matches(frame, TEXT_COLUMNS, r"[\x{0000}-\x{0008}\x{000B}\x{000C}\x{000E}-\x{001F}\x{007F}-\x{009F}]")


def invalid_characters(frame: pd.DataFrame, ctx: CheckContext) -> pd.Series:
    """U+FFFD (a decoder already gave up on this text) and Unicode noncharacters."""
    return _matches(frame, TEXT_COLUMNS, r"[\x{FFFD}\x{FFFE}\x{FFFF}\x{FDD0}-\x{FDEF}]")


def invisible_characters(frame: pd.DataFrame, ctx: CheckContext) -> pd.Series:
    """Zero-width and bidi-control characters: invisible, yet they change tokens and duplicate keys."""
    return _matches(frame, TEXT_COLUMNS, r"[\x{200B}-\x{200F}\x{202A}-\x{202E}\x{2060}-\x{2064}\x{FEFF}]")


def scripts(texts: pd.Series) -> np.ndarray:
    """Dominant script per text: 'han', 'latin', 'other' (letters of other scripts) or '' (no letters)."""
    arr = _arrow(texts)
    han = pc.count_substring_regex(arr, r"\p{Han}").fill_null(0).to_numpy(zero_copy_only=False)
    latin = pc.count_substring_regex(arr, r"\p{Latin}").fill_null(0).to_numpy(zero_copy_only=False)
    letters = pc.count_substring_regex(arr, r"\pL").fill_null(0).to_numpy(zero_copy_only=False)
    other = letters - han - latin
    # One Han character carries about a word; Latin letters come about five to a word.
    han_w, latin_w = han * 5, latin
    out = np.full(len(texts), "", dtype=object)
    out[(letters > 0)] = "other"
    out[(han_w >= latin_w) & (han_w >= other) & (han > 0)] = "han"
    out[(latin_w > han_w) & (latin_w >= other) & (latin > 0)] = "latin"
    return out


def language_mismatch(frame: pd.DataFrame, ctx: CheckContext) -> pd.Series:
    """Chosen and rejected are written in different scripts (e.g. Chinese vs English)."""
    a = scripts(frame["chosen"])
    b = scripts(frame["rejected"])
    return pd.Series((a != "") & (b != "") & (a != b), index=frame.index)


# ------------------------------------------------------------------------------------------- duplicates
def duplicate_pair(frame: pd.DataFrame, ctx: CheckContext) -> pd.Series:
    """Same normalised prompt, chosen and rejected (same pair_id) as an earlier line: later copies go."""
    return frame["pair_id"].duplicated(keep="first")


def near_duplicate_pair(frame: pd.DataFrame, ctx: CheckContext) -> pd.Series:
    """Equal to an earlier pair up to punctuation, whitespace, case and full-width forms."""
    keys = _keys(frame, ctx)
    key_frame = pd.DataFrame({c: keys[c] for c in TEXT_COLUMNS})
    return key_frame.duplicated(keep="first") & ~frame["pair_id"].duplicated(keep="first")


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
    ck = keys["chosen"].to_numpy()[candidates]
    rk = keys["rejected"].to_numpy()[candidates]
    pk = keys["prompt"].to_numpy()[candidates]
    threshold = ctx.config.similarity_threshold
    for first, second in ((ck, rk), (rk, ck)):
        order = np.lexsort((second, first))  # last key is the primary one
        for step in range(1, min(ctx.config.similarity_window, len(order) - 1) + 1):
            a, b = order[:-step], order[step:]
            same_prompt = pk[a] == pk[b]
            if not same_prompt.any():
                continue
            a, b = a[same_prompt], b[same_prompt]
            sim_c = cpdist(ck[a], ck[b], scorer=fuzz.ratio, workers=-1)
            sim_r = cpdist(rk[a], rk[b], scorer=fuzz.ratio, workers=-1)
            close = (np.minimum(sim_c, sim_r) >= threshold) & (ck[a] != "")
            # Flag the later line of each close pair; the first occurrence stays clean.
            later = np.maximum(candidates[a[close]], candidates[b[close]])
            flagged[later] = True
    return pd.Series(flagged, index=frame.index)


# Registry order matters only for checks that read `ctx.kept` (similar_pair, category_below_minimum).
ROW_CHECKS: tuple[Check, ...] = (
    Check("missing_bias_type", "error", missing_bias_type, "meta.bias_type is missing or empty"),
    Check("unknown_bias_type", "error", unknown_bias_type, "meta.bias_type is not in the taxonomy (after aliases)"),
    Check("empty_text", "error", empty_text, "chosen or rejected is empty or whitespace only"),
    Check("identical_pair", "error", identical_pair, "chosen equals rejected after normalisation"),
    Check("length_out_of_bounds", "error", length_out_of_bounds, "a text is shorter/longer than the configured bounds"),
    Check("truncated_text", "error", truncated_text, "a text ends in an ellipsis (…, ..., 。。。): cut off"),
    Check("mojibake", "error", mojibake, "UTF-8 decoded as Latin-1/cp1252 upstream (e.g. æ•™è‚²)"),
    Check("control_characters", "error", control_characters, "C0/C1 control characters other than tab/newline"),
    Check("invalid_characters", "error", invalid_characters, "U+FFFD replacement characters or noncharacters"),
    Check("invisible_characters", "warning", invisible_characters, "zero-width or bidi-control characters"),
    Check("language_mismatch", "error", language_mismatch, "chosen and rejected are in different scripts"),
    Check("duplicate_pair", "error", duplicate_pair, "exact copy of an earlier pair (first kept)"),
    Check("near_duplicate_pair", "error", near_duplicate_pair,
          "an earlier pair differs only in punctuation, spacing, case or full-width forms"),
    Check("contradictory_preference", "error", contradictory_preference,
          "a text is chosen in one pair and rejected in another"),
    Check("conflicting_bias_type", "warning", conflicting_bias_type,
          "the same text is labelled with different bias types in different pairs"),
    Check("similar_pair", "warning", similar_pair,
          "chosen and rejected are both near-identical (rapidfuzz ratio) to an earlier pair's"),
    Check("category_below_minimum", "warning", category_below_minimum,
          "the pair's bias type has fewer kept pairs than min_pairs_per_category"),
)


def configured_checks(config: ValidationConfig) -> list[Check]:
    """`ROW_CHECKS` with the severities of `config.severity` applied (`off` drops a check)."""
    known = set(ROW_CHECKS_BY_NAME) | set(PARSE_CHECKS)
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
        checks.append(Check(check.name, setting, check.func, check.description))
    return checks


ROW_CHECKS_BY_NAME: dict[str, Check] = {c.name: c for c in ROW_CHECKS}


def check_descriptions() -> dict[str, str]:
    return {**PARSE_CHECKS, **{c.name: c.description for c in ROW_CHECKS}}
