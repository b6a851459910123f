"""Training: config → data → lock → base model → launched TRL run → metrics."""

from kedro.pipeline import Pipeline, node, pipeline

from .headline import training_headline
from .nodes import (
    build_base_model,
    collect_training_metrics,
    lock_training_dirs,
    prepare_training_data,
    resolve_config,
    train_dpo,
    training_curves,
)


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(resolve_config, "params:training", "training_config", name="resolve_training_config"),
            node(
                prepare_training_data,
                ["train_pairs", "val_pairs", "split_report", "training_config"],
                "training_data",
                name="prepare_training_data",
            ),
            # held from before the base model is built until train_dpo returns
            node(
                lock_training_dirs,
                ["training_data", "training_config"],
                "training_lock",
                name="lock_training_dirs",
            ),
            node(
                build_base_model,
                ["training_data", "training_config", "training_lock"],
                "base_model",
                name="build_base_model",
            ),
            node(
                train_dpo,
                ["training_data", "training_config", "base_model", "training_lock", "trained_model_record"],
                "training_run",
                name="train_dpo",
            ),
            node(
                collect_training_metrics,
                ["training_run", "split_report"],
                ["training_metrics", "trained_model"],
                name="collect_training_metrics",
            ),
            node(
                training_curves,
                "training_metrics",
                ["training_curve", "validation_curve"],
                name="training_curves",
            ),
            node(training_headline, "training_metrics", "training_headline", name="training_headline"),
        ],
        tags="training",
    )
