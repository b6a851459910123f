"""The preference-pair record shared by every stage: field names, text normalisation, identity, prompt.

Kept free of heavy imports so that the data stages never pull in torch.
"""

from __future__ import annotations

import codecs
import difflib
import hashlib
import math
import shlex
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

# Field contract of validated / split JSONL rows (see README "Data contract").
PAIR_ID = "pair_id"
SOURCE_LINE = "source_line"
PROMPT = "prompt"
CHOSEN = "chosen"
REJECTED = "rejected"
BIAS_TYPE = "bias_type"
WARNINGS = "warnings"
META = "meta"
SPLIT = "split"
SAMPLE_WEIGHT = "sample_weight"
EVAL_ONLY = "eval_only"  # meta flag: the pair may be evaluated on but never trained on (e.g. CrowS-Pairs)

# Columns of validated_pairs.jsonl, in file order; the split files add SPLIT and SAMPLE_WEIGHT.
VALIDATED_FIELDS = (PAIR_ID, SOURCE_LINE, PROMPT, CHOSEN, REJECTED, BIAS_TYPE, WARNINGS, META)

# Bad-row messages list this many rows, then "(and N more)".
MAX_LISTED_ERRORS = 10

# The old scripts' chat form: user asks for a bias judgement, assistant answers with the statement.
DEFAULT_INSTRUCTION = "请判断以下表述是否存在偏见："


def is_missing(value: Any) -> bool:
    """None, or the NaN pandas puts in a cell a JSON line did not have."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def raise_listed(name: str, errors: list[str]) -> None:
    """One ValueError naming `name` and the first MAX_LISTED_ERRORS problems; nothing if there are none."""
    if errors:
        more = f" (and {len(errors) - MAX_LISTED_ERRORS} more)" if len(errors) > MAX_LISTED_ERRORS else ""
        raise ValueError(f"{name}: " + "; ".join(errors[:MAX_LISTED_ERRORS]) + more)


def nearest(name: str, candidates: Iterable[str], n: int = 1) -> list[str]:
    """Up to `n` candidates closest to a misspelt `name`, best first (difflib's ratio, at least 0.6)."""
    return difflib.get_close_matches(name, sorted(set(candidates)), n=n, cutoff=0.6)


# What a pair file is when it is not UTF-8 JSON Lines (`file_format`); `convert_command` says how to fix it.
UTF16, UTF32, JSON_ARRAY = "UTF-16", "UTF-32", "JSON array"
_BOMS = (  # UTF-32 first: its little-endian mark starts with UTF-16's
    (codecs.BOM_UTF32_LE, UTF32),
    (codecs.BOM_UTF32_BE, UTF32),
    (codecs.BOM_UTF16_LE, UTF16),
    (codecs.BOM_UTF16_BE, UTF16),
)


def file_format(head: Sequence[bytes]) -> str | None:
    """UTF16, UTF32 or JSON_ARRAY when a file's first lines (`head`, as bytes) show it is not UTF-8 JSON
    Lines; None otherwise. Such a file fails line by line; naming the format says why at once."""
    lines = [line for line in head[:50] if line.strip()]
    if not lines:
        return None
    for bom, encoding in _BOMS:
        if lines[0].startswith(bom):
            return encoding
    if any(b"\x00" in line for line in lines):  # UTF-16 without a byte-order mark: NULs between characters
        return UTF16
    if lines[0].lstrip(b" \t\r" + codecs.BOM_UTF8).startswith(b"["):
        return JSON_ARRAY
    return None


def convert_command(fmt: str, path: str | Path) -> str:
    """A shell command converting the file at `path`, of format `fmt` (see `file_format`), to UTF-8 JSONL
    beside it."""
    stem = str(Path(path).with_suffix(""))
    if fmt == JSON_ARRAY:
        return f"jq -c '.[]' {shlex.quote(str(path))} > {shlex.quote(stem + '.lines.jsonl')}"
    return f"iconv -f {fmt} -t UTF-8 {shlex.quote(str(path))} > {shlex.quote(stem + '.utf8.jsonl')}"


def normalize_text(text: str) -> str:
    """Canonical form of a text: Unicode NFC, surrounding whitespace trimmed."""
    return unicodedata.normalize("NFC", text).strip()


def near_duplicate_key(text: str) -> str:
    """A key under which texts differing only in punctuation, spacing, case or full-width forms collide.

    NFKC folds full-width letters/digits/punctuation to their ASCII forms first, so "ＡＢ，" and "ab," agree.
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(
        ch for ch in folded if not (ch.isspace() or unicodedata.category(ch)[0] in ("P", "S", "C"))
    )


def pair_id(prompt: str | None, chosen: str, rejected: str, *, normalized: bool = False) -> str:
    """Stable content hash of a normalised pair: same texts, same id, on any machine.

    `normalized=True` skips re-normalising texts that already went through `normalize_text` (bulk ingest).
    """
    texts = (prompt or "", chosen, rejected)
    if not normalized:
        texts = tuple(normalize_text(t) for t in texts)
    return hashlib.sha256("\x1f".join(texts).encode("utf-8")).hexdigest()[:16]


def render_prompt(tokenizer: Any, prompt: str | None, instruction: str = DEFAULT_INSTRUCTION) -> str:
    """The prompt text a completion (chosen / rejected / a test statement) is scored or trained after.

    A pair's own `prompt` wins; otherwise the bias-judgement instruction. Models with a chat template get
    it applied with the generation prompt, so training, evaluation and the CLI see the same tokens.
    """
    user = prompt if prompt else instruction
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
        )
    return f"{user}\n"
