"""A failed run leaves no earlier run's outputs for the next stage (StaleOutputsHook, real Kedro sessions):
what the failed run did not write is removed, what it wrote stays."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from conftest import run_pipeline
from split_helpers import CHART, REPORT, SPLIT_FILES, validated_row, write_validated

from edu_bias_pipeline.pipelines.data_splitting.gate import ValidationGateError
from edu_bias_pipeline.pipelines.data_splitting.nodes import SplitRatioError
from edu_bias_pipeline.pipelines.data_validation.nodes import DataValidationError

RAW = Path("data/01_raw/edu_bias_pairs.jsonl")
VALIDATED = Path("data/02_intermediate/validated_pairs.jsonl")
SUMMARY = Path("data/08_reporting/validation_summary.json")
QUARANTINE = Path("data/02_intermediate/quarantined_pairs.jsonl")
DOCS_INDEX = Path("data/08_reporting/data_docs/index.html")
SPLIT_OUTPUTS = [*SPLIT_FILES.values(), REPORT, CHART, Path("data/08_reporting/split_headline.json")]


def _dirty_raw(project: Path) -> None:
    """Every line unreadable: validation's gate fails (all rows quarantined)."""
    (project / RAW).write_bytes(b"{not json\n" * 40)


@pytest.fixture
def split_once(project: Path) -> Path:
    """A project after a good validation + split: the outputs a later failed run must not pass on."""
    run_pipeline(project, "data_validation")
    run_pipeline(project, "data_splitting")
    assert all((project / p).exists() for p in SPLIT_OUTPUTS)
    return project


def test_a_split_refused_by_its_gate_removes_the_earlier_split_and_training_fails_clearly(
    split_once: Path, caplog: pytest.LogCaptureFixture
) -> None:
    project = split_once
    _dirty_raw(project)
    with pytest.raises(DataValidationError):
        run_pipeline(project, "data_validation")
    # The failed validation keeps what it wrote before its gate: the reports describe this run.
    assert json.loads((project / SUMMARY).read_text(encoding="utf-8"))["passed"] is False
    assert 'data-status="failed"' in (project / DOCS_INDEX).read_text(encoding="utf-8")
    assert (project / VALIDATED).exists() and (project / QUARANTINE).exists()
    assert all((project / p).exists() for p in SPLIT_OUTPUTS)  # not this pipeline's outputs
    with caplog.at_level(logging.WARNING, logger="edu_bias_pipeline.stale_outputs"):
        with pytest.raises(ValidationGateError, match="failed its quality gate"):
            run_pipeline(project, "data_splitting")
    assert [p for p in SPLIT_OUTPUTS if (project / p).exists()] == []
    warning = " ".join(r.getMessage() for r in caplog.records if r.name == "edu_bias_pipeline.stale_outputs")
    assert "earlier run's" in warning and "dvc checkout" in warning
    for path in SPLIT_FILES.values():
        assert str(path) in warning
    assert (project / VALIDATED).exists() and (project / SUMMARY).exists()  # inputs: never touched

    # Training does not train on the removed split: it stops at train.jsonl, saying what to do.
    with pytest.raises(Exception, match=r"train\.jsonl does not exist.*run it first"):
        run_pipeline(project, "training")


def test_a_split_refused_by_the_ratio_check_removes_the_earlier_split(split_once: Path) -> None:
    project = split_once
    prompt = "某校三年级二班期中考试后，班主任在家长群里说了下面的话，请判断："
    rows = [
        validated_row(
            f"每个孩子都能学好数学，第{i}位", f"女孩子学不好数学，第{i}位", "gender_sexuality", i, prompt
        )
        for i in range(1, 19)
    ]
    write_validated(project, rows)
    with pytest.raises(SplitRatioError):
        run_pipeline(project, "data_splitting")
    assert [p for p in SPLIT_OUTPUTS if (project / p).exists()] == []


def test_a_failed_run_of_both_stages_keeps_what_it_wrote_and_removes_the_split_it_did_not_reach(
    split_once: Path,
) -> None:
    """Both stages in one `kedro run`: a gate fails (validation's, or the split's on the summary this run
    just saved, whichever the runner reaches first), so the split of the earlier run (an output of this
    run's pipeline that this run did not write) goes; validation's outputs saved before it stay."""
    project = split_once
    _dirty_raw(project)
    with pytest.raises((DataValidationError, ValidationGateError)):
        run_pipeline(project, ["data_validation", "data_splitting"])
    assert [p for p in SPLIT_OUTPUTS if (project / p).exists()] == []
    summary = json.loads((project / SUMMARY).read_text(encoding="utf-8"))
    assert summary["passed"] is False and summary["rows_quarantined"] == 40
    assert (project / VALIDATED).exists() and (project / QUARANTINE).exists()
    assert (project / RAW).exists()  # the input (raw_pairs_path) is never an output


def test_a_run_refused_before_any_node_runs_removes_nothing(split_once: Path) -> None:
    """Bad parameters stop the run before it starts: nothing was read or rewritten, so the earlier
    outputs still belong together and stay."""
    from kedro.validation.exceptions import ParameterValidationError

    project = split_once
    before = {p: (project / p).read_bytes() for p in SPLIT_OUTPUTS}
    with pytest.raises(ParameterValidationError, match="ratios must sum to 1"):
        run_pipeline(
            project,
            "data_splitting",
            params={"data_splitting": {"ratios": {"train": 0.9, "val": 0.1, "test": 0.1}}},
        )
    assert {p: (project / p).read_bytes() for p in SPLIT_OUTPUTS} == before


def test_a_run_stopped_by_a_bad_setting_in_a_node_removes_nothing(split_once: Path) -> None:
    """`--params training.profile=optimized` fails in training's first node (a usage error): the earlier
    training outputs still describe the model on disk and stay."""
    from edu_bias_pipeline.dpo.config import TrainingConfigError

    project = split_once
    metrics = project / "data/08_reporting/training_metrics.json"
    metrics.write_text('{"train/loss": 0.5}', encoding="utf-8")
    with pytest.raises(TrainingConfigError, match="training.profile"):
        run_pipeline(project, "training", params={"training": {"profile": "optimized"}})
    assert metrics.read_text(encoding="utf-8") == '{"train/loss": 0.5}'
    assert all((project / p).exists() for p in SPLIT_OUTPUTS)
