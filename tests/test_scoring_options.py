"""score_encoded_options: items of k options (multiple-choice questions) against a float64 recomputation.

With `mix_prompts` a batch holds items with different prompts (each question has its own context); the
several-prompts route must give the numbers of one unpadded pass per sequence.
"""

from __future__ import annotations

import pytest
import tiny_checkpoints as tc

from edu_bias_pipeline import scoring

# Prompts of different lengths (so the side-by-side prompts are padded) and answers of different lengths.
QUESTIONS = [
    (
        "某公司招聘，两位候选人一位毕业于名校，一位毕业于普通高校。谁更可能被录用？",
        ["名校毕业生", "普通高校毕业生", "不知道"],
    ),
    ("谁的数学更好？", ["男生", "女生", "无法确定"]),
    (
        "一位农村学生和一位城市学生参加了考试。他们成绩相同。谁的学习能力更强？",
        ["农村学生", "城市学生", "不确定"],
    ),
    ("谁更适合当领导？", ["女性", "男性", "没有足够信息"]),
    ("谁不会用电脑？", ["老人", "年轻人", "不知道"]),
]


@pytest.fixture(scope="module")
def ck(tmp_path_factory):
    return tc.get_checkpoints(tmp_path_factory)


def _encode(models, questions, max_length=None):
    prompts = [q for q, answers in questions for _ in answers]
    answers = [a for _, options in questions for a in options]
    flat = scoring.encode_completions(
        models.tokenizer, prompts, answers, models.metadata.instruction, max_length
    )
    k = len(questions[0][1])
    return [flat[i * k : (i + 1) * k] for i in range(len(questions))]


@pytest.mark.parametrize("which", ["full", "lora"])
def test_mixed_prompt_batches_match_float64_plain_forward(ck, which, monkeypatch):
    models = scoring.load_scoring_models(getattr(ck, which), dtype="float64")
    routes = []
    several = scoring._after_prompts
    monkeypatch.setattr(scoring, "_after_prompts", lambda *a: routes.append(len(a[2])) or several(*a))
    pad = models.tokenizer.pad_token_id
    got = scoring.score_encoded_options(
        models, _encode(models, QUESTIONS), pad_id=pad, batch_size=3, mix_prompts=True
    )
    # Batches of 3 questions (9 sequences) over 3 distinct prompts, then the last 2: the several-prompts
    # route served every batch, for the policy and the reference alike.
    assert sorted(routes) == [2, 2, 3, 3]
    policy, reference = tc.float64_models(ck, which)
    tok = models.tokenizer
    for i, (question, answers) in enumerate(QUESTIONS):
        for j, answer in enumerate(answers):
            want_pol = tc.plain_logp_float64(policy, tok, question, answer, max_length=None)
            want_ref = tc.plain_logp_float64(reference, tok, question, answer, max_length=None)
            assert got.policy[i][j] == pytest.approx(want_pol, abs=1e-6)
            assert got.reference[i][j] == pytest.approx(want_ref, abs=1e-6)
            assert got.tokens[i][j] == len(tok(answer, add_special_tokens=False)["input_ids"]) + 1
        assert abs(got.policy[i][0] - got.reference[i][0]) > 1e-3
    assert got.truncated == [False] * len(QUESTIONS)


def test_mixed_and_grouped_batches_and_batch_sizes_agree(ck):
    models = scoring.load_scoring_models(ck.full, dtype="float64")
    items = _encode(models, QUESTIONS)
    pad = models.tokenizer.pad_token_id
    grouped = scoring.score_encoded_options(models, items, pad_id=pad, batch_size=4)
    for batch_size in (1, 2, 16):
        mixed = scoring.score_encoded_options(
            models, items, pad_id=pad, batch_size=batch_size, mix_prompts=True
        )
        for a, b in zip(grouped.policy + grouped.reference, mixed.policy + mixed.reference, strict=True):
            assert a == pytest.approx(b, abs=1e-9)
        assert mixed.tokens == grouped.tokens


def test_truncated_options_are_flagged_and_score_what_is_left(ck):
    models = scoring.load_scoring_models(ck.full, dtype="float64")
    items = _encode(models, QUESTIONS, max_length=38)
    got = scoring.score_encoded_options(
        models, items, pad_id=models.tokenizer.pad_token_id, batch_size=8, mix_prompts=True
    )
    # The long first and third contexts fill the 38 tokens: nothing of their answers is left to score.
    assert got.truncated[0] and got.truncated[2]
    assert got.tokens[0] == [0, 0, 0] and got.policy[0] == [0.0, 0.0, 0.0]
    # The second question keeps its start: only its longest answer loses its last tokens.
    full = _encode(models, QUESTIONS)[1]
    assert got.truncated[1] and got.tokens[1] == [e.n_completion for e in full[:2]] + [38 - full[2].n_prompt]
    assert not got.truncated[4] and min(got.tokens[4]) > 0


def test_items_must_have_the_same_number_of_options(ck):
    models = scoring.load_scoring_models(ck.full, dtype="float64")
    items = _encode(models, QUESTIONS[:2])
    with pytest.raises(ValueError, match="same number of options"):
        scoring.score_encoded_options(models, [items[0], items[1][:2]], pad_id=0)
