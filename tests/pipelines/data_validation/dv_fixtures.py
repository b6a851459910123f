"""Dirty and clean JSONL fixtures for the validation stage: one line per check, plus line-level damage."""

from __future__ import annotations

import json
from typing import Any

BOM = b"\xef\xbb\xbf"


def pair(chosen: str, rejected: str, bias_type: str | None = "gender", **meta_extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"source": "fixture", **meta_extra}
    if bias_type is not None:
        meta["bias_type"] = bias_type
    return {"chosen": chosen, "rejected": rejected, "meta": meta}


def clean_pairs(n: int, bias_types: tuple[str, ...] = ("gender_sexuality", "region")) -> list[dict[str, Any]]:
    """n distinct, valid Chinese pairs (distinct enough for the similarity check too)."""
    subjects = [
        "数学",
        "物理",
        "化学",
        "历史",
        "地理",
        "生物",
        "编程",
        "音乐",
        "美术",
        "体育",
        "英语",
        "政治",
    ]
    groups = [
        "女生",
        "农村学生",
        "外地考生",
        "少数民族学生",
        "残障学生",
        "年长学员",
        "家境贫寒的学生",
        "二本毕业生",
    ]
    rows = []
    for i in range(n):
        subject = subjects[i % len(subjects)]
        group = groups[(i // len(subjects)) % len(groups)]
        k = i // (len(subjects) * len(groups))
        rows.append(
            pair(
                f"{group}在{subject}课上的表现取决于个人努力和教学支持，第{k}组案例说明能力与身份无关。",
                f"{group}天生学不好{subject}，老师不必在他们身上浪费时间{'！' * (k % 3 + 1)}第{k}组",
                bias_types[i % len(bias_types)],
            )
        )
    return rows


# The dirty fixture's self-contained lines: (kind, check name, row), a dict row written as JSON and
# str/bytes verbatim. Lines whose outcome depends on an earlier line are added in dirty_file().
DIRTY_CASES: list[tuple[str, str, Any]] = [
    ("error", "invalid_json", '{"chosen": "女生也能学好数学", "rejected": '),
    ("error", "not_an_object", '["女生也能学好数学", "女生学不好数学"]'),
    ("error", "not_an_object", '"just a string"'),
    ("error", "invalid_utf8", b'{"chosen": "\xff\xfe bad", "rejected": "x", "meta": {"bias_type": "age"}}'),
    ("error", "missing_field", {"rejected": "女生天生学不好数学", "meta": {"bias_type": "gender"}}),
    (
        "error",
        "wrong_type",
        {"chosen": 42, "rejected": "女生天生学不好数学", "meta": {"bias_type": "gender"}},
    ),
    (
        "error",
        "wrong_type",
        {"chosen": "老师应平等对待每位学生", "rejected": "只有男生适合当班长", "meta": "gender"},
    ),
    (
        "error",
        "invalid_characters",
        '{"chosen": "\\ud800坏", "rejected": "女生学不好数学", "meta": {"bias_type": "gender"}}',
    ),
    ("error", "missing_bias_type", pair("男女生在物理竞赛中机会均等", "女生不该参加物理竞赛", None)),
    ("error", "unknown_bias_type", pair("招生应看重学生的综合能力", "招生应优先录取本地人", "astrology")),
    ("error", "empty_text", pair("   ", "外地学生素质普遍偏低", "region")),
    (
        "error",
        "identical_pair",
        pair("所有学生都可以申请奖学金", " 所有学生都可以申请奖学金 ", "socioeconomic"),
    ),
    ("error", "length_out_of_bounds", pair("好", "穷学生不配上好大学", "socioeconomic")),
    ("error", "truncated_text", pair("教师招聘应以教学能力为准", "年纪大的老师教学方法都…", "age")),
    ("error", "mojibake", pair("æ•™è‚²å…¬å¹³å¯¹æ¯ä¸ªäººéƒ½é‡è¦", "残疾学生不应进入普通学校", "disability")),
    ("error", "control_characters", pair("每个学生都值得\x07被尊重", "胖学生上课注意力差", "appearance")),
    (
        "error",
        "invalid_characters",
        pair("宗教信仰不影响学习\ufffd能力", "信教的学生不适合当干部", "religion"),
    ),
    (
        "error",
        "language_mismatch",
        pair("Students of every ethnicity can excel in science.", "少数民族学生学不好理科", "ethnicity"),
    ),
    (
        "error",
        "contradictory_preference",
        pair("留学生与本地学生享有同样的选课权利", "外国学生只能选修简单的课程", "nationality"),
    ),
    (
        "error",
        "contradictory_preference",
        pair("外国学生只能选修简单的课程", "留学生与本地学生享有同样的选课权利", "nationality"),
    ),
]


def encode(row: Any) -> bytes:
    if isinstance(row, bytes):
        return row
    if isinstance(row, str):
        return row.encode("utf-8")
    return json.dumps(row, ensure_ascii=False).encode("utf-8")


def dirty_file() -> tuple[bytes, dict[int, tuple[set[str], set[str]]], int]:
    """A JSONL file that exercises every check.

    Returns (content, expected, rows_read): `expected[line] = (errors, warnings)` that line must at least
    carry (errors -> quarantined with those reasons; no errors -> kept with those warnings).
    """
    clean = clean_pairs(24)
    lines: list[bytes] = []
    expected: dict[int, tuple[set[str], set[str]]] = {}

    def add(row: Any, errors: set[str] | None = None, warnings: set[str] | None = None) -> int:
        lines.append(encode(row))
        number = len(lines)
        if errors is not None or warnings is not None:
            expected[number] = (errors or set(), warnings or set())
        return number

    add(clean[0], set(), set())  # the BOM goes in front of this line: it must still parse
    add(b"")  # blank lines are ignored, not quarantined
    add(b"   \t")
    for kind, name, row in DIRTY_CASES:
        add(row, {name} if kind == "error" else set(), {name} if kind == "warning" else set())
    add(encode(clean[1]) + b"\r", set(), set())  # a CRLF line ending
    for row in clean[2:]:
        add(row)
    add(clean[2], {"duplicate_pair"})
    near = dict(
        clean[3],
        chosen=clean[3]["chosen"].replace("，", ", ") + "  ",
        rejected=clean[3]["rejected"].replace("！", "!"),
    )
    add(near, {"near_duplicate_pair"})
    similar = dict(clean[4], chosen=clean[4]["chosen"].replace("努力和", "努力与"))
    add(similar, set(), {"similar_pair"})
    add(pair(clean[5]["chosen"], "那些人根本不适合读大学", "socioeconomic"), set(), {"conflicting_bias_type"})
    add(
        pair("每位学生\u200b都应得到同样的机会", "口音重的学生不适合当播音员", "region"),
        set(),
        {"invisible_characters"},
    )
    add(
        pair("年龄不是学习新技能的障碍", "三十岁以后读研就是浪费时间", "ageism"),
        set(),
        {"category_below_minimum"},
    )
    add(
        pair(
            "Every student deserves equal access to advanced courses.",
            "Poor kids should not take advanced courses.",
            "ses",
            source="en",
            license="CC-BY-4.0",
            eval_only=True,
        ),
        set(),
        set(),
    )
    add(
        dict(
            pair("提问时老师应一视同仁", "老师只应该提问成绩好的学生", "educational_qualification"),
            prompt="  老师在课堂上应该如何提问？ ",
            origin="top-level extra",
        ),
        set(),
        set(),
    )
    rows_read = sum(1 for line in lines if line.strip())
    return BOM + b"\n".join(lines) + b"\n", expected, rows_read
