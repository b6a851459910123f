"""`kedro run --pipelines data_splitting` end to end, in real Kedro sessions on a temp project copy."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from conftest import make_project_copy, run_pipeline
from split_helpers import (
    CHART,
    REPORT,
    SPLIT_FILES,
    distinct_rows,
    leaked_keys,
    read_splits,
    validated_row,
    write_validated,
)

COUNTS = {"age": 30, "region": 21, "socioeconomic": 12, "religion": 4}
CONTRACT_FIELDS = {
    "pair_id",
    "source_line",
    "prompt",
    "chosen",
    "rejected",
    "bias_type",
    "warnings",
    "meta",
    "split",
    "sample_weight",
}


def _dataset() -> list[dict]:
    rows = distinct_rows(COUNTS)
    line = len(rows) + 1
    # A chain of shared / near-duplicate texts (one leakage group of 4) and two eval-only pairs, one of
    # which shares a text with a trainable pair.
    rows += [
        validated_row("Rural pupils are as able as urban ones.", "Rural pupils are slow.", "region", line),
        validated_row(
            "Rural pupils are as able as urban ones", "Village kids can't keep up.", "region", line + 1
        ),
        validated_row("Village kids can’t keep up", "RURAL PUPILS ARE SLOW!", "region", line + 2),
        validated_row("Poor families value school.", "rural pupils are slow", "socioeconomic", line + 3),
        validated_row(
            "Women can be engineers.",
            "Women are bad engineers.",
            "gender_sexuality",
            line + 4,
            eval_only=True,
            source="crows_pairs",
        ),
        validated_row(
            "Old teachers adapt well.",
            "Old teachers never adapt.",
            "age",
            line + 5,
            eval_only=True,
            source="crows_pairs",
        ),
        validated_row("Old teachers adapt well", "Old staff are useless.", "age", line + 6),
    ]
    return rows


def _run(tmp_path: Path, name: str, rows: list[dict], **params) -> Path:
    project = make_project_copy(tmp_path / name)
    write_validated(project, rows)
    run_pipeline(project, "data_splitting", params={"data_splitting": params} if params else None)
    return project


@pytest.fixture(scope="module")
def default_run(tmp_path_factory) -> Path:
    return _run(tmp_path_factory.mktemp("split"), "default", _dataset())


def test_outputs_follow_the_contract(default_run):
    splits = read_splits(default_run)
    total = sum(len(v) for v in splits.values())
    assert total == len(_dataset())
    for split, rows in splits.items():
        for row in rows:
            assert set(row) == CONTRACT_FIELDS
            assert row["split"] == split
            assert row["sample_weight"] == 1.0
    # Pairs with and without an explicit prompt both pass through unchanged.
    prompts = [r["prompt"] for rows in splits.values() for r in rows]
    assert None in prompts and any(isinstance(p, str) for p in prompts)
    assert leaked_keys(splits) == {}


def test_report_and_chart(default_run):
    report = json.loads((default_run / REPORT).read_text(encoding="utf-8"))
    assert report["seed"] == 42
    assert report["ratios"] == {"train": 0.8, "val": 0.1, "test": 0.1}
    assert report["balancing"]["method"] == "none"
    splits = read_splits(default_run)
    for split, rows in splits.items():
        assert report["counts"][split] == {
            k: v for k, v in sorted(Counter(r["bias_type"] for r in rows).items())
        }
        assert report["totals"][split] == len(rows)
    assert set(report["realised_ratios"]) == {"train", "val", "test"}
    assert report["train_only_categories"] == ["religion"]
    assert "religion" in report["absent_from_test"]
    assert any("'religion'" in w and "min_pairs_per_category" in w for w in report["warnings"])
    assert report["eval_only"]["pairs"] == 2
    assert report["eval_only"]["group_mates_moved_to_test"] == 1
    assert report["groups"]["largest"] == 4
    png = (default_run / CHART).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000


def test_eval_only_and_their_group_mates_are_in_test_only(default_run):
    splits = read_splits(default_run)
    test_texts = {r["chosen"] for r in splits["test"]}
    assert {"Women can be engineers.", "Old teachers adapt well.", "Old teachers adapt well"} <= test_texts
    for split in ("train", "val"):
        assert not [r for r in splits[split] if r["meta"].get("eval_only")]


def test_proportions_within_one_pair_per_category(default_run):
    report = json.loads((default_run / REPORT).read_text(encoding="utf-8"))
    splits = read_splits(default_run)
    for category in ("age", "region", "socioeconomic"):
        # Only the distinct (singleton-group) pairs: the shared-text chain is placed as a whole.
        n = COUNTS[category]
        for split, ratio in report["ratios"].items():
            got = sum(1 for r in splits[split] if r["bias_type"] == category and "case" in r["chosen"])
            assert abs(got - ratio * n) <= 1, (category, split, got, ratio * n)


def test_same_seed_is_byte_identical_other_seed_differs(tmp_path, default_run):
    rows = _dataset()
    same = _run(tmp_path, "same", rows)
    for path in [*SPLIT_FILES.values(), REPORT, CHART]:
        assert (same / path).read_bytes() == (default_run / path).read_bytes(), path

    # Input order does not decide the split (rows are written in input order, so compare line sets).
    shuffled = _run(tmp_path, "reversed", list(reversed(rows)))
    for path in SPLIT_FILES.values():
        assert sorted((shuffled / path).read_bytes().splitlines()) == sorted(
            (default_run / path).read_bytes().splitlines()
        ), path

    other = _run(tmp_path, "other", rows, seed=7)
    assert json.loads((other / REPORT).read_text())["seed"] == 7
    assert (other / SPLIT_FILES["test"]).read_bytes() != (default_run / SPLIT_FILES["test"]).read_bytes()
    assert (other / SPLIT_FILES["train"]).read_bytes() != (default_run / SPLIT_FILES["train"]).read_bytes()


def test_upsampling_stays_in_train(tmp_path):
    rows = distinct_rows({"age": 40, "region": 20, "disability": 10})
    project = _run(tmp_path, "up", rows, balancing="upsample")
    splits = read_splits(project)
    train = Counter(r["bias_type"] for r in splits["train"])
    assert train == {"age": 32, "region": 32, "disability": 32}
    for split in ("val", "test"):
        ids = [r["pair_id"] for r in splits[split]]
        assert len(ids) == len(set(ids))
    assert len(splits["val"]) == 4 + 2 + 1 and len(splits["test"]) == 4 + 2 + 1
    report = json.loads((project / REPORT).read_text(encoding="utf-8"))
    assert report["balancing"]["added"] == {"disability": 24, "region": 16}
    assert leaked_keys(splits) == {}


def test_weights_column(tmp_path):
    project = _run(tmp_path, "w", distinct_rows({"age": 40, "region": 20}), balancing="weights")
    splits = read_splits(project)
    weights = {r["bias_type"]: r["sample_weight"] for r in splits["train"]}
    assert weights["region"] == pytest.approx(2 * weights["age"], rel=1e-4)
    assert all(r["sample_weight"] == 1.0 for s in ("val", "test") for r in splits[s])


def test_tiny_single_category_input_gives_warnings_not_a_crash(tmp_path):
    project = _run(tmp_path, "tiny", distinct_rows({"disability": 3}), balancing="upsample")
    splits = read_splits(project)
    assert len(splits["train"]) == 3 and splits["val"] == [] and splits["test"] == []
    report = json.loads((project / REPORT).read_text(encoding="utf-8"))
    warnings = "\n".join(report["warnings"])
    assert "'disability' has only 3 splittable pair(s)" in warnings
    assert "'disability' is absent from test" in warnings
    assert "the test split is empty" in warnings
    assert "nothing to balance" in warnings
    assert (project / CHART).exists()


def test_single_category_splits_normally(tmp_path):
    project = _run(tmp_path, "single", distinct_rows({"age": 20}))
    assert [len(v) for v in read_splits(project).values()] == [16, 2, 2]


def test_empty_input_is_a_clear_error(tmp_path):
    project = make_project_copy(tmp_path / "empty")
    write_validated(project, [])
    with pytest.raises(ValueError, match="validated_pairs .* is empty: there is nothing to split"):
        run_pipeline(project, "data_splitting")
    assert not (project / SPLIT_FILES["train"]).exists()


def test_bad_parameters_fail_before_any_data_is_read(tmp_path):
    from kedro.validation.exceptions import ParameterValidationError

    project = make_project_copy(tmp_path / "bad")  # no validated_pairs file at all
    with pytest.raises(ParameterValidationError, match="ratios must sum to 1"):
        run_pipeline(
            project,
            "data_splitting",
            params={"data_splitting": {"ratios": {"train": 0.9, "val": 0.1, "test": 0.1}}},
        )
    with pytest.raises(ParameterValidationError, match="'none', 'downsample', 'upsample' or 'weights'"):
        run_pipeline(project, "data_splitting", params={"data_splitting": {"balancing": "smote"}})


def test_stage_does_not_import_torch(tmp_path):
    """The node module on its own, and a real `data_splitting` session (which registers every stage's
    pipeline), must both run without torch / transformers / trl being imported."""
    project = make_project_copy(tmp_path / "notorch")
    write_validated(project, distinct_rows({"age": 12, "region": 12}))
    tests_dir = Path(__file__).resolve().parents[2]
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(tests_dir)!r})\n"
        "from edu_bias_pipeline.pipelines.data_splitting import nodes\n"
        "heavy = [m for m in ('torch', 'transformers', 'trl') if m in sys.modules]\n"
        "assert not heavy, f'importing data_splitting.nodes imported {heavy}'\n"
        "from conftest import run_pipeline\n"
        f"run_pipeline({str(project)!r}, 'data_splitting')\n"
        "heavy = [m for m in ('torch', 'transformers', 'trl') if m in sys.modules]\n"
        "assert not heavy, f'kedro run --pipelines data_splitting imported {heavy}'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (project / SPLIT_FILES["train"]).exists()
