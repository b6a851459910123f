"""A pair file that is not JSON Lines stops evaluation with its path, the line and what to do (real Kedro)."""

from __future__ import annotations

import json

import pytest
import tiny_checkpoints as tc
from conftest import read_jsonl, run_pipeline, write_jsonl
from kedro.io import DatasetError


@pytest.fixture(scope="module")
def ck(tmp_path_factory):
    return tc.get_checkpoints(tmp_path_factory)


def _evaluate(project, ck, pair_file):
    run_pipeline(
        project,
        "evaluation",
        params={"evaluation": {"checkpoint": str(ck.full)}, "eval_pairs_path": str(pair_file)},
    )


def _lines(rows):
    return [json.dumps(r, ensure_ascii=False) for r in rows]


def test_a_broken_line_is_named_by_file_and_line(project, ck):
    lines = _lines(tc.pair_rows(with_long=False))
    lines[2] = lines[2][:-5]  # cut mid-object, as an interrupted copy leaves it
    lines.insert(4, "")  # blank lines are skipped, line numbers still count them
    lines[5] = "42"
    pair_file = write_jsonl(project / "bad.jsonl", lines)
    with pytest.raises(DatasetError) as err:
        _evaluate(project, ck, pair_file)
    message = str(err.value)
    assert message.startswith(f"evaluation_pairs: {pair_file}: 2 line(s) are not pairs in JSON Lines")
    assert f"{pair_file}:3: not valid JSON (Expecting value, column " in message
    assert f"{pair_file}:6: expected a JSON object, got a JSON int" in message
    assert "Fix or remove these lines" in message
    assert not (project / "data/08_reporting/eval_report.md").exists()


@pytest.mark.parametrize("layout", ["one_line", "pretty"])
def test_a_json_array_gets_a_conversion_hint(project, ck, layout):
    rows = tc.pair_rows(with_long=False)
    text = json.dumps(rows, ensure_ascii=False, indent=2 if layout == "pretty" else None)
    pair_file = project / "pairs.json"
    pair_file.write_text(text + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="holds a JSON array, not JSON Lines") as err:
        _evaluate(project, ck, pair_file)
    assert f"{pair_file}:1:" in str(err.value) and f"jq -c '.[]' {pair_file}" in str(err.value)


def test_utf16_and_a_directory_are_named_with_the_fix(project, ck):
    pair_file = project / "pairs16.jsonl"
    pair_file.write_text("\n".join(_lines(tc.pair_rows(with_long=False))) + "\n", encoding="utf-16")
    with pytest.raises(DatasetError, match=r"pairs16\.jsonl is UTF-16-encoded; pair files are UTF-8") as err:
        _evaluate(project, ck, pair_file)
    assert "iconv -f UTF-16 -t UTF-8" in str(err.value)

    with pytest.raises(DatasetError, match=r"is a directory; give the pair file itself"):
        _evaluate(project, ck, project / "data")
    with pytest.raises(DatasetError, match=r"nothing\.jsonl does not exist: run data_splitting"):
        _evaluate(project, ck, project / "nothing.jsonl")


def test_a_valid_file_with_blank_lines_and_a_bom_is_read_whole(project, ck):
    rows = tc.pair_rows(with_long=False)
    lines = _lines(rows)
    lines.insert(3, "   ")
    pair_file = project / "ok.jsonl"
    pair_file.write_bytes("\ufeff".encode() + ("\n".join(lines) + "\n").encode("utf-8"))
    _evaluate(project, ck, pair_file)
    scores = read_jsonl(project / "data/07_model_output/eval_pair_scores.jsonl")
    assert sorted(s["pair_id"] for s in scores) == sorted(r["pair_id"] for r in rows)

    # A bad field is reported at its line in the file (blank lines counted), with the file's name.
    rows[4]["chosen"] = ""
    write_jsonl(pair_file, [*_lines(rows[:3]), "", *_lines(rows[3:])])
    with pytest.raises(ValueError, match=rf"{pair_file.name}: line 6 \(source_line 5\): field 'chosen'"):
        _evaluate(project, ck, pair_file)
