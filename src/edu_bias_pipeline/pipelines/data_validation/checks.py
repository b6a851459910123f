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
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, model_validator

from edu_bias_pipeline.pairs import near_duplicate_key, nearest
from edu_bias_pipeline.params import validate_params
from edu_bias_pipeline.taxonomy import label_key

PARAMS_HINT = "conf/base/parameters_data_validation.yml (or --params data_validation.<key>=...)"

# Parameters of earlier releases that repeated a catalog path: the entry that now holds it.
MOVED_TO_CATALOG = {
    "input_path": "the input file is the catalog's `raw_pairs` filepath (--params raw_pairs_path=PATH)",
    "summary_path": "the summary file is the catalog's `validation_summary` filepath",
    "quarantine_path": "the quarantine file is the catalog's `quarantined_pairs` filepath",
    "data_docs_dir": "the Data Docs directory is the catalog's `data_docs` filepath",
}

Severity = Literal["error", "warning"]
SeveritySetting = Literal["error", "warning", "off"]


class ValidationConfig(BaseModel):
    """The `data_validation` parameters (conf/base/parameters_data_validation.yml)."""

    model_config = ConfigDict(extra="forbid")

    min_chars: int = Field(2, ge=0)
    max_chars: int = Field(1000, ge=1)
    max_prompt_chars: int = Field(2000, ge=1)
    similarity_threshold: float = Field(96.0, ge=0, le=100)
    similarity_window: int = Field(3, ge=1)
    min_pairs_per_category: int = Field(30, ge=0)
    max_error_rate: float = Field(0.1, ge=0, le=1)
    severity: dict[str, SeveritySetting] = Field(default_factory=dict)
    suite_name: str = "validated_pairs"

    @model_validator(mode="before")
    @classmethod
    def _paths_are_in_the_catalog(cls, values: Any) -> Any:
        moved = sorted(set(values) & set(MOVED_TO_CATALOG)) if isinstance(values, dict) else []
        if moved:
            where = "; ".join(f"data_validation.{key}: {MOVED_TO_CATALOG[key]}" for key in moved)
            raise ValueError(
                f"{where}. Paths are set once, in conf/base/catalog.yml; remove the key from {PARAMS_HINT}"
            )
        return values

    @model_validator(mode="after")
    def _bounds_ordered(self) -> ValidationConfig:
        if self.min_chars > self.max_chars:
            raise ValueError(
                f"data_validation.min_chars ({self.min_chars}) is greater than data_validation.max_chars "
                f"({self.max_chars}): every text would be out of bounds and quarantined. Set min_chars <= "
                f"max_chars in {PARAMS_HINT}"
            )
        return self

    # Kedro hands nodes typed as ValidationConfig the validated model; nodes that still take the parameter
    # group as a dict and unpack it (`ValidationConfig(**params)`) get the same values through these two.
    def keys(self) -> Any:
        return type(self).model_fields.keys()

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)


def parse_validation_config(params: ValidationConfig | dict[str, Any] | None) -> ValidationConfig:
    """The typed `data_validation` parameters, from the model Kedro validated or from a plain dict."""
    return validate_params(ValidationConfig, params, "data_validation", PARAMS_HINT)


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
def _arrow(values: pd.Series) -> pa.Array:
    return pa.array(values.tolist(), type=pa.large_string(), from_pandas=True)


def _column(frame: pd.DataFrame, ctx: CheckContext, column: str) -> pa.Array:
    """A text column as an Arrow array, converted once per run and shared by the checks."""
    return ctx.cached(f"arrow:{column}", lambda: _arrow(frame[column]))


def _matches(frame: pd.DataFrame, ctx: CheckContext, columns: Sequence[str], pattern: str) -> pd.Series:
    """Rows where any of `columns` matches the RE2 `pattern` (None never matches)."""
    hit = np.zeros(len(frame), dtype=bool)
    for column in columns:
        found = pc.match_substring_regex(_column(frame, ctx, column), pattern)
        hit |= found.fill_null(False).to_numpy(zero_copy_only=False)
    return pd.Series(hit, index=frame.index)


TEXT_COLUMNS = ("prompt", "chosen", "rejected")
PAIR_COLUMNS = ("chosen", "rejected")


def _re2_class(code_points: Sequence[int]) -> str:
    """An RE2 character class of `code_points`, written as ranges."""
    ranges: list[list[int]] = []
    for cp in sorted(code_points):
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    body = "".join(f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in ranges)
    return f"[{body}]"


@dataclass(frozen=True)
class _KeyPlan:
    drop: str  # RE2 class of the BMP code points near_duplicate_key deletes
    exact_before: str  # texts matching this take the Python path (NFKC may differ by Unicode version)
    exact_after: str  # NFKC texts matching this take the Python path (lower() != casefold())


@lru_cache(maxsize=1)
def _key_plan() -> _KeyPlan:
    """What Arrow can compute exactly like `pairs.near_duplicate_key`, derived from both libraries at
    run time (about 0.2 s), so a newer Arrow or Python cannot silently change the keys."""
    bmp = [cp for cp in range(0x10000) if not 0xD800 <= cp <= 0xDFFF]
    chars = pa.array([chr(cp) for cp in bmp], type=pa.large_string())
    nfkc = pc.utf8_normalize(chars, form="NFKC").to_pylist()
    lower = pc.utf8_lower(chars).to_pylist()
    differ, unlike, drop = [], [], []
    for cp, n, low in zip(bmp, nfkc, lower, strict=True):
        ch = chr(cp)
        if unicodedata.normalize("NFKC", ch) != n:
            differ.append(cp)
        if ch.casefold() != low:
            unlike.append(cp)
        if ch.isspace() or unicodedata.category(ch)[0] in ("P", "S", "C"):
            drop.append(cp)
    astral = "\\x{10000}-\\x{10FFFF}"
    return _KeyPlan(
        drop=_re2_class(drop) + "+",
        exact_before=_re2_class(differ)[:-1] + astral + "]",
        exact_after=_re2_class(unlike)[:-1] + astral + "]",
    )


def near_keys(texts: pd.Series, arr: pa.Array | None = None) -> pa.Array:
    """Vectorised `pairs.near_duplicate_key` (same result; tests check it), as an Arrow array.

    Arrow does NFKC, lower-casing and the deletions in C++; the rare texts where its Unicode tables could
    disagree with Python's (astral characters, lower() != casefold(), newer code points) take the original.
    None becomes "".
    """
    plan = _key_plan()
    arr = _arrow(texts) if arr is None else arr
    arr = pc.fill_null(arr, "")
    nfkc = pc.utf8_normalize(arr, form="NFKC")
    keys = pc.replace_substring_regex(pc.utf8_lower(nfkc), plan.drop, "")
    exact = pc.or_(
        pc.match_substring_regex(arr, plan.exact_before), pc.match_substring_regex(nfkc, plan.exact_after)
    )
    positions = np.flatnonzero(exact.to_numpy(zero_copy_only=False))
    if len(positions):
        patched = keys.to_pylist()
        originals = arr.to_pylist()
        for i in positions:
            patched[i] = near_duplicate_key(originals[i])
        keys = pa.array(patched, type=pa.large_string())
    return keys


def _keys(frame: pd.DataFrame, ctx: CheckContext) -> dict[str, pa.Array]:
    return ctx.cached(
        "near_keys", lambda: {c: near_keys(frame[c], _column(frame, ctx, c)) for c in TEXT_COLUMNS}
    )


def _nonempty(frame: pd.DataFrame, ctx: CheckContext, column: str) -> np.ndarray:
    return ctx.cached(
        f"nonempty:{column}",
        lambda: (
            pc.greater(pc.utf8_length(_column(frame, ctx, column)), 0)
            .fill_null(False)
            .to_numpy(zero_copy_only=False)
        ),
    )


def _codes(values: pa.Array) -> np.ndarray:
    """Dense integer codes of strings (equal strings, equal codes), hashed in C++."""
    return pc.dictionary_encode(values).indices.to_numpy(zero_copy_only=False).astype(np.int64)


def _text_codes(frame: pd.DataFrame, ctx: CheckContext) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes of chosen/rejected texts (one shared codebook): set logic on ints, not strings."""

    def compute() -> tuple[np.ndarray, np.ndarray]:
        both = pa.concat_arrays([_column(frame, ctx, "chosen"), _column(frame, ctx, "rejected")])
        codes = _codes(both)
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
        n = pc.utf8_length(_column(frame, ctx, column)).to_numpy(zero_copy_only=False)
        bad |= (n > 0) & ((n < cfg.min_chars) | (n > cfg.max_chars))
    prompt_len = pc.utf8_length(_column(frame, ctx, "prompt")).fill_null(0).to_numpy(zero_copy_only=False)
    bad |= prompt_len > cfg.max_prompt_chars
    return pd.Series(bad, index=frame.index)


def explain_length(frame: pd.DataFrame, ctx: CheckContext, positions: np.ndarray) -> list[str]:
    cfg = ctx.config
    bounds = [(c, cfg.min_chars, cfg.max_chars, "min_chars", "max_chars") for c in PAIR_COLUMNS]
    bounds.append(("prompt", 0, cfg.max_prompt_chars, None, "max_prompt_chars"))
    lengths = {
        column: pc.utf8_length(_column(frame, ctx, column)).fill_null(0).to_numpy(zero_copy_only=False)
        for column, *_ in bounds
    }
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
    candidates = _matches(frame, ctx, TEXT_COLUMNS, _MOJIBAKE_RE2)
    hit = pd.Series(False, index=frame.index)
    for idx in candidates[candidates].index:
        hit.at[idx] = any(
            isinstance(frame.at[idx, c], str) and is_mojibake(frame.at[idx, c]) for c in TEXT_COLUMNS
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


def _lead_bytes(*ranges: tuple[int, int]) -> np.ndarray:
    table = np.zeros(256, dtype=bool)
    for lo, hi in ranges:
        table[lo : hi + 1] = True
    return table


# Script by UTF-8 lead byte, which is all a script guess needs and runs at memory speed:
# Han U+4000..U+9FFF = E4..E9; Latin = ASCII letters and U+00C0..U+024F (C3..C9);
# other letters = Greek..Arabic/Indic (CD..DF, E0) and Yi/Hangul (EA..ED).
_HAN = _lead_bytes((0xE4, 0xE9))
_LATIN = _lead_bytes((0x41, 0x5A), (0x61, 0x7A), (0xC3, 0xC9))
_OTHER = _lead_bytes((0xCD, 0xDF), (0xE0, 0xE0), (0xEA, 0xED))
# The three counts packed into one integer per byte (21 bits each) so one reduction counts them all.
_PACKED = _HAN.astype(np.uint64) | (_LATIN.astype(np.uint64) << 21) | (_OTHER.astype(np.uint64) << 42)
_FIELD = np.uint64((1 << 21) - 1)


def _script_counts(arr: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per string: Han, Latin and other-letter counts, from the Arrow UTF-8 buffer without a Python loop."""
    arr = pc.fill_null(arr, "")
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
    counts = np.zeros(len(arr), dtype=np.uint64)
    if arr.buffers()[2] is None or offsets[-1] == offsets[0]:
        return counts, counts, counts
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)
    step = 1 << 16  # strings per block: keeps the per-byte temporary small (cache-friendly)
    for lo in range(0, len(arr), step):
        hi = min(lo + step, len(arr))
        start, stop = offsets[lo], offsets[hi]
        if stop == start:
            continue
        starts = offsets[lo:hi] - start
        nonempty = offsets[lo + 1 : hi + 1] > offsets[lo:hi]
        counts[lo:hi][nonempty] = np.add.reduceat(_PACKED[data[start:stop]], starts[nonempty])
    return (
        (counts & _FIELD).astype(np.int64),
        ((counts >> 21) & _FIELD).astype(np.int64),
        (counts >> 42).astype(np.int64),
    )


def scripts(texts: pd.Series | pa.Array) -> np.ndarray:
    """Dominant script per text: 'han', 'latin', 'other' (letters of other scripts) or '' (no letters)."""
    han, latin, other = _script_counts(texts if isinstance(texts, pa.Array) else _arrow(texts))
    # One Han character carries about a word; Latin letters come about five to a word.
    han_w = han * 5
    out = np.full(len(han), "", dtype=object)
    out[(han + latin + other) > 0] = "other"
    out[(han_w >= latin) & (han_w >= other) & (han > 0)] = "han"
    out[(latin > han_w) & (latin >= other)] = "latin"
    return out


def language_mismatch(frame: pd.DataFrame, ctx: CheckContext) -> pd.Series:
    """Chosen and rejected are written in different scripts (e.g. Chinese vs English)."""
    a = scripts(_column(frame, ctx, "chosen"))
    b = scripts(_column(frame, ctx, "rejected"))
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
        codes = _codes(keys[column])
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
    pk = _codes(keys["prompt"])[candidates]
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
