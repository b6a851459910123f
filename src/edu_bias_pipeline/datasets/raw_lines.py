"""A file read as raw byte lines, so that decoding and parsing errors become data, not crashes."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from edu_bias_pipeline.files import atomic_open


class RawLinesDataset(AbstractDataset[list[bytes], list[bytes]]):
    """Loads a text file as a list of raw `bytes` lines, line terminators removed.

    Nothing is decoded here: a BOM, invalid UTF-8 or a broken JSON line stays in the data, where the
    validation stage can quarantine it with a reason and its 1-based line number (list index + 1).
    Lines end at b"\\n"; a trailing b"\\r" (CRLF files) is removed. A final newline does not add an empty
    line. Saving writes the lines back joined by b"\\n".
    """

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = PurePosixPath(filepath)
        self.metadata = metadata

    def load(self) -> list[bytes]:
        path = Path(self._filepath)
        if path.is_dir():
            raise DatasetError(
                f"Raw pairs file '{path}' is a directory; give a file: one JSON object per line (JSONL), "
                "e.g. `kedro run --pipelines data_validation --params raw_pairs_path=PATH/pairs.jsonl`. "
                "Several files can be joined into one first (`cat DIR/*.jsonl > pairs.jsonl`)."
            )
        if not path.exists():
            raise DatasetError(
                f"Raw pairs file '{path}' does not exist. Put the JSONL there, or point the run at another "
                "file with `kedro run --pipelines data_validation --params raw_pairs_path=PATH`."
            )
        try:
            return split_lines(path.read_bytes())
        except OSError as exc:
            raise DatasetError(f"Cannot read raw pairs file '{path}': {exc.strerror or exc}") from exc

    def save(self, data: list[bytes]) -> None:
        path = Path(self._filepath)
        try:
            with atomic_open(path, "wb") as fh:
                fh.writelines(line + b"\n" for line in data)
        except OSError as exc:
            raise DatasetError(str(exc)) from exc

    def _exists(self) -> bool:
        return Path(self._filepath).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}


def split_lines(content: bytes) -> list[bytes]:
    """`content` split at b"\\n", CR of CRLF endings dropped, no phantom line after a final newline."""
    if not content:
        return []
    lines = content.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]
