"""What the Kedro node and the launched training process agree on: files, exit codes, the run spec.

The node writes `.run/run.json` (`RunSpec`: the validated `TrainingConfig` and the `RuntimeSpec` it resolved)
and launches `python -m edu_bias_pipeline.dpo.entry RUN.json`; the process answers with its exit code
(`EXIT_OOM`, `EXIT_FAILED`, with `.run/error.json` saying why), `METRICS_FILE` and the `final/` directory,
whose `METADATA_FILE` (`FinalMetadata`) says how the model in it was trained and by which run. Evaluation and
the CLI read that file (`scoring`), and the node copies it into the catalog's `trained_model` record
(`TrainedModel`).

Kept free of torch, transformers and TRL: the Kedro process, scoring and the datasets import it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from edu_bias_pipeline.dpo.config import TrainingConfig
from edu_bias_pipeline.pairs import DEFAULT_INSTRUCTION

FINAL_DIR = "final"  # the trained model or adapter, renamed into place complete
FINAL_TMP = ".final.tmp"  # where final/ is written before the rename
METADATA_FILE = "edu_bias_training.json"  # in final/: `FinalMetadata`
METRICS_FILE = "edu_bias_metrics.json"  # in the output dir; the node turns it into training_metrics.json
ERROR_FILE = "error.json"  # in the run dir: {"kind": "oom" | "error", "message": ...} of a failed run
EXIT_OOM = 3
EXIT_FAILED = 2

# The old scripts' metric names. Keys logged without the "train/" prefix because the wandb and tensorboard
# integrations prefix train-time keys with "train/" themselves (`loss` is already shown as `train/loss`).
LEGACY_ALIASES = {
    "reward_accuracy": "rewards/accuracies",
    "reward_margin": "rewards/margins",
    "better_sample_reward": "rewards/chosen",
    "worse_sample_reward": "rewards/rejected",
    "lr": "learning_rate",
}


DEFAULT_BETA = 0.1  # TRL's DPOConfig default, used only when no metadata or parameter gives one


class FinalMetadata(BaseModel):
    """`final/edu_bias_training.json`: how the model or adapter beside it was trained, and by which run.

    Written by the training process (`training.final.save_final`); read by scoring, for evaluation and the
    CLI, which fills what a checkpoint without this file lacks from its adapter config, parameters and the
    defaults here (`source` says which); copied by the training node into `TrainedModel`.
    """

    # unknown keys (a file written by another release) are ignored; `frozen`: one value per model
    model_config = ConfigDict(extra="ignore", frozen=True)

    base_model: str | None = None  # the base model, which is the reference (a LoRA run: adapter disabled)
    is_adapter: bool = False
    beta: float = DEFAULT_BETA
    instruction: str = DEFAULT_INSTRUCTION
    max_length: int | None = None
    trust_remote_code: bool = False
    # TRL's hash of the reference weights (precomputed reference log-probs only): evaluation keys its own
    # cached reference log-probs by it instead of hashing the weights again
    reference_sha256: str | None = None
    # the run that wrote final/: evaluation checks that the trained_model record names this same run
    fingerprint: str | None = None
    global_step: int | None = None
    source: str = Field("defaults", exclude=True)  # where a reader's values came from; never written

    # What scoring needs to score the model; the rest names the run that wrote it.
    SCORING_FIELDS: ClassVar[tuple[str, ...]] = (
        "base_model",
        "is_adapter",
        "beta",
        "instruction",
        "max_length",
        "trust_remote_code",
        "reference_sha256",
    )
    RUN_FIELDS: ClassVar[tuple[str, ...]] = ("fingerprint", "global_step")

    @classmethod
    def read(cls, directory: str | Path) -> FinalMetadata:
        """The metadata of the final/ at `directory` (OSError: missing; ValueError: not this model)."""
        path = Path(directory) / METADATA_FILE
        return cls.model_validate_json(path.read_text(encoding="utf-8"))

    def write(self, directory: str | Path) -> None:
        text = self.model_dump_json(indent=2)
        (Path(directory) / METADATA_FILE).write_text(text, encoding="utf-8")


class TrainedModel(FinalMetadata):
    """The catalog's `trained_model` record: the final/ a training run wrote, a copy of its metadata, and when
    it was saved. Evaluation scores `model_dir` after checking its metadata still is this copy."""

    model_dir: str
    finished_at: str | None = None  # when final/ was saved (ISO 8601, UTC)
    # split_report.json's `files` when the model was trained: the train and val it read and the test file
    # held out from them, so evaluation can tell a held-out file from one the model may have seen
    split_files: dict[str, dict[str, Any]] | None = None


class RuntimeSpec(BaseModel):
    """What the node resolved for this run (paths, hardware decisions); not user configuration."""

    model_config = ConfigDict(extra="forbid")

    model_path: str
    base_model_id: str  # what final/edu_bias_training.json records as the base/reference model
    train_file: str
    val_file: str
    run_dir: str
    precision: str = "fp32"
    use_cpu: bool = True
    deepspeed_config: str | None = None
    resume_from: str | None = None
    fingerprint: str = ""


class RunSpec(BaseModel):
    """`.run/run.json`: everything the launched process is told."""

    model_config = ConfigDict(extra="forbid")

    config: TrainingConfig
    runtime: RuntimeSpec


def legacy_metrics(logs: dict[str, Any]) -> dict[str, Any]:
    """The old names for a train-time log entry (empty for eval entries)."""
    if any(k.startswith("eval_") for k in logs):
        return {}
    return {alias: logs[src] for alias, src in LEGACY_ALIASES.items() if src in logs}


def history_record(logs: dict[str, Any]) -> dict[str, Any]:
    """A log entry under the names tracking tools show: `train/…`, `eval/…` (transformers' rewrite_logs)."""
    out: dict[str, Any] = {}
    for key, value in logs.items():
        if key in ("step", "epoch"):
            out[key] = value
        elif key.startswith("eval_"):
            out["eval/" + key[5:]] = value
        else:
            out["train/" + key] = value
    return out
