"""Training's record of the model it wrote (`trained_model.json`), read by evaluation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from edu_bias_pipeline.files import write_json_atomic


class TrainedModelDataset(AbstractDataset[dict[str, Any], dict[str, Any]]):
    """A JSON object, written atomically. Loads with `record_file` (its path) added, and as only
    `{"record_file": ...}` (no `model_dir`) while no training run has written it.

    Evaluation takes this record as an input so Kedro orders it after training in every pipeline
    combination; a run that names its model explicitly (`evaluation.checkpoint`) must still start when no
    training ever ran, so absence is a value here and the evaluation node decides what it means.
    """

    def __init__(self, *, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = Path(filepath)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def load(self) -> dict[str, Any]:
        if not self._filepath.exists():
            return {"record_file": str(self._filepath)}
        try:
            data = json.loads(self._filepath.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DatasetError(
                f"{self._filepath}: cannot read the trained-model record ({exc}); "
                "rerun training to rewrite it"
            ) from exc
        if not isinstance(data, dict) or not isinstance(data.get("model_dir"), str):
            raise DatasetError(
                f"{self._filepath}: not a trained-model record (a JSON object with 'model_dir'); "
                "rerun training to rewrite it"
            )
        return {**data, "record_file": str(self._filepath)}

    def save(self, data: dict[str, Any]) -> None:
        self._filepath.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self._filepath, data)
