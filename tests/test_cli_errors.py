"""Misspelt names on the `kedro run` command line fail with the valid names, before anything runs.

Real `python -m kedro run` subprocesses in a project copy: what a user types and reads.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SAMPLE_PAIRS, make_project_copy, read_jsonl, write_jsonl

PIPELINES = ("__default__", "data_import", "data_splitting", "data_validation", "evaluation", "training")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project_copy(tmp_path / "project")


def kedro(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "COLUMNS": "250"}
    return subprocess.run(
        [sys.executable, "-m", "kedro", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def output(proc: subprocess.CompletedProcess[str]) -> str:
    return " ".join((proc.stdout + proc.stderr).split())  # rich wraps long lines


def test_misspelt_params_group_fails_naming_the_nearest(project: Path) -> None:
    # Without the check this run passes (rc 0) on the default max_error_rate: the setting is ignored.
    params = "data_validaton.max_error_rate=0"
    proc = kedro(project, "run", "--pipelines", "data_validation", "--params", params)
    text = output(proc)
    assert proc.returncode != 0, text
    assert "Unknown parameter group 'data_validaton' (did you mean 'data_validation'?) in --params" in text
    assert "raw_pairs_path" in text and "data_splitting" in text  # the valid names are listed
    assert "Traceback" not in text
    assert not (project / "data/08_reporting/validation_summary.json").exists()  # nothing ran


def test_valid_runtime_params_still_run(project: Path) -> None:
    """Groups from the parameter files and names only the catalog reads (`raw_pairs_path`) are accepted."""
    proc = kedro(
        project,
        "run",
        "--pipelines",
        "data_validation",
        "--params",
        "raw_pairs_path=data/01_raw/edu_bias_pairs.jsonl,data_validation.max_error_rate=0.2",
    )
    assert proc.returncode == 0, output(proc)
    assert (project / "data/08_reporting/validation_headline.json").exists()


def test_group_defined_in_the_run_environment_is_accepted(project: Path) -> None:
    (project / "conf/local/parameters_extra.yml").write_text("my_group:\n  x: 1\n", encoding="utf-8")
    # Kedro also reads parameter files in a `parameters/` folder.
    (project / "conf/local/parameters").mkdir()
    (project / "conf/local/parameters/more.yml").write_text("other_group: {y: 1}\n", encoding="utf-8")
    ok = kedro(project, "run", "--pipelines", "data_validation", "--params", "my_group.x=2,other_group.y=3")
    assert ok.returncode == 0, output(ok)
    # The base env alone does not define it.
    wrong = kedro(project, "run", "-e", "base", "--pipelines", "data_validation", "--params", "my_group.x=2")
    assert wrong.returncode != 0 and "Unknown parameter group 'my_group'" in output(wrong)


def test_misspelt_nested_key_of_a_typed_group_fails(project: Path) -> None:
    proc = kedro(project, "run", "--pipelines", "data_splitting", "--params", "data_splitting.sed=7")
    text = output(proc)
    assert proc.returncode != 0
    assert (
        "Error: invalid data_splitting parameters: data_splitting.sed: unknown key; did you mean 'seed'? "
        in text
    )
    assert "(got 7; from --params)" in text
    assert "Traceback" not in text


@pytest.mark.parametrize("command", [("run", "--pipelines"), ("registry", "describe")])
def test_misspelt_pipeline_lists_the_pipelines(project: Path, command: tuple[str, str]) -> None:
    proc = kedro(project, *command, "data_validaton")
    text = output(proc)
    assert proc.returncode != 0, text
    assert "Unknown pipeline 'data_validaton' (did you mean 'data_validation'?)" in text
    assert f"The pipelines are: {', '.join(PIPELINES)}." in text
    assert "ImportError" not in text and "Traceback" not in text


def test_misspelt_pipeline_among_valid_ones(project: Path) -> None:
    proc = kedro(project, "run", "--pipelines", "data_validation,evalution")
    text = output(proc)
    assert proc.returncode != 0
    assert "Unknown pipeline 'evalution' (did you mean 'evaluation'?)" in text
    assert not (project / "data/08_reporting/validation_summary.json").exists()


def test_evaluation_on_a_device_this_machine_lacks_fails_in_one_line(project: Path) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible here: device=cuda is usable")
    write_jsonl(project / "data/05_model_input/test.jsonl", read_jsonl(SAMPLE_PAIRS)[:4])
    params = f"evaluation.device=cuda,evaluation.checkpoint={project}"
    proc = kedro(project, "run", "--pipelines", "evaluation", "--params", params)
    text = output(proc)
    assert proc.returncode != 0, text
    assert "Error: device 'cuda' asked for" in text and "use device=cpu (or auto)" in text
    assert "Traceback" not in text


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("evaluation.cbbq_qa.categories=sex", "evaluation.cbbq_qa.categories: ['sex'] not found under"),
        ("cbbq_qa_path=no/such/cbbq", "no/such/cbbq' is not a folder: point it at CBBQ's data/"),
    ],
)
def test_a_cbbq_setting_typo_fails_in_one_line(project: Path, params: str, message: str) -> None:
    """The setting, what is wrong and what there is, without a traceback above it."""
    write_jsonl(project / "data/05_model_input/test.jsonl", read_jsonl(SAMPLE_PAIRS)[:4])
    proc = kedro(
        project, "run", "--pipelines", "evaluation", "--params", f"evaluation.checkpoint={project},{params}"
    )
    text = output(proc)
    assert proc.returncode != 0, text
    assert message in text and "Error: " in text
    assert "Traceback" not in text and "╭─" not in text
