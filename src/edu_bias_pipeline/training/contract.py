"""What the Kedro node and the launched training process agree on: files, exit codes, the run spec.

The node writes `.run/run.json` (`RunSpec`: the validated `TrainingConfig` and the `RuntimeSpec` it resolved)
and launches `python -m edu_bias_pipeline.training.entry RUN.json`; the process answers with its exit code
(`EXIT_OOM`, `EXIT_FAILED`, with `.run/error.json` saying why), `METRICS_FILE` and the `final/` directory.

Kept free of torch, transformers and TRL: the Kedro process imports it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from edu_bias_pipeline.scoring import METADATA_FILE
from edu_bias_pipeline.training.config import TrainingConfig

FINAL_DIR = "final"  # the trained model or adapter, renamed into place complete
FINAL_TMP = ".final.tmp"  # where final/ is written before the rename
CONTRACT_FILE = METADATA_FILE  # final/edu_bias_training.json, read back by scoring (evaluation and the CLI)
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
