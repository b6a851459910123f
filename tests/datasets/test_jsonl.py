"""JSON Lines inputs a user points the project at (e.g. `--params neutral_texts_path=FILE`): a broken line is
named by file and line, not by pandas' byte position alone."""

from __future__ import annotations

from pathlib import Path

import pytest
from kedro.io import DatasetError

from edu_bias_pipeline.datasets import JSONLinesDataset


def _dataset(path: Path) -> JSONLinesDataset:
    return JSONLinesDataset(
        filepath=str(path),
        load_args={"lines": True, "dtype": False},
        save_args={"orient": "records", "lines": True, "force_ascii": False},
    )


@pytest.mark.parametrize(
    ("lines", "bad"),
    [
        (['{"text": "一"}', '{"text": "二"', '{"text": "三"}'], 2),
        (['{"text": "a"}', "", '["not", "an", "object"]'], 3),
    ],
)
def test_a_broken_line_is_named_by_file_and_line(tmp_path: Path, lines: list[str], bad: int) -> None:
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DatasetError) as raised:
        _dataset(path).load()
    message = str(raised.value)
    assert f"corpus.jsonl:{bad}:" in message
    assert "one JSON object" in message


def test_a_good_file_loads_with_its_fingerprint(tmp_path: Path) -> None:
    path = tmp_path / "corpus.jsonl"
    path.write_text('{"text": "一"}\n{"text": "二"}\n', encoding="utf-8")
    frame = _dataset(path).load()
    assert list(frame["text"]) == ["一", "二"]
    assert frame.attrs["source_file"]["lines"] == 2


def test_a_missing_file_or_a_directory_says_what_to_check(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"corpus\.jsonl does not exist\. A file you named .*the path"):
        _dataset(tmp_path / "corpus.jsonl").load()
    with pytest.raises(DatasetError, match=r"is a directory; give the JSON Lines file itself"):
        _dataset(tmp_path).load()
