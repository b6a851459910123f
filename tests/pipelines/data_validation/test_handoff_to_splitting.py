"""data_validation -> data_splitting: the split stage only ever splits a complete validated_pairs file
from a validation run that passed, and says why when it refuses (real Kedro sessions and processes)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import make_project_copy, read_jsonl, run_pipeline, write_jsonl
from dv_fixtures import clean_pairs, dirty_file
from process_helpers import kedro_run_killed_before_saving

from edu_bias_pipeline.files import fingerprint_file
from edu_bias_pipeline.pipelines.data_splitting.gate import ValidationGateError
from edu_bias_pipeline.pipelines.data_validation.nodes import DataValidationError

RAW = Path("data/01_raw/edu_bias_pairs.jsonl")
VALIDATED = Path("data/02_intermediate/validated_pairs.jsonl")
SUMMARY = Path("data/08_reporting/validation_summary.json")
SPLITS = [Path(f"data/05_model_input/{s}.jsonl") for s in ("train", "val", "test")]
PASSING = {"data_validation": {"min_pairs_per_category": 3}}


def _summary(project: Path) -> dict:
    return json.loads((project / SUMMARY).read_text(encoding="utf-8"))


def _split_rows(project: Path) -> int:
    return sum(len(read_jsonl(project / path)) for path in SPLITS)


def test_split_refuses_the_output_of_a_failed_quality_gate(project: Path) -> None:
    content, _, _ = dirty_file()
    (project / RAW).write_bytes(content)
    with pytest.raises(DataValidationError, match="Data validation failed"):
        run_pipeline(project, "data_validation")
    assert _summary(project)["passed"] is False
    assert (project / VALIDATED).exists()  # kept for inspection, but not to be split

    with pytest.raises(ValidationGateError) as refused:
        run_pipeline(project, "data_splitting")
    message = str(refused.value)
    assert "failed its quality gate" in message
    assert "data/08_reporting/validation_summary.json" in message
    assert "max_error_rate" in message
    assert not any((project / p).exists() for p in SPLITS)


def test_split_refuses_a_validated_file_and_summary_from_different_runs(tmp_path: Path) -> None:
    """The states a kill between the two saves (or a copy by hand) leaves: new file + old summary, and
    old file + new summary. Both come from real runs; each combination is refused, the true pair splits."""
    project = make_project_copy(tmp_path / "p")
    outputs = {}
    for name, rows in (("first", clean_pairs(120)), ("second", clean_pairs(100))):
        write_jsonl(project / RAW, rows)
        run_pipeline(project, "data_validation", params=PASSING)
        outputs[name] = {p: (project / p).read_bytes() for p in (VALIDATED, SUMMARY)}

    for data_from, summary_from in (("second", "first"), ("first", "second")):
        (project / VALIDATED).write_bytes(outputs[data_from][VALIDATED])
        (project / SUMMARY).write_bytes(outputs[summary_from][SUMMARY])
        with pytest.raises(ValidationGateError) as refused:
            run_pipeline(project, "data_splitting")
        message = str(refused.value)
        assert "is not the file data/08_reporting/validation_summary.json describes" in message
        assert "data/02_intermediate/validated_pairs.jsonl" in message
        assert not any((project / p).exists() for p in SPLITS)

    (project / VALIDATED).write_bytes(outputs["second"][VALIDATED])
    (project / SUMMARY).write_bytes(outputs["second"][SUMMARY])
    run_pipeline(project, "data_splitting")
    assert _split_rows(project) == _summary(project)["rows_kept"] == 100


def test_split_refuses_a_summary_without_a_fingerprint(tmp_path: Path) -> None:
    project = make_project_copy(tmp_path / "p")
    run_pipeline(project, "data_validation")
    summary = _summary(project)
    del summary["validated_pairs"]  # a summary from before the fingerprint was recorded
    (project / SUMMARY).write_text(json.dumps(summary), encoding="utf-8")
    with pytest.raises(ValidationGateError, match="does not record which .*validated_pairs.jsonl"):
        run_pipeline(project, "data_splitting")


def _kedro(project: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "kedro", "run", *args],
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: kill -9 reaches every process it started
    )


def _kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _check_split_after_kill(project: Path, known: dict[str, str]) -> str:
    """Split what the killed run left; returns 'split' or 'refused' after checking the outcome is right."""
    validated = project / VALIDATED
    # Atomic saves: the file is a complete earlier or new output, never a part of one.
    assert fingerprint_file(validated)["sha256"] in known.values()
    for path in SPLITS:
        (project / path).unlink(missing_ok=True)
    try:
        run_pipeline(project, "data_splitting")
    except ValidationGateError as exc:
        assert "data/08_reporting/validation_summary.json" in str(exc)
        assert not any((project / p).exists() for p in SPLITS)
        return "refused"
    summary = _summary(project)
    assert summary["passed"] is True
    assert summary["validated_pairs"]["sha256"] == fingerprint_file(validated)["sha256"]
    assert _split_rows(project) == summary["rows_kept"] == len(read_jsonl(validated))
    return "split"


@pytest.mark.slow
def test_kill_9_during_validation_never_lets_a_partial_output_be_split(tmp_path: Path) -> None:
    """`kill -9` of a real `kedro run --pipelines data_validation` (a file large enough to take seconds)
    at seeded random moments, and once right after validated_pairs.jsonl was replaced: each time the
    next data_splitting either splits the complete output the summary describes or refuses."""
    project = make_project_copy(tmp_path / "p")
    passing = ("--params", "data_validation.min_pairs_per_category=3")
    inputs = {
        "first": clean_pairs(15_000),
        "second": clean_pairs(13_000, bias_types=("region", "gender_sexuality")),
    }
    known, duration = {}, 0.0
    for name, rows in inputs.items():  # complete runs: the two outputs a killed run may leave
        write_jsonl(project / RAW, rows)
        start = time.monotonic()
        assert _kedro(project, "--pipelines", "data_validation", *passing).wait(timeout=300) == 0
        duration = max(duration, time.monotonic() - start)
        known[name] = fingerprint_file(project / VALIDATED)["sha256"]

    def next_input() -> None:
        """Input whose output differs from the file in place, so a completed save would replace it."""
        current = fingerprint_file(project / VALIDATED)["sha256"]
        write_jsonl(project / RAW, inputs["second" if current == known["first"] else "first"])

    rng = random.Random(19)
    outcomes = []
    for fraction in sorted(rng.uniform(0.3, 1.0) for _ in range(3)):
        next_input()
        proc = _kedro(project, "--pipelines", "data_validation", *passing)
        try:
            proc.wait(timeout=fraction * duration)
        except subprocess.TimeoutExpired:
            pass
        _kill_group(proc)
        outcomes.append(_check_split_after_kill(project, known))

    # A kill the moment the new validated_pairs.jsonl is in place, before the summary describing it is.
    # A complete run first: a random kill above may have left the file and the summary disagreeing, and
    # the "new" file could then be the very one the summary describes (a consistent pair, rightly split).
    assert _kedro(project, "--pipelines", "data_validation", *passing).wait(timeout=300) == 0
    next_input()
    before = fingerprint_file(project / VALIDATED)["sha256"]
    kedro_run_killed_before_saving(
        project, "validation_summary.json", "--pipelines", "data_validation", *passing
    )
    assert fingerprint_file(project / VALIDATED)["sha256"] != before  # the new file is in place
    outcomes.append(_check_split_after_kill(project, known))
    # The new file is in place and the summary still describes the old one: the split must be refused.
    assert outcomes[-1] == "refused", outcomes

    # A complete run afterwards clears the killed runs' temporary files and splits normally.
    assert _kedro(project, "--pipelines", "data_validation", *passing).wait(timeout=300) == 0
    assert _check_split_after_kill(project, known) == "split"
    leftovers = [p.name for p in (project / "data").rglob("*.tmp-*")]
    assert leftovers == [], leftovers
