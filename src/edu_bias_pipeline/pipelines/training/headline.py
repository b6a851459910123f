"""The training stage's headline for `dvc metrics show` / `dvc exp show`: final loss and reward accuracy,
steps and runtime.

The step history, per-category evaluation and health checks stay in training_metrics.json, a plain DVC out.
A number the run did not produce (no validation set, so no `val_*`) is left out rather than written as 0.
"""

from __future__ import annotations

from typing import Any

# headline key -> key in training_metrics.json's `final` section
FINAL = {
    "train_loss": "train/loss",
    "train_reward_accuracy": "train/reward_accuracy",
    "val_loss": "eval/loss",
    "val_reward_accuracy": "eval/rewards/accuracies",
    "val_reward_margin": "eval/rewards/margins",
}


def training_headline(metrics: dict[str, Any]) -> dict[str, Any]:
    final = metrics["final"]
    headline = {name: final[key] for name, key in FINAL.items() if final.get(key) is not None}
    headline["steps"] = metrics["run"]["global_step"]
    headline["runtime_s"] = metrics["run"]["runtime_s"]
    headline["health_warnings"] = len(metrics["health"]["warnings"])
    return headline
