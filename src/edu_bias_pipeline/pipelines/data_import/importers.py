"""Benchmark importers: pure functions from a source table to raw pair rows plus a skipped-rows report.

Each importer takes a DataFrame as read from the source (every cell a string; the reader adds
`_record`, the 1-based record number in the file, and `_file`) and returns `(rows, skipped)`:

- rows: raw pair records `{"prompt"?, "chosen", "rejected", "meta": {"bias_type", "source", "license", ...}}`,
  the format `data_validation` reads;
- skipped: one dict per dropped source row
  `{"source", "file", "record", "id", "category", "reason", "detail"}`.

A row whose direction (which answer is the unbiased one) cannot be read off the data is skipped with a reason,
never guessed. No I/O and no heavy imports here.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from edu_bias_pipeline.pairs import (
    CHOSEN,
    EVAL_ONLY,
    META,
    PROMPT,
    REJECTED,
    is_missing,
    normalize_text,
    pair_id,
)
from edu_bias_pipeline.pipelines.data_import.cbbq import category_bias_types
from edu_bias_pipeline.pipelines.data_import.tables import FILE, RECORD
from edu_bias_pipeline.taxonomy import resolver

CBBQ_SOURCE = "CBBQ"
CROWS_SOURCE = "CrowS-Pairs"

# Skip reasons (also the keys of the report's `skipped_by_reason`).
UNFILLED_PLACEHOLDER = "unfilled_placeholder"
MISSING_FIELD = "missing_field"
NO_UNKNOWN_ANSWER = "no_unknown_answer"
SEVERAL_UNKNOWN_ANSWERS = "several_unknown_answers"
INVALID_LABEL = "invalid_label"
AMBIGUOUS_LABEL_NOT_UNKNOWN = "ambiguous_label_not_unknown"
TARGET_GROUP_UNMATCHED = "target_group_unmatched"
TARGET_GROUP_MATCHES_BOTH = "target_group_matches_both"
GOLD_IS_UNKNOWN = "gold_is_unknown"
LABEL_IGNORES_NAME_SWAP = "label_ignores_name_swap"
UNKNOWN_CONDITION = "unknown_condition"
UNKNOWN_BIAS_TYPE = "unknown_bias_type"
IDENTICAL_TEXTS = "chosen_equals_rejected"
DUPLICATE = "duplicate_pair"
INVALID_JSON = "invalid_json"

# Template slots CBBQ's generator failed to fill; the release has typos such as `{{NAME2]}`, `{NAME2}}`,
# `{{NMAE1}}`, `{{NAM1}}` and a bare `NAME2}}`. Braces never occur in the filled Chinese text.
_PLACEHOLDER = re.compile(r"[{}]|\[\s*N[A-Z]{1,3}\s*\d?\s*\]|(?<![A-Za-z])(?:NAME|NMAE|NAEM|NAM|NANE)\s*\d")

DEFAULT_UNKNOWN_ANSWERS: tuple[str, ...] = (
    "不知道",
    "不确定",
    "无法判断",
    "没有足够信息",
    "无法确定",
    "不能确定",
    "信息不足",
    "无法得知",
    "不清楚",
    "未知",
    "无法回答",
    "不能判断",
    "无从得知",
    "cannot be determined",
    "can't be determined",
    "not enough information",
    "unknown",
    "undetermined",
)

_TERM_SPLIT = re.compile(r"[/／、，,;；|]")
# A group word reduced to its stem, so that "农民工群体" also matches "农民工".
_GROUP_SUFFIX = re.compile(r"(?:人群|群体|人士|人员|人|者|们|的)$")
# Age answers name ages ("20岁的人" / "60岁的人"), not the targeted words:
# the older / younger answer is the target.
_OLDER_TERMS = ("老年人", "老龄人", "老人", "中老年人", "老年", "年长者")
_YOUNGER_TERMS = ("年轻人", "青年人", "青少年", "00后", "10后", "95后", "90后")
_AGE = re.compile(r"(\d+)\s*岁")
_CONDITIONS = {
    "ambiguous": "ambiguous",
    "amb": "ambiguous",
    "disambiguous": "disambiguous",
    "disambiguated": "disambiguous",
    "disamb": "disambiguous",
}


def _text(value: Any) -> str:
    if is_missing(value):
        return ""
    return normalize_text(str(value))


def _where(frame: pd.DataFrame, fallback: str) -> str:
    """The file a table was read from, for error messages."""
    return frame[FILE].iloc[0] if FILE in frame.columns and len(frame) else fallback


def _require_columns(frame: pd.DataFrame, required: Sequence[str], what: str) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{_where(frame, f'{what} input')}: missing {what} column(s) {missing}; "
            f"columns are {list(frame.columns)}"
        )


def _fold(text: str) -> str:
    """Comparison form of short answers: NFKC, case-folded, no spaces or trailing punctuation."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return re.sub(r"[\s。.!！?？、,，]+", "", folded)


def _skip(
    source: str,
    row: Mapping[str, Any],
    reason: str,
    detail: str,
    *,
    id_field: str | None,
    category: str | None = None,
) -> dict[str, Any]:
    return {
        "source": source,
        "file": row.get(FILE),
        "record": int(row[RECORD]) if row.get(RECORD) not in (None, "") else None,
        "id": _text(row.get(id_field)) if id_field else None,
        "category": category,
        "reason": reason,
        "detail": detail,
    }


def find_placeholder(*texts: str) -> str | None:
    """The first unfilled template slot in any of `texts`, with a little context, or None."""
    for text in texts:
        match = _PLACEHOLDER.search(text)
        if match:
            start, end = max(match.start() - 8, 0), min(match.end() + 8, len(text))
            return text[start:end]
    return None


def unknown_answer_index(answers: Sequence[str], unknown_answers: Iterable[str]) -> list[int]:
    """Indices of the answers that say "cannot be determined" (any configured wording)."""
    wordings = {_fold(w) for w in unknown_answers if w}
    return [i for i, answer in enumerate(answers) if _fold(answer) in wordings]


def _group_terms(targeted: str) -> list[str]:
    return [t.strip() for t in _TERM_SPLIT.split(targeted) if t.strip()]


def _names(answer: str, term: str) -> bool:
    """`answer` mentions `term`, not negated: "非乙肝患者" and "非精神/心理疾病患者" name no patient group.

    A leading 非 negates the whole answer, unless the term itself starts with 非 ("非全日制").
    """
    if answer.startswith("非") and not term.startswith("非"):
        return False
    start = answer.find(term)
    while start != -1:
        if start == 0 or answer[start - 1] != "非":
            return True
        start = answer.find(term, start + 1)
    return False


def match_targeted_answer(
    group_answers: Mapping[int, str],
    targeted: str,
    markers: Mapping[str, Sequence[str]] | None = None,
) -> tuple[int | None, str]:
    """Which of the two group answers names the group in `bias_targeted_groups`.

    Tried in order, the first step that singles out exactly one answer wins:
    1. configured markers for this exact `bias_targeted_groups` value
       (words found only in the targeted answer),
    2. a targeted term ('/'-separated) appearing whole, not negated by a leading 非, in the answer,
    3. the same with group suffixes (人群, 群体, 人, 者 ...) stripped from the term (stems of 2+ characters).
    4. age answers ("20岁的人" / "60岁的人"): the older one for 老年人/老龄人 targets,
       the younger one for 年轻人/00后.
    A match preceded by 非 (or in an answer starting with 非) does not count: 非X names the other group.
    Returns (index, how) or (None, why-not).
    """
    targeted = _text(targeted)
    if not targeted:
        return None, "bias_targeted_groups is empty"
    candidates = dict(group_answers)
    steps: list[tuple[str, list[str]]] = []
    marker_list = [m for m in (markers or {}).get(targeted, ()) if m]
    if marker_list:
        steps.append(("marker", marker_list))
    terms = _group_terms(targeted)
    steps.append(("term", terms))
    stems = [s for s in (_GROUP_SUFFIX.sub("", t) for t in terms) if len(s) >= 2 and s not in terms]
    if stems:
        steps.append(("stem", stems))
    both = False
    for how, needles in steps:
        hits = [i for i, a in candidates.items() if any(_names(a, n) for n in needles)]
        if len(hits) == 1:
            return hits[0], how
        both = both or len(hits) > 1
    ages = {i: _AGE.search(a) for i, a in candidates.items()}
    if all(ages.values()) and len({int(m.group(1)) for m in ages.values()}) == len(ages):
        older = any(t in _OLDER_TERMS for t in terms)
        younger = any(t in _YOUNGER_TERMS for t in terms)
        if older != younger:
            pick = max if older else min
            return pick(ages, key=lambda i: int(ages[i].group(1))), "age"
    answers = " / ".join(candidates.values())
    if both:
        return None, f"{targeted!r} matches both group answers ({answers})"
    return None, f"{targeted!r} names neither group answer ({answers})"


def _join_prompt(context: str, question: str) -> str:
    # CBBQ contexts end with a full stop, so the question follows directly, as in the benchmark's own prompts.
    if not context:
        return question
    sep = "" if re.search(r"[。！？.!?…”」』）)]$", context) else " "
    return f"{context}{sep}{question}"


def _swap_contradictions(frame: pd.DataFrame) -> set[int]:
    """Positions of disambiguated rows whose label ignores a swap of the two names in the context.

    CBBQ's generator writes every filled template twice, once with NAME1/NAME2 swapped throughout the context,
    and copies the template's label onto both. When the swap also changes the disambiguating sentences
    (everything after the first 。), the two rows state opposite facts under one label, so one of them is
    wrong and the data cannot tell which: both are skipped. Rows whose swap only touches the opening
    sentence keep their label (the facts do not depend on the order there).
    """
    keys: dict[tuple[str, ...], list[int]] = {}
    contexts: list[str] = []
    for pos, row in enumerate(frame.itertuples(index=False)):
        context = _text(getattr(row, "context", ""))
        contexts.append(context)
        key = (
            _text(getattr(row, "question_index", "")),
            _text(getattr(row, "question", "")),
            _text(getattr(row, "ans0", "")),
            _text(getattr(row, "ans1", "")),
            _text(getattr(row, "ans2", "")),
            _text(getattr(row, "label", "")),
            "".join(sorted(context)),
        )
        keys.setdefault(key, []).append(pos)
    flagged: set[int] = set()
    for positions in keys.values():
        if len(positions) < 2:
            continue
        variants = {contexts[p] for p in positions}
        facts = {c.split("。", 1)[1] if "。" in c else c for c in variants}
        if len(variants) > 1 and len(facts) > 1:
            flagged.update(positions)
    return flagged


class _Skip(Exception):
    """A source row that cannot become a pair: a skip reason (the constants above) and what is wrong."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


CBBQ_COLUMNS = ("context", "question", "ans0", "ans1", "ans2", "label")


def _cbbq_condition(rec: Mapping[str, Any], folder_condition: str | None) -> str:
    raw = _text(rec.get("context_condition")) or (folder_condition or "")
    condition = _CONDITIONS.get(raw.casefold())
    if condition is None:
        raise _Skip(UNKNOWN_CONDITION, f"context_condition {raw!r} is neither ambiguous nor disambiguous")
    return condition


def _cbbq_texts(rec: Mapping[str, Any]) -> tuple[str, str, list[str]]:
    """Context, question and the three answers, normalised; all present and every template slot filled."""
    context, question = _text(rec["context"]), _text(rec["question"])
    answers = [_text(rec["ans0"]), _text(rec["ans1"]), _text(rec["ans2"])]
    texts = [context, question, *answers]
    empty = [name for name, value in zip(CBBQ_COLUMNS[:5], texts, strict=True) if not value]
    if empty:
        raise _Skip(MISSING_FIELD, f"empty field(s) {empty}")
    slot = find_placeholder(*texts)
    if slot is not None:
        raise _Skip(UNFILLED_PLACEHOLDER, f"unfilled template slot in {slot!r}")
    return context, question, answers


def _the_unknown_answer(answers: Sequence[str], unknown_answers: Iterable[str]) -> int:
    unknown = unknown_answer_index(answers, unknown_answers)
    if not unknown:
        raise _Skip(NO_UNKNOWN_ANSWER, f"no answer reads as 'cannot be determined': {list(answers)}")
    if len(unknown) > 1:
        raise _Skip(SEVERAL_UNKNOWN_ANSWERS, f"answers {unknown} all read as 'cannot be determined'")
    return unknown[0]


def _cbbq_label(rec: Mapping[str, Any]) -> int:
    raw = _text(rec["label"])
    if not (raw.isdigit() and int(raw) in (0, 1, 2)):
        raise _Skip(INVALID_LABEL, f"label {raw!r} is not 0, 1 or 2")
    return int(raw)


def _ambiguous_pair(
    answers: Sequence[str],
    label: int,
    unknown: int,
    targeted: str,
    markers: Mapping[str, Sequence[str]] | None,
) -> tuple[str, str, dict[str, Any]]:
    """chosen = the "cannot be determined" answer (the label), rejected = the answer naming the target."""
    if label != unknown:
        raise _Skip(
            AMBIGUOUS_LABEL_NOT_UNKNOWN,
            f"ambiguous row labelled ans{label} ({answers[label]!r}), not the unknown answer",
        )
    group = {i: a for i, a in enumerate(answers) if i != unknown}
    target, how = match_targeted_answer(group, targeted, markers)
    if target is None:
        raise _Skip(TARGET_GROUP_MATCHES_BOTH if "both" in how else TARGET_GROUP_UNMATCHED, how)
    roles = {
        "chosen_answer": f"ans{unknown}",
        "rejected_answer": f"ans{target}",
        "rejected_role": "targeted_group",
        "target_match": how,
    }
    return answers[unknown], answers[target], roles


def _disambiguated_pair(
    answers: Sequence[str], label: int, unknown: int, name_swap_contradicts: bool
) -> tuple[str, str, dict[str, Any]]:
    """chosen = the labelled group answer, rejected = the other group answer."""
    if label == unknown:
        raise _Skip(GOLD_IS_UNKNOWN, f"disambiguated row labelled with the unknown answer {answers[label]!r}")
    if name_swap_contradicts:
        raise _Skip(
            LABEL_IGNORES_NAME_SWAP,
            "a row with the two names swapped in the context (facts swapped too) has the same label",
        )
    other = next(i for i in range(len(answers)) if i not in (label, unknown))
    roles = {"chosen_answer": f"ans{label}", "rejected_answer": f"ans{other}", "rejected_role": "other_group"}
    return answers[label], answers[other], roles


@dataclass(frozen=True)
class _CbbqOptions:
    license: str
    unknown_answers: tuple[str, ...]
    target_markers: Mapping[str, Sequence[str]] | None
    eval_only: bool


def _cbbq_meta(
    rec: Mapping[str, Any], bias_type: str, condition: str, category: str, label: int, license: str
) -> dict:
    """Where the pair came from: the source row's identifiers and CBBQ's own annotations."""
    return {
        "bias_type": bias_type,
        "source": CBBQ_SOURCE,
        "license": license,
        "source_file": rec.get(FILE),
        "source_record": rec.get(RECORD),
        "example_id": _text(rec.get("example_id")) or None,
        "question_index": _text(rec.get("question_index")) or None,
        "question_polarity": _text(rec.get("question_polarity")) or None,
        "context_condition": condition,
        "category": category,
        "subcategory": _text(rec.get("subcategory")) or None,
        "bias_targeted_groups": _text(rec.get("bias_targeted_groups")) or None,
        "label": label,
    }


def _cbbq_pair(
    rec: Mapping[str, Any],
    *,
    category: str,
    bias_type: str | None,
    folder_condition: str | None,
    name_swap_contradicts: bool,
    options: _CbbqOptions,
) -> dict[str, Any]:
    """One CBBQ question row -> a pair row, or _Skip saying why not."""
    condition = _cbbq_condition(rec, folder_condition)
    context, question, answers = _cbbq_texts(rec)
    if bias_type is None:
        raise _Skip(UNKNOWN_BIAS_TYPE, f"category {category!r} is not in the taxonomy (add it as an alias)")
    unknown = _the_unknown_answer(answers, options.unknown_answers)
    label = _cbbq_label(rec)
    if condition == "ambiguous":
        targeted = _text(rec.get("bias_targeted_groups"))
        chosen, rejected, roles = _ambiguous_pair(answers, label, unknown, targeted, options.target_markers)
    else:
        chosen, rejected, roles = _disambiguated_pair(answers, label, unknown, name_swap_contradicts)
    meta = {**_cbbq_meta(rec, bias_type, condition, category, label, options.license), **roles}
    if options.eval_only:
        meta[EVAL_ONLY] = True
    return {PROMPT: _join_prompt(context, question), CHOSEN: chosen, REJECTED: rejected, META: meta}


def import_cbbq(
    frame: pd.DataFrame,
    *,
    taxonomy: Mapping[str, Sequence[str] | None],
    license: str = "CC BY-SA 4.0",
    unknown_answers: Iterable[str] = DEFAULT_UNKNOWN_ANSWERS,
    target_markers: Mapping[str, Sequence[str]] | None = None,
    condition: str | None = None,
    category: str | None = None,
    eval_only: bool = False,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """CBBQ question rows -> pairs.

    Ambiguous context: prompt = context + question, chosen = the "cannot be determined" answer,
    rejected = the answer naming the targeted group. Disambiguated context: chosen = the labelled answer,
    rejected = the other group answer. `condition` / `category` are the file's folder names, used when a
    row's own `context_condition` / `category` cell is empty.
    """
    _require_columns(frame, CBBQ_COLUMNS, "CBBQ")
    options = _CbbqOptions(license, tuple(unknown_answers), target_markers, eval_only)
    swapped = _swap_contradictions(frame)
    records = frame.to_dict("records")
    categories = [_text(rec.get("category")) or (category or "") for rec in records]
    bias_types = category_bias_types(set(categories), taxonomy)
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for pos, (rec, cat) in enumerate(zip(records, categories, strict=True)):
        try:
            row = _cbbq_pair(
                rec,
                category=cat,
                bias_type=bias_types[cat],
                folder_condition=condition,
                name_swap_contradicts=pos in swapped,
                options=options,
            )
        except _Skip as skip:
            skipped.append(
                _skip(CBBQ_SOURCE, rec, skip.reason, skip.detail, id_field="example_id", category=cat)
            )
            continue
        rows.append(row)
    return rows, skipped


def import_crows_pairs(
    frame: pd.DataFrame,
    *,
    taxonomy: Mapping[str, Sequence[str] | None],
    license: str = "CC BY-SA 4.0",
    eval_only: bool = True,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """CrowS-Pairs rows -> pairs: rejected = sent_more, chosen = sent_less, for every row.

    `stereo_antistereo` only says whether sent_more demonstrates a stereotype about the disadvantaged group
    or sent_less violates one; in both cases sent_more is the more stereotypical sentence, so it never flips
    the pair. Rows are marked `eval_only`: the dataset's data statement forbids training on it.
    """
    _require_columns(frame, ("sent_more", "sent_less", "bias_type"), "CrowS-Pairs")
    canonical_bias_type = resolver(taxonomy)
    id_col = next((c for c in ("id", "Unnamed: 0", "") if c in frame.columns), None)
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for rec in frame.to_dict("records"):
        label = _text(rec.get("bias_type"))

        def skip(reason: str, detail: str, _rec=rec, _label=label) -> None:
            skipped.append(_skip(CROWS_SOURCE, _rec, reason, detail, id_field=id_col, category=_label))

        more, less = _text(rec.get("sent_more")), _text(rec.get("sent_less"))
        empty = [
            name
            for name, value in (("sent_more", more), ("sent_less", less), ("bias_type", label))
            if not value
        ]
        if empty:
            skip(MISSING_FIELD, f"empty field(s) {empty}")
            continue
        bias_type = canonical_bias_type(label)
        if bias_type is None:
            skip(UNKNOWN_BIAS_TYPE, f"bias_type {label!r} is not in the taxonomy (add it as an alias)")
            continue
        if more == less:
            skip(IDENTICAL_TEXTS, "sent_more and sent_less are the same text")
            continue
        meta = {
            "bias_type": bias_type,
            "source": CROWS_SOURCE,
            "license": license,
            EVAL_ONLY: bool(eval_only),
            "source_file": rec.get(FILE),
            "source_record": rec.get(RECORD),
            "crows_id": _text(rec.get(id_col)) if id_col else None,
            "crows_bias_type": label,
            "stereo_antistereo": _text(rec.get("stereo_antistereo")) or None,
        }
        rows.append({CHOSEN: less, REJECTED: more, META: meta})
    return rows, skipped


def import_generic(
    frame: pd.DataFrame,
    *,
    taxonomy: Mapping[str, Sequence[str] | None],
    columns: Mapping[str, str | None],
    source: str,
    license: str,
    bias_type: str | None = None,
    bias_type_map: Mapping[str, str] | None = None,
    meta_columns: Sequence[str] = (),
    eval_only: bool = False,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Any table -> pairs through a column mapping {chosen, rejected, prompt?, bias_type?, id?}.

    The bias type comes from the mapped column (first through `bias_type_map`, then the taxonomy), else
    from the fixed `bias_type`. Nested JSONL fields are addressed with dots ("meta.bias_type").
    """
    canonical_bias_type = resolver(taxonomy)
    for role in ("chosen", "rejected"):
        if not columns.get(role):
            raise ValueError(f"generic importer: columns.{role} must name the source column")
    wanted = {role: col for role, col in columns.items() if col}
    missing = sorted({col for col in [*wanted.values(), *meta_columns] if col not in frame.columns})
    if missing:
        raise ValueError(
            f"{_where(frame, source)}: mapped column(s) {missing} not found; columns are "
            f"{[c for c in frame.columns if not c.startswith('_')]}"
        )
    if not columns.get("bias_type") and not bias_type:
        raise ValueError(
            "generic importer: set columns.bias_type (a source column) or bias_type (a fixed label)"
        )
    label_map = {k.casefold(): v for k, v in (bias_type_map or {}).items()}
    id_col = columns.get("id")
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for rec in frame.to_dict("records"):
        if isinstance(rec.get("_error"), str):
            skipped.append(_skip(source, rec, INVALID_JSON, str(rec["_error"]), id_field=None))
            continue
        label = _text(rec.get(columns["bias_type"])) if columns.get("bias_type") else ""
        label = label or _text(bias_type)

        def skip(reason: str, detail: str, _rec=rec, _label=label) -> None:
            skipped.append(_skip(source, _rec, reason, detail, id_field=id_col, category=_label))

        chosen, rejected = _text(rec.get(columns["chosen"])), _text(rec.get(columns["rejected"]))
        prompt = _text(rec.get(columns["prompt"])) if columns.get("prompt") else ""
        empty = [columns[r] for r, v in (("chosen", chosen), ("rejected", rejected)) if not v]
        if empty:
            skip(MISSING_FIELD, f"empty field(s) {empty}")
            continue
        if not label:
            skip(MISSING_FIELD, f"empty bias type column {columns.get('bias_type')!r} and no fixed bias_type")
            continue
        canonical = canonical_bias_type(label_map.get(label.casefold(), label))
        if canonical is None:
            skip(UNKNOWN_BIAS_TYPE, f"bias type {label!r} is not in the taxonomy (map it in bias_type_map)")
            continue
        if chosen == rejected:
            skip(IDENTICAL_TEXTS, "chosen and rejected are the same text")
            continue
        meta: dict[str, Any] = {
            "bias_type": canonical,
            "source": source,
            "license": license,
            "source_file": rec.get(FILE),
            "source_record": rec.get(RECORD),
        }
        if id_col:
            meta["source_id"] = _text(rec.get(id_col)) or None
        if label != canonical:
            meta["source_bias_type"] = label
        if eval_only:
            meta[EVAL_ONLY] = True
        for col in meta_columns:
            value = rec.get(col)
            meta[col.rsplit(".", 1)[-1]] = None if is_missing(value) else value
        row: dict[str, Any] = {CHOSEN: chosen, REJECTED: rejected, META: meta}
        if prompt:
            row = {PROMPT: prompt, **row}
        rows.append(row)
    return rows, skipped


def row_category(meta: Mapping[str, Any]) -> str:
    """The source's own category of an imported row (the report groups by it)."""
    return str(
        meta.get("category")
        or meta.get("crows_bias_type")
        or meta.get("source_bias_type")
        or meta.get("bias_type")
    )


def drop_duplicate_pairs(
    rows: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Keep the first of identical pairs (same normalised prompt/chosen/rejected); report the others."""
    seen: dict[str, dict[str, Any]] = {}
    kept: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for row in rows:
        key = pair_id(row.get(PROMPT), row[CHOSEN], row[REJECTED])
        first = seen.get(key)
        if first is None:
            seen[key] = row
            kept.append(row)
            continue
        meta = row[META]
        skipped.append(
            {
                "source": meta.get("source"),
                "file": meta.get("source_file"),
                "record": meta.get("source_record"),
                "id": meta.get("example_id") or meta.get("crows_id") or meta.get("source_id"),
                "category": row_category(meta),
                "reason": DUPLICATE,
                "detail": (
                    f"same pair as {first[META].get('source_file')} record {first[META].get('source_record')}"
                ),
            }
        )
    return kept, skipped
