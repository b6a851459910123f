"""A JSON Lines pair file read for evaluation: every problem named by file, line and what to do."""

from __future__ import annotations

import io
import json
from itertools import islice
from pathlib import Path
from typing import Any

import pandas as pd
from kedro.io import AbstractDataset, DatasetError

from edu_bias_pipeline import pairs
from edu_bias_pipeline.datasets.jsonl import SOURCE_ATTR
from edu_bias_pipeline.files import display_path, fingerprint_bytes

# Problems listed before the message says "and N more": enough to see a pattern, short enough to read.
MAX_LISTED = 5
FORMAT_HINT = "one JSON object per line with 'chosen' and 'rejected' (and 'bias_type' or meta.bias_type)"


class PairFileError(DatasetError):
    """The pair file cannot be read as JSON Lines; the message names the file, the line and the fix."""


class PairFileDataset(AbstractDataset[None, pd.DataFrame]):
    """Read-only JSONL pairs as a DataFrame, one row per non-blank line.

    `pandas.read_json(lines=True)` reports a broken line as "Expected object or value" with no file or line,
    and reads a JSON array as if it were pairs; this reader names both. The frame's `attrs["file_lines"]`
    holds each row's line number in the file, so later checks can point at the same line.
    """

    def __init__(self, *, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = Path(filepath)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def save(self, data: None) -> None:
        raise DatasetError(f"{self._filepath}: the evaluation pair file is an input; nothing writes it")

    def load(self) -> pd.DataFrame:
        path = self._filepath
        if path.is_dir():
            raise PairFileError(
                f"{path} is a directory; give the pair file itself: --params eval_pairs_path=FILE"
            )
        if not path.exists():
            raise PairFileError(
                f"{path} does not exist: run data_splitting to write the test split, or name another pair "
                "file with --params eval_pairs_path=FILE"
            )
        content = path.read_bytes()  # read once: parsed below and fingerprinted
        head = list(islice(io.BytesIO(content), 50))
        fmt = pairs.file_format(head)
        if fmt == pairs.JSON_ARRAY:
            lineno = next(i for i, line in enumerate(head, start=1) if line.strip())
            raise PairFileError(
                f"{path}:{lineno}: the file holds a JSON array, not JSON Lines ({FORMAT_HINT}). "
                f"Convert it, e.g. `{pairs.convert_command(fmt, path)}`"
            )
        if fmt is not None:
            raise PairFileError(
                f"{path} is {fmt}-encoded; pair files are UTF-8. Convert it, e.g. "
                f"`{pairs.convert_command(fmt, path)}`"
            )
        rows, lines, errors = [], [], []
        for lineno, raw in enumerate(io.BytesIO(content), start=1):
            problem = None
            try:
                text = raw.decode("utf-8-sig" if lineno == 1 else "utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                problem = f"not valid UTF-8 at byte {exc.start + 1}; save the file as UTF-8"
            else:
                if not text.strip():
                    continue
                try:
                    value = json.loads(text)
                except json.JSONDecodeError as exc:
                    problem = f"not valid JSON ({exc.msg}, column {exc.colno})"
                else:
                    if not isinstance(value, dict):
                        problem = f"expected a JSON object, got a JSON {type(value).__name__}"
                    else:
                        rows.append(value)
                        lines.append(lineno)
            if problem:
                errors.append(f"{path}:{lineno}: {problem}")
        if errors:
            more = f"\n(and {len(errors) - MAX_LISTED} more bad lines)" if len(errors) > MAX_LISTED else ""
            raise PairFileError(
                f"{path}: {len(errors)} line(s) are not pairs in JSON Lines ({FORMAT_HINT}):\n"
                + "\n".join(errors[:MAX_LISTED])
                + more
                + "\nFix or remove these lines, or validate the file first "
                f"(kedro run --pipelines data_validation --params raw_pairs_path={path})."
            )
        frame = pd.DataFrame.from_records(rows) if rows else pd.DataFrame()
        frame.attrs["filepath"] = str(path)
        frame.attrs["file_lines"] = lines
        # which file this was, so evaluation can say whether it is the scored model's held-out split
        frame.attrs[SOURCE_ATTR] = {"path": display_path(path), **fingerprint_bytes(content)}
        return frame
