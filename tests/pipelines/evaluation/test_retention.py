"""Capability retention: KL(π ‖ π_ref) and neutral perplexity through the real scorer, against independent
float64 computations by hand; the reference's seeded completions; the formulas, the flag and the
model-health section."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import tiny_checkpoints as tc
import torch

from edu_bias_pipeline import scoring
from edu_bias_pipeline.pairs import DEFAULT_INSTRUCTION
from edu_bias_pipeline.pipelines.evaluation import retention as R

TEXTS = pd.DataFrame(
    {
        "id": ["zh-a", "zh-b", "en-a"],
        "lang": ["zh", "zh", "en"],
        "text": ["学生每天阅读二十分钟。", "图书馆周一开放。", "The library opens at eight."],
    }
)


@pytest.fixture(scope="module")
def ck(tmp_path_factory):
    return tc.get_checkpoints(tmp_path_factory)


@pytest.fixture(scope="module")
def tok(ck):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(ck.base)


def _encoded(tok):
    """Both scoring routes: chat-prompted completions (shared prompt) and unconditional texts (one token)."""
    statements = [s for pairs in tc.STATEMENTS.values() for pair in pairs for s in pair][:5]
    prompts = [None, None, "这句话公平吗？", None, "这句话公平吗？"]
    return scoring.encode_completions(tok, prompts, statements, DEFAULT_INSTRUCTION) + scoring.encode_texts(
        tok, TEXTS["text"].tolist()
    )


def _by_hand(policy, reference, enc):
    """One unpadded float64 pass per model: (log p policy, log p reference, Σ KL) over completion tokens."""
    x = torch.tensor([enc.input_ids])
    with torch.no_grad():
        p = torch.log_softmax(policy(input_ids=x).logits[0].to(torch.float64), -1)
        q = torch.log_softmax(reference(input_ids=x).logits[0].to(torch.float64), -1)
    rows = range(enc.n_prompt - 1, len(enc.input_ids) - 1)  # position t predicts token t + 1
    targets = enc.input_ids[enc.n_prompt :]
    logp = sum(float(p[t, y]) for t, y in zip(rows, targets, strict=True))
    logq = sum(float(q[t, y]) for t, y in zip(rows, targets, strict=True))
    kl = sum(float((p[t].exp() * (p[t] - q[t])).sum()) for t in rows)
    return logp, logq, kl


def test_kl_of_a_model_with_itself_is_zero(ck, tok):
    policy, reference = tc.float64_models(ck, "base")  # two separately loaded copies of the base model
    enc = _encoded(tok)
    got = scoring.score_sequences(
        (policy, reference), enc, pad_id=tok.pad_token_id, batch_size=3, with_kl=True
    )
    assert all(abs(kl) < 1e-12 for kl in got.kl)
    assert got.policy == pytest.approx(got.reference, abs=1e-9)
    assert got.tokens == [e.n_completion for e in enc]


@pytest.mark.parametrize("which", ["full", "lora"])
def test_kl_and_log_probs_after_a_weight_change_match_a_pass_by_hand(ck, tok, which):
    """Perturbed weights (full) or a non-zero LoRA adapter (reference = adapter disabled): the batched
    scorer's KL and log-probs equal an unpadded float64 pass with the KL summed by hand."""
    models = scoring.load_scoring_models(getattr(ck, which), dtype="float64")
    enc = _encoded(tok)
    got = scoring.score_sequences(models, enc, batch_size=3, with_kl=True)
    policy, reference = tc.float64_models(ck, which)
    for i, e in enumerate(enc):
        logp, logq, kl = _by_hand(policy, reference, e)
        assert got.policy[i] == pytest.approx(logp, abs=1e-6), i
        assert got.reference[i] == pytest.approx(logq, abs=1e-6), i
        assert got.kl[i] == pytest.approx(kl, abs=1e-6), i
        assert got.kl[i] > 1e-4, i  # the weights changed: the distributions differ


def test_reference_completions_are_seeded_sampled_from_the_reference_and_end_at_eos(ck, tok):
    models = scoring.load_scoring_models(ck.full, dtype="float64")
    prompts = scoring.encode_prompts(tok, [None, None, tc.LONG_STATEMENT, None], DEFAULT_INSTRUCTION)
    assert len({len(p) for p in prompts}) == 2  # two prompt lengths: batches are left-padded
    state = torch.get_rng_state()
    first = scoring.generate_from_reference(models, prompts, max_new_tokens=12, do_sample=True, seed=5)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random state is left alone
    again = scoring.generate_from_reference(models, prompts, max_new_tokens=12, do_sample=True, seed=5)
    other = scoring.generate_from_reference(models, prompts, max_new_tokens=12, do_sample=True, seed=6)
    assert [e.input_ids for e in first] == [e.input_ids for e in again] != [e.input_ids for e in other]
    for enc, prompt in zip(first, prompts, strict=True):
        assert enc.input_ids[: enc.n_prompt] == prompt
        completion = enc.input_ids[enc.n_prompt :]
        assert len(completion) == 12 or completion[-1] == tok.eos_token_id
        assert tok.eos_token_id not in completion[:-1]

    # Greedy, prompts of different lengths left-padded into one batch == the reference's own unpadded
    # generate per prompt: the reference here (the base model) and, with more context-dependent choices than
    # the random-init base, the perturbed model as its own reference.
    eos = tok.eos_token_id
    own = scoring.load_scoring_models(ck.full, reference_model=str(ck.full), dtype="float64")
    for scored in (models, own):
        greedy = scoring.generate_from_reference(
            scored, prompts, max_new_tokens=12, do_sample=False, batch_size=4
        )
        reference = tc.float64_models(ck, "full")[1] if scored is models else own.policy
        for enc, prompt in zip(greedy, prompts, strict=True):
            x = torch.tensor([prompt])
            expected = reference.generate(
                input_ids=x,
                attention_mask=torch.ones_like(x),
                max_new_tokens=12,
                do_sample=False,
                pad_token_id=eos,
            )[0].tolist()
            if eos in expected[len(prompt) :]:
                expected = expected[: expected.index(eos, len(prompt)) + 1]
            assert enc.input_ids == expected


def _pairs_frame():
    return pd.DataFrame(tc.pair_rows(with_long=False))


def test_perplexity_is_exp_of_the_mean_nll_checked_by_hand(ck, tok):
    """score_retention + drift_metrics on the tiny model == exp(Σ NLL / Σ tokens) of an unpadded float64
    pass over [eos] + text tokens, per language and overall, for both models."""
    models = scoring.load_scoring_models(ck.full, dtype="float64")
    config = {"retention": {"max_new_tokens": 6, "bootstrap_resamples": 200}}
    scores, info = R.score_retention(_pairs_frame(), TEXTS, config, {}, models)
    metrics = R.retention_metrics(scores, info, config, {"model": "m", "model_source": "trained_model"})

    policy, reference = tc.float64_models(ck, "full")
    nll = {"trained": {}, "baseline": {}}
    tokens = {}
    for lang, text in zip(TEXTS["lang"], TEXTS["text"], strict=True):
        ids = [tok.eos_token_id] + tok(text, add_special_tokens=False)[
            "input_ids"
        ]  # no bos in this tokenizer
        x = torch.tensor([ids])
        for family, model in (("trained", policy), ("baseline", reference)):
            with torch.no_grad():
                logps = torch.log_softmax(model(input_ids=x).logits[0, :-1].to(torch.float64), -1)
            total = -float(logps.gather(1, x[0, 1:].unsqueeze(1)).sum())
            nll[family][lang] = nll[family].get(lang, 0.0) + total
        tokens[lang] = tokens.get(lang, 0) + len(ids) - 1
    for family in ("trained", "baseline"):
        for lang in ("zh", "en"):
            expected = math.exp(nll[family][lang] / tokens[lang])
            assert metrics[f"perplexity_{family}/{lang}"] == pytest.approx(expected, rel=1e-9), (family, lang)
            assert metrics[f"text_tokens/{lang}"] == tokens[lang]
        overall = math.exp(sum(nll[family].values()) / sum(tokens.values()))
        assert metrics[f"perplexity_{family}/overall"] == pytest.approx(overall, rel=1e-9)
    assert metrics["perplexity_ratio/overall"] == pytest.approx(
        metrics["perplexity_trained/overall"] / metrics["perplexity_baseline/overall"]
    )
    low, high = metrics["perplexity_ratio_ci_low/overall"], metrics["perplexity_ratio_ci_high/overall"]
    assert low <= metrics["perplexity_ratio/overall"] <= high
    # The KL part: one sampled completion per pair, from the reference, its KL > 0 for the perturbed model.
    assert metrics["samples/overall"] == len(_pairs_frame()) and metrics["sample_kl_per_token/overall"] > 0
    assert set(scores["kind"]) == {R.SAMPLE, R.TEXT} and scores["tokens"].min() >= 1


def _frame(texts, samples=()):
    """Per-item scores: texts as (scope, tokens, policy logp, reference logp), samples as
    (scope, tokens, kl)."""
    rows = [
        {"kind": R.TEXT, "item_id": f"t{i}", "scope": s, "tokens": n, "policy_logp": p, "reference_logp": r}
        | {"kl_sum": 0.0, "truncated": False, "text": ""}
        for i, (s, n, p, r) in enumerate(texts)
    ]
    rows += [
        {
            "kind": R.SAMPLE,
            "item_id": f"s{i}",
            "scope": s,
            "tokens": n,
            "policy_logp": 0.0,
            "reference_logp": 0.0,
        }
        | {"kl_sum": kl, "truncated": False, "text": ""}
        for i, (s, n, kl) in enumerate(samples)
    ]
    return pd.DataFrame(rows)


def test_drift_formulas_and_the_perplexity_flag():
    scores = _frame(
        texts=[("en", 10, -20.0, -10.0), ("zh", 5, -10.0, -10.0)],
        samples=[("region", 4, 0.4), ("age", 6, 1.2)],
    )
    cfg = R.RetentionConfig(perplexity_ratio_max=1.5, bootstrap_resamples=300)
    metrics = R.drift_metrics(scores, cfg)
    assert metrics["perplexity_trained/en"] == pytest.approx(math.exp(2.0))
    assert metrics["perplexity_baseline/en"] == pytest.approx(math.exp(1.0))
    assert metrics["perplexity_trained/overall"] == pytest.approx(math.exp(30 / 15))
    assert metrics["perplexity_baseline/overall"] == pytest.approx(math.exp(20 / 15))
    assert metrics["perplexity_ratio/overall"] == pytest.approx(math.exp(10 / 15))  # 1.95 > 1.5
    assert metrics["perplexity_ratio/zh"] == pytest.approx(1.0)
    assert metrics["perplexity_rose/overall"] == 1
    assert metrics["sample_kl_per_token/overall"] == pytest.approx(1.6 / 10)
    assert metrics["sample_kl_per_token/age"] == pytest.approx(0.2) and metrics["samples/region"] == 1
    calm = R.drift_metrics(scores, R.RetentionConfig(perplexity_ratio_max=2.0, bootstrap_resamples=300))
    assert calm["perplexity_rose/overall"] == 0

    section = R.render_health_section(
        {"enabled": True, **metrics}, {}, {"training_run": {"fingerprint": "abc"}}
    )
    assert "⚠ neutral_perplexity_rose: the trained model's perplexity on neutral text is 1.95×" in section
    assert "(allowed: 1.50×)" in section
    calm_section = R.render_health_section({"enabled": True, **calm}, {}, {})
    assert "within the allowed 2.00×" in calm_section and "⚠" not in calm_section


def test_the_health_section_shows_training_checks_only_of_the_scored_run():
    health = {
        "run": {"fingerprint": "abc"},
        "health": {"checks": {"nan_loss": False, "loss_stuck_at_ln2": True}, "warnings": ["loss is stuck"]},
    }
    retention = {"enabled": False}
    same = R.render_health_section(retention, health, {"training_run": {"fingerprint": "abc"}})
    assert "- training health: ⚠ loss is stuck" in same
    other = R.render_health_section(retention, health, {"training_run": {"fingerprint": "xyz"}})
    assert "describe run `abc`, not the scored model's" in other and "loss is stuck" not in other
    assert "no training metrics here" in R.render_health_section(retention, {}, {})
    passed = {"run": {"fingerprint": "abc"}, "health": {"checks": {"nan_loss": False}, "warnings": []}}
    assert "all 1 checks passed (nan_loss)" in R.render_health_section(
        retention, passed, {"training_run": {"fingerprint": "abc"}}
    )
    assert "not measured (`evaluation.retention.enabled: false`)" in same


def test_neutral_text_files_are_checked_line_by_line():
    with pytest.raises(ValueError, match="needs a 'text' field"):
        R.read_neutral_texts(pd.DataFrame({"body": ["x"]}), "t.jsonl")
    with pytest.raises(ValueError, match=r"'text' must be a non-empty string \(line 2\)"):
        R.read_neutral_texts(pd.DataFrame({"text": ["ok", "  "]}), "t.jsonl")
    with pytest.raises(ValueError, match="empty"):
        R.read_neutral_texts(pd.DataFrame(), "t.jsonl")
    plain = R.read_neutral_texts(pd.DataFrame({"text": ["a", "b"]}), "t.jsonl")
    assert plain["scope"].tolist() == [R.ALL_TEXTS] * 2 and plain["item_id"].tolist() == ["text-1", "text-2"]


def test_switched_off_generates_nothing_and_says_so():
    scores, info = R.score_retention(None, None, {"retention": {"enabled": False}}, {}, None)
    assert scores.empty and info == {"enabled": False}
    metrics = R.retention_metrics(scores, info, {}, {"model": "m", "model_source": "trained_model"})
    assert metrics == {"enabled": False, "model": "m", "model_source": "trained_model"}
    assert "Switched off" in R.render_retention_section(metrics, {})
    assert R.retention_headline(metrics) == {"model": "m", "retention/enabled": False}
