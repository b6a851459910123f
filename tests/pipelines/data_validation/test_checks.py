"""Each check on its own: a row that offends is flagged with the check's name, a clean one is not."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from dv_fixtures import clean_pairs, encode, pair

from edu_bias_pipeline.pipelines.data_validation import checks as C
from edu_bias_pipeline.pipelines.data_validation.nodes import check_pairs, ingest_lines

TAXONOMY = {
    "gender_sexuality": ["gender"],
    "region": ["regional"],
    "socioeconomic": ["ses"],
    "age": [],
    "disability": [],
    "ethnicity": ["race"],
    "religion": [],
}
PARAMS: dict[str, Any] = {"min_chars": 2, "max_chars": 60, "min_pairs_per_category": 0}


def outcome(rows: list[Any], **params: Any) -> pd.DataFrame:
    frame, _ = ingest_lines([encode(r) for r in rows])
    return check_pairs(frame, TAXONOMY, {**PARAMS, **params}).set_index("source_line")


def flags(rows: list[Any], **params: Any) -> dict[int, set[str]]:
    out = outcome(rows, **params)
    return {int(i): set(r["errors"]) | set(r["warnings"]) for i, r in out.iterrows()}


GOOD = pair("男女生都可以成为优秀的工程师", "女生天生不适合读工科", "gender")

# check name -> an offending row (checked together with GOOD, which must stay clean)
OFFENDERS: dict[str, Any] = {
    "invalid_utf8": b'{"chosen": "\xc3\x28", "rejected": "x"}',
    "invalid_json": '{"chosen": "a"',
    "not_an_object": "[1, 2]",
    "missing_field": {"chosen": "每个学生都值得尊重", "meta": {"bias_type": "age"}},
    "wrong_type": {"chosen": ["list"], "rejected": "老年学员学不会电脑", "meta": {"bias_type": "age"}},
    "missing_bias_type": pair("每个学生都值得尊重", "老年学员学不会电脑", None),
    "unknown_bias_type": pair("每个学生都值得尊重", "老年学员学不会电脑", "zodiac"),
    "empty_text": pair("\u3000 ", "老年学员学不会电脑", "age"),
    "identical_pair": pair("老年学员学不会电脑", "老年学员学不会电脑 ", "age"),
    "length_out_of_bounds": pair("每个学生都值得尊重" * 10, "老年学员学不会电脑", "age"),
    "truncated_text": pair("每个学生都值得尊重", "老年学员学不会电脑...", "age"),
    "mojibake": pair("æ•™è‚²æœºä¼šåº”è¯¥å¹³ç­‰", "老年学员学不会电脑", "age"),
    "control_characters": pair("每个学生都值得\x1b尊重", "老年学员学不会电脑", "age"),
    "invalid_characters": pair("每个学生都值得\ufffd尊重", "老年学员学不会电脑", "age"),
    "invisible_characters": pair("每个学生都值得\u200d尊重", "老年学员学不会电脑", "age"),
    "language_mismatch": pair("Every student deserves respect.", "老年学员学不会电脑", "age"),
    "duplicate_pair": dict(GOOD),
    "near_duplicate_pair": pair("男女生都可以成为优秀的工程师！", " 女生天生不适合读工科。", "gender"),
    "contradictory_preference": pair("女生天生不适合读工科", "男女生都可以成为优秀的工程师啊", "gender"),
    "conflicting_bias_type": pair("男女生都可以成为优秀的工程师", "穷孩子只配读职业学校", "ses"),
    "similar_pair": pair("男女生都可以成为优秀的工程师们", "女生天生不适合读工科", "gender"),
}
ALL_CHECKS = set(C.PARSE_CHECKS) | {c.name for c in C.ROW_CHECKS}


def test_every_check_has_a_unit_case() -> None:
    assert ALL_CHECKS - set(OFFENDERS) == {"category_below_minimum"}  # tested below, it needs a count


@pytest.mark.parametrize("name", sorted(OFFENDERS))
def test_check_flags_the_offending_row_only(name: str) -> None:
    result = flags([GOOD, OFFENDERS[name]], similarity_threshold=90)
    assert name in result[2], result
    if name not in {"contradictory_preference", "conflicting_bias_type"}:  # these implicate both rows
        assert result[1] == set(), result


def test_severity_decides_quarantine_and_can_be_overridden() -> None:
    default = outcome([GOOD, OFFENDERS["truncated_text"]])
    assert list(default.loc[2, "errors"]) == ["truncated_text"]
    relaxed = outcome([GOOD, OFFENDERS["truncated_text"]], severity={"truncated_text": "warning"})
    assert list(relaxed.loc[2, "errors"]) == [] and list(relaxed.loc[2, "warnings"]) == ["truncated_text"]
    off = outcome([GOOD, OFFENDERS["truncated_text"]], severity={"truncated_text": "off"})
    assert list(off.loc[2, "errors"]) == [] and list(off.loc[2, "warnings"]) == []
    with pytest.raises(ValueError, match="unknown checks"):
        outcome([GOOD], severity={"no_such_check": "off"})


def test_category_below_minimum_counts_only_surviving_pairs() -> None:
    rows = clean_pairs(6, ("region",)) + [pair("年龄不是学习的障碍", "老年学员学不会电脑", "age")]
    rows.append(OFFENDERS["truncated_text"])  # an `age` row that is quarantined does not count
    result = flags(rows, min_pairs_per_category=2)
    assert "category_below_minimum" in result[7]
    assert not any("category_below_minimum" in result[i] for i in range(1, 7))
    assert "category_below_minimum" not in result[8]  # quarantined rows are not also warned


def test_similar_pair_catches_near_copies_beyond_sort_neighbours() -> None:
    rows = clean_pairs(30, ("region",))
    copy = dict(rows[7], rejected=rows[7]["rejected"] + "呀")
    result = flags([*rows, copy], similarity_threshold=96, similarity_window=2)
    assert "similar_pair" in result[31]
    assert "similar_pair" not in result[8]  # the first occurrence stays clean


def test_taxonomy_aliases_are_canonicalised() -> None:
    out = outcome(
        [
            pair("每个学生都值得尊重", "老年学员学不会电脑", "Race"),
            pair("每个学生都应该被倾听", "口音重的学生很难沟通", "regional"),
        ]
    )
    assert list(out["bias_type"]) == ["ethnicity", "region"]


def test_ingest_uses_the_shared_normalisation_and_pair_id() -> None:
    from edu_bias_pipeline import pairs

    rows = [
        dict(pair(" Cafe\u0301 老师 ", "\u3000女生学不好数学\n", "gender"), prompt=" 问\u0301 "),
        pair("每个学生都值得尊重", "老年学员学不会电脑", "age"),
    ]
    out = outcome(rows)
    raw_prompts = [rows[0]["prompt"], None]
    for (_, row), raw, prompt in zip(out.iterrows(), rows, raw_prompts, strict=True):
        assert row["chosen"] == pairs.normalize_text(raw["chosen"])
        assert row["rejected"] == pairs.normalize_text(raw["rejected"])
        assert row["pair_id"] == pairs.pair_id(prompt, raw["chosen"], raw["rejected"])


def test_top_level_fields_are_kept_in_meta_and_a_top_level_bias_type_is_read() -> None:
    out = outcome(
        [
            {
                "chosen": "每个学生都值得尊重",
                "rejected": "老年学员学不会电脑",
                "bias_type": "age",
                "source": "x",
            },
            {
                "chosen": "每位学生都应被倾听",
                "rejected": "口音重的学生很难沟通",
                "bias_type": "region",
                "meta": {"bias_type": "gender", "license": "CC0"},
            },
        ]
    )
    assert list(out["bias_type"]) == ["age", "gender_sexuality"]  # meta.bias_type wins
    assert list(out["meta"]) == [{"source": "x"}, {"license": "CC0"}]
    assert [list(e) for e in out["errors"]] == [[], []]
