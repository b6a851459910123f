"""pandas JSON Lines: written in chunks and atomically, read with the fingerprint of the bytes parsed."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pandas as pd
from kedro.io.core import DatasetError, get_filepath_str
from kedro_datasets.pandas import JSONDataset

from edu_bias_pipeline.datasets.atomic import AtomicSaveMixin
from edu_bias_pipeline.files import display_path, fingerprint_bytes

# `DataFrame.attrs` key of a loaded frame: {"path", "lines", "bytes", "sha256"} of the file it came from.
SOURCE_ATTR = "source_file"


_FIX = ". Each line must be one JSON object (JSON Lines, UTF-8); fix or remove that line."


def _first_bad_line(content: bytes) -> str:
    """The number of the first non-blank line that is not a JSON object, or `?` when every line parses."""
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            return str(number)
        if not isinstance(value, dict):
            return str(number)
    return "?"


class _ChunkedJSONLines(JSONDataset):
    def __init__(self, *, chunk_rows: int = 100_000, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self._save_args.get("lines") is not True or self._save_args.get("orient") != "records":
            raise ValueError("JSONLinesDataset needs save_args {orient: records, lines: true}")
        self._chunk_rows = int(chunk_rows)

    def save(self, data: pd.DataFrame) -> None:
        save_path = get_filepath_str(self._get_save_path(), self._protocol)
        with self._fs.open(save_path, **self._fs_open_args_save) as fs_file:
            for start in range(0, max(len(data), 1), self._chunk_rows):  # an empty frame still writes
                fs_file.write(data.iloc[start : start + self._chunk_rows].to_json(**self._save_args))
        self._invalidate_cache()

    def load(self) -> pd.DataFrame:
        load_path = get_filepath_str(self._get_load_path(), self._protocol)
        if self._protocol == "file" and Path(load_path).is_dir():
            raise DatasetError(f"{display_path(load_path)} is a directory; give the JSON Lines file itself.")
        if self._protocol == "file" and not Path(load_path).exists():
            raise DatasetError(
                f"{display_path(load_path)} does not exist. A file you named (`--params ..._path=FILE`): "
                f"check the path. A stage's output: that stage has not run, or its last run failed (a failed "
                f"run removes the earlier outputs it did not replace, so none passes for its own); run it "
                f"first (`dvc repro`, or `kedro run --pipelines ...`)."
            )
        with self._fs.open(load_path, mode="rb") as fs_file:
            content = fs_file.read()
        shown = display_path(load_path) if self._protocol == "file" else load_path
        try:
            frame = pd.read_json(io.BytesIO(content), **self._load_args)
        except ValueError as exc:
            # pandas names a byte position only: say which line, and what to do
            raise DatasetError(f"{shown}:{_first_bad_line(content)}: {exc}{_FIX}") from None
        frame.attrs[SOURCE_ATTR] = {"path": shown, **fingerprint_bytes(content)}
        return frame


class JSONLinesDataset(AtomicSaveMixin, _ChunkedJSONLines):
    """`pandas.JSONDataset` for JSON Lines: saves `chunk_rows` rows at a time, atomically.

    `DataFrame.to_json(lines=True)` renders the whole file as one string and then splits it into lines,
    which for a million pairs costs about 2 GiB of peak memory; chunks of rows keep that bounded. The
    chunks go to a temporary file that is renamed into place once complete (`AtomicSaveMixin`), so a
    killed run never leaves a file cut at a chunk boundary.

    Loading parses exactly what `pandas.JSONDataset` parses, from the bytes read once; the frame's
    `attrs[SOURCE_ATTR]` holds their fingerprint (`files.fingerprint_bytes`), so a consumer can check
    that the rows it got are the ones a report describes (see data_splitting's gate).
    """
