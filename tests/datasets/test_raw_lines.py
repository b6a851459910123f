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


def test_jsonlines_dataset_writes_what_pandas_jsondataset_writes(tmp_path: Path) -> None:
    import pandas as pd
    from kedro_datasets.pandas import JSONDataset

    from edu_bias_pipeline.datasets import JSONLinesDataset

    args = {
        "load_args": {"lines": True, "dtype": False},
        "save_args": {"orient": "records", "lines": True, "force_ascii": False},
    }
    frame = pd.DataFrame({"a": [1, 2, 3], "b": [["w"], None, {"x": "中"}]})
    for rows in (frame, frame.iloc[:0]):
        ours = JSONLinesDataset(filepath=str(tmp_path / "ours.jsonl"), chunk_rows=2, **args)
        theirs = JSONDataset(filepath=str(tmp_path / "theirs.jsonl"), **args)
        ours.save(rows)
        theirs.save(rows)
        assert (tmp_path / "ours.jsonl").read_bytes() == (tmp_path / "theirs.jsonl").read_bytes()
    ours.save(frame)
    theirs.save(frame)
    pd.testing.assert_frame_equal(ours.load(), theirs.load())
