"""Which model evaluation scores: the one training recorded in `trained_model`, or an explicit override.

Never a guess: with neither a record nor `evaluation.checkpoint` the stage stops, and a record that points
at a missing, incomplete or replaced model directory stops it too, instead of scoring whatever is there.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edu_bias_pipeline.dpo.contract import METADATA_FILE, FinalMetadata
from edu_bias_pipeline.pipelines.evaluation.config import EvaluationConfig
from edu_bias_pipeline.scoring import CheckpointError, ScoringModels, load_scoring_models

SOURCE_RECORD = "trained_model"
SOURCE_OVERRIDE = "evaluation.checkpoint"
# Files of which a saved model or adapter holds at least one (sharded models hold an index).
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
    "adapter_model.safetensors",
    "adapter_model.bin",
)
# What final/edu_bias_training.json holds: the record carries a copy, which must still match the directory.
CONTRACT_KEYS = FinalMetadata.SCORING_FIELDS
# What final/'s metadata also records of the run that wrote it, and what the record adds.
SAME_RUN_KEYS = FinalMetadata.RUN_FIELDS
RUN_KEYS = (*SAME_RUN_KEYS, "finished_at")  # the run as the report names it (TrainedModel)
WHAT_TO_DO = (
    "run training again (kedro run --pipelines training,evaluation) or name the model to score with "
    "--params evaluation.checkpoint=PATH"
)


@dataclass(frozen=True)
class ModelChoice:
    path: str
    source: str  # SOURCE_RECORD or SOURCE_OVERRIDE
    # fingerprint / global_step / finished_at of the training run that wrote `path`; empty when unknown
    training_run: dict[str, Any]
    # the model training recorded when the override scored another one, so the report can say so
    not_scored: str | None = None


def choose_model(checkpoint: str | None, record: Mapping[str, Any] | None) -> ModelChoice:
    """The override when set, else the recorded model after checking it is complete and still the same."""
    record = dict(record or {})
    recorded = record.get("model_dir")
    run = {k: record[k] for k in RUN_KEYS if record.get(k) is not None}
    if checkpoint:
        same = recorded is not None and Path(recorded).resolve() == Path(checkpoint).resolve()
        return ModelChoice(
            path=str(checkpoint),
            source=SOURCE_OVERRIDE,
            training_run=run if same else {},
            not_scored=None if same else recorded,
        )
    record_file = record.get("record_file", "the trained_model record")
    if not recorded:
        raise CheckpointError(
            f"no trained model to evaluate: {record_file} does not exist (the training stage writes it). "
            f"Run training first (kedro run --pipelines training,evaluation), or name a model with "
            "--params evaluation.checkpoint=PATH"
        )
    check_recorded_model(Path(recorded), record, record_file)
    return ModelChoice(path=str(recorded), source=SOURCE_RECORD, training_run=run)


def load_models(cfg: EvaluationConfig, choice: ModelChoice) -> ScoringModels:
    """The chosen model and its reference, loaded as the evaluation parameters say."""
    return load_scoring_models(
        choice.path,
        reference_model=cfg.reference_model,
        beta=cfg.beta,
        instruction=cfg.instruction,
        max_length=cfg.max_length,
        dtype=cfg.dtype,
        device=cfg.device,
        trust_remote_code=cfg.trust_remote_code,
    )


def reference_description(meta: FinalMetadata) -> str:
    """The baseline a report names: the base model, or the adapter disabled for a LoRA adapter."""
    return "the same model with its LoRA adapter disabled" if meta.is_adapter else str(meta.base_model)


def check_recorded_model(model_dir: Path, record: Mapping[str, Any], record_file: str) -> None:
    """Raise unless `model_dir` holds a complete saved model whose metadata is the one recorded."""
    where = f"{record_file} names {model_dir}"
    if not model_dir.is_dir():
        raise CheckpointError(f"{where}, which does not exist (moved or deleted since); {WHAT_TO_DO}")
    contract_file = model_dir / METADATA_FILE
    if not contract_file.is_file():
        raise CheckpointError(
            f"{where}, which lacks {METADATA_FILE}: not a finished training output; {WHAT_TO_DO}"
        )
    weights = [name for name in WEIGHT_FILES if (model_dir / name).is_file()]
    if not weights:
        raise CheckpointError(
            f"{where}, which holds no model weights ({', '.join(WEIGHT_FILES[::2])}); {WHAT_TO_DO}"
        )
    for index in (w for w in weights if w.endswith(".index.json")):
        shards = _index_shards(model_dir / index)
        missing = sorted(s for s in shards if not (model_dir / s).is_file())
        if missing:
            raise CheckpointError(f"{where}, whose {index} lists missing shards {missing[:3]}; {WHAT_TO_DO}")
    try:
        contract = json.loads(contract_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"{where}, whose {METADATA_FILE} cannot be read ({exc}); {WHAT_TO_DO}"
        ) from None
    for key in CONTRACT_KEYS:
        if key in record and contract.get(key) != record[key]:
            raise CheckpointError(
                f"{where}, but its {METADATA_FILE} no longer matches the record ({key}: recorded "
                f"{record[key]!r}, found {contract.get(key)!r}): the directory was replaced after that "
                f"training run; {WHAT_TO_DO}"
            )
    # The contract alone does not tell two runs apart (same base model and beta, new data or learning
    # rate): final/ also names the run that wrote it, which must be the run the record describes.
    for key in SAME_RUN_KEYS:
        if key in record and contract.get(key) != record[key]:
            found = contract.get(key)
            raise CheckpointError(
                f"{where}, but the record and the model come from different training runs ({key}: recorded "
                f"{record[key]!r}, {METADATA_FILE} has {found!r}"
                + (", i.e. it was written before runs were named there" if found is None else "")
                + "): a later run replaced the model and stopped before recording it; rerun training "
                "(kedro run --pipelines training,evaluation) or name the model to score with "
                "--params evaluation.checkpoint=PATH"
            )


def _index_shards(index_file: Path) -> set[str]:
    try:
        weight_map = json.loads(index_file.read_text(encoding="utf-8")).get("weight_map", {})
    except (OSError, ValueError, AttributeError):
        return {index_file.name + " (unreadable)"}
    return set(weight_map.values()) if isinstance(weight_map, dict) else set()
