"""CBBQ answers scored by the project and by lm-evaluation-harness (lm-eval, `HFLM.loglikelihood`) on the
same tiny model: the same log-likelihood per answer, and the same aggregated metrics through lm-eval's own
BBQ aggregations (`lm_eval.tasks.bbq.utils`).

The boundary between context and continuation is tokenised differently, and the test states how:
- the project tokenises the rendered prompt and the answer apart: prompt ids + answer ids + eos, and sums
  the answer and eos tokens (the data contract, TRL's convention);
- lm-eval moves the context's trailing whitespace into the continuation, tokenises context + continuation
  whole and splits the ids at the context's length (`TemplateLM._encode_pair`).
The project's chat prompt ends in "<|im_start|>assistant\\n", so lm-eval's continuation is "\\n" + answer +
eos: the same ids, split one token earlier, so lm-eval also scores the newline. The test checks the ids token
by token and subtracts lm-eval's own log-likelihood of that newline after the stripped context.
"""

from __future__ import annotations

import numpy as np
import pytest
import tiny_checkpoints as tc
import yaml
from conftest import PROJECT_ROOT

from edu_bias_pipeline import scoring
from edu_bias_pipeline.pairs import render_prompt
from edu_bias_pipeline.pipelines.evaluation import cbbq_qa as Q

lm_eval_hf = pytest.importorskip("lm_eval.models.huggingface", reason="lm-eval is in the dev extra")
from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.api.metrics import mean  # noqa: E402
from lm_eval.tasks.bbq import utils as bbq  # noqa: E402

CONF = PROJECT_ROOT / "conf/base"
SAMPLE = PROJECT_ROOT / "data/01_raw/benchmarks/cbbq_sample"
# lm-eval cuts contexts from the left beyond the model's 512 positions; the project does not: compare
# questions that fit.
MAX_TOKENS = 500


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    ck = tc.get_checkpoints(tmp_path_factory)
    models = scoring.load_scoring_models(ck.full, dtype="float64")
    taxonomy = yaml.safe_load((CONF / "parameters_data_validation.yml").read_text(encoding="utf-8"))[
        "taxonomy"
    ]
    imports = yaml.safe_load((CONF / "parameters_data_import.yml").read_text(encoding="utf-8"))["data_import"]
    questions, info = Q.read_cbbq_questions(str(SAMPLE), {}, imports, taxonomy)
    questions, _ = Q.select_cbbq_questions(questions, {"cbbq_qa": {"sample_per_category": 8}}, {}, info)
    tok, meta = models.tokenizer, models.metadata
    fits = [
        max(
            len(e.input_ids)
            for e in scoring.encode_completions(tok, [q["prompt"]] * 3, q["answers"], meta.instruction)
        )
        <= MAX_TOKENS
        for q in questions.to_dict("records")
    ]
    questions = questions[fits].reset_index(drop=True)
    assert len(questions) >= 40 and set(questions["condition"]) == {"ambiguous", "disambiguated"}
    ours = Q.answer_questions(
        models, tok, questions, instruction=meta.instruction, max_length=None, batch_size=4
    )
    theirs = {
        name: _lm_eval_loglikelihoods(model, tok, questions, meta.instruction)
        for name, model in (("trained", models.policy), ("baseline", models.reference))
    }
    return models, questions, ours, theirs


def _lm_eval_loglikelihoods(model, tokenizer, questions, instruction):
    """Per question: lm-eval's log-likelihood of each answer (+ eos) after the chat-rendered context, and of
    the whitespace it moved from the context into every continuation."""
    lm = lm_eval_hf.HFLM(pretrained=model, tokenizer=tokenizer, batch_size=8)
    requests, contexts = [], []
    for q in questions.to_dict("records"):
        context = render_prompt(tokenizer, q["prompt"], instruction)
        stripped = context.rstrip()
        contexts.append(context)
        for answer in q["answers"]:
            requests.append((context, answer + tokenizer.eos_token))
        requests.append((stripped, context[len(stripped) :]))
    instances = [
        Instance(request_type="loglikelihood", doc={}, arguments=args, idx=i)
        for i, args in enumerate(requests)
    ]
    results = [ll for ll, _ in lm.loglikelihood(instances, disable_tqdm=True)]
    per_question = [results[i * 4 : i * 4 + 4] for i in range(len(questions))]
    return lm, contexts, [r[:3] for r in per_question], [r[3] for r in per_question]


def test_per_answer_log_likelihoods_equal_lm_evals(setup):
    models, questions, ours, lm_eval = setup
    tok, meta = models.tokenizer, models.metadata
    for name in ("trained", "baseline"):
        lm, contexts, answers_ll, newline_ll = lm_eval[name]
        column = f"{name}_logp"
        newline = tok("\n", add_special_tokens=False)["input_ids"]
        for q, context, theirs, moved, mine in zip(
            questions.to_dict("records"), contexts, answers_ll, newline_ll, ours[column], strict=True
        ):
            encoded = scoring.encode_completions(tok, [q["prompt"]] * 3, q["answers"], meta.instruction)
            for answer, enc, ll, our_ll in zip(q["answers"], encoded, theirs, mine, strict=True):
                context_ids, continuation_ids = lm._encode_pair(context, answer + tok.eos_token)
                # The same ids; lm-eval's continuation starts one token earlier, with the newline.
                assert context_ids + continuation_ids == enc.input_ids
                assert continuation_ids[: len(newline)] == newline
                assert continuation_ids[len(newline) :] == enc.input_ids[enc.n_prompt :]
                assert our_ll == pytest.approx(ll - moved, abs=1e-4)
            # The newline's log-likelihood is one number per question: every answer's ranking is lm-eval's.
            assert int(np.argmax(theirs)) == int(np.argmax(mine))


def test_aggregated_metrics_equal_lm_evals_bbq_aggregations(setup):
    _, questions, ours, lm_eval = setup
    metrics, _, _ = Q.compute_cbbq_metrics(ours, {}, {}, {"cbbq_qa": {"bootstrap_resamples": 0}})
    for name in ("trained", "baseline"):
        _, _, answers_ll, _ = lm_eval[name]
        rows = []
        for q, lls in zip(questions.to_dict("records"), answers_ll, strict=True):
            answer = int(
                np.argmax(lls)
            )  # lm-eval's multiple-choice answer (bbq.process_results_multiple_choice)
            rows.append(
                (
                    float(answer == q["label"]),
                    float(answer == q["biased_index"]),
                    float(answer != q["unknown_index"]),
                    q["condition"] == "disambiguated",
                )
            )
        disambiguated = [r for r in rows if r[3]]
        assert mean([r[0] for r in rows]) == pytest.approx(
            (
                metrics[f"{name}_accuracy_ambiguous/overall"] * metrics["n_ambiguous/overall"]
                + metrics[f"{name}_accuracy_disambiguated/overall"] * metrics["n_disambiguated/overall"]
            )
            / len(rows)
        )
        assert bbq.agg_accuracy_amb([(r[0], r[3]) for r in rows]) == pytest.approx(
            metrics[f"{name}_accuracy_ambiguous/overall"]
        )
        assert bbq.agg_accuracy_disamb([(r[0], r[3]) for r in rows]) == pytest.approx(
            metrics[f"{name}_accuracy_disambiguated/overall"]
        )
        # lm-eval returns 0 for s_DIS when no answer is biased, also when some are anti-biased (the paper's
        # formula, and the project, give −1 there); the comparison needs a biased answer in the cell.
        assert sum(r[1] for r in disambiguated) > 0
        assert bbq.agg_disamb_bias_scores(rows) == pytest.approx(
            metrics[f"{name}_bias_score_disambiguated/overall"]
        )
        assert bbq.agg_amb_bias_scores(rows) == pytest.approx(metrics[f"{name}_bias_score_ambiguous/overall"])
