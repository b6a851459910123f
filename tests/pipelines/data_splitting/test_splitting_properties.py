"""Properties of the split nodes on generated datasets (no Kedro session: many examples, fast)."""

from __future__ import annotations

import re
from collections import Counter

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from split_helpers import common_keys, distinct_rows, leaked_keys, validated_row

from edu_bias_pipeline.pipelines.data_splitting import splitting as S
from edu_bias_pipeline.pipelines.data_splitting.config import SplitConfig
from edu_bias_pipeline.pipelines.data_splitting.nodes import SplitRatioError, assign_splits, balance_splits

CATEGORIES = ("age", "region", "religion", "disability")
WORDS = ("girls", "boys", "rural", "urban", "pupils", "teachers", "cannot", "excel", "at", "maths", "art")


def _fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


# Ways to write "the same text" that the no-leakage rule must see through.
VARIANTS = (
    lambda t: t,
    lambda t: t.upper(),
    lambda t: f"  {t}  ",
    lambda t: t.replace(" ", "  ") + "!",
    lambda t: f"“{t}”。",
    _fullwidth,
)

texts = st.lists(st.sampled_from(WORDS), min_size=1, max_size=3).map(" ".join)


@st.composite
def datasets(draw):
    """Pairs drawn from a small pool of texts, so exact and near-duplicate sharing is frequent."""
    pool = draw(st.lists(texts, min_size=2, max_size=14, unique=True))
    n = draw(st.integers(min_value=1, max_value=60))
    rows = []
    for line in range(1, n + 1):
        chosen, rejected = draw(st.sampled_from(pool)), draw(st.sampled_from(pool))
        chosen = draw(st.sampled_from(VARIANTS))(chosen)
        rejected = draw(st.sampled_from(VARIANTS))(rejected)
        rows.append(
            validated_row(
                chosen,
                rejected,
                draw(st.sampled_from(CATEGORIES)),
                line,
                prompt=draw(st.sampled_from([None, "Is this biased?"])),
                eval_only=draw(st.sampled_from([None, None, None, False, True])),
            )
        )
    return rows


# ratio_tolerance=1 switches the ratio check off: these datasets share texts so densely that many of them
# cannot be split as configured; the check itself has its own property below.
configs = st.builds(
    lambda seed, balancing, min_pairs, ratios, common: SplitConfig(
        seed=seed,
        balancing=balancing,
        min_pairs_per_category=min_pairs,
        ratios=ratios,
        common_text_pairs=common,
        ratio_tolerance=1.0,
    ),
    st.integers(0, 2**31),
    st.sampled_from(["none", "downsample", "upsample", "weights"]),
    st.integers(1, 12),
    st.sampled_from(
        [
            {"train": 0.8, "val": 0.1, "test": 0.1},
            {"train": 0.5, "val": 0.25, "test": 0.25},
            {"train": 0.7, "val": 0.0, "test": 0.3},
        ]
    ),
    st.sampled_from([None, 2, 5, 20]),
)


def _run(rows, config):
    split_pairs, notes = assign_splits(pd.DataFrame(rows), config)
    train, val, test, balancing = balance_splits(split_pairs, config, notes)
    out = {s: f.to_dict("records") for s, f in (("train", train), ("val", val), ("test", test))}
    return split_pairs, notes, out, balancing


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=datasets(), config=configs)
def test_no_text_is_shared_across_splits(rows, config):
    """No text except the common ones (held by more than common_text_pairs pairs) is in two splits."""
    _, _, out, _ = _run(rows, config)
    assert leaked_keys(out, common_keys(rows, config.common_text_pairs)) == {}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=datasets(), config=configs)
def test_eval_only_rows_reach_test_only_and_balancing_never_touches_val_test(rows, config):
    split_pairs, _, out, _ = _run(rows, config)
    for split in ("train", "val"):
        assert not [r for r in out[split] if r["meta"].get("eval_only") is True]
    eval_ids = Counter(r["pair_id"] for r in rows if r["meta"].get("eval_only") is True)
    test_ids = Counter(r["pair_id"] for r in out["test"])
    assert all(test_ids[p] >= n for p, n in eval_ids.items())

    before = Counter(split_pairs["split"])
    # Val/test are exactly the pre-balancing assignment: nothing added, dropped or re-weighted.
    for split in ("val", "test"):
        assert len(out[split]) == before[split]
        assert sorted(r["pair_id"] for r in out[split]) == sorted(
            split_pairs.loc[split_pairs["split"] == split, "pair_id"]
        )
        assert all(r["sample_weight"] == 1.0 for r in out[split])
        assert all(r["split"] == split for r in out[split])
    if config.balancing in ("none", "weights"):
        assert len(out["train"]) == before["train"]


@settings(max_examples=100, deadline=None)
@given(
    counts=st.dictionaries(st.sampled_from(CATEGORIES), st.integers(10, 80), min_size=1),
    ratios=st.sampled_from(
        [
            {"train": 0.8, "val": 0.1, "test": 0.1},
            {"train": 0.6, "val": 0.2, "test": 0.2},
            {"train": 0.75, "val": 0.05, "test": 0.2},
        ]
    ),
    seed=st.integers(0, 10_000),
)
def test_per_category_proportions_within_one_pair(counts, ratios, seed):
    config = SplitConfig(seed=seed, ratios=ratios, min_pairs_per_category=10)
    _, _, out, _ = _run(distinct_rows(counts), config)
    for category, n in counts.items():
        for split, ratio in ratios.items():
            got = sum(1 for r in out[split] if r["bias_type"] == category)
            assert abs(got - ratio * n) <= 1, (category, split, got, ratio * n)


def test_upsample_repeats_minorities_in_train_only():
    rows = distinct_rows({"age": 40, "region": 20})
    config = SplitConfig(balancing="upsample")
    split_pairs, _, out, balancing = _run(rows, config)
    train = Counter(r["bias_type"] for r in out["train"])
    assert train["age"] == train["region"] == 32  # 0.8 * 40, region 16 -> 32
    assert balancing["added"] == {"region": 16}
    for split in ("val", "test"):
        ids = [r["pair_id"] for r in out[split]]
        assert len(ids) == len(set(ids))
        assert len(ids) == (split_pairs["split"] == split).sum()


def test_downsample_caps_train_and_reports_the_drop():
    rows = distinct_rows({"age": 40, "region": 20, "religion": 5})
    _, notes, out, balancing = _run(rows, SplitConfig(balancing="downsample"))
    train = Counter(r["bias_type"] for r in out["train"])
    # religion is train-only (too small), so it does not set the cap.
    assert train == {"age": 16, "region": 16, "religion": 5}
    assert balancing["cap"] == 16 and balancing["dropped"] == {"age": 16}
    assert len(out["val"]) == 4 + 2 and len(out["test"]) == 4 + 2
    _, _, out, balancing = _run(rows, SplitConfig(balancing="downsample", max_per_category=10))
    assert Counter(r["bias_type"] for r in out["train"]) == {"age": 10, "region": 10, "religion": 5}


def test_weights_balance_total_weight_per_category():
    rows = distinct_rows({"age": 40, "region": 20})
    _, _, out, balancing = _run(rows, SplitConfig(balancing="weights"))
    total = Counter()
    for r in out["train"]:
        total[r["bias_type"]] += r["sample_weight"]
    assert total["age"] == pytest.approx(total["region"], rel=1e-5)
    assert sum(total.values()) == pytest.approx(len(out["train"]), rel=1e-5)
    assert balancing["weights"]["region"] > balancing["weights"]["age"]


def test_shared_text_chain_stays_together_and_cross_category_group_is_reported():
    rows = [
        validated_row("A fair text", "B biased", "age", 1),
        validated_row("C fair", "b biased!", "age", 2),  # near-duplicate of row 1's rejected
        validated_row("c FAIR", "D biased", "region", 3),  # near-duplicate of row 2's chosen
    ] + distinct_rows({"age": 20, "region": 20}, start_line=4)
    groups = S.leakage_groups([(r["chosen"], r["rejected"]) for r in rows])
    assert groups[0] == groups[1] == groups[2]
    assert len(set(groups)) == len(rows) - 2
    split_pairs, notes, out, _ = _run(rows, SplitConfig())
    assert len(set(split_pairs["split"][:3])) == 1
    assert notes["groups"]["cross_category"] == 1
    assert any("mix bias_types" in w for w in notes["warnings"])


def test_near_duplicate_grouping_can_be_switched_off():
    texts = [("Girls can't do maths", "x"), ("girls cant do maths!", "y")]
    assert len(set(S.leakage_groups(texts, near_duplicates=True))) == 1
    assert len(set(S.leakage_groups(texts, near_duplicates=False))) == 2


def test_allocate_targets_sum_and_rounding():
    for n in range(0, 60):
        sizes = S.allocate_targets(n, {"train": 0.8, "val": 0.1, "test": 0.1})
        assert sum(sizes.values()) == n
        assert all(abs(sizes[s] - r * n) < 1 for s, r in (("train", 0.8), ("val", 0.1), ("test", 0.1)))


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"ratios": {"train": 0.8, "val": 0.1, "test": 0.2}}, "ratios must sum to 1"),
        ({"ratios": {"train": 0.0, "val": 0.5, "test": 0.5}}, "ratios.train must be > 0"),
        ({"balancing": "smote"}, "balancing"),
        ({"min_pairs_per_category": 0}, "min_pairs_per_category"),
        ({"seeed": 1}, "seeed"),
        ({"common_text_pairs": 0}, "common_text_pairs"),
        ({"ratio_tolerance": 1.5}, "ratio_tolerance"),
    ],
)
def test_bad_parameters_are_clear_errors(params, needle):
    with pytest.raises(ValueError, match=needle):
        SplitConfig.parse(params)


def test_eval_only_must_be_boolean_and_errors_name_the_line():
    rows = distinct_rows({"age": 3})
    rows[1]["meta"]["eval_only"] = "yes"
    rows[2]["chosen"] = None
    with pytest.raises(ValueError, match=r"line 2 \(source_line 2\).*meta.eval_only.*line 3 .*'chosen'"):
        assign_splits(pd.DataFrame(rows), SplitConfig())


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=datasets(), seed=st.integers(0, 2**31), common=st.sampled_from([None, 3, 20]))
def test_split_meets_the_ratios_or_fails_naming_the_group(rows, seed, common):
    """With the ratio check on, a split is either within tolerance in every checked category, or the run
    fails naming a multi-pair group, its size and the text linking it."""
    config = SplitConfig(seed=seed, common_text_pairs=common, min_pairs_per_category=5)
    try:
        split_pairs, notes = assign_splits(pd.DataFrame(rows), config)
    except SplitRatioError as exc:
        message = str(exc)
        assert re.search(r"misses the configured ratios \(.*\) by more than ratio_tolerance=0.02", message)
        assert "What to do:" in message
        # Every failure involves a multi-pair group: singletons alone always meet the targets.
        assert re.search(r"largest leakage group holds \d+ pairs", message)
        assert re.search(r"the most shared being '.+' \(held by \d+ pairs\)", message)
        return
    checked = notes["ratio_check"]["categories_checked"]
    stratified = split_pairs[[m.get("eval_only") is not True for m in split_pairs["meta"]]]
    for category in checked:
        part = stratified[stratified["bias_type"] == category]
        for split, ratio in config.ratios.as_dict().items():
            got = int((part["split"] == split).sum())
            assert abs(got - ratio * len(part)) <= max(1.0, 0.02 * len(part)), (category, split, got)
    assert notes["ratio_check"]["passed"] is True
