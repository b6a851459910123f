"""The data_validation pipeline in a real KedroSession with real Great Expectations."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT, read_jsonl, run_pipeline, write_jsonl
from dv_fixtures import clean_pairs, dirty_file

from edu_bias_pipeline.pipelines.data_validation import checks as C
from edu_bias_pipeline.pipelines.data_validation.nodes import DataValidationError

RAW = Path("data/01_raw/edu_bias_pairs.jsonl")
VALIDATED = Path("data/02_intermediate/validated_pairs.jsonl")
QUARANTINED = Path("data/02_intermediate/quarantined_pairs.jsonl")
SUMMARY = Path("data/08_reporting/validation_summary.json")
DOCS = Path("data/08_reporting/data_docs/index.html")
LENIENT = {"data_validation": {"max_error_rate": 1.0, "min_pairs_per_category": 3}}


def outputs(project: Path) -> tuple[list[dict], list[dict], dict]:
    return (
        read_jsonl(project / VALIDATED),
        read_jsonl(project / QUARANTINED),
        json.loads((project / SUMMARY).read_text(encoding="utf-8")),
    )


def test_dirty_fixture_every_check_conservation_and_data_docs(project: Path) -> None:
    content, expected, rows_read = dirty_file()
    (project / RAW).write_bytes(content)

    run_pipeline(project, "data_validation", params=LENIENT)
    validated, quarantined, summary = outputs(project)

    # Conservation: every non-blank line is kept or quarantined, exactly once.
    assert summary["rows_read"] == rows_read == len(validated) + len(quarantined)
    assert (summary["rows_kept"], summary["rows_quarantined"]) == (len(validated), len(quarantined))
    assert summary["blank_lines"] == 2
    seen = sorted([r["source_line"] for r in validated] + [r["source_line"] for r in quarantined])
    assert len(seen) == len(set(seen)) == rows_read

    # Every check fired somewhere, and each dirty line carries the reason it was written for.
    fired = {name for name, c in summary["checks"].items() if c["rows"] > 0}
    assert fired == set(C.PARSE_CHECKS) | {c.name for c in C.ROW_CHECKS}
    by_line_q = {r["source_line"]: r for r in quarantined}
    by_line_v = {r["source_line"]: r for r in validated}
    for line, (errors, warnings) in expected.items():
        if errors:
            assert line in by_line_q, (line, errors, by_line_v.get(line))
            assert errors <= set(by_line_q[line]["reasons"]), (line, by_line_q[line])
            assert all(f":{line}: " in d for d in by_line_q[line]["details"])
        else:
            assert line in by_line_v, (line, warnings, by_line_q.get(line))
            assert warnings <= set(by_line_v[line]["warnings"]), (line, by_line_v[line])
    warned = {(w["source_line"], w["check"]) for w in summary["warnings"]}
    assert {(r["source_line"], w) for r in validated for w in r["warnings"]} == warned

    # Raw text of a quarantined line is the original line (the BOM-less, undecodable one included).
    assert by_line_q[4]["raw"].startswith('{"chosen": "女生也能学好数学", "rejected": ')
    assert any("\\xff" in r["raw"] for r in quarantined if "invalid_utf8" in r["reasons"])

    # Contract of validated rows: fields, normalisation, canonical labels, meta preserved.
    assert by_line_v[1]["source_line"] == 1  # the BOM line parsed
    for row in validated:
        assert set(row) == {
            "pair_id",
            "source_line",
            "prompt",
            "chosen",
            "rejected",
            "bias_type",
            "warnings",
            "meta",
        }
        assert row["chosen"] == row["chosen"].strip()
    english = next(r for r in validated if r["meta"].get("source") == "en")
    assert english["bias_type"] == "socioeconomic"
    assert english["meta"] == {"source": "en", "license": "CC-BY-4.0", "eval_only": True}
    prompted = next(r for r in validated if r["prompt"])
    assert prompted["prompt"] == "老师在课堂上应该如何提问？"
    assert prompted["meta"] == {"source": "fixture", "origin": "top-level extra"}
    assert summary["per_bias_type"]["gender_sexuality"]["kept"] >= 10
    assert summary["unknown_bias_labels"] == {"astrology": 1}

    # Data Docs: the index names the suite; the validation page lists the failed warning expectations.
    index = (project / DOCS).read_text(encoding="utf-8")
    assert "validated_pairs" in index
    assert 'id="edu-bias-summary"' in index and "check_similar_pair" in index  # the offline summary
    pages = list((project / DOCS.parent / "validations").rglob("*.html"))
    assert pages, "no validation result page"
    page = "".join(p.read_text(encoding="utf-8") for p in pages)  # the verdict and the row-check results
    assert "check_similar_pair" in page and "check_conflicting_bias_type" in page


def test_fail_policy_writes_reports_before_failing(project: Path) -> None:
    content, _, rows_read = dirty_file()
    (project / RAW).write_bytes(content)
    with pytest.raises(DataValidationError) as failure:
        run_pipeline(project, "data_validation")  # default max_error_rate 0.1 < the dirty share
    message = str(failure.value)
    assert "max_error_rate=10.0%" in message
    assert str(SUMMARY) in message and str(DOCS) in message and str(QUARANTINED) in message
    validated, quarantined, summary = outputs(project)
    assert summary["passed"] is False and summary["rows_read"] == rows_read
    assert len(validated) + len(quarantined) == rows_read
    assert "validated_pairs" in (project / DOCS).read_text(encoding="utf-8")


def test_empty_input_fails_clearly(project: Path) -> None:
    (project / RAW).write_bytes(b"\n \n")
    with pytest.raises(DataValidationError, match="No pairs read"):
        run_pipeline(project, "data_validation")
    _, _, summary = outputs(project)
    assert summary["rows_read"] == 0 and summary["blank_lines"] == 2
    assert (project / DOCS).exists()


def test_cli_run_on_another_file_does_not_import_torch(project: Path, tmp_path: Path) -> None:
    """`--params raw_pairs_path=...` redirects the input; the data stage never imports torch."""
    other = write_jsonl(tmp_path / "imported.jsonl", clean_pairs(40))
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(PROJECT_ROOT / "tests")!r})
        from conftest import run_pipeline
        params = {{"raw_pairs_path": {str(other)!r}, "data_validation": {{"min_pairs_per_category": 1}}}}
        run_pipeline({str(project)!r}, "data_validation", params=params)
        heavy = sorted(m for m in ("torch", "transformers", "trl") if m in sys.modules)
        assert not heavy, f"data_validation imported {{heavy}}"
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    validated, quarantined, summary = outputs(project)
    assert summary["input"] == str(other)
    assert len(validated) == 40 and quarantined == [] and summary["passed"] is True
    assert "Data validation passed" in done.stderr + done.stdout


def test_min_chars_above_max_chars_fails_before_any_node_runs(project: Path) -> None:
    from kedro.validation.exceptions import ParameterValidationError

    params = {"data_validation": {"min_chars": 50, "max_chars": 10}}
    with pytest.raises(ParameterValidationError) as failure:
        run_pipeline(project, "data_validation", params=params)
    message = str(failure.value)
    assert "data_validation.min_chars (50) is greater than data_validation.max_chars (10)" in message
    assert "parameters_data_validation.yml" in message
    assert not (project / VALIDATED).exists() and not (project / SUMMARY).exists()


def test_utf16_input_gets_a_save_as_utf8_hint(project: Path) -> None:
    text = (project / RAW).read_text(encoding="utf-8")
    (project / RAW).write_bytes(text.encode("utf-16"))  # with its byte-order mark, as Windows tools write
    with pytest.raises(DataValidationError) as failure:
        run_pipeline(project, "data_validation")
    message = str(failure.value)
    assert f"Hint: {RAW}: the file looks like UTF-16" in message
    assert "Save it as UTF-8, e.g. `iconv -f UTF-16 -t UTF-8" in message
    assert outputs(project)[2]["input_hints"][0].startswith("the file looks like UTF-16")


def test_json_array_input_gets_a_convert_to_jsonl_hint(project: Path) -> None:
    rows = clean_pairs(30)
    (project / RAW).write_text(json.dumps(rows, ensure_ascii=False, indent=2), encoding="utf-8")
    with pytest.raises(DataValidationError) as failure:
        run_pipeline(project, "data_validation")
    message = str(failure.value)
    assert "it looks like one JSON array, not JSON Lines" in message
    # The command names the file this run read, ready to paste.
    assert f"jq -c '.[]' {RAW} > {RAW.with_suffix('')}.lines.jsonl" in message
    assert "FILE" not in message


def test_utf32_input_gets_a_utf32_hint_like_the_evaluation_pair_file(project: Path) -> None:
    """Both readers use one detector (pairs.file_format): a UTF-32 file is not called UTF-16 here."""
    from kedro.io import DatasetError

    from edu_bias_pipeline.datasets import PairFileDataset

    text = (project / RAW).read_text(encoding="utf-8")
    (project / RAW).write_bytes(text.encode("utf-32"))
    with pytest.raises(DataValidationError) as failure:
        run_pipeline(project, "data_validation")
    command = f"iconv -f UTF-32 -t UTF-8 {RAW} > {RAW.with_suffix('')}.utf8.jsonl"
    assert f"Hint: {RAW}: the file looks like UTF-32" in str(failure.value)
    assert command in str(failure.value)
    with pytest.raises(DatasetError, match="is UTF-32-encoded") as refused:
        PairFileDataset(filepath=str(project / RAW)).load()
    assert f"iconv -f UTF-32 -t UTF-8 {project / RAW}" in str(refused.value)


def test_clean_input_gets_no_hints(project: Path) -> None:
    run_pipeline(project, "data_validation")
    assert outputs(project)[2]["input_hints"] == []


def test_quarantine_details_name_field_length_bound_and_nearest_labels(project: Path) -> None:
    long_text = "长" * 1001
    rows = [
        *clean_pairs(40),
        {"chosen": "好", "rejected": "女生天生学不好数学，老师不必费心", "meta": {"bias_type": "gender"}},
        {"chosen": long_text, "rejected": "农村学生学不好英语", "meta": {"bias_type": "region"}},
        {"chosen": "女生也能学好物理", "rejected": "女生学不好物理", "meta": {"bias_type": "gendr"}},
        {"chosen": "外地考生同样优秀", "rejected": "外地考生都不行", "meta": {"bias_type": "astrology"}},
    ]
    write_jsonl(project / RAW, rows)
    run_pipeline(project, "data_validation", params=LENIENT)
    _, quarantined, _ = outputs(project)
    details = {r["source_line"]: r["details"] for r in quarantined}
    assert details[41] == [
        f"{RAW}:41: length_out_of_bounds: field 'chosen' has 1 character, below min_chars=2"
    ]
    assert details[42] == [
        f"{RAW}:42: length_out_of_bounds: field 'chosen' has 1001 characters, above max_chars=1000"
    ]
    (gendr,) = details[43]
    assert gendr.startswith(f"{RAW}:43: unknown_bias_type: meta.bias_type 'gendr' is not in the taxonomy")
    assert "nearest allowed: gender (-> gender_sexuality)" in gendr
    assert "add it as an alias under `taxonomy` in conf/base/parameters_data_validation.yml" in gendr
    (astrology,) = details[44]
    assert "'astrology' is not in the taxonomy" in astrology
    assert "allowed: gender_sexuality, region, socioeconomic" in astrology  # nothing close: the full list


def test_a_directory_as_the_raw_file_is_reported_as_a_directory(project: Path) -> None:
    from kedro.io import DatasetError

    folder = project / "data" / "01_raw"
    with pytest.raises(DatasetError, match=r"01_raw' is a directory; give a file"):
        run_pipeline(project, "data_validation", params={"raw_pairs_path": str(folder)})


def test_a_saved_file_that_is_not_the_kept_frame_is_a_named_error_saying_to_rerun() -> None:
    from edu_bias_pipeline.pipelines.data_validation.nodes import ValidatedFileMismatchError, seal_summary

    fingerprint = {
        "path": "data/02_intermediate/validated_pairs.jsonl",
        "lines": 7,
        "bytes": 1,
        "sha256": "0",
    }
    with pytest.raises(ValidatedFileMismatchError) as failure:
        seal_summary({"rows_kept": 9}, fingerprint)
    message = str(failure.value)
    assert "data/02_intermediate/validated_pairs.jsonl has 7 lines" in message and "kept 9 rows" in message
    assert "rerun `kedro run --pipelines data_validation`" in message
