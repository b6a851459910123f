"""data_splitting -> training: training only reads train/val files of the one split that
split_report.json describes (real Kedro sessions; a real `kedro run` killed between the split's saves)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import read_jsonl, run_pipeline, write_jsonl
from process_helpers import kedro_run_killed_before_saving
from split_helpers import REPORT, SPLIT_FILES

from edu_bias_pipeline.files import fingerprint_file
from edu_bias_pipeline.split_files import SplitFilesError

TRAINING_OUTPUTS = [Path("data/08_reporting/training_metrics.json"), Path("data/06_models/dpo_model")]


@pytest.fixture
def split_project(project: Path) -> Path:
    run_pipeline(project, "data_validation")
    run_pipeline(project, "data_splitting")
    return project


def test_the_report_records_the_files_the_split_wrote(split_project: Path) -> None:
    files = json.loads((split_project / REPORT).read_text(encoding="utf-8"))["files"]
    for split, path in SPLIT_FILES.items():
        assert files[split]["path"] == path.as_posix()
        assert files[split]["sha256"] == fingerprint_file(split_project / path)["sha256"]
        assert files[split]["lines"] == len(read_jsonl(split_project / path))


def test_training_refuses_split_files_written_after_the_report_it_reads(split_project: Path) -> None:
    """A data_splitting run with another seed, killed after its three files and before its report: the
    files are the new split, the report the old one. Training must not start on them."""
    project = split_project
    before = {s: fingerprint_file(project / p)["sha256"] for s, p in SPLIT_FILES.items()}
    kedro_run_killed_before_saving(
        project, "split_report.json", "--pipelines", "data_splitting", "--params", "data_splitting.seed=7"
    )
    after = {s: fingerprint_file(project / p)["sha256"] for s, p in SPLIT_FILES.items()}
    assert all(before[s] != after[s] for s in before), "the killed run did not write a new split"

    with pytest.raises(SplitFilesError) as refused:
        run_pipeline(project, "training")
    message = str(refused.value)
    assert "data/05_model_input/train.jsonl is not the train file split_report.json describes" in message
    assert "different data_splitting runs" in message and "--pipelines data_splitting" in message
    assert not any((project / p).exists() for p in TRAINING_OUTPUTS)


def test_training_refuses_a_split_file_replaced_by_hand(split_project: Path) -> None:
    project = split_project
    val = project / SPLIT_FILES["val"]
    write_jsonl(val, read_jsonl(val)[:-1])
    with pytest.raises(SplitFilesError, match=r"data/05_model_input/val\.jsonl is not the val file"):
        run_pipeline(project, "training")
    assert not any((project / p).exists() for p in TRAINING_OUTPUTS)
