"""Small pieces of the launched process: old metric names, history records, OOM hint, credentials hook."""

from __future__ import annotations

import torch

from edu_bias_pipeline.dpo import credentials
from edu_bias_pipeline.dpo.arguments import DPO_CONFIG_FIELDS, dpo_config_kwargs
from edu_bias_pipeline.dpo.config import TrainingConfig
from edu_bias_pipeline.dpo.contract import RuntimeSpec, history_record, legacy_metrics
from edu_bias_pipeline.dpo.entry import _is_oom, _oom_message


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


def _dpo_config(tmp_path, **fields):
    from trl import DPOConfig

    config = TrainingConfig(output_dir=str(tmp_path / "out"), **fields)
    runtime = RuntimeSpec(
        model_path="m", base_model_id="m", train_file="t", val_file="v", run_dir=str(tmp_path / "run")
    )
    return config, DPOConfig(**dpo_config_kwargs(config, runtime, has_val=True))


def test_warmup_ratio_is_a_share_of_the_training_steps(tmp_path):
    """transformers 5 has no warmup_ratio: a warmup_steps below 1 is the share of the steps."""
    _, args = _dpo_config(tmp_path, warmup_ratio=0.05)
    assert args.get_warmup_steps(200) == 10 and args.get_warmup_steps(30) == 2  # rounded up
    _, args = _dpo_config(tmp_path, warmup_ratio=0.0)
    assert args.get_warmup_steps(200) == 0


def test_the_dpo_config_gets_every_mapped_setting(tmp_path):
    """Values off TRL's defaults, so a field left out of the mapping shows as TRL's default."""
    settings = dict(
        beta=0.3,
        max_length=77,
        learning_rate=3e-4,
        weight_decay=0.01,
        max_grad_norm=0.5,
        max_steps=9,
        per_device_train_batch_size=3,
        per_device_eval_batch_size=5,
        gradient_accumulation_steps=2,
        seed=7,
        logging_steps=4,
        eval_strategy="steps",
        eval_steps=6,
        save_strategy="steps",
        save_steps=8,
        save_total_limit=3,
        precompute_ref_log_probs=True,
        precompute_ref_batch_size=11,
        train_sampling_strategy="group_by_length",
        loss_type=["sigmoid", "sft"],
        gradient_checkpointing=True,
        dataloader_num_workers=2,
        num_train_epochs=2.0,
        lr_scheduler_type="cosine",
    )
    _, args = _dpo_config(tmp_path, **settings, extra_training_args={"label_smoothing": 0.1})
    for name, value in settings.items():
        assert getattr(args, name) == value, name
    assert set(DPO_CONFIG_FIELDS) <= set(settings) | {"trust_remote_code", "torch_compile"}
    assert args.label_smoothing == 0.1 and args.output_dir == str(tmp_path / "out")
    assert args.run_name == "out" and args.report_to == [] and args.use_cpu
    assert not (args.auto_find_batch_size or args.use_liger_kernel or args.ddp_find_unused_parameters)
