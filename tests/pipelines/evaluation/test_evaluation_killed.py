"""`kill -9` of a real `kedro run --pipelines evaluation` halfway through its saves: what stays on disk is
the killed run's own complete outputs and nothing of the run before, so no report or headline names the
earlier model beside files of the new one (StaleOutputsHook removes them as the run starts writing)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import tiny_checkpoints as tc
from conftest import run_pipeline, write_jsonl
from process_helpers import kedro_run_killed_before_saving

LAYERS = ("data/07_model_output", "data/08_reporting")
REPORT = Path("data/08_reporting/eval_report.md")
HEADLINE = Path("data/08_reporting/eval_headline.json")
SCORES = Path("data/07_model_output/eval_pair_scores.jsonl")


@pytest.fixture(scope="module")
def ck(tmp_path_factory):
    return tc.get_checkpoints(tmp_path_factory)


def _outputs(project: Path) -> dict[Path, float]:
    return {
        p.relative_to(project): p.stat().st_mtime
        for layer in LAYERS
        for p in (project / layer).rglob("*")
        if p.is_file()
    }


@pytest.mark.slow
def test_a_killed_evaluation_leaves_no_earlier_output_beside_its_own(project: Path, ck) -> None:
    write_jsonl(project / "data/05_model_input/test.jsonl", tc.pair_rows(with_long=False))
    run_pipeline(
        project, "evaluation", params={"evaluation": {"checkpoint": str(ck.full), "dtype": "float64"}}
    )
    first = _outputs(project)
    assert {REPORT, HEADLINE, SCORES} <= first.keys()
    assert str(ck.full) in (project / REPORT).read_text(encoding="utf-8")

    time.sleep(0.05)  # mtimes of the second run's files are later than every file of the first
    started = time.time()
    params = f"evaluation.checkpoint={ck.lora},evaluation.dtype=float64"
    kedro_run_killed_before_saving(project, HEADLINE.name, "--pipelines", "evaluation", "--params", params)

    left = _outputs(project)
    assert SCORES in left and HEADLINE not in left  # killed between two saves
    earlier = sorted(str(p) for p, mtime in left.items() if mtime < started)
    assert earlier == [], f"files of the earlier run left beside the killed run's: {earlier}"
    for path in left:
        if path.suffix in (".md", ".json", ".jsonl"):
            assert str(ck.full) not in (project / path).read_text(encoding="utf-8"), path
