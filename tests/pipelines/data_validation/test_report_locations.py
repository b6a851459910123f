"""The catalog is the one place data_validation's paths are set: move an entry there and the files, the
summary's `reports` and the failure message all follow; the old path parameters fail, naming the entry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_pipeline
from dv_fixtures import dirty_file

from edu_bias_pipeline.pipelines.data_validation.nodes import DataValidationError

RAW = Path("data/01_raw/edu_bias_pairs.jsonl")
MOVED = {
    "data/08_reporting/validation_summary.json": "data/08_reporting/moved/summary.json",
    "data/02_intermediate/quarantined_pairs.jsonl": "data/08_reporting/moved/quarantine.jsonl",
    "data/08_reporting/data_docs": "data/08_reporting/moved/docs",
}


def test_moving_a_catalog_entry_moves_the_file_and_every_mention(project: Path) -> None:
    catalog = project / "conf/base/catalog.yml"
    text = catalog.read_text(encoding="utf-8")
    for old, new in MOVED.items():
        assert text.count(f"filepath: {old}\n") == 1, old  # set once, in its own entry
        text = text.replace(f"filepath: {old}\n", f"filepath: {new}\n")
    catalog.write_text(text, encoding="utf-8")
    (project / RAW).write_bytes(dirty_file()[0])

    with pytest.raises(DataValidationError) as failure:
        run_pipeline(project, "data_validation")  # the dirty share is above the default max_error_rate
    message = str(failure.value)

    summary = json.loads((project / MOVED["data/08_reporting/validation_summary.json"]).read_text("utf-8"))
    docs = f"{MOVED['data/08_reporting/data_docs']}/index.html"
    assert summary["reports"] == {
        "summary": MOVED["data/08_reporting/validation_summary.json"],
        "quarantine": MOVED["data/02_intermediate/quarantined_pairs.jsonl"],
        "data_docs": docs,
    }
    assert summary["input"] == str(RAW)
    assert "validated_pairs" in (project / docs).read_text(encoding="utf-8")
    assert (project / MOVED["data/02_intermediate/quarantined_pairs.jsonl"]).stat().st_size > 0
    for new in summary["reports"].values():
        assert new in message
    for old in MOVED:
        assert not (project / old).exists() and old not in message


@pytest.mark.parametrize(
    ("key", "entry"),
    [
        ("summary_path", "validation_summary"),
        ("quarantine_path", "quarantined_pairs"),
        ("data_docs_dir", "data_docs"),
        ("input_path", "raw_pairs"),
    ],
)
def test_the_old_path_parameters_fail_naming_the_catalog_entry(project: Path, key: str, entry: str) -> None:
    from kedro.validation.exceptions import ParameterValidationError

    with pytest.raises(ParameterValidationError) as failure:
        run_pipeline(project, "data_validation", params={"data_validation": {key: "somewhere/else"}})
    message = str(failure.value)
    assert f"data_validation.{key}: " in message and f"catalog's `{entry}` filepath" in message
    assert "conf/base/catalog.yml" in message
    assert not (project / "data/08_reporting/validation_summary.json").exists()
