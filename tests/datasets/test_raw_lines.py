"""RawLinesDataset: bytes in, bytes out, line numbers preserved."""

from __future__ import annotations

from pathlib import Path

import pytest
from kedro.io import DatasetError

from edu_bias_pipeline.datasets import RawLinesDataset


def test_load_keeps_bytes_and_line_positions(tmp_path: Path) -> None:
    path = tmp_path / "raw.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\r\n\n\xff\xfe\n{"b": 2}')
    lines = RawLinesDataset(filepath=str(path)).load()
    assert lines == [b'\xef\xbb\xbf{"a": 1}', b"", b"\xff\xfe", b'{"b": 2}']


def test_final_newline_adds_no_line_and_save_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "out" / "raw.jsonl"
    dataset = RawLinesDataset(filepath=str(path))
    assert not dataset.exists()
    dataset.save([b"x", b"", b"y"])
    assert path.read_bytes() == b"x\n\ny\n"
    assert dataset.load() == [b"x", b"", b"y"]
    assert RawLinesDataset(filepath=str(tmp_path / "empty")).exists() is False


def test_missing_file_names_the_path_and_the_override(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"raw_pairs_path"):
        RawLinesDataset(filepath=str(tmp_path / "nope.jsonl")).load()
