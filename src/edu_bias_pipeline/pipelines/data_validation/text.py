"""The text engine of the checks: vectorised string measures over Arrow arrays.

Normalisation keys for near-duplicates, dense codes of equal strings, mojibake detection, the dominant
script of a text and RE2 pattern matching, each computed on a whole column at once (pyarrow compute in
C++, numpy on the UTF-8 buffer) so a million pairs take seconds, not minutes. Nothing here knows about
checks, severities or parameters: `checks.py` builds the checks from these measures.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from edu_bias_pipeline.pairs import near_duplicate_key


def arrow_strings(values: pd.Series) -> pa.Array:
    """A column of str/None as an Arrow large_string array (None stays null)."""
    return pa.array(values.tolist(), type=pa.large_string(), from_pandas=True)


def matches(arr: pa.Array, pattern: str) -> np.ndarray:
    """Per string: does it match the RE2 `pattern` (null never matches)."""
    return pc.match_substring_regex(arr, pattern).fill_null(False).to_numpy(zero_copy_only=False)


def lengths(arr: pa.Array) -> np.ndarray:
    """Per string: its length in code points (null counts as 0)."""
    return pc.utf8_length(arr).fill_null(0).to_numpy(zero_copy_only=False)


def codes(values: pa.Array) -> np.ndarray:
    """Dense integer codes of strings (equal strings, equal codes), hashed in C++."""
    return pc.dictionary_encode(values).indices.to_numpy(zero_copy_only=False).astype(np.int64)


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
    arr = arrow_strings(texts) if arr is None else arr
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


# A UTF-8 lead byte read as Latin-1/cp1252 (Â..ô) followed by a continuation byte read the same way
# (U+0080..U+00BF, or the cp1252 letters/punctuation that bytes 0x80..0x9F decode to).
MOJIBAKE_CANDIDATE = (
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
    han, latin, other = _script_counts(texts if isinstance(texts, pa.Array) else arrow_strings(texts))
    # One Han character carries about a word; Latin letters come about five to a word.
    han_w = han * 5
    out = np.full(len(han), "", dtype=object)
    out[(han + latin + other) > 0] = "other"
    out[(han_w >= latin) & (han_w >= other) & (han > 0)] = "han"
    out[(latin > han_w) & (latin >= other)] = "latin"
    return out
