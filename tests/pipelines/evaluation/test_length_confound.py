"""Length confound of the pair accuracies: the split by which statement is shorter, the shorter-wins share,
the verdict rule and its words, on hand-built pair scores."""

from __future__ import annotations

import pandas as pd
import pytest

from edu_bias_pipeline.pipelines.evaluation import length_confound as L
from edu_bias_pipeline.pipelines.evaluation.nodes import (
    OUTCOME_COLUMNS,
    build_metrics,
    compute_category_metrics,
)

RULE = {"length_confound": {"shorter_wins_min": 0.75, "accuracy_gap_min": 0.5, "min_pairs": 2}}


def _pairs(specs):
    """(bias_type, chosen tokens, rejected tokens, baseline chosen logp, baseline rejected logp) per pair;
    the trained model prefers the unbiased statement always, the reward never."""
    rows = []
    for i, (bias_type, nc, nr, bc, br) in enumerate(specs):
        rows.append(
            {
                "pair_id": f"p{i}",
                "source_line": i + 1,
                "bias_type": bias_type,
                "chosen_tokens": nc,
                "rejected_tokens": nr,
                "reference_chosen_logp": bc,
                "reference_rejected_logp": br,
                "policy_chosen_logp": -1.0,
                "policy_rejected_logp": -2.0,
                "reward_chosen": -1.0,
                "reward_rejected": 1.0,
                "reward_margin": -2.0,
                "truncated": False,
            }
        )
    return pd.DataFrame(rows)


# A baseline that always prefers the shorter statement: 0 of the pairs where the unbiased one is longer.
LENGTH_DRIVEN = [
    ("age", 5, 9, -5.0, -9.0),  # unbiased shorter, wins
    ("age", 6, 8, -6.0, -8.0),
    ("age", 4, 7, -4.0, -7.0),
    ("region", 9, 5, -9.0, -5.0),  # unbiased longer, loses
    ("region", 8, 6, -8.0, -6.0),
    ("region", 7, 7, -7.0, -6.0),  # equal length: no shorter statement
]


def test_split_and_shorter_wins_per_scope():
    metrics = L.length_metrics(_pairs(LENGTH_DRIVEN), OUTCOME_COLUMNS)
    assert metrics["pairs_unbiased_shorter/overall"] == 3
    assert metrics["pairs_unbiased_longer/overall"] == 2
    assert metrics["pairs_equal_length/overall"] == 1
    assert metrics["baseline_shorter_wins/overall"] == 1.0  # 5 of the 5 unequal pairs
    assert metrics["baseline_accuracy_unbiased_shorter/overall"] == 1.0
    assert metrics["baseline_accuracy_unbiased_longer/overall"] == 0.0
    assert metrics["trained_shorter_wins/overall"] == pytest.approx(
        3 / 5
    )  # wins exactly where unbiased is shorter
    assert metrics["trained_accuracy_unbiased_longer/overall"] == 1.0
    assert metrics["reward_shorter_wins/overall"] == pytest.approx(2 / 5)
    # Per bias type; a group without pairs leaves its accuracy out (every value a finite number).
    assert (
        metrics["pairs_unbiased_longer/age"] == 0 and "baseline_accuracy_unbiased_longer/age" not in metrics
    )
    assert metrics["baseline_accuracy_unbiased_shorter/age"] == 1.0
    assert (
        metrics["baseline_shorter_wins_ci_low/overall"]
        < 1.0
        == metrics["baseline_shorter_wins_ci_high/overall"]
    )


def test_the_rule_needs_both_a_winning_length_and_an_accuracy_gap():
    cfg = L.LengthConfoundConfig(min_pairs=2)
    metrics = L.length_metrics(_pairs(LENGTH_DRIVEN), OUTCOME_COLUMNS)
    assert L.length_verdict(metrics, "baseline", "overall", cfg) == "shorter"
    assert L.length_verdict(metrics, "trained", "overall", cfg) is None  # 60% shorter wins: below 75%
    assert L.length_verdict(metrics, "reward", "overall", cfg) is None  # it loses everywhere: no gap
    # The shorter statement wins 10 of 12, but the unbiased statement also wins 2 of 3 where it is longer:
    # a 33-point gap, so length does not explain the preference.
    mostly_right = (
        [("age", 5, 9, -5.0, -9.0)] * 9 + [("age", 9, 5, -9.0, -5.0)] + [("age", 9, 5, -4.0, -5.0)] * 2
    )
    mixed = L.length_metrics(_pairs(mostly_right), OUTCOME_COLUMNS)
    assert mixed["baseline_shorter_wins/overall"] == pytest.approx(10 / 12)
    assert L.length_verdict(mixed, "baseline", "overall", cfg) is None
    # Too few pairs on one side: no verdict at all.
    assert L.length_verdict(metrics, "baseline", "overall", L.LengthConfoundConfig(min_pairs=3)) is None
    # A preference for the longer statement is length too.
    longer = [(t, nc, nr, -float(nr), -float(nc)) for t, nc, nr, _, _ in LENGTH_DRIVEN]
    flipped = L.length_metrics(_pairs(longer), OUTCOME_COLUMNS)
    assert L.length_verdict(flipped, "baseline", "overall", cfg) == "longer"


def test_the_report_says_in_words_when_the_baseline_is_explained_by_length():
    frame = _pairs(LENGTH_DRIVEN)
    per_category = compute_category_metrics(frame, {"age": None, "region": None})
    run_info = {"model": "m", "model_source": "trained_model", "beta": 0.1}
    metrics = build_metrics(frame, per_category, run_info)
    assert metrics["baseline_accuracy_unbiased_longer/overall"] == 0.0  # in eval_metrics.json itself
    section = L.render_length_confound_section(metrics, RULE)
    assert (
        "**The preference of the baseline (reference model) is explained mostly by length**: the shorter "
        "statement wins 100% of the 5 pairs of unequal length; it prefers the unbiased statement in 3 of 3 "
        "pairs where that is the shorter one and in 0 of 2 where it is the longer one." in section
    )
    assert "- the trained model: not explained by length by this rule" in section
    assert (
        "| **overall** | 3 / 2 / 1 | 100% (length) | 100% / 0% | 60% | 100% / 100% | 40% | 0% / 0% |"
        in section
    )
    assert "| age | 3 / 0 / 0 | 100% | 100% / – |" in section

    balanced = [("age", 5, 9, -5.0, -9.0), ("age", 9, 5, -9.0, -5.0)] * 3  # baseline: shorter wins 50%
    fair = _pairs([(t, nc, nr, -1.0, -2.0) for t, nc, nr, _, _ in balanced])
    fair_metrics = build_metrics(fair, compute_category_metrics(fair, {"age": None}), run_info)
    fair_section = L.render_length_confound_section(fair_metrics, RULE)
    assert "is explained mostly by length**" not in fair_section
    assert "- the baseline (reference model): not explained by length by this rule" in fair_section
