"""A file's fingerprint as a (load-only) dataset: what a report records about the file it describes."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from edu_bias_pipeline.files import display_path, fingerprint_file


class FileFingerprintDataset(AbstractDataset[None, dict[str, Any]]):
    """Loads {"path", "lines", "bytes", "sha256"} of `filepath`, read in blocks (never parsed).

    Declared beside the dataset that writes the file, with the same `filepath`; the node reading it must
    run after that file is saved (data_validation's `seal_summary` does: its other input is an output of
    the node that saves the file).
    """

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = PurePosixPath(filepath)
        self.metadata = metadata

    def load(self) -> dict[str, Any]:
        path = Path(self._filepath)
        if not path.is_file():
            raise DatasetError(f"Cannot fingerprint {path}: it does not exist or is not a file")
        return {"path": display_path(path), **fingerprint_file(path)}

    def save(self, data: None) -> None:
        raise DatasetError(f"{type(self).__name__} is read-only; the file is written by another dataset")

    def _exists(self) -> bool:
        return Path(self._filepath).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
