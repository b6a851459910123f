"""A max_length that the prompt fills leaves no statement token to score: evaluation stops and says so,
instead of scoring every pair log-prob 0 and reporting 0% accuracy."""

from __future__ import annotations

import pandas as pd
import pytest
import tiny_checkpoints as tc

from edu_bias_pipeline import pairs as P
from edu_bias_pipeline.pipelines.evaluation.nodes import score_evaluation_pairs
from edu_bias_pipeline.scoring import check_statements_scored, encode_completions, encode_prompts


@pytest.fixture(scope="module")
def ck(tmp_path_factory):
    return tc.get_checkpoints(tmp_path_factory)


def _rows():
    return tc.pair_rows(with_long=False)


def test_a_prompt_that_fills_max_length_fails_with_what_to_raise(ck):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(ck.base)
    rows = _rows()
    instruction = "Continue the text."
    lengths = [len(p) for p in encode_prompts(tokenizer, [r[P.PROMPT] for r in rows], instruction)]
    shortest, longest = min(lengths), max(lengths)
    n = len(rows)

    def check(max_length: int | None) -> None:
        prompts = [r[P.PROMPT] for r in rows]
        encoded = (
            encode_completions(tokenizer, prompts, [r[side] for r in rows], instruction, max_length)
            for side in (P.CHOSEN, P.REJECTED)
        )
        check_statements_scored(*encoded, max_length)

    with pytest.raises(ValueError, match=rf"max_length={shortest} .*leaves {n} of {n} pairs") as err:
        check(shortest)
    assert "raise evaluation.max_length" in str(err.value)
    check(longest + 1)  # one token of each statement: fine
    check(None)


def test_the_scoring_node_stops_before_scoring(ck):
    pairs = pd.DataFrame(_rows())
    taxonomy = {c: None for c in tc.CATEGORIES}
    with pytest.raises(ValueError, match=r"max_length=2 .*raise evaluation\.max_length"):
        score_evaluation_pairs(pairs, {"checkpoint": str(ck.full), "max_length": 2}, taxonomy, {})
    scores, run_info, _ = score_evaluation_pairs(pairs, {"checkpoint": str(ck.full)}, taxonomy, {})
    assert (scores["chosen_tokens"] > 0).all() and run_info["n_pairs"] == len(pairs)
