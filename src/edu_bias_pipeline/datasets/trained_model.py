"""Training's record of the model it wrote (`trained_model.json`, a `TrainedModel`), read by evaluation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kedro.io import DatasetError
from pydantic import ValidationError

from edu_bias_pipeline.datasets.atomic import JSONDataset


class TrainedModelDataset(JSONDataset):
    """A JSON object, written atomically. Loads with `record_file` (its path) added, and as only
    `{"record_file": ...}` (no `model_dir`) while no training run has written it.

    Evaluation takes this record as an input so Kedro orders it after training in every pipeline
    combination; a run that names its model explicitly (`evaluation.checkpoint`) must still start when no
    training ever ran, so absence is a value here and the evaluation node decides what it means.
    """

    def __init__(self, *, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        super().__init__(filepath=filepath, save_args={"ensure_ascii": False, "indent": 2}, metadata=metadata)
        self._record = Path(filepath)

    # The contract is imported where it is used: every stage imports this module (datasets/__init__), and only
    # training and evaluation, which read or write the record, depend on the training contract.
    def load(self) -> dict[str, Any]:
        from edu_bias_pipeline.dpo.contract import TrainedModel

        if not self._record.exists():
            return {"record_file": str(self._record)}
        try:
            data = json.loads(self._record.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DatasetError(
                f"{self._record}: cannot read the trained-model record ({exc}); rerun training to rewrite it"
            ) from exc
        try:
            record = TrainedModel.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(map(str, first["loc"])) or "the file"
            raise DatasetError(
                f"{self._record}: not a trained-model record ({where}: {first['msg']}); "
                "rerun training to rewrite it"
            ) from None
        # what the file holds, no defaults added: evaluation compares only what was recorded
        return {**record.model_dump(mode="json", exclude_unset=True), "record_file": str(self._record)}

    def save(self, data: dict[str, Any]) -> None:
        from edu_bias_pipeline.dpo.contract import TrainedModel

        # record_file is where the record was read from, not part of it
        super().save(TrainedModel.model_validate(data).model_dump(mode="json"))
