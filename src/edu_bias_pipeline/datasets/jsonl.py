"""pandas JSON Lines, written in chunks."""

from __future__ import annotations

from typing import Any

import pandas as pd
from kedro.io.core import get_filepath_str
from kedro_datasets.pandas import JSONDataset


class JSONLinesDataset(JSONDataset):
    """`pandas.JSONDataset` for JSON Lines that saves `chunk_rows` rows at a time.

    `DataFrame.to_json(lines=True)` renders the whole file as one string and then splits it into lines,
    which for a million pairs costs about 2 GiB of peak memory; chunks of rows keep that bounded. Loading
    (and therefore every reader of the file) is exactly `pandas.JSONDataset`'s.
    """

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
