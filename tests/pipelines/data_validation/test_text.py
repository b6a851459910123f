"""The text engine on its own: vectorised near-duplicate keys, mojibake detection, dominant scripts."""

from __future__ import annotations

import pandas as pd
import pytest

from edu_bias_pipeline.pipelines.data_validation import text as T


def test_vectorised_near_keys_match_pairs_near_duplicate_key() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from edu_bias_pipeline.pairs import near_duplicate_key

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.text(max_size=30), min_size=1, max_size=5))
    def agree(texts: list[str]) -> None:
        assert T.near_keys(pd.Series(texts)).to_pylist() == [near_duplicate_key(t) for t in texts]

    agree()
    tricky = [
        "Straße",
        "İstanbul",
        "ＡＢＣ，ｄ！",
        "ｶﾞｸｾｲ",
        "e\u0301cole",
        "😀 emoji",
        "\ua7f1x",
        "ΣΑΣ",
        "ﬁle",
        "  ",
        "\u200b",
    ]
    assert T.near_keys(pd.Series(tricky)).to_pylist() == [near_duplicate_key(t) for t in tricky]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("æ•™è‚²", True),
        ("Ã©cole", True),
        ("café", False),
        ("Â« guillemets Â»", True),
        ("naïve façade ©", False),
        ("教育公平", False),
    ],
)
def test_is_mojibake(text: str, expected: bool) -> None:
    assert T.is_mojibake(text) is expected


def test_scripts() -> None:
    got = T.scripts(pd.Series(["女生也能学好数学", "Girls can do math", "女生 GPA 也高", "123", "Девочки"]))
    assert list(got) == ["han", "latin", "han", "", "other"]
