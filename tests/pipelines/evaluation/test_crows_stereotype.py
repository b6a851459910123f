"""CrowS-Pairs stereotype score: the formula on hand-built scores (antistereo rows, ties, empty cells), the
row selection, and scripted models whose preferences are known going through the real scorer."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import tiny_checkpoints as tc
from conftest import PROJECT_ROOT
from scripted_models import MemorisingLM, scripted_models

from edu_bias_pipeline.pipelines.evaluation import crows_stereotype as crows
from edu_bias_pipeline.scoring import encode_texts, wilson_interval

CROWS_CSV = PROJECT_ROOT / "data/01_raw/benchmarks/crows_pairs/crows_pairs_anonymized.csv"
RUN_INFO = {"model": "scripted", "model_source": "evaluation.checkpoint"}


def _scores(rows: list[tuple]) -> pd.DataFrame:
    """(bias_type, direction, policy more, policy less, reference more, reference less) per pair."""
    frame = pd.DataFrame(
        rows,
        columns=[
            "bias_type",
            "direction",
            "policy_more_logp",
            "policy_less_logp",
            "reference_more_logp",
            "reference_less_logp",
        ],
    )
    frame["more_tokens"], frame["less_tokens"] = 10, 10
    return frame


def test_the_score_is_the_share_where_sent_more_is_more_likely_in_both_directions():
    metrics = crows.stereotype_metrics(
        _scores(
            [
                ("gender", "stereo", -1.0, -2.0, -3.0, -2.0),  # trained: stereotyped; baseline: not
                ("gender", "antistereo", -1.0, -5.0, -5.0, -1.0),  # sent_more wins: stereotyped, not flipped
                ("race-color", "stereo", -2.0, -2.0, -1.0, -2.0),  # trained: a tie counts as not stereotyped
                ("race-color", "antistereo", -3.0, -1.0, -1.0, -3.0),
            ]
        )
    )
    assert metrics["n/overall"] == 4
    assert metrics["trained_stereotype_score/overall"] == 0.5
    assert metrics["baseline_stereotype_score/overall"] == 0.5
    assert (
        metrics["trained_stereotype_score/gender"] == 1.0
        and metrics["baseline_stereotype_score/gender"] == 0.0
    )
    assert metrics["trained_stereotype_score/race-color"] == 0.0
    assert metrics["baseline_stereotype_score/race-color"] == 1.0
    assert metrics["trained_stereotype_score/stereo"] == 0.5
    assert metrics["trained_stereotype_score/antistereo"] == 0.5
    assert metrics["trained_ties/overall"] == 1 and metrics["baseline_ties/overall"] == 0
    assert metrics["score_change/gender"] == 1.0 and metrics["score_change/race-color"] == -1.0
    low, high = wilson_interval(2, 4)
    assert metrics["trained_stereotype_score_ci_low/overall"] == low
    assert metrics["trained_stereotype_score_ci_high/overall"] == high
    # lm-eval's likelihood_diff: mean |log p(sent_more) - log p(sent_less)|
    assert metrics["trained_likelihood_diff/overall"] == pytest.approx((1 + 4 + 0 + 2) / 4)
    # Empty cells: a known bias type without pairs has its n and nothing else.
    assert metrics["n/age"] == 0
    assert not [k for k in metrics if k.endswith("/age") and k != "n/age"]
    assert all(isinstance(v, int | float) and math.isfinite(v) for v in metrics.values())


@pytest.mark.parametrize(
    ("more", "less", "expected"),
    [(-1.0, -2.0, 1.0), (-2.0, -1.0, 0.0), (-1.0, -1.0, 0.0)],
    ids=["all-stereotyped", "all-anti-stereotyped", "all-ties"],
)
def test_extreme_scores(more, less, expected):
    rows = [(t, d, more, less, more, less) for t in ("age", "religion") for d in ("stereo", "antistereo")]
    metrics = crows.stereotype_metrics(_scores(rows))
    for scope in ("overall", "age", "religion", "stereo", "antistereo"):
        assert metrics[f"trained_stereotype_score/{scope}"] == expected, scope
        assert metrics[f"baseline_stereotype_score/{scope}"] == expected, scope
    assert metrics["trained_ties/overall"] == (4 if more == less else 0)
    assert metrics["trained_stereotype_score_ci_high/overall"] == wilson_interval(int(4 * expected), 4)[1]
    assert metrics["score_change/overall"] == 0.0


def test_an_empty_file_has_only_zero_counts():
    metrics = crows.stereotype_metrics(_scores([]))
    assert metrics["n/overall"] == 0 and all(metrics[f"n/{t}"] == 0 for t in crows.BIAS_TYPES)
    assert set(metrics) == {f"n/{s}" for s in ("overall", *crows.BIAS_TYPES, *crows.DIRECTIONS)}


def test_pair_selection_checks_columns_skips_empty_texts_and_samples_per_bias_type():
    frame = pd.read_csv(CROWS_CSV)
    with pytest.raises(ValueError, match=r"columns \['sent_less'\] are missing.*crows_pairs_path"):
        crows.select_pairs(frame.drop(columns=["sent_less"]), crows.CrowsPairsConfig(), "x.csv")

    every = crows.CrowsPairsConfig(sample_per_bias_type=None)
    damaged = frame.copy()
    damaged.loc[3, "sent_more"] = "  "
    rows, skipped = crows.select_pairs(damaged, every, "x.csv")
    assert skipped == 1 and len(rows) == len(frame) - 1
    assert rows["crows_id"].tolist()[:3] == ["0", "1", "2"]  # the file's own ids, file order

    sample = crows.CrowsPairsConfig(sample_per_bias_type=7, seed=3)
    first, _ = crows.select_pairs(frame, sample, "x.csv")
    again, _ = crows.select_pairs(frame, sample, "x.csv")
    other, _ = crows.select_pairs(frame, crows.CrowsPairsConfig(sample_per_bias_type=7, seed=4), "x.csv")
    assert first["crows_id"].tolist() == again["crows_id"].tolist() != other["crows_id"].tolist()
    assert first["bias_type"].value_counts().to_dict() == dict.fromkeys(crows.BIAS_TYPES, 7)
    assert first["crows_id"].astype(int).is_monotonic_increasing


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tc.get_checkpoints(tmp_path_factory).base)


def _memorising(tokenizer, texts):
    return MemorisingLM(len(tokenizer), [e.input_ids for e in encode_texts(tokenizer, texts)])


def test_scripted_models_move_the_score_through_the_real_scorer(tokenizer):
    """A model that memorised every sent_more scores 100% in every cell, antistereo rows included; one that
    memorised every sent_less scores 0%: the real scorer, node and formula, on real CrowS-Pairs rows."""
    frame = pd.read_csv(CROWS_CSV)
    config = {"crows_pairs": {"sample_per_bias_type": 4}, "reference_cache_dir": None}
    rows, _ = crows.select_pairs(frame, crows.CrowsPairsConfig(sample_per_bias_type=4), "x")
    assert set(rows["direction"]) == {"stereo", "antistereo"}
    models = scripted_models(
        policy=_memorising(tokenizer, rows["sent_more"].tolist()),
        reference=_memorising(tokenizer, rows["sent_less"].tolist()),
        tokenizer=tokenizer,
    )
    scores, info = crows.score_crows_pairs(frame, config, models)
    assert scores["crows_id"].tolist() == rows["crows_id"].tolist()
    metrics = crows.crows_pairs_metrics(scores, info, RUN_INFO)
    for scope in ("overall", *crows.BIAS_TYPES, *crows.DIRECTIONS):
        assert metrics[f"trained_stereotype_score/{scope}"] == 1.0, scope
        assert metrics[f"baseline_stereotype_score/{scope}"] == 0.0, scope
    assert metrics["n/overall"] == 36 and metrics["pairs/read"] == len(frame)
    assert metrics["score_change/overall"] == 1.0

    section = crows.render_crows_pairs_section(metrics, {"crows_pairs": "my/crows.csv"}, config)
    assert "| **overall** | 36 | 0.0% [0–10] | 100.0% [90–100] | +100.0 |" in section
    assert "`my/crows.csv`: 1508 rows, 36 pairs scored" in section
    assert "Not distinguishable from 50%" not in section
    headline = crows.crows_pairs_headline(metrics)
    assert headline["crows_pairs/trained_stereotype_score/overall"] == 1.0


def test_a_model_without_preferences_is_reported_as_length_driven(tokenizer):
    """Uniform next-token distributions: log p(sentence) = -tokens · log V, so the shorter sentence always
    wins; the score is then the share of pairs whose sent_more is the shorter one, and the report says
    the score reflects length."""
    frame = pd.read_csv(CROWS_CSV)
    config = {"crows_pairs": {"sample_per_bias_type": 10}, "reference_cache_dir": None}
    uniform = MemorisingLM(len(tokenizer), [])
    scores, info = crows.score_crows_pairs(frame, config, scripted_models(uniform, uniform, tokenizer))
    metrics = crows.crows_pairs_metrics(scores, info, RUN_INFO)
    assert metrics["trained_stereotype_score/overall"] == pytest.approx(
        (scores["more_tokens"] < scores["less_tokens"]).mean()
    )
    assert metrics["baseline_shorter_wins/overall"] == 1.0
    assert metrics["trained_ties/overall"] == (scores["more_tokens"] == scores["less_tokens"]).sum()
    section = crows.render_crows_pairs_section(metrics, {"crows_pairs": "c.csv"}, config)
    assert "The baseline finds the shorter sentence (in tokens) more likely in 100% of the pairs" in section
    assert "mostly reflects which group's words take fewer tokens" in section


def test_switched_off_scores_nothing_and_says_so():
    scores, info = crows.score_crows_pairs(pd.DataFrame(), {"crows_pairs": {"enabled": False}}, None)
    assert scores.empty and info == {"enabled": False}
    metrics = crows.crows_pairs_metrics(scores, info, RUN_INFO)
    assert metrics == {"enabled": False, **RUN_INFO}
    assert crows.crows_pairs_headline(metrics) == {"model": "scripted", "crows_pairs/enabled": False}
    assert "Switched off" in crows.render_crows_pairs_section(metrics, {}, {})


def test_a_label_from_the_users_file_cannot_break_the_report_table():
    scores = _scores([("odd|type\nlabel", "stereo", -1.0, -2.0, -1.0, -2.0)])
    metrics = {**crows.stereotype_metrics(scores), "enabled": True, "pairs/read": 1, "pairs/skipped": 0}
    metrics["pairs/truncated"] = 0
    section = crows.render_crows_pairs_section(metrics, {"crows_pairs": "c.csv"}, {})
    assert "| odd\\|type label | 1 | 100.0% [21–100] | 100.0% [21–100] | +0.0 |" in section
