"""Small pieces of the launched process: old metric names, history records, OOM hint, credentials hook."""

from __future__ import annotations

import torch

from edu_bias_pipeline.training import credentials
from edu_bias_pipeline.training.config import TrainingConfig
from edu_bias_pipeline.training.entry import _is_oom, _oom_message, history_record, legacy_metrics


def test_legacy_names_for_train_logs_only():
    logs = {
        "loss": 0.5,
        "rewards/accuracies": 0.75,
        "rewards/margins": 0.2,
        "rewards/chosen": 0.1,
        "rewards/rejected": -0.1,
        "learning_rate": 1e-3,
    }
    assert legacy_metrics(logs) == {
        "reward_accuracy": 0.75,
        "reward_margin": 0.2,
        "better_sample_reward": 0.1,
        "worse_sample_reward": -0.1,
        "lr": 1e-3,
    }
    assert legacy_metrics({"eval_loss": 0.4, "eval_rewards/accuracies": 1.0}) == {}
    # what tensorboard / wandb / training_metrics.json show
    shown = history_record({**logs, **legacy_metrics(logs), "step": 3})
    assert shown["train/reward_accuracy"] == 0.75 and shown["train/loss"] == 0.5 and shown["step"] == 3
    assert history_record({"eval_gender/rewards/accuracies": 1.0}) == {"eval/gender/rewards/accuracies": 1.0}


def test_oom_is_recognised_and_the_hint_names_the_settings():
    assert _is_oom(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert _is_oom(RuntimeError("DefaultCPUAllocator: not enough memory ... out of memory"))
    assert not _is_oom(ValueError("bad"))
    message = _oom_message(TrainingConfig(per_device_train_batch_size=8))
    for hint in (
        "lora.enabled",
        "lora.qlora",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "gradient_checkpointing",
        "max_length",
        "zero_stage",
    ):
        assert hint in message


def test_credentials_hook_reads_the_wandb_key_and_forgets_it():
    hook = credentials.TrainingCredentialsHook()
    try:
        hook.after_catalog_created(conf_creds={"wandb": {"api_key": "k-123"}})
        assert credentials.wandb_api_key() == "k-123"
        hook.after_catalog_created(conf_creds={})
        assert credentials.wandb_api_key() is None
    finally:
        credentials.set_wandb_api_key(None)
