"""CrowS-Pairs, capability retention, length confound and model health in real Kedro sessions of the
evaluation stage: what the report and the metrics files say, against the per-item scores and independent
float64 passes; the users' own files; each part switched off; and the default run of the whole pipeline."""

from __future__ import annotations

import csv
import json

import pandas as pd
import pytest
import tiny_checkpoints as tc
import torch
import yaml
from conftest import PROJECT_ROOT, read_jsonl, run_pipeline, write_jsonl

REPORT = "data/08_reporting/eval_report.md"
OUTPUTS = (
    "data/07_model_output/crows_pairs_scores.jsonl",
    "data/08_reporting/crows_pairs_metrics.json",
    "data/08_reporting/crows_pairs_headline.json",
    "data/08_reporting/crows_pairs_stereotype.png",
    "data/07_model_output/retention_scores.jsonl",
    "data/08_reporting/retention_metrics.json",
    "data/08_reporting/retention_headline.json",
    "data/08_reporting/retention.png",
)


@pytest.fixture(scope="module")
def ck(tmp_path_factory):
    return tc.get_checkpoints(tmp_path_factory)


def _json(project, path):
    return json.loads((project / path).read_text(encoding="utf-8"))


def _evaluate(project, ck, runtime=None, **evaluation):
    write_jsonl(project / "data/05_model_input/test.jsonl", tc.pair_rows(with_long=False))
    params = {"checkpoint": str(ck.full), "dtype": "float64", **evaluation}
    run_pipeline(project, "evaluation", params={"evaluation": params, **(runtime or {})})
    return (project / REPORT).read_text(encoding="utf-8")


def _unconditional_logp(model, tokenizer, text):
    """Independent of scoring.py: eos (this tokenizer has no bos) + the sentence, one unpadded pass."""
    ids = [tokenizer.eos_token_id] + tokenizer(text, add_special_tokens=False)["input_ids"]
    x = torch.tensor([ids])
    with torch.no_grad():
        logps = torch.log_softmax(model(input_ids=x).logits[0, :-1].to(torch.float64), -1)
    return float(logps.gather(1, x[0, 1:].unsqueeze(1)).sum())


def test_the_report_and_metrics_tell_the_benchmark_and_the_cost(project, ck):
    report = _evaluate(project, ck, retention={"max_new_tokens": 8})
    for path in OUTPUTS:
        assert (project / path).stat().st_size > 0, path

    # CrowS-Pairs: the shipped file, 20 pairs per bias type; the scores are the unconditional likelihoods.
    scores = pd.DataFrame(read_jsonl(project / "data/07_model_output/crows_pairs_scores.jsonl"))
    assert len(scores) == 180 and scores.groupby("bias_type").size().eq(20).all()
    policy, reference = tc.float64_models(ck, "full")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ck.full)
    for row in scores.head(3).to_dict(orient="records"):
        assert row["policy_more_logp"] == pytest.approx(
            _unconditional_logp(policy, tok, row["sent_more"]), abs=1e-6
        )
        assert row["reference_less_logp"] == pytest.approx(
            _unconditional_logp(reference, tok, row["sent_less"]), abs=1e-6
        )
    metrics = _json(project, "data/08_reporting/crows_pairs_metrics.json")
    trained = (scores["policy_more_logp"] > scores["policy_less_logp"]).mean()
    baseline = (scores["reference_more_logp"] > scores["reference_less_logp"]).mean()
    assert metrics["trained_stereotype_score/overall"] == pytest.approx(trained)
    assert metrics["baseline_stereotype_score/overall"] == pytest.approx(baseline)
    assert metrics["model"] == str(ck.full) and metrics["pairs/read"] == 1508
    race = scores[scores["bias_type"] == "race-color"]
    assert metrics["trained_stereotype_score/race-color"] == pytest.approx(
        (race["policy_more_logp"] > race["policy_less_logp"]).mean()
    )
    headline = _json(project, "data/08_reporting/crows_pairs_headline.json")
    assert (
        headline["crows_pairs/trained_stereotype_score/overall"]
        == metrics["trained_stereotype_score/overall"]
    )
    assert headline["model"] == str(ck.full)

    def pct(key):
        return f"{100 * metrics[key + '/overall']:.1f}% [{100 * metrics[key + '_ci_low/overall']:.0f}–"

    assert "## CrowS-Pairs stereotype score (independent benchmark, English)" in report
    assert f"| **overall** | 180 | {pct('baseline_stereotype_score')}" in report
    assert pct("trained_stereotype_score") in report
    assert (
        "`data/01_raw/benchmarks/crows_pairs/crows_pairs_anonymized.csv`: 1508 rows, 180 pairs scored"
        in report
    )

    # Retention: one completion per test pair from the reference, the shipped neutral texts.
    retention = _json(project, "data/08_reporting/retention_metrics.json")
    items = pd.DataFrame(read_jsonl(project / "data/07_model_output/retention_scores.jsonl"))
    assert retention["samples/overall"] == len(tc.pair_rows(with_long=False))
    assert retention["texts/overall"] == 44 and retention["texts/zh"] == retention["texts/en"] == 22
    texts = items[items["kind"] == "neutral_text"]
    assert retention["text_tokens/overall"] == texts["tokens"].sum()
    assert retention["perplexity_baseline/overall"] == pytest.approx(
        float(torch.tensor(-texts["reference_logp"].sum() / texts["tokens"].sum()).exp())
    )
    assert retention["sample_kl_per_token/overall"] > 0  # perturbed weights: the model drifted
    assert "## Cost of alignment: drift from the reference" in report
    assert f"**{retention['sample_kl_per_token/overall']:.4f} [" in report
    overall_row = f"| **overall** | 44 | {retention['text_tokens/overall']} "
    assert overall_row + f"| {retention['perplexity_baseline/overall']:.1f} [" in report
    ratio, rose = retention["perplexity_ratio/overall"], retention["perplexity_rose/overall"]
    assert rose == int(ratio > 1.5)
    health = report[report.index("## Model health") :]
    if rose:
        assert (
            f"⚠ neutral_perplexity_rose: the trained model's perplexity on neutral text is {ratio:.2f}×"
            in health
        )
    else:
        assert f"neutral perplexity: trained / baseline = {ratio:.2f}, within the allowed 1.50×" in health
    # No training ran in this project: no training-health checks to show beside it.
    assert "training-health checks: no training metrics here" in health
    assert (
        _json(project, "data/08_reporting/retention_headline.json")["retention/perplexity_rose/overall"]
        == rose
    )

    # Length confound: in eval_metrics.json and the report, for the in-distribution pairs.
    eval_metrics = _json(project, "data/08_reporting/eval_metrics.json")
    for family in ("baseline", "trained", "reward"):
        assert f"{family}_shorter_wins/overall" in eval_metrics
    assert "## Length confound" in report and "| **overall** |" in report


def test_users_own_files_and_empty_cells(project, ck, tmp_path):
    """--params crows_pairs_path / neutral_texts_path name the user's copies; a bias type missing from the
    copy is reported as such, passages without `lang` form one group."""
    source = PROJECT_ROOT / "data/01_raw/benchmarks/crows_pairs/crows_pairs_anonymized.csv"
    frame = pd.read_csv(source)
    mine = frame[frame["bias_type"].isin(["gender", "age"])].head(12)
    crows_file = tmp_path / "my_crows.csv"
    mine.to_csv(crows_file, index=False, quoting=csv.QUOTE_NONNUMERIC)
    texts_file = write_jsonl(
        tmp_path / "my_texts.jsonl", [{"text": "Lessons start at nine."}, {"text": "午饭后有体育课。"}]
    )
    report = _evaluate(
        project,
        ck,
        runtime={"crows_pairs_path": str(crows_file), "neutral_texts_path": str(texts_file)},
        crows_pairs={"sample_per_bias_type": None},
        retention={"max_new_tokens": 4, "decoding": "greedy"},
    )
    metrics = _json(project, "data/08_reporting/crows_pairs_metrics.json")
    assert metrics["n/overall"] == 12 and metrics["n/race-color"] == 0
    assert "trained_stereotype_score/race-color" not in metrics
    assert f"`{crows_file}`: 12 rows, 12 pairs scored" in report
    assert "| race-color | 0 | – | – | – |" in report
    assert (
        "Bias types without pairs in the scored file: disability, nationality, physical-appearance" in report
    )
    retention = _json(project, "data/08_reporting/retention_metrics.json")
    assert retention["texts/all"] == 2 and f"`{texts_file}`, 2 passages" in report
    # greedy: one completion per distinct prompt of the test pairs (the instruction and one own prompt)
    assert retention["samples/overall"] == 2 and retention["decoding"].startswith("greedy")


def test_each_part_switches_off(project, ck):
    report = _evaluate(project, ck, crows_pairs={"enabled": False}, retention={"enabled": False})
    assert report.count("Switched off") == 2
    assert "neutral perplexity: not measured (`evaluation.retention.enabled: false`)" in report
    assert read_jsonl(project / "data/07_model_output/crows_pairs_scores.jsonl") == []
    assert _json(project, "data/08_reporting/crows_pairs_headline.json") == {
        "model": str(ck.full),
        "crows_pairs/enabled": False,
    }
    assert _json(project, "data/08_reporting/retention_metrics.json")["enabled"] is False
    # The pair evaluation itself is untouched.
    assert _json(project, "data/08_reporting/eval_metrics.json")["n/overall"] == len(
        tc.pair_rows(with_long=False)
    )


def test_parameters_file_defaults_are_the_typed_defaults():
    """conf/base's evaluation blocks and the pydantic defaults agree, so a missing key changes nothing."""
    from edu_bias_pipeline.pipelines.evaluation.config import EvaluationConfig

    params = yaml.safe_load(
        (PROJECT_ROOT / "conf/base/parameters_evaluation.yml").read_text(encoding="utf-8")
    )
    typed = EvaluationConfig().model_dump()
    for block in ("crows_pairs", "retention", "length_confound"):
        assert params["evaluation"][block] == typed[block], block


@pytest.mark.slow
def test_the_default_run_says_the_baseline_preference_is_length(project):
    """`kedro run` on the shipped sample (real training of the embedded model): the random-init baseline
    prefers the shorter statement, so its accuracy where the unbiased statement is longer is 0, and the
    report says so in words; model health shows the training run's checks."""
    run_pipeline(project, ["data_validation", "data_splitting", "training", "evaluation"])
    metrics = _json(project, "data/08_reporting/eval_metrics.json")
    report = (project / REPORT).read_text(encoding="utf-8")
    longer = metrics["pairs_unbiased_longer/overall"]
    assert longer >= 5 and metrics["baseline_accuracy_unbiased_longer/overall"] == 0.0
    assert metrics["baseline_shorter_wins/overall"] >= 0.75
    assert "**The preference of the baseline (reference model) is explained mostly by length**" in report
    assert f"and in 0 of {longer} where it is the longer one" in report
    health = report[report.index("## Model health") :]
    assert "- training health:" in health and "no training metrics here" not in health
    assert "## CrowS-Pairs stereotype score" in report and "## Cost of alignment" in report
