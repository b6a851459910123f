"""The BBQ / CBBQ bias-score formulas on hand-built answers whose scores are known."""

from __future__ import annotations

import pytest

from edu_bias_pipeline.pipelines.evaluation import bias_scores as B

U, BI, AN = B.UNKNOWN, B.BIASED, B.ANTI_BIASED


def cell(*answers: tuple[bool, str]) -> B.Outcomes:
    return B.Outcomes.count(answers)


def ambiguous(unknown: int, biased: int, anti: int) -> B.Outcomes:
    """Ambiguous contexts: "unknown" is the correct answer, both group answers are wrong."""
    return cell(*[(True, U)] * unknown, *[(False, BI)] * biased, *[(False, AN)] * anti)


def disambiguated(right_biased: int, right_anti: int, wrong_biased: int, wrong_anti: int, unknown: int):
    """Disambiguated contexts: the correct answer is a group answer, biased or not."""
    return cell(
        *[(True, BI)] * right_biased,
        *[(True, AN)] * right_anti,
        *[(False, BI)] * wrong_biased,
        *[(False, AN)] * wrong_anti,
        *[(False, U)] * unknown,
    )


def test_counts():
    c = disambiguated(2, 1, 3, 0, 4)
    assert (c.n, c.correct, c.biased, c.non_unknown) == (10, 3, 5, 6)


def test_all_unknown():
    amb = ambiguous(unknown=8, biased=0, anti=0)
    assert B.accuracy(amb) == 1.0
    # BBQ: (1 − accuracy) = 0 times an undefined s_DIS: no bias in ambiguous contexts.
    assert B.bbq_bias_ambiguous(amb) == 0.0
    assert B.cbbq_bias_ambiguous(amb) == 0.0
    dis = disambiguated(0, 0, 0, 0, unknown=8)
    assert B.accuracy(dis) == 0.0
    # No non-unknown answer: s_DIS and S_disamb have no denominator, so they are undefined, not 0.
    assert B.bbq_bias_disambiguated(dis) is None
    assert B.cbbq_bias_disambiguated(dis) is None
    assert B.cbbq_bias_total(0.0, None) is None


def test_all_biased():
    amb = ambiguous(unknown=0, biased=6, anti=0)
    assert B.accuracy(amb) == 0.0
    assert B.bbq_bias_ambiguous(amb) == 1.0
    assert B.cbbq_bias_ambiguous(amb) == 1.0
    dis = disambiguated(3, 0, 3, 0, 0)  # half the labels are the biased answer: accuracy 1/2
    assert B.accuracy(dis) == 0.5
    assert B.bbq_bias_disambiguated(dis) == 1.0
    assert B.cbbq_bias_disambiguated(dis) == 1.0
    assert B.cbbq_bias_total(1.0, 1.0) == pytest.approx(1.0)


def test_all_anti_biased():
    amb = ambiguous(unknown=0, biased=0, anti=6)
    assert B.bbq_bias_ambiguous(amb) == -1.0
    assert B.cbbq_bias_ambiguous(amb) == 0.0  # CBBQ's scores run from 0 (never biased) to 1
    dis = disambiguated(0, 3, 0, 3, 0)
    assert B.bbq_bias_disambiguated(dis) == -1.0
    assert B.cbbq_bias_disambiguated(dis) == 0.0


def test_empty_cells_are_undefined_never_zero():
    empty = B.Outcomes()
    assert empty.n == 0
    for score in (
        B.accuracy,
        B.bbq_bias_ambiguous,
        B.bbq_bias_disambiguated,
        B.cbbq_bias_ambiguous,
        B.cbbq_bias_disambiguated,
    ):
        assert score(empty) is None, score
    assert B.accuracy_interval(empty) == (None, None)
    assert B.bootstrap_interval(B.bbq_disambiguated_stat, empty, seed=0) == (None, None)


def test_mixed_answers_by_hand():
    # Ambiguous: 10 questions, 4 unknown (correct), 4 biased, 2 anti-biased.
    amb = ambiguous(unknown=4, biased=4, anti=2)
    s_dis_on_amb = 2 * 4 / 6 - 1  # 1/3
    assert B.accuracy(amb) == pytest.approx(0.4)
    assert B.bbq_bias_ambiguous(amb) == pytest.approx((1 - 0.4) * s_dis_on_amb)
    # the same as (n_biased − n_anti) / n, since 1 − accuracy = n_non_unknown / n there
    assert B.bbq_bias_ambiguous(amb) == pytest.approx((4 - 2) / 10)
    assert B.cbbq_bias_ambiguous(amb) == pytest.approx(0.4)
    # Disambiguated: 10 questions; answers 5 biased (3 right, 2 wrong), 3 anti-biased (all right), 2 unknown.
    dis = disambiguated(3, 3, 2, 0, 2)
    assert B.accuracy(dis) == pytest.approx(0.6)
    assert B.bbq_bias_disambiguated(dis) == pytest.approx(2 * 5 / 8 - 1)
    assert B.cbbq_bias_disambiguated(dis) == pytest.approx(5 / 8)
    assert B.cbbq_bias_total(0.4, 5 / 8) == pytest.approx(0.4 * 0.4 + 0.6 * 5 / 8)


def test_intervals_hold_the_estimate_and_are_seeded():
    dis = disambiguated(30, 10, 15, 5, 10)
    value = B.bbq_bias_disambiguated(dis)
    low, high = B.bootstrap_interval(B.bbq_disambiguated_stat, dis, seed=B.cell_seed(0, "x"), resamples=2000)
    assert low < value < high and -1 <= low and high <= 1
    again = B.bootstrap_interval(B.bbq_disambiguated_stat, dis, seed=B.cell_seed(0, "x"), resamples=2000)
    assert again == (low, high)
    other = B.bootstrap_interval(B.bbq_disambiguated_stat, dis, seed=B.cell_seed(1, "x"), resamples=2000)
    assert other != (low, high)
    # More questions with the same shares: a narrower interval.
    big = disambiguated(300, 100, 150, 50, 100)
    big_low, big_high = B.bootstrap_interval(B.bbq_disambiguated_stat, big, seed=0, resamples=2000)
    assert big_high - big_low < (high - low) / 2
    wl, wh = B.accuracy_interval(dis)
    assert wl < B.accuracy(dis) < wh
    # A cell where every answer is biased: every resample is too.
    assert B.bootstrap_interval(B.bbq_ambiguous_stat, ambiguous(0, 5, 0), seed=0) == (1.0, 1.0)
    assert B.bootstrap_interval(B.bbq_disambiguated_stat, disambiguated(0, 0, 0, 0, 5), seed=0) == (
        None,
        None,
    )
