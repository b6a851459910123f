"""The evaluation stage in real Kedro sessions on tiny checkpoints (full model, LoRA, checkpoint-N)."""

from __future__ import annotations

import json
from collections import defaultdict

import pandas as pd
import pytest
import tiny_checkpoints as tc
import yaml
from conftest import read_jsonl, run_pipeline, write_jsonl

from edu_bias_pipeline.pipelines.evaluation import create_pipeline
from edu_bias_pipeline.scoring import CheckpointError

IDENTITY = ("model", "model_source")

REPORTING = (
    "data/08_reporting/eval_metrics.json",
    "data/08_reporting/eval_headline.json",
    "data/08_reporting/eval_per_category.csv",
    "data/08_reporting/eval_per_category.png",
    "data/08_reporting/eval_report.md",
    "data/07_model_output/eval_pair_scores.jsonl",
)


@pytest.fixture(scope="module")
def ck(tmp_path_factory):
    return tc.get_checkpoints(tmp_path_factory)


def _taxonomy(project):
    return yaml.safe_load((project / "conf/base/parameters_data_validation.yml").read_text())["taxonomy"]


def _run(project, **evaluation):
    extra = evaluation.pop("runtime", {})
    return run_pipeline(project, "evaluation", params={"evaluation": evaluation, **extra})


def _expected_rewards(ck, which, rows):
    """Independent float64 recomputation, in row order: ((reward, ref logp) chosen, (…) rejected)."""
    policy, reference = tc.float64_models(ck, which)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ck.base)
    out = []
    for row in rows:
        prompt = row.get("prompt")
        rewards = []
        for side in ("chosen", "rejected"):
            pol = tc.plain_logp_float64(policy, tok, prompt, row[side])
            ref = tc.plain_logp_float64(reference, tok, prompt, row[side])
            rewards.append((tc.BETA * (pol - ref), ref))
        out.append(rewards)
    return out


def test_full_checkpoint_float64_matches_recomputation_and_reports_every_category(project, ck):
    rows = tc.pair_rows()
    write_jsonl(project / "data/05_model_input/test.jsonl", rows)
    _run(project, checkpoint=str(ck.full), dtype="float64", batch_size=2)
    for path in REPORTING:
        assert (project / path).stat().st_size > 0, path

    # Rewards: the stage's numbers == an unbatched float64 forward pass, per pair (1e-5).
    scores = {s["pair_id"]: s for s in read_jsonl(project / "data/07_model_output/eval_pair_scores.jsonl")}
    expected = _expected_rewards(ck, "full", rows)
    correct = defaultdict(list)
    baseline = defaultdict(list)
    for row, ((rc, ref_c), (rr, ref_r)) in zip(rows, expected, strict=True):
        s = scores[row["pair_id"]]
        assert s["reward_chosen"] == pytest.approx(rc, abs=1e-5)
        assert s["reward_rejected"] == pytest.approx(rr, abs=1e-5)
        assert s["reward_margin"] == pytest.approx(rc - rr, abs=1e-5)
        correct[row["bias_type"]].append(rc > rr)
        baseline[row["bias_type"]].append(ref_c > ref_r)
    assert sum(s["truncated"] for s in scores.values()) == 1

    metrics = json.loads((project / "data/08_reporting/eval_metrics.json").read_text())
    for category in tc.CATEGORIES:
        assert metrics[f"n/{category}"] == len(correct[category])
        assert metrics[f"reward_accuracy/{category}"] == pytest.approx(
            sum(correct[category]) / len(correct[category])
        )
        assert metrics[f"baseline_accuracy/{category}"] == pytest.approx(
            sum(baseline[category]) / len(baseline[category])
        )
        for key in (
            "trained_accuracy",
            "reward_accuracy_normalized",
            "baseline_accuracy_normalized",
            "reward_margin",
            "baseline_margin",
            "reward_accuracy_ci_low",
            "reward_accuracy_ci_high",
            "baseline_accuracy_ci_low",
            "trained_accuracy_ci_high",
            "accuracy_change",
        ):
            assert f"{key}/{category}" in metrics
        assert (
            metrics[f"reward_accuracy_ci_low/{category}"]
            <= metrics[f"reward_accuracy/{category}"]
            <= metrics[f"reward_accuracy_ci_high/{category}"]
        )
    all_correct = [c for cs in correct.values() for c in cs]
    assert metrics["reward_accuracy/overall"] == pytest.approx(sum(all_correct) / len(all_correct))
    assert metrics["reward_accuracy/macro"] == pytest.approx(
        sum(sum(c) / len(c) for c in correct.values()) / len(correct)
    )
    assert metrics["n/overall"] == len(rows) and metrics["beta"] == tc.BETA
    # Every metric is a number; the model they belong to is named beside them.
    assert metrics["model"] == str(ck.full) and metrics["model_source"] == "evaluation.checkpoint"
    numbers = {k: v for k, v in metrics.items() if k not in IDENTITY and not k.startswith("pairs_file/")}
    assert all(isinstance(v, (int, float)) for v in numbers.values())

    # The headline file DVC lists: a few flat keys, the same numbers as the full set.
    headline = json.loads((project / "data/08_reporting/eval_headline.json").read_text())
    # model, overall numbers, one per category, then CBBQ's (cbbq_qa/...)
    assert len([k for k in headline if not k.startswith("cbbq_qa/")]) == 1 + 5 + len(tc.CATEGORIES)
    assert len([k for k in headline if k.startswith("cbbq_qa/")]) == 7
    assert headline["model"] == str(ck.full)
    for family in ("reward", "trained", "baseline"):
        assert headline[f"{family}_accuracy/overall"] == metrics[f"{family}_accuracy/overall"], family
    for key in ("n/overall", "reward_accuracy/macro"):
        assert headline[key] == metrics[key], key
    assert {k for k in headline if k.startswith("reward_accuracy/")} == {
        "reward_accuracy/overall",
        "reward_accuracy/macro",
        *(f"reward_accuracy/{c}" for c in tc.CATEGORIES),
    }
    assert all(headline[f"reward_accuracy/{c}"] == metrics[f"reward_accuracy/{c}"] for c in tc.CATEGORIES)

    # Taxonomy categories absent from the test split are listed, not silently absent.
    missing = sorted(set(_taxonomy(project)) - set(tc.CATEGORIES))
    assert missing
    assert all(metrics[f"n/{c}"] == 0 for c in missing)
    assert metrics["categories/missing"] == len(missing)
    table = pd.read_csv(project / "data/08_reporting/eval_per_category.csv")
    assert sorted(table["bias_type"]) == sorted(_taxonomy(project))
    assert set(table.loc[table["n"] == 0, "status"]) == {"missing"}
    report = (project / "data/08_reporting/eval_report.md").read_text(encoding="utf-8")
    missing_line = next(line for line in report.splitlines() if "have no pairs in the evaluated file" in line)
    assert missing_line.endswith("about them: " + ", ".join(missing) + ".")
    for category in tc.CATEGORIES:
        assert f"| {category} | {len(correct[category])} |" in report
    assert "baseline" in report and "trained" in report and "overall (micro)" in report
    assert (project / "data/08_reporting/eval_per_category.png").read_bytes()[:4] == b"\x89PNG"


def test_lora_adapter_on_any_pair_file(project, ck):
    """eval_pairs_path points the stage at another file (raw format, alias labels); LoRA reference =
    the adapter disabled, checked against the plain base model."""
    rows = [
        {
            "chosen": r["chosen"],
            "rejected": r["rejected"],
            "meta": {
                "bias_type": {"gender_sexuality": "Gender", "region": "hukou", "socioeconomic": "SES"}[
                    r["bias_type"]
                ]
            },
        }
        for r in tc.pair_rows(with_prompt=False, with_long=False)
    ]
    rows.append(
        {"chosen": "老师关心每个学生。", "rejected": "老师只关心好学生。", "meta": {"bias_type": "teacher"}}
    )
    pair_file = write_jsonl(project / "elsewhere" / "pairs.jsonl", rows)
    _run(
        project,
        checkpoint=str(ck.lora),
        dtype="float64",
        batch_size=4,
        runtime={"eval_pairs_path": str(pair_file)},
    )

    scores = read_jsonl(project / "data/07_model_output/eval_pair_scores.jsonl")
    assert len(scores) == len(rows)
    assert {s["bias_type"] for s in scores} == set(tc.CATEGORIES) | {"teacher"}
    expected = _expected_rewards(ck, "lora", rows)
    by_line = {s["source_line"]: s for s in scores}
    for line, ((rc, _), (rr, _)) in enumerate(expected, start=1):
        assert by_line[line]["reward_chosen"] == pytest.approx(rc, abs=1e-5)
        assert by_line[line]["reward_rejected"] == pytest.approx(rr, abs=1e-5)
    metrics = json.loads((project / "data/08_reporting/eval_metrics.json").read_text())
    assert metrics["n/teacher"] == 1 and "reward_accuracy/teacher" in metrics
    report = (project / "data/08_reporting/eval_report.md").read_text(encoding="utf-8")
    assert "LoRA adapter" in report and "not in the taxonomy: teacher." in report


def test_checkpoint_step_with_default_dtype(project, ck):
    """A checkpoint-N dir (no metadata of its own) takes beta etc. from its run's final/; float32 default."""
    rows = tc.pair_rows(with_long=False)
    write_jsonl(project / "data/05_model_input/test.jsonl", rows)
    _run(project, checkpoint=str(ck.full_step))
    metrics = json.loads((project / "data/08_reporting/eval_metrics.json").read_text())
    assert metrics["beta"] == tc.BETA
    scores = {s["pair_id"]: s for s in read_jsonl(project / "data/07_model_output/eval_pair_scores.jsonl")}
    expected = _expected_rewards(ck, "full", rows)
    for row, ((rc, _), _) in zip(rows, expected, strict=True):
        assert scores[row["pair_id"]]["reward_chosen"] == pytest.approx(rc, abs=1e-3)
    assert "float32" in (project / "data/08_reporting/eval_report.md").read_text(encoding="utf-8")


def test_a_second_evaluation_reuses_the_cached_reference_log_probs(project, ck, tmp_path):
    """A checkpoint whose training recorded its reference's hash (gpu profile): the first run writes the
    reference's log-probs to the cache, the next run on the same pairs reads them, with the same scores."""
    checkpoint = tc.with_recorded_reference(ck.full, tmp_path / "final")
    write_jsonl(project / "data/05_model_input/test.jsonl", tc.pair_rows(with_long=False))
    report = project / "data/08_reporting/eval_report.md"
    scores_file = project / "data/07_model_output/eval_pair_scores.jsonl"

    _run(project, checkpoint=str(checkpoint))
    [entry] = (project / "data/06_models/reference_cache").glob("eval-ref-*.json")
    assert f"its log-probs: written {entry.relative_to(project)}" in report.read_text(encoding="utf-8")
    first = read_jsonl(scores_file)

    _run(project, checkpoint=str(checkpoint))
    assert f"its log-probs: reused {entry.relative_to(project)}" in report.read_text(encoding="utf-8")
    assert read_jsonl(scores_file) == first


def test_bad_inputs_fail_with_clear_messages(project, ck):
    rows = tc.pair_rows(with_long=False)
    write_jsonl(project / "data/05_model_input/test.jsonl", rows)
    with pytest.raises(Exception, match="does not exist") as err:
        _run(project, checkpoint=str(project / "data/06_models/dpo_model/checkpoint-99"))
    assert isinstance(err.value, CheckpointError) or "checkpoint-99" in str(err.value)

    with pytest.raises(Exception, match="batch_sise"):
        _run(project, checkpoint=str(ck.full), batch_sise=4)

    rows[2]["rejected"] = "  "
    write_jsonl(project / "data/05_model_input/test.jsonl", rows)
    with pytest.raises(ValueError, match=r"test\.jsonl: line 3: field 'rejected'"):
        _run(project, checkpoint=str(ck.full))


def test_evaluation_reads_the_training_record_so_kedro_orders_it_after_training():
    from edu_bias_pipeline.pipelines.training import create_pipeline as training_pipeline

    assert create_pipeline().inputs() == {
        "evaluation_pairs",
        "params:evaluation",
        "params:taxonomy",
        "trained_model",
        # benchmark and retention data, training's health checks (read when present), their paths
        "crows_pairs",
        "neutral_texts",
        "training_health",
        "benchmark_locations",
        # CBBQ's questions, the CBBQ importer's settings, and the training splits (leakage)
        "cbbq_qa_source",
        "params:data_import",
        "cbbq_qa_training_data",
    }
    names = [n.name for n in (create_pipeline() + training_pipeline()).nodes]
    assert names.index("collect_training_metrics") < names.index("score_evaluation_pairs")
    # CBBQ questions are checked against the split training read: after training, so after that split.
    assert names.index("collect_training_metrics") < names.index("select_cbbq_questions")


@pytest.mark.slow
def test_rewards_agree_with_trls_own_eval_after_real_training(project):
    """The whole chain on the shipped sample: validation, split, real TRL training (tiny model), then this
    stage on the validation split must reproduce TRL's per-category eval rewards of the final step."""
    # One epoch keeps the test short; the comparison only needs some training.
    run_pipeline(
        project,
        ["data_validation", "data_splitting", "training"],
        params={"training": {"num_train_epochs": 1}},
    )
    run_pipeline(project, "evaluation", params={"eval_pairs_path": "data/05_model_input/val.jsonl"})

    state = json.loads((project / "data/06_models/dpo_model/trainer_state.json").read_text())
    last_eval = [
        entry
        for entry in state["log_history"]
        if any(k.startswith("eval_") and k.endswith("/rewards/chosen") for k in entry)
    ][-1]
    assert last_eval["step"] == state["global_step"]  # final/ holds the weights of that step
    scores = pd.DataFrame(read_jsonl(project / "data/07_model_output/eval_pair_scores.jsonl"))
    means = scores.groupby("bias_type")[["reward_chosen", "reward_rejected"]].mean()
    compared = 0
    for category, row in means.iterrows():
        key = f"eval_{category}/rewards/"
        if key + "chosen" not in last_eval:
            continue
        assert row["reward_chosen"] == pytest.approx(last_eval[key + "chosen"], abs=1e-4), category
        assert row["reward_rejected"] == pytest.approx(last_eval[key + "rejected"], abs=1e-4), category
        compared += 1
    assert compared >= 3
