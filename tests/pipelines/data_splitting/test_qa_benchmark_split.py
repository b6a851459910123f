"""Data shaped like an imported QA bias benchmark splits as configured (real Kedro sessions); data that
cannot be split as configured fails naming the group and the text behind it."""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from conftest import SHARED_DIR, make_project_copy, read_jsonl, run_pipeline
from split_helpers import (
    QA_QUESTIONS,
    REPORT,
    SPLIT_FILES,
    STOCK_PROMPT,
    UNKNOWN_ANSWERS,
    VALIDATED,
    common_keys,
    leaked_keys,
    qa_benchmark_rows,
    qa_context,
    read_splits,
    validated_row,
    write_validated,
)

from edu_bias_pipeline.pipelines.data_splitting.nodes import SplitRatioError

# The shipped conf/base/parameters_data_splitting.yml values these tests rely on.
RATIOS = {"train": 0.8, "val": 0.1, "test": 0.1}
COMMON_TEXT_PAIRS = 20
TOLERANCE = 0.02


def _within_tolerance(count: int, n: int, ratio: float) -> bool:
    return abs(count - ratio * n) <= max(1.0, TOLERANCE * n)


@pytest.fixture(scope="module")
def qa_run(tmp_path_factory) -> tuple[Path, list[dict]]:
    rows = qa_benchmark_rows()
    project = make_project_copy(tmp_path_factory.mktemp("qa") / "project")
    write_validated(project, rows)
    run_pipeline(project, "data_splitting")
    return project, rows


def test_qa_benchmark_meets_the_ratios_in_every_category(qa_run):
    project, rows = qa_run
    report = json.loads((project / REPORT).read_text(encoding="utf-8"))
    splits = read_splits(project)
    assert report["ratios"] == RATIOS
    assert report["ratio_check"]["passed"] is True
    assert report["ratio_check"]["categories_checked"] == sorted(QA_QUESTIONS)
    assert report["absent_from_val"] == [] and report["absent_from_test"] == []
    for category, n in Counter(r["bias_type"] for r in rows).items():
        entry = report["per_category"][category]
        assert entry["input_pairs"] == n
        for split, ratio in RATIOS.items():
            in_file = sum(1 for r in splits[split] if r["bias_type"] == category)
            assert entry["counts"][split] == in_file
            assert _within_tolerance(in_file, n, ratio), (category, split, in_file, n)
            assert entry["realised_ratios"][split] == pytest.approx(in_file / n, abs=1e-4)
            assert abs(entry["realised_ratios"][split] - ratio) <= max(TOLERANCE, 1 / n)


def test_qa_benchmark_keeps_every_distinctive_text_on_one_side(qa_run):
    project, rows = qa_run
    splits = read_splits(project)
    assert leaked_keys(splits, common_keys(rows, COMMON_TEXT_PAIRS)) == {}
    # Spelled out for the texts that matter: each context (prompt) and each distinctive answer is in
    # exactly one split, with all of its pairs.
    split_of_text: dict[str, set[str]] = defaultdict(set)
    for split, part in splits.items():
        for r in part:
            split_of_text[r["prompt"]].add(split)
            if "小明" in r["rejected"]:
                split_of_text[r["rejected"]].add(split)
    contexts = {qa_context(c, q) for c, n in QA_QUESTIONS.items() for q in range(n)}
    assert contexts <= set(split_of_text)
    assert all(len(split_of_text[c]) == 1 for c in contexts)
    distinctive = [t for t in split_of_text if "小明" in t]
    assert len(distinctive) == sum(-(-n // 10) for n in QA_QUESTIONS.values())  # one per ten questions
    assert all(len(split_of_text[t]) == 1 for t in distinctive)
    # The common texts do spread over the splits: that is what lets the split meet its ratios.
    for text in ("无法确定", "cannot be determined"):
        assert {s for s, part in splits.items() if any(r["chosen"] == text for r in part)} == set(RATIOS)
    assert len(split_of_text[STOCK_PROMPT]) == 3


def test_qa_benchmark_report_states_how_groups_were_formed(qa_run):
    project, rows = qa_run
    groups = json.loads((project / REPORT).read_text(encoding="utf-8"))["groups"]
    assert groups["common_text_pairs"] == COMMON_TEXT_PAIRS
    assert groups["texts_compared"] == ["prompt", "chosen", "rejected"]
    assert "more than common_text_pairs pairs" in groups["rule"]
    listed = {e["text"]: e["pairs"] for e in groups["common_texts"]["listed"]}
    held = Counter(t for r in rows for t in {r["prompt"], r["chosen"], r["rejected"]})
    for text in (*UNKNOWN_ANSWERS, STOCK_PROMPT, "老年人", "农村人"):
        assert listed[text] == held[text] > COMMON_TEXT_PAIRS, text
    assert not [t for t in listed if "家长会" in t or "小明" in t]  # contexts and distinctive answers link
    assert groups["common_texts"]["count"] == len(listed) and groups["common_texts"]["truncated"] is False

    sizes = groups["sizes"]
    assert sizes["count"] == groups["count"] and sum(sizes["pairs_by_group_size"].values()) == len(rows)
    # Contexts hold 2-4 pairs; two contexts sharing a distinctive answer make at most 8.
    assert sizes["max"] == groups["largest"] <= 8 and sizes["percentiles"]["p50"] >= 2
    top = groups["largest_groups"][0]
    assert top["pairs"] == sizes["max"] and top["split"] in RATIOS
    assert top["most_shared_text"] is not None and top["linking_texts"] >= 2


def test_qa_benchmark_without_the_common_text_rule_fails_naming_the_text(tmp_path):
    """The old behaviour (every shared text links pairs) chains the corpus into one group: the run fails
    instead of writing a split with empty val/test, and names the group and the answer that formed it."""
    rows = qa_benchmark_rows()
    project = make_project_copy(tmp_path / "project")
    write_validated(project, rows)
    with pytest.raises(SplitRatioError) as failure:
        run_pipeline(project, "data_splitting", params={"data_splitting": {"common_text_pairs": None}})
    message = str(failure.value)
    held = sum(1 for r in rows if r["chosen"] == "无法确定")
    assert "misses the configured ratios" in message and "ratio_tolerance=0.02" in message
    # Every QA pair is in it; the stock-prompt pairs form a second group (their prompt links them).
    qa_pairs = sum(1 for r in rows if r["prompt"] != STOCK_PROMPT)
    assert f"largest leakage group holds {qa_pairs} pairs" in message
    assert f"the most shared being '无法确定' (held by {held} pairs)" in message
    assert "common_text_pairs is null" in message
    for path in [*SPLIT_FILES.values(), REPORT]:
        assert not (project / path).exists(), path


def test_a_corpus_glued_by_one_distinctive_text_fails_naming_group_and_text(tmp_path):
    """18 pairs (below the common threshold of 20) share one prompt: they must stay together, so val and
    test cannot get their share; the run fails saying which text and what to do."""
    prompt = "某校三年级二班期中考试后，班主任在家长群里说了下面的话，请判断："
    rows = [
        validated_row(
            f"每个孩子都能学好数学，第{i}位", f"女孩子学不好数学，第{i}位", "gender_sexuality", i, prompt
        )
        for i in range(1, 19)
    ]
    project = make_project_copy(tmp_path / "project")
    write_validated(project, rows)
    with pytest.raises(SplitRatioError) as failure:
        run_pipeline(project, "data_splitting")
    message = str(failure.value)
    assert "'gender_sexuality' (18 pairs) got 1.000 / 0.000 / 0.000" in message
    assert "largest leakage group holds 18 pairs" in message and "placed whole in train" in message
    assert f"the most shared being {prompt!r} (held by 18 pairs)" in message
    assert "--params data_splitting.common_text_pairs=17" in message
    assert not (project / SPLIT_FILES["train"]).exists() and not (project / REPORT).exists()


CBBQ_DATA = SHARED_DIR / "datasets" / "cbbq" / "data"


@pytest.mark.slow  # the whole real CBBQ copy through three stages
def test_real_cbbq_import_validates_and_splits_as_configured(tmp_path):
    """The whole real CBBQ copy through data_import -> data_validation -> data_splitting, shipped defaults
    (before the common-text rule this gave one leakage group: everything in train, rc 0)."""
    if not (CBBQ_DATA / "educational_qualification").is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CBBQ copy not found at {CBBQ_DATA} (CI=true: it must be there)")
        pytest.skip(
            f"CBBQ copy not found at {CBBQ_DATA} (set EDU_BIAS_SHARED_DIR to the folder with datasets/)"
        )
    project = make_project_copy(tmp_path / "project")
    run_pipeline(project, "data_import", params={"data_import": {"cbbq": {"path": str(CBBQ_DATA)}}})
    run_pipeline(
        project, "data_validation", params={"raw_pairs_path": "data/03_primary/imported_pairs.jsonl"}
    )
    rows = read_jsonl(project / VALIDATED)
    run_pipeline(project, "data_splitting")

    report = json.loads((project / REPORT).read_text(encoding="utf-8"))
    splits = read_splits(project)
    assert sum(len(v) for v in splits.values()) == len(rows) == report["input_pairs"]
    assert report["ratio_check"]["passed"] is True
    for category, n in Counter(r["bias_type"] for r in rows).items():
        for split, ratio in RATIOS.items():
            got = sum(1 for r in splits[split] if r["bias_type"] == category)
            assert _within_tolerance(got, n, ratio), (category, split, got, n)
    listed = {e["text"] for e in report["groups"]["common_texts"]["listed"]}
    assert {"不确定", "不知道"} & listed
    assert leaked_keys(splits, common_keys(rows, COMMON_TEXT_PAIRS)) == {}
