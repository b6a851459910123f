"""A JSON report another stage writes, read when it is there (`{}` while it is not)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.io import DatasetError
from kedro.io.core import get_filepath_str

from edu_bias_pipeline.datasets.atomic import JSONDataset


class OptionalJSONDataset(JSONDataset):
    """Loads the JSON object at `filepath`, or `{}` when no file exists; read-only.

    For a report a node shows when it exists, e.g. training's health checks in the evaluation report,
    where evaluation must still run for a model trained elsewhere (no training metrics here at all).
    """

    def load(self) -> dict[str, Any]:
        path = get_filepath_str(self._get_load_path(), self._protocol)
        if self._protocol == "file" and not Path(path).exists():
            return {}
        data = super().load()
        if not isinstance(data, dict):
            raise DatasetError(f"{path}: expected a JSON object, got {type(data).__name__}")
        return data

    def save(self, data: Any) -> None:
        raise DatasetError(
            f"{type(self).__name__} is read-only: another catalog entry writes {self._filepath}"
        )
